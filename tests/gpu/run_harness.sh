#!/usr/bin/env bash
# GPU proof for the rethinkgen CUDA kernels, without TensorFlow.
#
#   tests/gpu/run_harness.sh            # on a machine with an NVIDIA GPU + nvcc
#   tests/gpu/run_harness.sh --cpu      # same checks, kernels' per-element code on the CPU (CI)
#
# Steps (cuda): 1. build the harness with nvcc for the GPU found (nvidia-smi);
# 2. check every kernel against rethinkgen_tf/ops/reference.py (bit for bit on
# labels and permutations, <= 1 ulp on Gaussians, expected exact), several
# shapes incl. 299x299x3 and odd sizes; 3. compute-sanitizer memcheck over one
# pass of each kernel; 4. throughput next to baselines measured in the same run
# (fill bandwidth, torch.normal_, torch.rand+argsort+gather).
# Needs python3 with NumPy + pybind11 (+ PyTorch for step 4), g++, nvcc.
# Env: PYTHON (interpreter), RG_HARNESS_OUT (build dir), RG_ARCH (e.g. 90).
# Exit status: non-zero iff a build, check or sanitizer step failed
# (throughput misses are reported; --strict-perf makes them fail too).
set -uo pipefail

cd "$(dirname "$0")/../.." || exit 2
ROOT=$(pwd)
MODE=cuda
EXTRA=()
STRICT=()
for arg in "$@"; do
  case "$arg" in
    --cpu) MODE=cpu ;;
    --quick) EXTRA+=(--quick) ;;
    --strict-perf) STRICT+=(--strict-perf) ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

if [[ -n "${PYTHON:-}" ]]; then PY=$PYTHON
elif [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"
else PY=python3; fi
OUT=${RG_HARNESS_OUT:-$ROOT/build/gpu_harness}
T0=$(date +%s)
STATUS=0
step() { echo; echo "=== $* ($(( $(date +%s) - T0 )) s)"; }

if [[ $MODE == cuda ]] && ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "no nvidia-smi: no GPU here. Run with --cpu for the CPU mode." >&2
  exit 2
fi

step "1. build ($MODE)"
if [[ $MODE == cuda ]]; then
  nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv
  nvcc --version | tail -1
  ARCH_ARGS=()
  [[ -n "${RG_ARCH:-}" ]] && ARCH_ARGS=(--arch "$RG_ARCH")
  "$PY" tests/gpu/build_harness.py --backend cuda --out "$OUT" ${ARCH_ARGS[@]+"${ARCH_ARGS[@]}"} || exit 1
else
  "$PY" tests/gpu/build_harness.py --backend cpu --out "$OUT" || exit 1
fi
MOD="$OUT/$MODE"

step "2. correctness vs NumPy reference"
"$PY" tests/gpu/check_harness.py --module-dir "$MOD" ${EXTRA[@]+"${EXTRA[@]}"} || STATUS=1

if [[ $MODE == cuda ]]; then
  step "3. compute-sanitizer memcheck (one pass of each kernel)"
  SAN=$(command -v compute-sanitizer || true)
  if [[ -z "$SAN" ]]; then
    NVCC_DIR=$(dirname "$(command -v nvcc)")
    for c in "$NVCC_DIR/compute-sanitizer" "$NVCC_DIR/../compute-sanitizer/compute-sanitizer" \
             /usr/local/cuda/bin/compute-sanitizer; do
      [[ -x "$c" ]] && SAN=$c && break
    done
  fi
  if [[ -z "$SAN" ]]; then
    echo "compute-sanitizer not found: step skipped"; STATUS=1
  else
    "$SAN" --tool memcheck --error-exitcode 3 --leak-check no \
      "$PY" tests/gpu/check_harness.py --module-dir "$MOD" --sanitize || STATUS=1
    "$SAN" --tool racecheck --error-exitcode 3 \
      "$PY" tests/gpu/check_harness.py --module-dir "$MOD" --sanitize || STATUS=1
  fi

  step "4. throughput (same run baselines)"
  if "$PY" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
    "$PY" tests/gpu/check_harness.py --module-dir "$MOD" --bench ${STRICT[@]+"${STRICT[@]}"} || STATUS=1
  else
    echo "PyTorch with CUDA not available: throughput step skipped"
  fi
fi

step "done: $([[ $STATUS == 0 ]] && echo PASSED || echo FAILED)"
exit $STATUS
