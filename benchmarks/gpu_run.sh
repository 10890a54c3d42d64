#!/usr/bin/env bash
# Everything that needs the GPU, in one call on the lent H200 (no Paddle there; CuPy, numpy,
# hypothesis and pytest are): the CUDA backend's tests, the CUDA digests of the shared corpus and
# their comparison with the committed Paddle digests, path timings, and the property suite on
# the CUDA backend. Results land in $OUT; the numbers quoted in BENCHMARKS.md come from here.
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
out=${OUT:-/tmp/gpu-out}
mkdir -p "$out"
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c "import cupy, numpy, hypothesis, sys; print('python', sys.version.split()[0], 'cupy', cupy.__version__, 'numpy', numpy.__version__, 'hypothesis', hypothesis.__version__)"
} | tee "$out/gpu.txt"
python3 -m pytest -q -ra -p no:cacheprovider tests/test_cuda_backend.py tests/test_compare.py tests/test_oracle.py \
  tests/test_state.py tests/test_seam.py tests/test_mutants_catalogue.py > "$out/gpu_pytest.log" 2>&1
tail -3 "$out/gpu_pytest.log"
time python3 -m validation.cross_backend record --backend cuda --corpus fixtures/corpus/states.jsonl.gz --out "$out/cuda_digests.jsonl"
python3 -m validation.cross_backend compare fixtures/corpus/paddle_digests.jsonl "$out/cuda_digests.jsonl" > "$out/compare.txt"
echo "compare exit $?"; tail -5 "$out/compare.txt"
python3 benchmarks/bench_paths.py --backend cuda --layers 61 --repeats 50 > "$out/bench_cuda.jsonl"
for pair in "legacy single_step" "oracle chunked_fix"; do
  set -- $pair
  python3 - "$1" "$2" "$out/fuzz_cuda_$1_$2.json" <<'PY'
import json, sys
from properties.runner import run_fuzz
result = run_fuzz(sys.argv[1], sys.argv[2], profile="ci", backend="cuda", progress=print, out_dir="/tmp/cx")
open(sys.argv[3], "w").write(json.dumps(result.to_dict()))
print(sys.argv[1], "vs", sys.argv[2], "on cuda:", result.examples, "states in", round(result.seconds, 1), "s, exit", result.exit_code,
      "verdicts", sorted(result.verdicts))
PY
done
