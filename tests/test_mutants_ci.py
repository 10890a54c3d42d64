"""The mutation score under the ``ci`` profile: every seeded bug dies, and an outside one too.

This is the suite proving its own power in CI: a mutant that survives means a class of bug the
gate would let through.
"""

from __future__ import annotations

from properties.mutation import catalogue_specs, run_mutant, run_mutants, score
from support import requires_paddle

OUTSIDE = '''
import numpy as np

def off_by_one_mtp(inputs):
    """A stateless outside candidate: MTP draft tokens start one position late."""
    dec, this = inputs["seq_lens_decoder"].astype(np.int64), inputs["seq_lens_this_time"].astype(np.int64)
    enc = inputs["seq_lens_encoder"]
    start = np.repeat(np.cumsum(this) - this, this)
    within = np.arange(int(this.sum())) - start
    pos = np.repeat(dec, this) + within + np.repeat((enc == 0) & (this > 1), this) * (within > 0)
    bt, bs = inputs["block_tables"], inputs["block_size"]
    rows = inputs["batch_id_per_token"][: pos.shape[0]]
    slots = np.full(inputs["padded_num_tokens"], -1, dtype=np.int64)
    if pos.shape[0]:
        cols = np.minimum(pos // bs, bt.shape[1] - 1)
        slots[: pos.shape[0]] = bt[rows, cols].astype(np.int64) * bs + pos % bs
    return {"position_ids": pos.astype(np.int32), "slot_mapping": slots}
'''


@requires_paddle
def test_every_catalogue_mutant_is_killed_under_ci(tmp_path) -> None:
    outcomes = run_mutants(catalogue_specs(), profile="ci", out_dir=str(tmp_path))
    summary = score(outcomes)
    assert summary["survivors"] == [], summary
    assert summary["median_seconds_to_kill"] <= 2.0, summary
    for outcome in outcomes:
        assert outcome.counterexample is not None and outcome.counterexample_path


def test_an_outside_file_mutant_is_killed_the_same_way(tmp_path) -> None:
    path = tmp_path / "m.py"
    path.write_text(OUTSIDE)
    outcome = run_mutant(f"{path}:off_by_one_mtp", profile="ci", out_dir=str(tmp_path / "out"), check_baseline=False)
    assert outcome.killed and outcome.layer == "single state", outcome
