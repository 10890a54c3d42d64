"""The state reducer: a failing state cut to what its failure needs, never to a state a server could not make."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

import fixtures
from properties.case_reducer import reduce_state
from properties.config import FuzzConfig
from properties.examples import STALE_FINAL, STALE_HISTORY
from properties.fuzz import run_fuzz
from properties.mutation import MUTANT_MODULE, run_mutant
from support import requires_paddle
from validation.cli import main
from validation.launch_padding import capture_launch
from validation.state import BatchState, ranges

LONG = BatchState.from_dict({
    "block_size": 16, "seq_lens_encoder": [0, 5, 0, 0], "seq_lens_decoder": [2000, 0, 50, 7],
    "seq_lens_this_time": [3, 5, 1, 0], "padded_num_tokens": 12, "max_num_batched_tokens": 64,
    "block_tables": [list(range(130)), [200] + [-1] * 129, [300, 301, 302, 303] + [-1] * 126, [400] + [-1] * 129],
})


def reaches(position: int):
    """A predicate: some scheduled request writes at ``position`` or past it."""
    def fails(state: BatchState) -> bool:
        live = state.seq_lens_this_time > 0
        last = state.seq_lens_decoder.astype(np.int64) + state.seq_lens_this_time - 1
        return bool((last[live] >= position).any())
    return fails


def test_a_long_context_failure_reduces_to_one_token_at_the_threshold() -> None:
    reduced = reduce_state(LONG, reaches(1000))
    assert reduced.bsz == 1 and reduced.num_tokens == 1 and reduced.padded_num_tokens == 1
    assert int(reduced.seq_lens_decoder[0]) == 1000 and int(reduced.seq_lens_encoder[0]) == 0
    # the table keeps the blocks of every position before the token (a real request holds them), no more
    assert reduced.block_tables.tolist() == [list(range(1000 // 16 + 1))]
    assert reaches(1000)(reduced)


def test_every_state_the_property_sees_is_valid_and_the_budget_holds() -> None:
    seen: list[BatchState] = []

    def fails(state: BatchState) -> bool:
        seen.append(state)
        return True

    reduce_state(LONG, fails, limit=25)
    assert 0 < len(seen) <= 25
    for state in seen:
        state.validate()  # raises InputError for a state no server makes


def test_a_state_that_stops_failing_is_returned_as_it_was() -> None:
    assert reduce_state(LONG, lambda state: False) is LONG


def test_no_request_is_made_to_write_a_block_another_request_holds() -> None:
    """Two requests share prefix block 5 (read-only); lowering either's context below it would write into it."""
    shared = BatchState.from_dict({
        "block_size": 64, "seq_lens_encoder": [0, 0], "seq_lens_decoder": [70, 100], "seq_lens_this_time": [1, 1],
        "block_tables": [[5, 6], [5, 9]]})

    def both_live(state: BatchState) -> bool:
        return state.bsz == 2 and bool((state.seq_lens_this_time > 0).all())

    reduced = reduce_state(shared, both_live)
    assert reduced.seq_lens_decoder.tolist() == [64, 64]
    dec, this = reduced.seq_lens_decoder.astype(np.int64), reduced.seq_lens_this_time.astype(np.int64)
    written = reduced.block_tables[np.repeat(np.arange(2), this), ranges(dec // 64, this)]
    assert 5 not in written.tolist()


def test_the_reducer_never_renumbers_away_an_overflow() -> None:
    big = 2**31 // 64
    state = BatchState.from_dict({"block_size": 64, "seq_lens_encoder": [0], "seq_lens_decoder": [1],
                                  "seq_lens_this_time": [1], "block_tables": [[big]]})

    def overflows(candidate: BatchState) -> bool:
        return int(candidate.block_tables.max()) * 64 >= 2**31

    assert reduce_state(state, overflows).block_tables.tolist() == [[big]]


def test_a_bug_past_request_255_is_reported_on_257_slots_with_one_token(tmp_path: Path, capsys) -> None:
    """hypothesis found it on a pinned 300-request state, which it never shrinks; the reducer does."""
    outcome = run_mutant(f"{MUTANT_MODULE}:WrongPast255", profile="ci", out_dir=str(tmp_path), check_baseline=False)
    assert outcome.killed, outcome
    state = BatchState.from_dict(outcome.counterexample["state"])
    assert state.bsz == 257 and state.num_tokens == 1 and int(state.seq_lens_this_time[256]) == 1
    saved = json.loads(Path(outcome.counterexample_path).read_text())
    assert saved["state"] == outcome.counterexample["state"]  # on disk, as reported
    assert re.search(r"reduced from \d+ requests", saved["note"]), saved["note"]
    # its one-line reproduction still fails
    code = main(["check", "--state", outcome.counterexample_path, "--baseline", "oracle", "--candidate",
                 f"{MUTANT_MODULE}:WrongPast255"])
    assert code == 1, capsys.readouterr().out



def _write(path: Path, data: dict) -> str:
    path.write_text(json.dumps(data))
    return str(path)


BIG = {"block_size": 64, "seq_lens_encoder": [0] * 300, "seq_lens_decoder": [5 + i % 50 for i in range(300)],
       "seq_lens_this_time": [1] * 300, "block_tables": [[i] for i in range(300)], "padded_num_tokens": 320,
       "max_num_batched_tokens": 400}
PAST_255 = f"{MUTANT_MODULE}:WrongPast255"


def test_check_reduce_writes_the_smallest_failing_state_and_its_check_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "small.json"
    code = main(["check", "--state", _write(tmp_path / "big.json", BIG), "--baseline", "oracle", "--candidate",
                 PAST_255, "--reduce", str(out)])
    printed = capsys.readouterr().out
    assert code == 1
    small = BatchState.from_json(out)
    assert small.bsz == 257 and small.num_tokens == 1 and small.padded_num_tokens == 1
    assert "300 requests, 300 tokens, 1 table column -> 257 requests, 1 token, 1 table column" in printed
    line = next(l for l in printed.splitlines() if l.startswith("reproduce: "))
    assert main(line.removeprefix("reproduce: dsa-validate ").split()) == 1


def test_check_reduce_writes_nothing_for_a_state_that_passes(tmp_path: Path, capsys) -> None:
    out = tmp_path / "small.json"
    passing = _write(tmp_path / "ok.json", {**BIG, "seq_lens_this_time": [1] * 200 + [0] * 100,
                                            "padded_num_tokens": 200})
    assert main(["check", "--state", passing, "--baseline", "oracle", "--candidate", PAST_255,
                 "--reduce", str(out)]) == 0
    assert "nothing written: the state does not fail" in capsys.readouterr().out and not out.exists()


def test_check_reduce_drops_the_earlier_steps_a_multi_step_failure_does_not_need(tmp_path: Path, capsys) -> None:
    # A tail never reset leaks what the 7-token step wrote into the padded rows; the decode before it is not needed.
    unneeded = {"block_size": 64, "seq_lens_encoder": [0], "seq_lens_decoder": [3], "seq_lens_this_time": [1],
                "block_tables": [[9]], "max_num_batched_tokens": 7}
    case = _write(tmp_path / "case.json", {"state": STALE_FINAL, "history": [unneeded, *STALE_HISTORY]})
    out = tmp_path / "small.json"
    assert main(["check", "--state", case, "--baseline", "oracle", "--candidate", f"{MUTANT_MODULE}:StaleTail",
                 "--reduce", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "after 2 earlier steps -> 1" in printed
    reduced = json.loads(out.read_text())
    assert len(reduced["history"]) == 1 and reduced["history"][0]["seq_lens_this_time"] != [1]
    line = next(l for l in printed.splitlines() if l.startswith("reproduce: "))
    assert main(line.removeprefix("reproduce: dsa-validate ").split()) == 1


PLUGIN = '''
import os
import numpy as np
from validation.impls.mutants import CorrectStep


class RowsMod64(CorrectStep):
    """Request rows kept in 6 bits: requests past 63 read row b % 64."""
    def rows(self, inputs, n):
        return np.asarray(inputs["batch_id_per_token"][:n], dtype=np.int64) % 64


class CrashesWhenSmall(RowsMod64):
    """The same bug, and a hard crash (no exception, no cleanup) on any batch under 100 requests."""
    def __call__(self, inputs):
        if 64 < len(inputs["seq_lens_this_time"]) < 100:
            os._exit(3)
        return super().__call__(inputs)
'''


def _fuzz_truth_in_a_worker(tmp_path: Path, name: str):
    """The truth property on a plug-in of ``PLUGIN``, in a worker process of its own (a crash ends only it)."""
    plugin = tmp_path / "plugin.py"
    plugin.write_text(PLUGIN)
    result = run_fuzz("oracle", f"{plugin}:{name}", profile="ci", properties=["truth"], jobs=1,
                      out_dir=tmp_path / "out", max_examples=20)
    return result, result.properties["truth"]


def test_a_worker_sends_the_reduced_counterexample(tmp_path: Path) -> None:
    _, stats = _fuzz_truth_in_a_worker(tmp_path, "RowsMod64")
    state = BatchState.from_dict(stats.counterexample["state"])
    assert stats.failed and state.bsz == 65 and state.num_tokens == 1, stats.counterexample["note"]
    assert BatchState.from_json(stats.path).bsz == 65


def test_a_candidate_that_crashes_the_worker_while_reducing_keeps_the_unreduced_failure(tmp_path: Path) -> None:
    result, stats = _fuzz_truth_in_a_worker(tmp_path, "CrashesWhenSmall")
    assert result.exit_code == 1 and stats.failed and stats.counterexample is not None
    state = BatchState.from_dict(stats.counterexample["state"])
    assert state.bsz >= 100 and BatchState.from_json(stats.path).bsz == state.bsz


def test_a_reduced_graph_replay_still_pads_to_a_capture_size() -> None:
    """3 decode tokens replay the graph captured for 4 (FastDeploy's list: 1, 2, 4, 8, ...). Fewer tokens would
    launch unpadded, and no graph replays an empty or prefilling step, so the padding bug keeps its 3 requests."""
    padded = BatchState.from_dict({
        "block_size": 64, "seq_lens_encoder": [0, 0, 0], "seq_lens_decoder": [10, 70, 5],
        "seq_lens_this_time": [1, 1, 1], "block_tables": [[3, -1], [4, 8], [6, -1]], "padded_num_tokens": 4,
        "max_num_batched_tokens": 16})

    def pads(state: BatchState) -> bool:
        return state.padded_num_tokens > state.num_tokens

    reduced = reduce_state(padded, pads)
    assert (reduced.bsz, reduced.num_tokens, reduced.padded_num_tokens) == (3, 3, 4)
    assert reduced.seq_lens_decoder.tolist() == [1, 1, 1] and reduced.max_blocks == 1



def test_a_reduced_overlap_step_keeps_a_real_decode_token() -> None:
    """The overlap schedule launches its estimate only for a step with real tokens that does not prefill (it syncs
    on a prefill, and an empty step launches nothing): a reduced padding bug keeps one decoding request."""
    overlap = BatchState.from_dict({
        "block_size": 64, "seq_lens_encoder": [0, 0, 0], "seq_lens_decoder": [10, 9, 5],
        "seq_lens_this_time": [1, 1, 1], "block_tables": [[3, -1], [4, 8], [6, -1]], "padded_num_tokens": 7,
        "launch_num_tokens": 7})

    seen: list[BatchState] = []

    def pads(state: BatchState) -> bool:
        seen.append(state)
        return state.padded_num_tokens > state.num_tokens

    reduced = reduce_state(overlap, pads)
    assert (reduced.bsz, reduced.num_tokens, reduced.padded_num_tokens) == (1, 1, 2)
    padded = [s for s in seen if s.padded_num_tokens > s.num_tokens]
    assert padded and all(s.num_tokens >= 1 and not (s.seq_lens_encoder > 0).any() for s in padded)


def test_a_graph_replay_stays_on_the_failing_states_server() -> None:
    """5 tokens replay the graph captured for 8 on FastDeploy's default list: no reduced state may pad as another
    server would (6 rows is a capture size only where max_num_seqs is 6)."""
    seen: list[tuple[int, int]] = []
    replay = BatchState.from_dict({
        "block_size": 64, "seq_lens_encoder": [0] * 5, "seq_lens_decoder": [10, 70, 5, 8, 9],
        "seq_lens_this_time": [1] * 5, "block_tables": [[3, -1], [4, 8], [6, -1], [7, -1], [11, -1]],
        "padded_num_tokens": 8})

    def pads(state: BatchState) -> bool:
        seen.append((state.num_tokens, state.padded_num_tokens))
        return state.padded_num_tokens > state.num_tokens

    reduced = reduce_state(replay, pads)
    assert (reduced.num_tokens, reduced.padded_num_tokens) == (3, 4)
    assert all(padded in (n, capture_launch(n)) for n, padded in seen), sorted(set(seen))


def test_the_runner_fields_follow_their_rows_through_a_reduction() -> None:
    """A batch-id buffer with a real row left at -1 and captured rows past bsz, both needed by the failure: the
    reduced state keeps them, re-indexed to its own rows and cut to its own table width."""
    state = BatchState.from_dict({
        "block_size": 64, "seq_lens_encoder": [0, 0, 0], "seq_lens_decoder": [10, 70, 5],
        "seq_lens_this_time": [1, 1, 1], "block_tables": [[3, -1], [4, 8], [6, -1]], "padded_num_tokens": 4,
        "block_tables_past_bsz": [[9, 10]], "batch_id_per_token": [0, -1, 2, -1]})

    def needs_both(candidate: BatchState) -> bool:
        written = candidate.batch_ids_written
        return (written is not None and candidate.block_tables_past_bsz is not None
                and bool((written[:candidate.num_tokens] == -1).any()))

    reduced = reduce_state(state, needs_both)
    assert reduced.to_dict() == {
        "block_size": 64, "seq_lens_encoder": [0], "seq_lens_decoder": [1], "seq_lens_this_time": [1],
        "block_tables": [[0, -1]], "padded_num_tokens": 1, "max_num_batched_tokens": 1,
        "block_tables_past_bsz": [[1, 2]], "batch_id_per_token": [-1]}


def test_check_reduce_keeps_stdout_one_json_document_under_json(tmp_path: Path, capsys) -> None:
    out = tmp_path / "small.json"
    code = main(["check", "--json", "--state", _write(tmp_path / "big.json", BIG), "--baseline", "oracle",
                 "--candidate", PAST_255, "--reduce", str(out)])
    captured = capsys.readouterr()
    assert code == 1 and json.loads(captured.out)["counts"]["REGRESSION"] > 0
    assert "--reduce: 300 requests" in captured.err and BatchState.from_json(out).bsz == 257


@requires_paddle  # legacy and single_step are Paddle programs
def test_a_strict_runs_reproduce_line_fails_as_the_run_did() -> None:
    """A strict fuzz run fails on a SHARED-BUG; its check line must too (plain ``check`` passes one)."""
    state = str(Path(__file__).resolve().parents[1] / "fixtures" / "states" / "chunked_prefill.json")
    for strict, code in ((False, 0), (True, 1)):
        line = FuzzConfig("legacy", "single_step", strict=strict).reproduce(state)
        assert main(line.removeprefix("dsa-validate ").split()) == code, line


def test_a_pinned_multi_step_counterexample_keeps_only_the_steps_and_rows_it_needs(tmp_path: Path) -> None:
    # The pinned served-buffer case: 289 decodes padded to 320 after the start-up's prefill and decode. A tail reset
    # that stops after 8 rows needs a 9th padded row holding a stale slot: the next capture size past 128 decodes
    # (129 -> 144) and one earlier step that wrote row 137.
    outcome = run_mutant(f"{fixtures.ROOT / 'outside_mutants.py'}:BoundedTailReset", profile="ci",
                         out_dir=str(tmp_path), check_baseline=False)
    found = outcome.counterexample
    assert outcome.killed and found is not None
    state, history = BatchState.from_dict(found["state"]), found["history"]
    assert (state.bsz, state.num_tokens, state.padded_num_tokens) == (129, 129, 144)
    assert len(history) == 1 and sum(history[0]["seq_lens_this_time"]) == 138
    assert "reduced from 289 requests" in found["note"] and "after 2 earlier steps" in found["note"]


def test_a_state_machine_counterexample_drops_the_start_up_steps_it_does_not_need(tmp_path: Path) -> None:
    # A tail never reset fails on a padded step after any step that wrote past its real tokens: hypothesis' shrinking
    # of the machine keeps the server's start-up (it is not a rule), the step reducer drops it.
    outcome = run_mutant(f"{MUTANT_MODULE}:StaleTail", profile="ci", out_dir=str(tmp_path), check_baseline=False)
    found = outcome.counterexample
    assert outcome.killed and outcome.property == "multi_step" and found is not None
    assert len(found["history"]) == 1
    earlier = int(re.search(r"after (\d+) earlier steps", found["note"]).group(1))
    assert earlier > 1
    case = tmp_path / "case.json"
    case.write_text(json.dumps(found))
    assert main(["check", "--state", str(case), "--baseline", "oracle", "--candidate",
                 f"{MUTANT_MODULE}:StaleTail"]) == 1
