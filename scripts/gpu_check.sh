#!/usr/bin/env bash
# One command for a GPU machine with no network and its own torch: build in place for this GPU,
# run the whole test suite with CUDA, run compute-sanitizer on small CUDA ops, run the
# benchmarks, and print a results table. Results go to $OUT (default ./gpu_check_out).
#   bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
status=0

python - <<'PY' || exit 1
import torch
assert torch.cuda.is_available(), "no CUDA GPU visible"
print("torch", torch.__version__, "CUDA", torch.version.cuda, "GPU", torch.cuda.get_device_name())
PY
arch=$(python -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')
echo "== build for sm_${arch/./}"
start=$(date +%s)
TORCH_CUDA_ARCH_LIST="$arch" MAX_JOBS="${MAX_JOBS:-16}" python setup.py build_ext --inplace \
  > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - start )) s"

echo "== tests (CUDA tests included)"
MVSCAN_POISON_OUTPUTS=1 python -m pytest tests -q -rs -p no:cacheprovider \
  --junitxml="$OUT/tests.xml" 2>&1 | tee "$OUT/tests.log" | tail -15 || status=1

echo "== compute-sanitizer (memcheck, racecheck) on a small CUDA fwd+bwd"
cat > "$OUT/sanitize_case.py" <<'PY'
import torch, mvscan
x = torch.randn(2, 37, 70, device="cuda").transpose(1, 2).contiguous().transpose(1, 2)
x.requires_grad_(True)
w = torch.randn(70, 3, device="cuda", requires_grad=True)
b = torch.randn(70, device="cuda", requires_grad=True)
y = mvscan.depthwise_conv1d(x.transpose(1, 2), w, b, "same", "silu")
y.square().sum().backward()
torch.cuda.synchronize()
print("sanitize case ok")
PY
if command -v compute-sanitizer >/dev/null 2>&1; then
  for tool in memcheck racecheck; do
    compute-sanitizer --tool "$tool" --error-exitcode 3 python "$OUT/sanitize_case.py" \
      > "$OUT/sanitizer_$tool.log" 2>&1 && echo "$tool: clean" || { echo "$tool: FAILED"; status=1; }
  done
else
  echo "compute-sanitizer not found: skipped"
fi

echo "== benchmarks"
python -m pytest benchmarks --benchmark-only -q -p no:cacheprovider \
  --benchmark-json="$OUT/benchmarks.json" > "$OUT/benchmarks.log" 2>&1 || status=1
sed -n '/speed relative to the reference/,/^---/p' "$OUT/benchmarks.log"
echo "results in $OUT (status $status)"
exit $status
