"""``--pad-contract``: FastDeploy's writers skip any negative slot on a padded row; vLLM's contract is exactly -1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import requires_paddle

pytestmark = requires_paddle  # the built-in baseline runs on Paddle

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = f"{ROOT / 'tests' / 'pad_minus_two_impl.py'}:PadsWithMinusTwo"
STATE = ROOT / "fixtures" / "states" / "padded_batch.json"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "validation.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize(("contract", "code"), [("negative", 0), ("minus-one", 1)])
def test_check_a_minus_two_padding_plugin(contract: str, code: int) -> None:
    done = cli("check", "--state", str(STATE), "--baseline", "tail_reset", "--candidate", PLUGIN,
               "--pad-contract", contract, "--layers", "1")
    assert done.returncode == code, done.stdout + done.stderr
    if code:
        assert "REGRESSION" in done.stdout and "-2 breaks the peer contract" in done.stdout
    else:
        assert "0 REGRESSION" in done.stdout


@pytest.mark.parametrize(("contract", "code"), [("negative", 0), ("minus-one", 1)])
def test_fuzz_a_minus_two_padding_plugin(contract: str, code: int, tmp_path: Path) -> None:
    done = cli("fuzz", "--baseline", "oracle", "--candidate", PLUGIN, "--pad-contract", contract, "--json",
               "--properties", "truth", "--max-examples", "60", "--seed", "1", "--out", str(tmp_path))
    assert done.returncode == code, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(done.stdout)
    regressions = [g for g in result["findings"] if g["verdict"] == "REGRESSION"]
    assert bool(regressions) == bool(code) and all("padding" in g["scenario"] for g in regressions)


def test_a_bad_contract_is_one_line_exit_2() -> None:
    done = cli("check", "--state", str(STATE), "--pad-contract", "minus-two")
    assert done.returncode == 2 and "--pad-contract" in done.stderr and "Traceback" not in done.stderr
