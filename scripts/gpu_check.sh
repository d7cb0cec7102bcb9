#!/usr/bin/env bash
# The GPU verification, for a GPU machine with no network and its own torch, in stages that each
# fit one 10-minute call (the build stays in place between calls on a warm machine):
#   bash scripts/gpu_check.sh build       build in place for this GPU
#   bash scripts/gpu_check.sh tests       the whole test suite with CUDA (slow tests: add --run-slow
#                                         via PYTEST_ARGS="--run-slow", or the stage `slow`)
#   bash scripts/gpu_check.sh slow        only the tests marked slow (> 2^31-element buffers)
#   bash scripts/gpu_check.sh sanitizer   compute-sanitizer memcheck + racecheck + initcheck on small ops
#   bash scripts/gpu_check.sh benchmarks  the CUDA benchmarks and a results table
#   bash scripts/gpu_check.sh costmodel   benchmarks/gpu_cost_model.py's predictions beside each
#                                         op measured on this GPU (calibrates the model)
#   bash scripts/gpu_check.sh [all]       build, tests, sanitizer, benchmarks, costmodel
# Results go to $OUT (default ./gpu_check_out).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
status=0
# The interpreter that holds torch: $PYTHON, else python3 (GPU images may have no `python`).
PY="${PYTHON:-python3}"
# The C++ compiler for the extension and the tests' emulation builds: $MVSCAN_CXX, else the g++
# on PATH. Not an inherited $CXX: one GPU image's CXX was a g++ wrapper that links libstdc++
# statically, which setup.py refuses (two libstdc++ copies crash on the first error message).
CXX="${MVSCAN_CXX:-$(command -v g++ || echo c++)}"
export CXX
stage="${1:-all}"
case "$stage" in
  all|build|tests|slow|sanitizer|benchmarks|costmodel) ;;
  *) echo "gpu_check.sh: unknown stage '$stage' (all, build, tests, slow, sanitizer, benchmarks, costmodel)"
     exit 2 ;;
esac
want() { [ "$stage" = all ] || [ "$stage" = "$1" ]; }

"$PY" - <<'PY' || exit 1
import torch
assert torch.cuda.is_available(), "no CUDA GPU visible"
print("torch", torch.__version__, "CUDA", torch.version.cuda, "GPU", torch.cuda.get_device_name())
PY
if want build; then
  arch=$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')
  echo "== build for sm_${arch/./}"
  start=$(date +%s)
  TORCH_CUDA_ARCH_LIST="$arch" MAX_JOBS="${MAX_JOBS:-16}" "$PY" setup.py build_ext --inplace \
    > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
  echo "build: $(( $(date +%s) - start )) s"
fi

if want tests; then
  echo "== tests (CUDA tests included; slow ones only with PYTEST_ARGS=--run-slow)"
  # shellcheck disable=SC2086  # PYTEST_ARGS is a list of flags
  MVSCAN_POISON_OUTPUTS=1 "$PY" -m pytest tests -q -rs -p no:cacheprovider ${PYTEST_ARGS:-} \
    --junitxml="$OUT/tests.xml" 2>&1 | tee "$OUT/tests.log" | tail -15 || status=1
fi

if [ "$stage" = slow ]; then
  echo "== slow tests (> 2^31-element buffers)"
  MVSCAN_POISON_OUTPUTS=1 "$PY" -m pytest tests -q -rs -p no:cacheprovider --run-slow -m slow \
    2>&1 | tee "$OUT/tests_slow.log" | tail -15 || status=1
fi

if want sanitizer; then
echo "== compute-sanitizer (memcheck, racecheck, initcheck) on small CUDA fwd+bwd: scan and conv (compiled and Triton); decode steps"
cat > "$OUT/sanitize_case.py" <<'PY'
import torch, mvscan
def scan_and_conv():
    # Depthwise conv on channels-contiguous input, fused SiLU.
    x = torch.randn(2, 37, 70, device="cuda").transpose(1, 2).contiguous().transpose(1, 2)
    x.requires_grad_(True)
    w = torch.randn(70, 3, device="cuda", requires_grad=True)
    b = torch.randn(70, device="cuda", requires_grad=True)
    y = mvscan.depthwise_conv1d(x.transpose(1, 2), w, b, "same", "silu")
    y.square().sum().backward()
    # causal_conv1d_fn with initial states and final states, then with packed sequences (padding
    # included), in both layouts; an empty chunk.
    for xc in (x.transpose(1, 2), torch.randn(2, 37, 70, device="cuda").transpose(1, 2)):
        xc.requires_grad_(True)
        h0 = torch.randn(2, 70, 2, device="cuda", requires_grad=True)
        y, fs = mvscan.causal_conv1d_fn(xc, w, b, initial_states=h0, return_final_states=True,
                                        activation="silu")
        (y.square().sum() + fs.sum()).backward()
        seq = torch.tensor([[0] * 10 + [1] * 27, [0] * 30 + [-1] * 7], dtype=torch.int32,
                           device="cuda")
        mvscan.causal_conv1d_fn(xc, w, b, seq_idx=seq, initial_states=h0,
                                activation="silu").square().sum().backward()
    y, fs = mvscan.causal_conv1d_fn(x.transpose(1, 2)[..., :0], w, b, initial_states=h0,
                                    return_final_states=True)
    fs.sum().backward()
    # Selective scan: two chunks plus a tail, a partial last block, every option, each B/C kind,
    # and N > 64 (one row per block).
    for N, B_shape, C_shape in [(8, (3, 2, 8, 150), (3, 8, 150)), (16, (20, 16), (3, 16, 150)),
                                (100, (3, 100, 150), (3, 2, 100, 150))]:
        dim = 20
        u = torch.randn(3, dim, 150, device="cuda", requires_grad=True)
        delta = (torch.rand(3, dim, 150, device="cuda") * 0.5).requires_grad_(True)
        A = (-torch.rand(dim, N, device="cuda") - 0.1).requires_grad_(True)
        B = torch.randn(*B_shape, device="cuda", requires_grad=True)
        C = torch.randn(*C_shape, device="cuda", requires_grad=True)
        D = torch.randn(dim, device="cuda", requires_grad=True)
        z = torch.randn(3, dim, 150, device="cuda", requires_grad=True)
        bias = torch.randn(dim, device="cuda", requires_grad=True)
        h0 = torch.randn(3, dim, N, device="cuda", requires_grad=True)
        for initial_state in (None, h0):
            out, last = mvscan.selective_scan(u, delta, A, B, C, D, z, bias, True, True,
                                              initial_state=initial_state)
            (out.square().sum() + last.sum()).backward()


# The compiled kernels, then the Triton ones (mvscan/triton_backend).
for backend in (None, "triton"):
    with mvscan.use_backend(backend):
        scan_and_conv()
# Decode steps: Mamba-2's stride-0 views, a partial last block, state rows picked with a padding
# row; the conv update on a circular state, several steps.
state = torch.randn(5, 3, 20, 40, device="cuda")
idx = torch.tensor([4, -1, 0], dtype=torch.int32, device="cuda")
mvscan.selective_state_update(
    state, torch.randn(3, 3, 20, device="cuda"),
    torch.rand(3, 3, 1, device="cuda").expand(3, 3, 20),
    (-torch.rand(3, 1, 1, device="cuda")).expand(3, 20, 40), torch.randn(3, 1, 40, device="cuda"),
    torch.randn(3, 3, 40, device="cuda"), torch.randn(3, 20, device="cuda"),
    torch.randn(3, 3, 20, device="cuda"), torch.randn(3, 20, device="cuda"), True, idx)
mvscan.causal_conv1d_update(
    torch.randn(3, 70, 3, device="cuda"), torch.randn(5, 70, 6, device="cuda"),
    torch.randn(70, 4, device="cuda"), torch.randn(70, device="cuda"), "silu",
    torch.tensor([7, 0, 2], dtype=torch.int32, device="cuda"), idx)
torch.cuda.synchronize()
print("sanitize case ok")
PY
if command -v compute-sanitizer >/dev/null 2>&1; then
  for tool in memcheck racecheck initcheck; do
    # The case script lives in $OUT: put the repo on the path so it imports the in-place build.
    PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" \
    compute-sanitizer --tool "$tool" --error-exitcode 3 "$PY" "$OUT/sanitize_case.py" \
      > "$OUT/sanitizer_$tool.log" 2>&1 && echo "$tool: clean" || { echo "$tool: FAILED"; status=1; }
  done
else
  echo "compute-sanitizer not found: skipped"
fi
fi

if want benchmarks; then
echo "== CUDA benchmarks (scan, conv, MambaVision inference)"
"$PY" -m pytest benchmarks/test_scan_cuda.py benchmarks/test_conv_cuda.py \
  "benchmarks/test_model_cpu.py::test_mambavision_cuda" "benchmarks/test_model_cpu.py::test_peer_cuda" \
  --benchmark-only -q -p no:cacheprovider --benchmark-json="$OUT/benchmarks.json" \
  > "$OUT/benchmarks.log" 2>&1 || status=1
sed -n '/speed relative to the reference/,/^=/p' "$OUT/benchmarks.log"
"$PY" - "$OUT/benchmarks.json" <<'PY' || true
import json, sys
rows = json.load(open(sys.argv[1]))["benchmarks"]
print(f"{'group':52} {'backend':10} {'median ms':>10} {'GB/s':>7}  ratios")
for r in rows:
    info = r.get("extra_info", {})
    ratios = " ".join(f"{k[11:]}={v}x" for k, v in info.items() if k.startswith("speedup_vs_"))
    print(f"{r['group']:52} {r['param'].split('-')[-1]:10} {r['stats']['median'] * 1e3:10.3f} "
          f"{info.get('GB_per_s', ''):>7}  {ratios}")
PY
echo "== python -m mvscan.benchmark at the GPU shapes (batch 128, bf16)"
"$PY" -m mvscan.benchmark --device cuda --dtype bf16 --batch-size 128 --repeats 50 \
  2>&1 | tee "$OUT/mvscan_benchmark.txt" || status=1
echo "== MambaVision-T inference on the Triton kernels (MVSCAN_BACKEND=triton; batch 256, fp16)"
MVSCAN_BACKEND=triton "$PY" -m mambavision benchmark --device cuda --dtype fp16 --batch-size 256 \
  --channels-last --repeats 20 2>&1 | tee "$OUT/mambavision_triton.txt" || status=1
fi

if want costmodel; then
echo "== GPU cost model: predictions (emulator counters + SASS) beside the measured ops"
dev=$("$PY" -c "import torch; print('h200' if 'H200' in torch.cuda.get_device_name() else 'h100')")
"$PY" benchmarks/gpu_cost_model.py --device "$dev" --measure --json "$OUT/cost_model.json" \
  2>&1 | grep -v "No CUDA runtime" | tee "$OUT/cost_model.txt" || status=1
fi

echo "results in $OUT (stage $stage, status $status)"
exit $status
