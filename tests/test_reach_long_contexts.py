"""Long contexts are generated at every block size (issue 10: the nightly profile at block sizes
16, 48, 100 and 256 never reached ``context:long`` or ``context:near_max``).

A long context at block size 16 needs 2,048 blocks in a row (10,240 near DeepSeek-V3.2's maximum of
163,840 tokens); the long tier's cap is the widest table the cell bound allows, so it is reachable.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from properties.schedule_model import MAX_TABLE_CELLS
from properties.strategies import Case, cases

EXAMPLES = 150


@pytest.mark.parametrize("block_size", [16, 48, 100, 256])
def test_long_and_near_max_contexts_are_generated_at_every_block_size(block_size: int) -> None:
    reached: dict[str, int] = {"context:long": 0, "context:near_max": 0}
    cells = []

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(case=cases((block_size,)))
    def draw(case: Case) -> None:
        for tag in reached:
            reached[tag] += tag in case.tags
        cells.append(case.state.block_tables.size)

    draw()
    assert all(reached.values()), f"block size {block_size}: {reached} in {EXAMPLES} examples"
    assert max(cells) <= MAX_TABLE_CELLS  # and the table stays within the memory bound
