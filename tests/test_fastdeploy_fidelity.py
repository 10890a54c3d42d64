"""Fidelity by execution (Python half) for all eight snapshots, and FastDeploy's own op tests op-level.

CI runs a bounded subset of the committed corpus per snapshot (the ``fidelity`` command covers all of it);
skipped with the reason when ``../shared/fastdeploy`` is absent.
"""

from __future__ import annotations

import shutil

import pytest

from support import ROOT, requires_paddle
from validation.cli.entry import main
from validation.cross_backend import read_corpus
from validation.fastdeploy import fidelity, op_tests
from validation.fastdeploy.checkout import open_checkout

SNAPSHOTS = ROOT.parent / "shared" / "fastdeploy"
CORPUS = ROOT / "fixtures" / "corpus" / "states.jsonl.gz"
# Every 50th corpus state: both block-size halves, fresh and in order, a few seconds per snapshot on two cores.
SUBSET = 50
FOLDERS = sorted(p.name for p in SNAPSHOTS.iterdir() if p.is_dir()) if SNAPSHOTS.is_dir() else []

pytestmark = [requires_paddle, pytest.mark.skipif(not SNAPSHOTS.is_dir(), reason=f"no FastDeploy snapshots at {SNAPSHOTS}")]


@pytest.fixture(scope="module")
def corpus_subset() -> list:
    return list(read_corpus(CORPUS))[::SUBSET]


def test_all_eight_snapshots_are_present() -> None:
    assert len(FOLDERS) == 8 and set(FOLDERS) == set(fidelity.MODEL_OF_COMMIT)


@pytest.mark.parametrize("folder", FOLDERS)
def test_checkout_code_is_bit_identical_to_its_model(folder, corpus_subset, tmp_path) -> None:
    row = fidelity.run_fidelity(SNAPSHOTS / folder, corpus_subset, "corpus", tmp_path)
    assert row.model == fidelity.MODEL_OF_COMMIT[folder]
    assert (row.identical, row.first_difference) == (row.states, ""), row.check_line


def test_a_difference_is_reported_with_a_check_line(tmp_path, corpus_subset) -> None:
    copy = tmp_path / "2d8338f9e4e6"
    shutil.copytree(SNAPSHOTS / "2d8338f9e4e6", copy)
    runner = copy / "fastdeploy" / "worker" / "gpu_model_runner.py"
    runner.write_text(runner.read_text().replace("block_offset = position_ids % block_size  # [num_tokens]",
                                                 "block_offset = position_ids % block_size + 1  # [num_tokens]"))
    row = fidelity.run_fidelity(copy, corpus_subset, "corpus", tmp_path / "out")
    assert row.identical < row.states and row.check_line.startswith("dsa-validate check --state ")
    state_file = row.check_line.split("--state ")[1].split()[0]
    assert main(["check", "--state", state_file, "--baseline", "single_step", "--candidate", f"fastdeploy:{copy}",
                 "--strict"]) == 1


def test_fidelity_command_prints_one_table(capsys) -> None:
    code = main(["fidelity", str(SNAPSHOTS / "7198b5883a0e"), "--limit", "3", "--fuzz", "4"])
    out = capsys.readouterr().out
    assert code == 0
    assert "commit" in out and "corpus:3" in out and "fuzz-seed0:4" in out and "model fused" in out


@pytest.mark.parametrize("folder", FOLDERS)
def test_fastdeploys_own_op_tests_hold_op_level(folder) -> None:
    run = op_tests.run_op_tests(open_checkout(str(SNAPSHOTS / folder)))
    assert run.results and run.passed, [r for r in run.results if r.outcome != "passed"]


def test_a_wrong_expectation_in_an_op_test_fails(tmp_path, capsys) -> None:
    copy = tmp_path / "d2d633b05c2c"
    shutil.copytree(SNAPSHOTS / "d2d633b05c2c", copy)
    test = copy / "tests" / "operators" / "test_get_position_ids_and_mask_encoder_batch.py"
    test.write_text(test.read_text().replace("[0, 1, 2, 1, 0, 1, 2, 3]", "[0, 1, 2, 1, 0, 1, 2, 4]"))
    assert main(["fidelity", "--op-level", str(copy)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "test_basic_functionality" in out and "op-level" in out
