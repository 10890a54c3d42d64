"""The runner's step inputs obey the suite's own rules, padding sizes, and the engine facade (on a fake model)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from engine_fakes import FakeModel
from support import requires_paddle
from evals.engine.engine import Engine, EngineConfig, QueueFull, SamplingParams
from evals.engine.model_runner import SlotMappingFailure
from validation.launch_padding import capture_launch
from validation.state import BatchState


def prompts(seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    shared = [rng.randrange(64) for _ in range(40)]
    return [
        [rng.randrange(64) for _ in range(70)],  # chunked over the budget
        shared + [1, 2, 3],
        [rng.randrange(64) for _ in range(9)],
        shared + [4, 5],  # prefix hit on the second
        [rng.randrange(64) for _ in range(30)],
        [rng.randrange(64) for _ in range(12)],
    ]


def engine(impl: str = "oracle", padding: str = "none", **kw) -> Engine:
    cfg = dict(slot_mapping=impl, block_size=16, padding=padding, num_blocks=10, max_num_seqs=4,
               max_num_batched_tokens=48)
    cfg.update(kw)
    return Engine(EngineConfig(**cfg), model=FakeModel())


def drive(eng: Engine, staggered: bool = True):
    """Add the prompts (later ones a few steps in, so prefixes are cached) and yield each step's record."""
    pending = list(enumerate(prompts()))
    step = 0
    while pending or eng.has_unfinished():
        while pending and (not staggered or pending[0][0] * 3 <= step):
            eng.add_request(pending.pop(0)[1], SamplingParams(max_tokens=12))
        eng.step()
        if eng.last_record is not None and eng.last_record.index == step:
            yield eng.last_record
            step += 1


@pytest.mark.parametrize("padding", ["none", "capture", "overlap"])
def test_every_step_is_a_valid_batch_state_with_the_same_step_inputs(padding: str) -> None:
    phases = set()
    preempted = 0
    overlap_padded = False
    for record in drive(engine(padding=padding)):
        inputs = record.batch.inputs
        state = BatchState.from_dict({k: inputs[k] for k in (
            "seq_lens_encoder", "seq_lens_decoder", "seq_lens_this_time", "block_tables", "block_size",
            "padded_num_tokens", "max_num_batched_tokens", "launch_num_tokens")})  # validates: the suite's rules hold
        expected = state.step_inputs()
        assert expected.keys() == inputs.keys()
        for key, value in expected.items():
            if isinstance(value, np.ndarray):
                assert inputs[key].dtype == value.dtype and np.array_equal(inputs[key], value), key
            else:
                assert inputs[key] == value, key
        n, padded = state.num_tokens, state.padded_num_tokens
        assert record.batch.token_ids.shape == (padded,)
        if padding == "overlap":  # the previous step's prediction: the finished requests' rows on top
            overlap_padded |= padded > n
            assert padded == n or n < padded <= 4  # at most max_num_seqs requests were predicted
        else:
            decode_only = not state.seq_lens_encoder.any()
            assert padded == (capture_launch(n, 4, decode_only=decode_only) if padding == "capture" else n)
        phases |= {s.phase for s in record.output.scheduled}
        preempted += len(record.output.preempted)
    assert {"prefill", "chunked", "prefix_hit", "decode"} <= phases
    assert preempted and "recompute" in phases
    assert overlap_padded == (padding == "overlap")


@requires_paddle  # the built-in paths are Paddle models
def test_oracle_and_a_correct_path_give_identical_tokens() -> None:
    a = engine("oracle").generate(prompts(), SamplingParams(max_tokens=6))
    b = engine("chunked_fix").generate(prompts(), SamplingParams(max_tokens=6))
    assert a == b


@requires_paddle  # the built-in paths are Paddle models
def test_v1_positions_change_the_tokens_of_a_chunked_prompt() -> None:
    a = engine("oracle").generate(prompts()[:1], SamplingParams(max_tokens=4))
    b = engine("single_step").generate(prompts()[:1], SamplingParams(max_tokens=4))
    assert a != b


class CountingOracle:
    """An implementation that counts its calls: one instance must serve the whole engine."""

    instances = 0

    def __init__(self) -> None:
        type(self).instances += 1
        self.calls = 0
        from validation.oracle import Oracle
        self._oracle = Oracle()

    def __call__(self, inputs):
        self.calls += 1
        return self._oracle(inputs)


def test_one_implementation_instance_lives_across_steps() -> None:
    eng = engine(f"{Path(__file__).with_name('test_engine_runner.py')}:CountingOracle")
    eng.generate(prompts()[:3], SamplingParams(max_tokens=5))
    loaded = type(eng._slot_fn)  # the plug-in file's own copy of the class
    assert loaded.instances == 1 and eng._slot_fn.calls == eng._steps > 1


def raising(inputs):
    raise RuntimeError("kernel failed")


def out_of_bounds(inputs):
    n = int(inputs["padded_num_tokens"])
    return {"position_ids": np.zeros(int(inputs["num_tokens"]), np.int32), "slot_mapping": np.full(n, 10**6)}


def too_short(inputs):
    n = int(inputs["num_tokens"])
    return {"position_ids": np.zeros(n, np.int32), "slot_mapping": np.full(max(0, n - 1), -1)}


@pytest.mark.parametrize("fn,words", [("raising", "kernel failed"), ("out_of_bounds", "out-of-bounds"),
                                      ("too_short", "reads past")])
def test_a_failing_implementation_is_a_slot_mapping_failure(fn: str, words: str) -> None:
    eng = engine(f"{Path(__file__).with_name('test_engine_runner.py')}:{fn}")
    eng.add_request([1, 2, 3], SamplingParams(max_tokens=2))
    with pytest.raises(SlotMappingFailure, match=words):
        eng.step()


def test_facade_outputs_limits_and_abort() -> None:
    eng = engine(max_waiting=2)
    with pytest.raises(ValueError, match="empty"):
        eng.add_request([])
    with pytest.raises(ValueError, match="context"):
        eng.add_request([1] * 5000)
    a = eng.add_request([1, 2, 3], SamplingParams(max_tokens=2))
    b = eng.add_request([4, 5, 6], SamplingParams(max_tokens=3))
    with pytest.raises(QueueFull):
        eng.add_request([7])
    eng.abort(b)
    outs = []
    while eng.has_unfinished():
        outs.extend(eng.step())
    assert [o.request_id for o in outs] == [a, a]
    last = outs[-1]
    assert last.finished and last.finish_reason == "length" and last.prompt_tokens == 3 and last.completion_tokens == 2
    assert eng.allocator.num_free == 10


def test_bad_config_is_one_input_error() -> None:
    from validation.errors import InputError

    with pytest.raises(InputError, match="padding"):
        engine(padding="sometimes")
    with pytest.raises(InputError, match="block_size"):
        engine(block_size=0)
    with pytest.raises(InputError, match="unknown implementation"):
        engine("nope")


@requires_paddle  # the built-in paths are Paddle models
@pytest.mark.parametrize(("padding", "head"), [("capture", list(range(1, 48))), ("none", [0] * 47)])
def test_a_padded_engine_starts_after_the_servers_start_up(padding: str, head: list[int]) -> None:
    """Under capture the engine first runs profile_run's dummy run and the capture warm-up through its slot
    mapping (validation.start_up): the batch-1 warm-up leaves row r of single_step's buffer at slot r, which
    a first padded step reads; an unpadded engine keeps the zero fill (no served row reads it)."""
    eng = engine("single_step", padding=padding)
    state = BatchState.from_dict({"seq_lens_encoder": [0], "seq_lens_decoder": [3], "seq_lens_this_time": [1],
                                  "block_tables": [[5]], "block_size": 16, "padded_num_tokens": 48,
                                  "max_num_batched_tokens": 48})
    out = eng._slot_fn(state.step_inputs())
    assert out["slot_mapping"][0] == 5 * 16 + 3 and out["slot_mapping"][1:].tolist() == head
