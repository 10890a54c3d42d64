"""``dsa-validate ifeval score`` imports only what scoring a jsonl file needs (its start-up is most of its time)."""

from __future__ import annotations

import os
import subprocess
import sys

from ifeval_support import REPO, SAMPLE_INPUT, SAMPLE_RESPONSES

PROBE = """
import sys
from validation.cli import main
code = main(["ifeval", "score", "--responses", sys.argv[1], "--data", sys.argv[2]])
heavy = sorted(m for m in ("datasets", "pyarrow", "pandas", "scipy", "hypothesis", "paddle", "matplotlib", "httpx",
                           "properties", "validation.cli.slot_commands") if m in sys.modules)
print("HEAVY", heavy, code)
"""


def test_ifeval_score_leaves_unneeded_modules_unimported() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, str(SAMPLE_RESPONSES), str(SAMPLE_INPUT)],
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "HEAVY [] 0"


def test_top_level_help_still_lists_every_command() -> None:
    done = subprocess.run([sys.executable, "-m", "validation.cli", "--help"], env=dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "ifeval" in done.stdout and "fuzz" in done.stdout
