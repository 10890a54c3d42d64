"""The batches the benchmark times: decode steps at CUDA-graph capture sizes and one prefill step.

A shape is written ``decode:BSZxT`` (``BSZ`` requests each decoding ``T`` tokens: 1, or 1 + drafts
with MTP, over ``CONTEXT`` cached tokens) or ``prefill:BSZxLEN`` (``BSZ`` requests prefilling ``LEN``
tokens each, nothing cached). Blocks are laid out contiguously, one table row per request; the
launch is the real token count (the batch sizes are capture sizes, so there is no padding) and
every path's persistent buffer holds ``max(8192, tokens)`` rows, FastDeploy's default
``max_num_batched_tokens``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from validation.errors import InputError
from validation.state import BatchState

BLOCK_SIZE = 64
DECODE_CONTEXT = 4096
BUFFER_ROWS = 8192
MAX_BSZ, MAX_TOKENS = 4096, 1 << 20
DEFAULT_SHAPES = "decode:64x1,decode:256x2,decode:512x1,prefill:8x1024"
_SPEC = re.compile(r"^(decode|prefill):([1-9][0-9]*)x([1-9][0-9]*)$")


@dataclass(frozen=True)
class Shape:
    kind: str  # "decode" or "prefill"
    bsz: int
    tokens: int  # per request this step

    @property
    def name(self) -> str:
        return f"{self.kind} {self.bsz}x{self.tokens}" + (" MTP" if self.kind == "decode" and self.tokens > 1 else "")

    @property
    def num_tokens(self) -> int:
        return self.bsz * self.tokens

    def state(self) -> BatchState:
        context = DECODE_CONTEXT if self.kind == "decode" else 0
        width = (context + self.tokens - 1) // BLOCK_SIZE + 1
        return BatchState.from_dict(dict(
            name=self.name, block_size=BLOCK_SIZE,
            seq_lens_encoder=[self.tokens if self.kind == "prefill" else 0] * self.bsz,
            seq_lens_decoder=[context] * self.bsz, seq_lens_this_time=[self.tokens] * self.bsz,
            block_tables=[list(range(r * width, (r + 1) * width)) for r in range(self.bsz)],
            padded_num_tokens=self.num_tokens, max_num_batched_tokens=max(BUFFER_ROWS, self.num_tokens)))

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "bsz": self.bsz, "tokens_per_request": self.tokens,
                "num_tokens": self.num_tokens, "context": DECODE_CONTEXT if self.kind == "decode" else 0,
                "block_size": BLOCK_SIZE}


def parse_shapes(text: str) -> list[Shape]:
    """``decode:64x1,prefill:8x1024`` -> shapes; a malformed item is an ``InputError`` naming it."""
    shapes = []
    for index, item in enumerate(part.strip() for part in text.split(",")):
        match = _SPEC.match(item)
        if not match:
            raise InputError("shapes", f"{item!r} is not decode:BSZxTOKENS or prefill:BSZxLENGTH", index)
        shape = Shape(match[1], int(match[2]), int(match[3]))
        if shape.bsz > MAX_BSZ or shape.num_tokens > MAX_TOKENS:
            raise InputError("shapes", f"{item!r} is larger than the benchmark builds (bsz <= {MAX_BSZ}, "
                             f"bsz x tokens <= {MAX_TOKENS})", index)
        shapes.append(shape)
    return shapes
