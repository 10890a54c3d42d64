"""SPEC section 6 vectors and the crafted bug-class states, through every implementation.

Each fixture records the hand-computed truth and, per ``baseline->candidate`` pair, the set of
non-OK verdicts (``VERDICT consumer``) the triage must produce.
"""

from __future__ import annotations

import pytest

from support import load_fixture, requires_paddle, state_files
from validation import compare, seam
from validation.state import BatchState

pytestmark = requires_paddle

IMPLS = ("legacy", "single_step", "chunked_fix", "get_position_ids", "fused", "tail_reset", "tail_reset_fused")
TRIAGE_CASES = [
    (path, pair) for path in state_files() for pair in load_fixture(path)["triage"]
]


def _verdicts(report: compare.Report) -> list[str]:
    return sorted({f"{f.verdict} {f.consumer}" for f in report.findings})


@pytest.mark.parametrize(("path", "pair"), TRIAGE_CASES, ids=lambda x: getattr(x, "stem", x))
def test_recorded_triage(path, pair: str) -> None:
    doc = load_fixture(path)
    base, cand = pair.split("->")
    report = compare.compare_state(BatchState.from_dict(doc["state"]), seam.resolve(base), seam.resolve(cand), 2)
    assert _verdicts(report) == sorted(doc["triage"][pair]), report.render()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("path", state_files(), ids=lambda p: p.stem)
def test_each_implementation_reproduces_the_vectors_exactly_where_it_is_correct(path, impl: str) -> None:
    """``correct`` lists the paths whose every output equals the hand-computed vectors; the others must not."""
    doc = load_fixture(path)
    state = BatchState.from_dict(doc["state"])
    obs = seam.observe(seam.resolve(impl).new(), state.step_inputs(), 1)
    want_pos, want_slots = doc["expected"]["position_ids"], doc["expected"]["slot_mapping"]

    def slots_right(slots: list[int]) -> bool:
        return all(g < 0 if w < 0 else g == w for g, w in zip(slots, want_slots, strict=True))

    right = (
        obs.error is None
        and obs.position_ids.tolist() == want_pos
        and all(slots_right(obs.layers[0][c].tolist()) for c in seam.CONSUMERS)
    )
    assert right == (impl in doc["correct"]), (obs.position_ids, obs.layers[0])
