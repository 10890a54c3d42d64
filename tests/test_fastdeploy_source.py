"""``fastdeploy:PATH``: a checkout's own lines run, not a model chosen by commit (issue 16, Python half).

Every test reads the snapshots in ``../shared/fastdeploy`` (unmodified FastDeploy files at eight commits) and
skips with the reason when they are absent. Modified checkouts are copies in ``tmp_path`` with one line changed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support import ROOT, requires_paddle
from validation import compare, seam
from validation.cli.entry import main
from validation.fastdeploy.checkout import Shape, open_checkout
from validation.state import load_steps

SNAPSHOTS = ROOT.parent / "shared" / "fastdeploy"
LEGACY, PR7367, FUSED = SNAPSHOTS / "d2d633b05c2c", SNAPSHOTS / "2d8338f9e4e6", SNAPSHOTS / "7198b5883a0e"
STALE_TAIL = ROOT / "fixtures" / "regressions" / "stale_tail_zero_fill.json"
PATCH = ROOT / "fixes" / "7367-stale-tail.patch"
RUNNER = "fastdeploy/worker/gpu_model_runner.py"

pytestmark = [requires_paddle, pytest.mark.skipif(not SNAPSHOTS.is_dir(), reason=f"no FastDeploy snapshots at {SNAPSHOTS}")]


def findings(baseline: str, candidate: str, state_file: Path = STALE_TAIL) -> list[tuple]:
    """The (verdict, consumer, token, baseline, candidate) of every finding of ``check``."""
    *history, state = load_steps(state_file)
    report = compare.compare_state(state, seam.resolve(baseline, num_layers=2), seam.resolve(candidate, num_layers=2),
                                   2, history)
    return sorted((f.verdict, f.consumer, f.token, str(f.baseline), str(f.candidate)) for f in report.findings)


def differences(baseline: str, candidate: str, state_file: Path) -> list[tuple]:
    """Findings where the two sides differ (equal sides give only OK or SHARED-BUG)."""
    return [f for f in findings(baseline, candidate, state_file) if f[0] in ("REGRESSION", "FIX")]


def edited_copy(tmp_path: Path, snapshot: Path, relpath: str, old: str, new: str) -> Path:
    """A copy of ``snapshot`` with the one line holding ``old`` rewritten to hold ``new``."""
    copy = tmp_path / snapshot.name
    shutil.copytree(snapshot, copy)
    path = copy / relpath
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))
    return copy


def test_the_acceptance_check_reports_the_models_regressions(capsys) -> None:
    real = findings(f"fastdeploy:{LEGACY}", f"fastdeploy:{PR7367}")
    assert real == findings("legacy", "single_step")
    assert [f[0] for f in real].count("REGRESSION") == 2  # both consumers, folded over the layers
    assert main(["check", "--state", str(STALE_TAIL), "--baseline", f"fastdeploy:{LEGACY}",
                 "--candidate", f"fastdeploy:{PR7367}"]) == 1
    out = capsys.readouterr().out
    assert "8 REGRESSION" in out and "model positions_v1 (not compiled here" in out  # the substitution is named


def test_shapes_are_read_from_the_files() -> None:
    assert open_checkout(str(LEGACY)).shape is Shape.LEGACY
    assert open_checkout(str(PR7367)).shape is Shape.SINGLE_STEP
    assert open_checkout(str(FUSED)).shape is Shape.FUSED


def test_one_line_in_the_runner_flips_the_verdict(tmp_path) -> None:
    line = '        paddle.assign((block_ids * block_size + block_offset).cast(paddle.int64), slot_mapping)'
    fixed = edited_copy(tmp_path, PR7367, RUNNER, line,
                        '        self.share_inputs["slot_mapping_buffer"][:] = -1; ' + line.strip())
    assert not [f for f in findings(f"fastdeploy:{LEGACY}", f"fastdeploy:{fixed}") if f[0] == "REGRESSION"]


def test_one_line_in_the_fused_runner_breaks_a_clean_verdict(tmp_path) -> None:
    state = ROOT / "fixtures" / "states" / "spec_prefill_bs4.json"
    assert not differences("fused", f"fastdeploy:{FUSED}", state)
    broken = edited_copy(tmp_path, FUSED, RUNNER, "            slot_mapping_buffer,\n            self.cache_config.block_size,",
                         "            slot_mapping_buffer,\n            self.cache_config.block_size * 2,")
    assert any(f[0] == "REGRESSION" for f in findings("fused", f"fastdeploy:{broken}", state))


def test_the_legacy_indexer_block_size_comes_from_its_call_site(tmp_path) -> None:
    state = ROOT / "fixtures" / "states" / "block_size_16.json"
    assert not differences("legacy", f"fastdeploy:{LEGACY}", state)  # the checkout's own 64 is the model's 64
    edited = edited_copy(tmp_path, LEGACY, "fastdeploy/model_executor/models/deepseek_v3.py",
                         "            64,\n        )\n\n        indexer_top_k", "            16,\n        )\n\n        indexer_top_k")
    assert differences("legacy", f"fastdeploy:{edited}", state)  # the indexer now follows the config: differs


def test_a_real_checkout_layout_with_extra_and_missing_optional_files(tmp_path) -> None:
    copy = tmp_path / "FastDeploy"
    shutil.copytree(PR7367, copy, ignore=shutil.ignore_patterns("tests", "dsa_attention_backend.py", "*.cuh"))
    (copy / "setup.py").write_text("raise SystemExit('never imported')\n")
    (copy / "fastdeploy" / "__init__.py").write_text("raise ImportError('never imported')\n")
    assert findings(f"fastdeploy:{LEGACY}", f"fastdeploy:{copy}") == findings("legacy", "single_step")


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "nope", "not a directory"),
    (lambda tmp: tmp, "not a FastDeploy checkout (looked for fastdeploy/worker/gpu_model_runner.py)"),
    (lambda tmp: _write(tmp, RUNNER, "def f(:\n"), "does not parse as Python"),
    (lambda tmp: _write(tmp, RUNNER, "x = 1\n"), "unrecognised code shape"),
])
def test_bad_checkouts_are_one_line_exit_2(tmp_path, capsys, make, message) -> None:
    root = make(tmp_path)
    assert main(["check", "--state", str(STALE_TAIL), "--candidate", f"fastdeploy:{root}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and err.startswith("dsa-validate check: error: candidate:")


def _write(root: Path, relpath: str, text: str) -> Path:
    (root / relpath).parent.mkdir(parents=True, exist_ok=True)
    (root / relpath).write_text(text)
    return root


def test_the_stale_tail_patch_is_a_candidate_and_fixes_it(capsys) -> None:
    patched = f"fastdeploy:{PR7367}+{PATCH}"
    assert not [f for f in findings(f"fastdeploy:{LEGACY}", patched) if f[0] == "REGRESSION"]
    assert not [f for f in findings(f"fastdeploy:{PR7367}", patched) if f[0] == "REGRESSION"]
    assert "must not keep a slot" not in (PR7367 / RUNNER).read_text()  # the snapshot itself is untouched


def test_a_patch_that_does_not_apply_is_exit_2(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.patch"
    bad.write_text(PATCH.read_text().replace("block_offset = position_ids", "block_offset = nothing_here"))
    assert main(["check", "--state", str(STALE_TAIL), "--candidate", f"fastdeploy:{PR7367}+{bad}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not apply" in err


def test_an_unmodelled_kernel_is_named_not_silently_modelled(tmp_path) -> None:
    cu = "custom_ops/gpu_ops/get_position_ids_and_mask_encoder_batch.cu"
    copy = edited_copy(tmp_path, PR7367, cu, "position_ids[offset + i] = i;", "position_ids[offset + i] = i + 1;")
    name = seam.resolve(f"fastdeploy:{copy}").name
    assert "NOT the checkout's kernel" in name and cu in name


def test_a_step_input_read_from_share_inputs_is_the_states_not_a_buffer(tmp_path) -> None:
    copy = edited_copy(tmp_path, PR7367, RUNNER, "            self.forward_meta.seq_lens_this_time,\n            position_ids,",
                       '            self.share_inputs["seq_lens_this_time"],\n            position_ids,')
    assert findings(f"fastdeploy:{LEGACY}", f"fastdeploy:{copy}") == findings("legacy", "single_step")


def test_a_checkout_implementation_pickles_for_the_fuzzers_workers() -> None:
    import pickle

    impl = seam.resolve(f"fastdeploy:{PR7367}+{PATCH}", num_layers=2)
    again = pickle.loads(pickle.dumps(impl))
    assert again.target.checkout == impl.target.checkout and callable(again.new())
