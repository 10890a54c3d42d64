"""The multi-step property: a ``RuleBasedStateMachine`` modelling a scheduler over many steps.

Why: the single-step path keeps persistent buffers whose tails are never reset, so some bugs (a
stale slot handed to a padded row, state left over from an earlier step or draft sub-step) exist
only across steps. The machine admits, prefills in chunks, decodes, accepts or rejects MTP drafts,
finishes, preempts and prefix-hits, pads to capture sizes, and calls ONE baseline and ONE candidate
instance for the whole run, triaging every step against the oracle.

A run starts where a server starts serving: after its start-up (``validation.start_up``: ``profile_run``'s
dummy run, then the CUDA-graph capture warm-up over every capture size, read at 2d8338f9e4e6), which leaves
the single-step buffer's rows at the lowest block ids, the ones the min-heap allocator hands out first.
Only ``FuzzConfig.pre_serving`` lets a run start on the zero-filled buffers instead (a state no served step
sees). After that, as SPEC 4a reads the runner: a slot's row is reset when a request is inserted or
preempted, not when it finishes (its freed blocks stay in the row); a replayed graph covers rows past the
batch; legacy's position buffer starts uninitialised.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from properties.collector import Collector
from properties.config import FuzzConfig
from properties.profiles import MACHINE
from properties.schedule_model import Scheduler
from validation.launch_padding import MAX_OVERLAP, PADDINGS
from properties.strategies import PRIOR_KINDS, Case, note, prior_positions
from validation import compare
from validation.start_up import start_up_steps
from validation.seam import observe
from validation.state import BatchState

MAX_SLOTS = 8
MAX_PROMPT = 600
MAX_NEW = 48
MAX_EXTRA_ROWS = 3  # captured block-table rows past the machine's slots (max_num_seqs > slots)


class PropertyFailed(AssertionError):
    """A step's report holds a verdict that fails the run (a REGRESSION, or any finding with --strict)."""


def build_machine(config: FuzzConfig, collector: Collector) -> type[RuleBasedStateMachine]:
    """A machine class bound to one configuration and collector (the runner and pytest each build one)."""
    block_sizes = tuple(config.block_sizes)

    class SchedulerMachine(RuleBasedStateMachine):
        @initialize(seed=st.integers(0, 2**32 - 1), block_size=st.sampled_from(block_sizes),
                    budget=st.sampled_from((64, 16, 256, 2048)), slots=st.integers(1, MAX_SLOTS),
                    huge_ids=st.integers(0, 7).map(lambda x: x == 7), skip_start_up=st.booleans(),
                    prior_kind=st.sampled_from(PRIOR_KINDS), extra_rows=st.integers(0, MAX_EXTRA_ROWS),
                    deterministic=st.booleans(), mtp=st.integers(0, 3))
        def start(self, seed: int, block_size: int, budget: int, slots: int, huge_ids: bool, skip_start_up: bool,
                  prior_kind: str, extra_rows: int, deterministic: bool = False, mtp: int = 0) -> None:
            """A fresh server: start-up (unless ``pre_serving`` lets the run skip it), then its first requests."""
            self.rng = np.random.default_rng(seed)
            per_request = -(-(MAX_PROMPT + MAX_NEW * 5 + 16) // block_size) + 2
            # A fresh server's pool: every block free, handed out lowest id first.
            self.sched = Scheduler(self.rng, block_size=block_size, num_slots=slots, budget=budget,
                                   pool_blocks=slots * per_request * 2 + 16, huge_ids=huge_ids, fragmented=False,
                                   max_num_seqs=slots + extra_rows)
            # One MTP depth per server (num_speculative_tokens): every request drafts that many, and the capture
            # list is scaled by it (validation.launch_padding).
            self.mtp = mtp
            self.sched.num_speculative_tokens = mtp
            self.sched.buffer_size = max(budget, (slots + extra_rows) * (mtp + 1)) + MAX_OVERLAP
            self.baseline = config.baseline_impl.new()
            self.candidate = config.candidate_impl.new()
            self.history: list = []
            self.prior_kind = prior_kind
            # What each runner block-table row holds while its slot is empty (None: -1), slots then extra rows.
            self.rows: list[list[int] | None] = [None] * (slots + extra_rows)
            if not (config.pre_serving and skip_start_up):
                self._start_up(self.sched.buffer_size)
                if deterministic:  # FD_DETERMINISTIC_MODE: block tables reset to -1 after the warm-up, buffers kept
                    self.rows = [None] * len(self.rows)
            for slot in range(slots):  # a server rarely starts a step empty: seed the slots
                if self.rng.random() < 0.7:
                    self.sched.admit(slot, int(self.rng.integers(1, 200)), draft=mtp,
                                     max_new=int(self.rng.integers(1, MAX_NEW)))
                    self.rows[slot] = None  # insert resets the row

        def _start_up(self, buffer_size: int) -> None:
            """The server's start-up (``validation.start_up``): run through both instances, not triaged."""
            for state in start_up_steps(self.rows, block_size=self.sched.block_size, budget=self.sched.budget,
                                        buffer_size=buffer_size, num_speculative_tokens=self.mtp):
                state = self._first(state)
                observe(self.baseline, state.step_inputs(), config.layers)
                observe(self.candidate, state.step_inputs(), config.layers)
                self.history.append(state)

        def _first(self, state: BatchState) -> BatchState:
            """The first state the instances see carries legacy's uninitialised position buffer."""
            if self.history:
                return state
            prior = prior_positions(self.rng, state, self.prior_kind)
            return state if prior is None else state.with_runner_fields(prior_position_ids=prior)

        def _runner_state(self, state: BatchState, padding: str) -> BatchState:
            """The scheduler's state as the runner holds it: empty slots' rows keep what they held, a replayed
            graph covers the extra rows, an overlap estimate is the runner's own token count."""
            slots = len(self.sched.slots)
            held = [r if (b < slots and self.sched.slots[b] is None) or b >= slots else None
                    for b, r in enumerate(self.rows)]
            width = max([state.max_blocks] + [len(r) for r in held if r])
            tables = np.full((state.bsz, width), -1, dtype=np.int32)
            tables[:, : state.max_blocks] = state.block_tables
            for b in range(slots):
                if held[b]:
                    tables[b] = -1
                    tables[b, : len(held[b])] = held[b]
            changes: dict = {"block_tables": tables}
            if padding == "overlap" and state.padded_num_tokens > state.num_tokens:
                changes["launch_num_tokens"] = state.padded_num_tokens
            if padding == "capture" and len(self.rows) > slots and state.padded_num_tokens > state.num_tokens:
                past = np.full((len(self.rows) - slots, width), -1, dtype=np.int32)
                for j, row in enumerate(held[slots:]):
                    if row:
                        past[j, : len(row)] = row
                changes["block_tables_past_bsz"] = past
            return self._first(dataclasses.replace(state, **changes).validate())

        @rule(prompt=st.integers(1, MAX_PROMPT), prefix=st.booleans(), max_new=st.integers(1, MAX_NEW))
        def admit(self, prompt: int, prefix: bool, max_new: int) -> None:
            free = self.sched.free_slots()
            if not free:
                return
            donors = [s for s in self.sched.running() if self.sched.slots[s].cached >= self.sched.block_size]
            donor = donors[int(self.rng.integers(len(donors)))] if prefix and donors else None
            cached = self.sched.slots[donor].cached if donor is not None else 0
            slot = free[int(self.rng.integers(len(free)))]
            self.sched.admit(slot, prompt + cached, cached=cached, draft=self.mtp, prefix_from=donor, max_new=max_new)
            self.rows[slot] = None  # insert resets the row

        @precondition(lambda self: bool(self.sched.running()))
        @rule(which=st.integers(0, MAX_SLOTS - 1))
        def finish(self, which: int) -> None:
            running = self.sched.running()
            slot = running[which % len(running)]
            self.rows[slot] = list(self.sched.slots[slot].blocks)  # completion does not reset the row
            self.sched.finish(slot)

        @precondition(lambda self: bool(self.sched.running()))
        @rule(which=st.integers(0, MAX_SLOTS - 1), idle=st.booleans())
        def preempt_or_pause(self, which: int, idle: bool) -> None:
            """Preempt a request (it loses its cache), or keep it in its slot unscheduled (idle)."""
            running = self.sched.running()
            slot = running[which % len(running)]
            if idle:
                self.sched.slots[slot].idle = not self.sched.slots[slot].idle
            else:
                self.sched.preempt(slot)
                self.rows[slot] = None  # preemption resets the row

        @rule(padding=st.sampled_from(PADDINGS), extra=st.integers(1, MAX_OVERLAP), accept=st.integers(0, 3),
              lookahead=st.integers(0, 1))
        def step(self, padding: str, extra: int, accept: int, lookahead: int) -> None:
            """Schedule one step, run both sides on their persistent instances, triage, then commit."""
            step = self.sched.schedule(padding=padding, overlap_extra=extra, lookahead=lookahead)
            state = self._runner_state(step.state, padding)
            case = Case(state, step.phases, step.tags | {MACHINE}, tuple(self.history))
            note(case, steer=False)
            base = observe(self.baseline, state.step_inputs(), config.layers)
            cand = observe(self.candidate, state.step_inputs(), config.layers)
            report = compare.triage(state, base, cand, config.baseline, config.candidate, config.layers,
                                    pad_contract=config.pad_contract)
            self.history.append(state)
            if collector.record(MACHINE, case, report):
                raise PropertyFailed(report.render(max_lines_per_group=4))
            accepted = [1 + min(accept, int(x) - 1) for x in step.state.seq_lens_this_time]
            blocks = {i: list(r.blocks) for i, r in enumerate(self.sched.slots) if r is not None}
            for slot in self.sched.commit(step, accepted):
                self.rows[slot] = blocks[slot]  # finished: the row keeps its freed blocks

    return SchedulerMachine

