#!/usr/bin/env bash
# Build the IFEval reference that BENCHMARKS.md times ours against, outside the repository:
#   DIR/ifref/        lm-eval 0.4.13's four ifeval modules, imports renamed to the package `ifref`
#   DIR-venv/         a venv with only what they import (nltk, langdetect, immutabledict, absl-py, packaging)
#   DIR/ref_score.py  our driver (benchmarks/reference/ifeval_ref_score.py)
# Usage: bash benchmarks/reference/make_ifeval_reference.sh [DIR]   (default /tmp/ifref); then
#   --reference 'DIR-venv/bin/python DIR/ref_score.py {data} {responses}' for bench_ifeval_process.py,
#   --reference DIR for bench_ifeval.py.
set -euo pipefail
dir=${1:-/tmp/ifref}
here=$(cd "$(dirname "$0")" && pwd)
wheel=$(mktemp -d)
python3 -m pip download -q --no-deps -d "$wheel" lm-eval==0.4.13
mkdir -p "$dir/ifref"
for f in instructions instructions_registry instructions_util utils; do
  unzip -p "$wheel"/lm_eval-0.4.13-*.whl "lm_eval/tasks/ifeval/$f.py" \
    | sed 's/from lm_eval\.tasks\.ifeval import/from ifref import/' > "$dir/ifref/$f.py"
done
: > "$dir/ifref/__init__.py"
cp "$here/ifeval_ref_score.py" "$dir/ref_score.py"
python3 -m venv "$dir-venv"
"$dir-venv/bin/pip" install -q nltk==3.10.4 langdetect==1.0.9 immutabledict absl-py packaging
echo "reference ready: $dir-venv/bin/python $dir/ref_score.py DATA RESPONSES"
