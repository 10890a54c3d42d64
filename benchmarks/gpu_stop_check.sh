#!/bin/bash
# One device call (run from the repository root, $OUT set): the GPU tests of the CLI, output paths, reducer and
# seam, a CUDA ci fuzz, then CUDA nightly fuzz runs stopped after 25 s by SIGTERM (to the parent, as a job's
# timeout) and by Ctrl-C (SIGINT to the process group): exit code, time to exit, workers left, any traceback.
export PYTHONPATH=$PWD
echo "# $(date -u '+%F %H:%M') UTC, $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
python3 -c "import cupy, hypothesis, numpy; print('cupy', cupy.__version__, 'hypothesis', hypothesis.__version__, 'numpy', numpy.__version__)"
echo "# pytest GPU-relevant files"
python3 -m pytest -q -ra -p no:cacheprovider tests/test_cuda_backend.py tests/test_cli_core.py tests/test_output_paths.py tests/test_case_reducer.py tests/test_seam.py 2>&1 | tail -8
echo "# fuzz --backend cuda --profile ci"
/usr/bin/time -f "wall %e s" python3 -m validation.cli fuzz --backend cuda --profile ci --out $OUT/fz 2>/dev/null | tail -2
for sig in TERM INT; do
python3 - "$sig" <<'PY'
import os, signal, subprocess, sys, time
sig = getattr(signal, "SIG" + sys.argv[1])
out = os.environ["OUT"] + "/stop_" + sys.argv[1]
p = subprocess.Popen([sys.executable, "-m", "validation.cli", "fuzz", "--backend", "cuda", "--profile", "nightly", "--out", out],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
time.sleep(25)
kids = open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()
t = time.time()
os.killpg(p.pid, sig) if sig == signal.SIGINT else p.send_signal(sig)
o, e = p.communicate(timeout=60)
time.sleep(2)
left = [k for k in kids if os.path.exists(f"/proc/{k}") and "State:\tZ" not in open(f"/proc/{k}/status").read()]
print(f"{sys.argv[1]}: rc {p.returncode} in {time.time() - t:.2f} s; workers {kids} left {left}; traceback {'Traceback' in e}")
print("\n".join(o.splitlines()[:8]))
PY
done
