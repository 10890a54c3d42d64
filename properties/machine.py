"""The multi-step property: a ``RuleBasedStateMachine`` modelling a scheduler over many steps.

Why: the single-step path keeps persistent buffers whose tails are never reset, so some bugs (a
stale slot handed to a padded row, state left over from an earlier step or draft sub-step) exist
only across steps. The machine admits, prefills in chunks, decodes, accepts or rejects MTP drafts,
finishes, preempts and prefix-hits, pads to capture sizes, and calls ONE baseline and ONE candidate
instance for the whole run, triaging every step against the oracle.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from properties.collector import Collector
from properties.config import FuzzConfig
from properties.profiles import MACHINE
from properties.scheduler import MAX_OVERLAP, PADDINGS, Scheduler
from properties.strategies import Case, note
from validation import compare
from validation.seam import observe

MAX_SLOTS = 8
MAX_PROMPT = 600
MAX_NEW = 48


class PropertyFailed(AssertionError):
    """A step's report holds a verdict that fails the run (a REGRESSION, or any finding with --strict)."""


def build_machine(config: FuzzConfig, collector: Collector) -> type[RuleBasedStateMachine]:
    """A machine class bound to one configuration and collector (the runner and pytest each build one)."""
    block_sizes = tuple(config.block_sizes)

    class SchedulerMachine(RuleBasedStateMachine):
        @initialize(seed=st.integers(0, 2**32 - 1), block_size=st.sampled_from(block_sizes),
                    budget=st.sampled_from((64, 16, 256, 2048)), slots=st.integers(1, MAX_SLOTS),
                    huge_ids=st.integers(0, 7).map(lambda x: x == 7))
        def start(self, seed: int, block_size: int, budget: int, slots: int, huge_ids: bool) -> None:
            self.rng = np.random.default_rng(seed)
            per_request = -(-(MAX_PROMPT + MAX_NEW * 5 + 16) // block_size) + 2
            self.sched = Scheduler(self.rng, block_size=block_size, num_slots=slots, budget=budget,
                                   pool_blocks=slots * per_request * 2 + 16, huge_ids=huge_ids)
            self.baseline = config.baseline_impl.new()
            self.candidate = config.candidate_impl.new()
            self.history: list = []
            for slot in range(slots):  # a server rarely starts a step empty: seed the slots
                if self.rng.random() < 0.7:
                    self.sched.admit(slot, int(self.rng.integers(1, 200)), draft=int(self.rng.integers(0, 3)),
                                     max_new=int(self.rng.integers(1, MAX_NEW)))

        @rule(prompt=st.integers(1, MAX_PROMPT), draft=st.integers(0, 3), prefix=st.booleans(),
              max_new=st.integers(1, MAX_NEW))
        def admit(self, prompt: int, draft: int, prefix: bool, max_new: int) -> None:
            free = self.sched.free_slots()
            if not free:
                return
            donors = [s for s in self.sched.running() if self.sched.slots[s].cached >= self.sched.block_size]
            donor = donors[int(self.rng.integers(len(donors)))] if prefix and donors else None
            cached = self.sched.slots[donor].cached if donor is not None else 0
            self.sched.admit(free[int(self.rng.integers(len(free)))], prompt + cached, cached=cached,
                             draft=draft, prefix_from=donor, max_new=max_new)

        @precondition(lambda self: bool(self.sched.running()))
        @rule(which=st.integers(0, MAX_SLOTS - 1))
        def finish(self, which: int) -> None:
            running = self.sched.running()
            self.sched.finish(running[which % len(running)])

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

        @rule(padding=st.sampled_from(PADDINGS), extra=st.integers(1, MAX_OVERLAP), accept=st.integers(0, 3),
              lookahead=st.integers(0, 1))
        def step(self, padding: str, extra: int, accept: int, lookahead: int) -> None:
            """Schedule one step, run both sides on their persistent instances, triage, then commit."""
            step = self.sched.schedule(padding=padding, overlap_extra=extra, lookahead=lookahead)
            case = Case(step.state, step.phases, step.tags | {MACHINE}, tuple(self.history))
            note(case, steer=False)
            inputs = step.state.step_inputs
            base = observe(self.baseline, inputs(), config.layers)
            cand = observe(self.candidate, inputs(), config.layers)
            report = compare.triage(step.state, base, cand, config.baseline, config.candidate, config.layers)
            self.history.append(step.state)
            if collector.record(MACHINE, case, report):
                raise PropertyFailed(report.render(max_lines_per_group=4))
            accepted = [1 + min(accept, int(x) - 1) for x in step.state.seq_lens_this_time]
            self.sched.commit(step, accepted)

    return SchedulerMachine

