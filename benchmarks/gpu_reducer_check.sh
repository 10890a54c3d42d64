#!/usr/bin/env bash
# The state reducer on the GPU (no Paddle there): the case-reducer and CUDA tests, then check --reduce on every
# committed regression that carries earlier steps, with the CUDA kernels as both sides (the reduced files are
# compared with the Paddle CPU ones afterwards), a failing multi_step fuzz and the ci profile on the cuda backend.
#   OUT=/tmp/gpu-out bash benchmarks/gpu_reducer_check.sh
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name --format=csv,noheader; date -u
python3 -m pytest -q -p no:cacheprovider tests/test_case_reducer.py tests/test_cuda_backend.py tests/test_profiles.py tests/test_state.py 2>&1 | tail -2
for f in fixtures/regressions/stale_tail_*.json; do n=$(basename $f .json)
 b=$(python3 -c "import json;print(json.load(open('$f'))['baseline'])"); c=$(python3 -c "import json;print(json.load(open('$f'))['candidate'])")
 echo "== $n ($b vs $c)"; python3 -m validation.cli check --backend cuda --state $f --baseline $b --candidate $c --reduce $OUT/$n.json | grep -- "--reduce"; done
echo "== fuzz multi_step --no-known on cuda"
/usr/bin/time -f "%e s wall" python3 -m validation.cli fuzz --backend cuda --profile ci --properties multi_step --no-known --out $OUT/fz 2>&1 | tail -5
echo "== fuzz ci legacy vs single_step on cuda"
/usr/bin/time -f "%e s wall" python3 -m validation.cli fuzz --backend cuda --profile ci --json > $OUT/ci_cuda.json 2>$OUT/ci_cuda.err; echo "exit $?"; tail -1 $OUT/ci_cuda.err
