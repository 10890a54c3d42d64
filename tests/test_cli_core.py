"""``dsa-validate slots`` and ``check``: output, exit codes, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import STATES, requires_paddle
from validation.cli import main
from validation.impls import cuda_paths


def _write(tmp_path, text: str):
    path = tmp_path / "state.json"
    path.write_text(text)
    return str(path)


GOOD = dict(block_size=64, seq_lens_encoder=[0], seq_lens_decoder=[10], seq_lens_this_time=[1], block_tables=[[3]])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"block_size": 64,', "malformed JSON at line 1"),
        (json.dumps({**GOOD, "seq_len_decoder": [1]}), "seq_len_decoder: unknown field"),
        (json.dumps({**GOOD, "seq_lens_decoder": [70]}), "block_tables[0]: request 0 writes position 70 in logical block 1, past its table of 1 blocks"),
        (json.dumps({**GOOD, "block_tables": [[-1]]}), "block_tables[0, 0]: real token at position 10 of request 0 lies on an unallocated (-1) block"),
    ],
)
@pytest.mark.parametrize("command", ["slots", "check"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, command: str, text: str, message: str) -> None:
    assert main([command, "--state", _write(tmp_path, text)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and f"dsa-validate {command}: error:" in err


def test_missing_file_and_bad_impl_are_exit_2(capsys) -> None:
    assert main(["check", "--state", "/nonexistent.json"]) == 2
    assert "cannot read state file" in capsys.readouterr().err
    assert main(["check", "--state", str(STATES / "spec_decode.json"), "--baseline", "oracle", "--candidate", "nope"]) == 2
    assert "candidate: unknown implementation 'nope'" in capsys.readouterr().err


@requires_paddle
def test_slots_prints_positions_and_each_consumer(capsys) -> None:
    assert main(["slots", "--state", str(STATES / "spec_prefill_bs4.json"), "--impl", "legacy"]) == 0
    out = capsys.readouterr().out
    assert "position_ids (int32): [0, 1, 2, 3, 4, 5]" in out
    assert "attention (all 4 layers, int64): [40, 41, 42, 43, 80, 81]" in out
    assert "indexer (all 4 layers, int64): [640, 641, 642, 643, 644, 645]" in out
    assert main(["slots", "--state", str(STATES / "spec_prefill_bs4.json"), "--impl", "fused", "--json", "--layers", "1"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["layers"][0]["attention"] == {"dtype": "int64", "slots": [40, 41, 42, 43, 80, 81]}


@requires_paddle
def test_check_chunked_prefill_shared_bug_then_fix(capsys) -> None:
    state = str(STATES / "chunked_prefill.json")
    assert main(["check", "--state", state]) == 0
    out = capsys.readouterr().out
    assert "SHARED-BUG position_ids token 0 (request 0, position 128, logical block 2): baseline=0 candidate=0 oracle=128" in out
    assert main(["check", "--state", state, "--strict"]) == 1
    capsys.readouterr()
    assert main(["check", "--state", state, "--candidate", "chunked_fix"]) == 0
    out = capsys.readouterr().out
    assert " 0 SHARED-BUG, " in out and "FIX        attention all layers token 0" in out


@requires_paddle
def test_check_block_size_16_names_the_indexer_and_the_right_side(capsys) -> None:
    assert main(["check", "--state", str(STATES / "block_size_16.json")]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert lines and all(line.split()[:2] == ["FIX", "indexer"] for line in lines if not line.strip().startswith("..."))
    assert "[candidate matches the oracle]" in lines[0]


@requires_paddle
def test_check_reports_the_int32_product_against_the_oracle(capsys) -> None:
    assert main(["check", "--state", str(STATES / "int32_overflow.json"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    finding = doc["findings"][0]
    assert finding["oracle"] == 2147483653 and finding["candidate"] == -2147483643
    assert finding["note"] == "int32 overflow of block_id * block_size"


@requires_paddle
def test_regression_exits_1(capsys) -> None:
    assert main(["check", "--state", str(STATES / "padded_batch.json"), "--baseline", "oracle", "--candidate", "legacy"]) == 1
    assert "REGRESSION attention all layers token 2 (padding)" in capsys.readouterr().out


def test_console_script_help_has_an_example() -> None:
    out = subprocess.run([sys.executable, "-m", "validation.cli", "check", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "example:" in out.stdout and "dsa-validate check --state" in out.stdout


@pytest.mark.parametrize("value", ["0", "-2", "two", "513", "100000000"])
@pytest.mark.parametrize("command", ["slots", "check"])
def test_layers_must_be_a_positive_integer_within_the_cap(capsys, command: str, value: str) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--state", str(STATES / "spec_decode.json"), "--layers", value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--layers" in err


def test_slots_survives_a_plugin_that_returns_no_layers(tmp_path, capsys) -> None:
    plugin = tmp_path / "p.py"
    plugin.write_text("import numpy as np\ndef f(i):\n    return {'position_ids': np.zeros(1, np.int32), 'layers': []}\n")
    assert main(["slots", "--state", str(STATES / "spec_decode.json"), "--impl", f"{plugin}:f"]) == 0
    assert "indexer: no layers returned" in capsys.readouterr().out


@requires_paddle
def test_slots_shows_the_zero_fill_then_the_previous_steps_slots_on_padded_rows(capsys) -> None:
    """Acceptance (issue 10): a fresh padded step puts padded rows at slot 0; the next step shows step 1's slots."""
    case = STATES.parent / "regressions" / "stale_tail_zero_fill.json"
    assert main(["slots", "--state", str(case), "--impl", "single_step", "--json"]) == 0
    first, second = json.loads(capsys.readouterr().out)["steps"]
    assert first["layers"][0]["attention"]["slots"][6:] == [0, 0]
    assert second["layers"][0]["attention"]["slots"][3] == first["layers"][0]["attention"]["slots"][3] == 896


@requires_paddle
def test_slots_with_minus_one_batch_ids_reports_the_fused_out_of_bounds_read(capsys) -> None:
    assert main(["slots", "--state", str(STATES / "fused_negative_batch_id.json"), "--impl", "fused"]) == 0
    assert ("hazard: get_position_ids_and_slot_mapping: 2 token(s) with batch id -1 read block_tables before its "
            "start; first: token 2 reads element -2 (8 bytes before the table)") in capsys.readouterr().out


@pytest.mark.skipif(cuda_paths.available() is None, reason="CUDA kernels can run here: the backend is not refused")
@pytest.mark.parametrize("argv", [
    ["check", "--state", str(STATES / "spec_decode.json")], ["slots", "--state", str(STATES / "spec_decode.json")],
    ["fuzz", "--profile", "dev"], ["mutants"], ["e2e"], ["run"]])
def test_the_cuda_backend_where_it_cannot_run_is_one_line_before_any_work(capsys, argv: list[str]) -> None:
    # It used to be a SHARED-BUG of two sides that both failed to launch, with exit 0 (check, e2e).
    assert main([*argv, "--backend", "cuda"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "the CUDA backend" in captured.err


NO_PADDLE = '''
import sys
from pathlib import Path
from importlib.machinery import PathFinder


class NoPaddle(PathFinder):
    """This interpreter finds no Paddle, as on a machine without the cpu extra (the GPU box)."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return None if name.split(".")[0] == "paddle" else PathFinder.find_spec(name, path, target)


sys.meta_path[:] = [NoPaddle if finder is PathFinder else finder for finder in sys.meta_path]
'''


@pytest.mark.parametrize("sides", [[], ["--candidate", "fastdeploy:../shared/fastdeploy/2d8338f9e4e6"]])
def test_paddle_paths_without_paddle_are_one_line_not_a_verdict(tmp_path, sides: list[str]) -> None:
    # It used to be a SHARED-BUG of two sides that both failed with MissingDependency, exit 0. The refusal comes
    # before the checkout is read, so the fastdeploy: case passes wherever the test runs from.
    (tmp_path / "sitecustomize.py").write_text(NO_PADDLE)
    env = {"PYTHONPATH": f"{tmp_path}:{Path(__file__).resolve().parent.parent}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "validation.cli", "check", "--state", str(STATES / "spec_decode.json"),
                           *sides], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and done.stdout == "", done
    assert done.stderr.count("\n") == 1 and "needs paddlepaddle, which is not installed" in done.stderr
    oracle_only = subprocess.run([sys.executable, "-m", "validation.cli", "check", "--state",
                                  str(STATES / "spec_decode.json"), "--baseline", "oracle", "--candidate",
                                  "validation.impls.mutants:CorrectStep"], capture_output=True, text=True, env=env,
                                 timeout=120)
    assert oracle_only.returncode == 0, oracle_only  # numpy sides need no Paddle
