#!/usr/bin/env bash
# The whole GPU check in one call that fits a 15-minute device budget (about 4 minutes of work on
# an H200; measured 2026-11-26): build; the CUDA tests, the sanitizer and (in the background,
# niced) mamba_ssm's scan build side by side; the CUDA benchmarks with mamba_ssm when it built;
# the cost model's predictions beside the measured ops; Nsight Compute counters if time is left.
# Everything lands in $OUT/results.tgz (re-packed after each stage, so a cut call still returns
# what ran) plus $OUT/timeline.txt.
#   PEERS=<dir with build_mamba_ssm_scan.sh and mamba_ssm-*.tar.gz> bash scripts/gpu_session.sh
# ../shared/ does not travel to a device machine: copy the two peer files into a folder of the
# repo that .git/info/exclude ignores and name that folder in the call's `carry` and in PEERS.
# BUDGET_S (default 400): seconds after which the optional ncu stage is skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT="${OUT:-$PWD/gpu_check_out}"
R=$(mktemp -d)
export PYTHON="${PYTHON:-python3}" PYTHONUNBUFFERED=1
PY=$PYTHON
T0=$(date +%s)
el() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$R/timeline.txt"; }
pack() { mkdir -p "$OUT"; tar czf "$OUT/results.tgz" -C "$R" . 2>/dev/null; cp "$R/timeline.txt" "$OUT/"; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "import torch,sys;print(sys.version.split()[0], torch.__version__, torch.version.cuda)"
  echo "CXX=${CXX:-} g++=$(command -v g++)"; g++ --version | head -1
} > "$R/device.txt" 2>&1
PEER=
if [ -n "${PEERS:-}" ] && [ -f "$PEERS/build_mamba_ssm_scan.sh" ]; then
  peers_dir=$(cd "$PEERS" && pwd)
  ( cd /tmp && nice -n 10 env MAX_JOBS=8 WORK=/tmp/peer timeout 300 \
      bash "$peers_dir/build_mamba_ssm_scan.sh" > "$R/peer_build.txt" 2>&1 ) &
  PEER=$!
fi
el "build"
OUT="$R" bash scripts/gpu_check.sh build || { el "build failed"; pack; exit 1; }
el "built"; pack
OUT="$R" timeout 150 bash scripts/gpu_check.sh sanitizer > "$R/sanitizer_stage.txt" 2>&1 &
SAN=$!
# gpu_check.sh picks the compiler for the emulation builds; the CUDA cases alone here (the
# emulated and CPU ones are what CI runs).
# pytest-xdist and pytest-timeout when the machine has them (the GPU image does).
parallel=$("$PY" -c "import xdist" 2>/dev/null && echo "-n 12")
per_test=$("$PY" -c "import pytest_timeout" 2>/dev/null && echo "--timeout 120")
# shellcheck disable=SC2086  # two optional flag lists
CXX="${MVSCAN_CXX:-$(command -v g++ || echo c++)}" MVSCAN_POISON_OUTPUTS=1 OMP_NUM_THREADS=1 \
  timeout 150 "$PY" -m pytest tests -q -rs -p no:cacheprovider $parallel $per_test \
  -k "cuda and not emulated" --junitxml="$R/tests.xml" > "$R/tests.log" 2>&1
el "tests rc=$?"; tail -5 "$R/tests.log"
wait $SAN; el "sanitizer rc=$?"; grep -E "clean|FAILED" "$R/sanitizer_stage.txt"
pack
if [ -n "$PEER" ]; then
  wait $PEER; el "peer build rc=$?"
  PEERDIR=$(tail -1 "$R/peer_build.txt")
  [ -d "$PEERDIR" ] && export PYTHONPATH="$PEERDIR"
fi
el "benchmarks"
# 200 s: the Triton rows (and their first-call compiles) came in with issue 16.
OUT="$R" timeout 200 bash scripts/gpu_check.sh benchmarks > "$R/bench_stage.txt" 2>&1
el "benchmarks rc=$?"; sed -n '/speed relative to the reference/,/^=/p' "$R/benchmarks.log"
unset PYTHONPATH
pack
el "cost model"
OUT="$R" timeout 240 bash scripts/gpu_check.sh costmodel > "$R/costmodel_stage.txt" 2>&1
el "cost model rc=$?"; sed -n '/MEASURED/,$p' "$R/cost_model.txt"
pack
left=$(( ${BUDGET_S:-400} - ($(date +%s) - T0) ))
if [ $left -gt 30 ] && command -v ncu >/dev/null 2>&1; then
  el "ncu ($left s)"
  metrics=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum
  metrics=$metrics,launch__registers_per_thread,launch__grid_size,launch__block_size
  metrics=$metrics,sm__warps_active.avg.pct_of_peak_sustained_active
  metrics=$metrics,gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed
  metrics=$metrics,sm__throughput.avg.pct_of_peak_sustained_elapsed,smsp__sass_inst_executed.sum
  metrics=$metrics,l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum
  metrics=$metrics,l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum
  metrics=$metrics,l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum
  metrics=$metrics,l1tex__t_requests_pipe_lsu_mem_global_op_st.sum
  metrics=$metrics,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum
  metrics=$metrics,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum
  PYTHONPATH="$REPO" timeout "$left" ncu --clock-control none --csv --page raw \
    -k 'regex:selective_scan|conv_' --metrics "$metrics" "$PY" scripts/ncu_case.py \
    > "$R/ncu.csv" 2> "$R/ncu.err"
  el "ncu rc=$?"
fi
el "done"; pack
