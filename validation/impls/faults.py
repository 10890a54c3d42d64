"""Failures a real kernel would have on the GPU, raised by the models instead of silently continuing.

A CUDA kernel that writes past its buffer corrupts memory, and one launched with more than 1024
threads in a block never runs. The models raise these so the comparison can report them as
findings against the side that has them.
"""

from __future__ import annotations


class KernelFault(RuntimeError):
    """A modelled kernel would fault, fail to launch, or touch memory outside its tensor."""


MAX_THREADS_PER_BLOCK = 1024


def check_launch(op: str, bsz: int) -> None:
    """``<<<1, bsz>>>``: one block of ``bsz`` threads cannot exceed the 1024-thread limit."""
    if bsz > MAX_THREADS_PER_BLOCK:
        raise KernelFault(
            f"{op} is launched <<<1, {bsz}>>>: more than {MAX_THREADS_PER_BLOCK} threads in one block does not launch"
        )
