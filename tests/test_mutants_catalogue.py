"""The seeded bugs themselves: the correct base is right, and every mutant is wrong somewhere reachable.

Each mutant gets one hand-written witness state on which the triage against the oracle must show
a REGRESSION: proof that the catalogue holds real bugs, independent of whether the fuzzer finds them.
"""

from __future__ import annotations

import pytest

from support import load_fixture, make_state, state_files
from validation import compare, seam
from validation.compare import REGRESSION
from validation.impls import mutants
from validation.state import BatchState

ORACLE = seam.resolve("oracle")
BIG = 1100  # requests, past both the uint8 and the 1024-tile index limits


def _many_decodes(n: int) -> BatchState:
    return make_state(seq_lens_encoder=[0] * n, seq_lens_decoder=[5] * n, seq_lens_this_time=[1] * n,
                      block_tables=[[i] for i in range(n)])


WITNESSES: dict[str, list[BatchState]] = {
    "OffByOneDecode": [make_state()],
    "OffByOneMtp": [make_state(seq_lens_this_time=[3])],
    "WrongBlockAtBlockEnd": [make_state(seq_lens_decoder=[63], block_tables=[[3, 4]])],
    "CompactedRequestIndex": [make_state(seq_lens_encoder=[0, 0], seq_lens_decoder=[5, 9], seq_lens_this_time=[0, 1],
                                         block_tables=[[1], [2]])],
    "PrefixHitRestartsAtZero": [make_state(seq_lens_encoder=[10], seq_lens_decoder=[64], seq_lens_this_time=[10],
                                           block_tables=[[5, 6]])],
    "PaddedTailZeros": [make_state(padded_num_tokens=2)],
    "StaleTail": [make_state(seq_lens_encoder=[0, 0], seq_lens_decoder=[5, 9], seq_lens_this_time=[1, 1],
                             block_tables=[[1], [2]], max_num_batched_tokens=4),
                  make_state(seq_lens_decoder=[6], block_tables=[[1]], padded_num_tokens=2, max_num_batched_tokens=4)],
    "ReusePreviousMapping": [make_state(), make_state(seq_lens_decoder=[11])],
    "IndexerHardcoded64": [make_state(block_size=16, seq_lens_decoder=[20], block_tables=[[1, 2]])],
    "BitmaskModulo": [make_state(block_size=48, seq_lens_decoder=[50], block_tables=[[1, 2]])],
    "Int32Output": [make_state()],
    "Int32Product": [make_state(block_tables=[[40_000_000, -1]])],
    "WrongPast255": [_many_decodes(300)],
    "WrongPast1023": [_many_decodes(BIG)],
    "RealTokensOnly": [make_state(padded_num_tokens=2)],
    "DraftUsesLastAllocatedBlock": [make_state(seq_lens_decoder=[63], seq_lens_this_time=[2], block_tables=[[3, 4]])],
    "EstimatedTokenCount": [make_state(padded_num_tokens=2)],
    "IdleSlotCountsOneToken": [make_state(seq_lens_encoder=[0, 0, 0], seq_lens_decoder=[5, 9, 20],
                                          seq_lens_this_time=[1, 0, 1], block_tables=[[1], [2], [3]])],
}


def _regressions_over_steps(impl: seam.Implementation, steps: list[BatchState]) -> set[str]:
    fn = impl.new()
    found: set[str] = set()
    for state in steps:
        base = seam.observe(ORACLE.new(), state.step_inputs(), 1)
        cand = seam.observe(fn, state.step_inputs(), 1)
        found |= {f.consumer for f in compare.triage(state, base, cand, "oracle", impl.name, 1).findings
                  if f.verdict == REGRESSION}
    return found


def test_catalogue_is_complete() -> None:
    assert len(mutants.MUTANTS) >= 15
    assert set(WITNESSES) == set(mutants.MUTANTS)
    assert {m.bug_class for m in mutants.MUTANTS.values()} == set(range(1, 11))
    for cls in mutants.MUTANTS.values():
        assert cls.description and "\n" not in cls.description
        assert cls.reach in {"one state", "multi-step", "block-size sweep"}


@pytest.mark.parametrize("path", state_files(), ids=lambda p: p.stem)
def test_the_correct_base_matches_the_oracle_everywhere(path) -> None:
    state = BatchState.from_dict(load_fixture(path)["state"])
    assert _regressions_over_steps(seam.resolve("validation.impls.mutants:CorrectStep"), [state]) == set()


@pytest.mark.parametrize("name", sorted(mutants.MUTANTS))
def test_every_mutant_is_wrong_on_its_witness(name: str) -> None:
    impl = seam.resolve(f"validation.impls.mutants:{name}")
    assert _regressions_over_steps(impl, WITNESSES[name]), f"{name} survived its own witness"
