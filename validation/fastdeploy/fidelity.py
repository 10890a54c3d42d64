"""Fidelity by execution: a checkout's own code and the suite's model of the same commit, bit for bit.

Each state runs twice through both sides, as ``validation.cross_backend`` digests them: once through fresh
instances, once through one instance per side across all states in order (persistent buffers and stale tails
carried over). Two observations are identical when their digests are (every byte a consumer reads, dtypes and
shapes included, the hazards, and the kind of failure). The first difference is written as a case file with a
``dsa-validate check`` line that reproduces it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from validation import atomic_file, limits, seam
from validation.cross_backend import LAYERS, digest
from validation.fastdeploy.checkout import Checkout, Shape, open_checkout
from validation.fastdeploy.checkout_spec import op_origins, short_origin
from validation.fastdeploy.op_provider import OpProvider
from validation.impls.paddle_runtime import device
from validation.state import BatchState

# The suite's model of each snapshot's commit (README "What it checks", FINDINGS header; the position kernel of each
# commit is matched to its model by ``op_provider.KNOWN_KERNELS``).
MODEL_OF_COMMIT = {
    "d2d633b05c2c": "legacy",  # parent of #7367: per-layer compute_slot_mapping
    "2d8338f9e4e6": "single_step",  # #7367
    "97cda572f293": "single_step",  # #7638, cherry-pick of #7313 + #7367 (same v1 kernel, same runner lines)
    "6248358f4a32": "chunked_fix",  # #7727: v3 position kernel
    "ad431c77b312": "get_position_ids",  # #7674: get_position_ids
    "b5c8290be631": "get_position_ids",  # #7868: buffers sized max_chunk_tokens
    "7198b5883a0e": "fused",  # #7960
    "41677b9a677c": "fused",  # release/2.6 head
}
# For a checkout of another commit: the model of its shape and position kernel.
MODEL_OF_POSITION_KERNEL = {"positions_v1": "single_step", "positions_v3": "chunked_fix",
                            "positions_renamed": "get_position_ids"}
POSITION_OPS = ("get_position_ids_and_mask_encoder_batch", "get_position_ids")


def model_for(checkout: Checkout) -> tuple[str, str]:
    """The registry name of the suite's model of this checkout, and how it was chosen."""
    if checkout.commit in MODEL_OF_COMMIT:
        return MODEL_OF_COMMIT[checkout.commit], "by commit"
    if checkout.shape is Shape.LEGACY:
        return "legacy", "by shape"
    if checkout.shape is Shape.FUSED:
        return "fused", "by shape"
    ops = OpProvider(checkout)
    for op in POSITION_OPS:
        if checkout.op_source(op) is not None:
            return MODEL_OF_POSITION_KERNEL.get(ops.origin(op).split()[2], "single_step"), f"by shape and {op}.cu"
    return "single_step", "by shape"


@dataclass
class FidelityRow:
    """One checkout over one set of states."""

    commit: str
    path: str
    model: str
    backend: str
    source: str  # which states: corpus, fuzz
    states: int = 0
    identical: int = 0
    first_difference: str = ""
    check_line: str = ""
    origins: list[str] = field(default_factory=list)

    def cells(self) -> list[str]:
        return [self.commit, self.path, self.backend, f"{self.source}:{self.states}", str(self.identical),
                self.first_difference or "-", self.check_line or "-"]


HEADER = ["commit", "path", "backend", "states", "identical", "first difference", "check"]


def run_fidelity(root: Path, states: Sequence[BatchState], source: str, out_dir: Path) -> FidelityRow:
    """The checkout at ``root`` against its model over ``states`` (fresh and sequential); 2 observations per state."""
    checkout = open_checkout(str(root))
    model_name, _ = model_for(checkout)
    spec = f"fastdeploy:{root}"
    model, code = seam.resolve(model_name, num_layers=LAYERS), seam.resolve(spec, num_layers=LAYERS)
    used = op_origins(checkout)
    origins = [f"{op}: {origin}" for op, origin in used.items()]
    backend = f"paddle {device()}, ops: " + ", ".join(short_origin(o).split(" (")[0] for o in used.values())
    row = FidelityRow(checkout.commit, str(root), model_name, backend, source, states=len(states), origins=origins)
    running_model, running_code = model.new(), code.new()
    for i, state in enumerate(states):
        fresh = digest(seam.observe(model.new(), state.step_inputs(), LAYERS)) == \
            digest(seam.observe(code.new(), state.step_inputs(), LAYERS))
        sequential = digest(seam.observe(running_model, state.step_inputs(), LAYERS)) == \
            digest(seam.observe(running_code, state.step_inputs(), LAYERS))
        if fresh and sequential:
            row.identical += 1
        elif not row.first_difference:
            history = [] if not fresh else list(states[max(0, i - limits.MAX_HISTORY):i])
            where = write_case(out_dir / f"fidelity-{checkout.commit}-{source}-{i}.json", state, history)
            row.first_difference = f"state {i} ({'fresh' if not fresh else 'after the states before it'})"
            row.check_line = f"dsa-validate check --state {where} --baseline {model_name} --candidate {spec} --layers {LAYERS}"
    return row


def write_case(path: Path, state: BatchState, history: Iterable[BatchState]) -> Path:
    """A case file (history, then the state), written atomically."""
    doc = {"state": state.to_dict(), "history": [s.to_dict() for s in history]}
    return atomic_file.write_text(path, json.dumps(doc, separators=(",", ":")))


def render(rows: Sequence[FidelityRow]) -> str:
    """One plain-text table, then what ran each op of each commit (never a silent substitution)."""
    table = [HEADER, *[r.cells() for r in rows]]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in table]
    origins = {f"{r.commit}: {o}" for r in rows for o in r.origins}
    return "\n".join(lines + sorted(origins))
