"""The paged KV cache's block allocator: a free list, and full prompt blocks shared between requests.

Every request's cache is a list of physical blocks of ``block_size`` token slots (its block table row).
A block that is full of prompt tokens gets a content hash chained with its parent's (so it names the
whole prefix up to its end, not just its own tokens); a later request whose prompt starts with the
same blocks reuses them (a prefix-cache hit) and only references them: refcounts count the holders,
and a block returns to the free list when its last holder finishes, is aborted or is preempted.
A shared block is never written again: hits are whole blocks strictly before the tokens a request
still has to compute. Cached blocks live while referenced (no eviction cache), which keeps the
allocation a pure function of the workload. Design after nano-vLLM's and vLLM's block managers.

Free blocks are handed out lowest id first and released to the back of the list, so ids stay small
and deterministic while finished requests leave the pool fragmented, as a server's does.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field


class OutOfBlocks(RuntimeError):
    """Not enough free blocks for what was asked; the scheduler preempts or waits."""


def block_hash(parent: bytes, tokens: Sequence[int]) -> bytes:
    """Content hash of a full block, chained with its parent block's hash (``b""`` for the first)."""
    digest = hashlib.blake2b(parent, digest_size=16)
    digest.update(b",".join(str(int(t)).encode() for t in tokens))
    return digest.digest()


@dataclass
class BlockTable:
    """One request's blocks (its block-table row) and the hashes of its leading full prompt blocks."""

    blocks: list[int] = field(default_factory=list)
    hashes: list[bytes] = field(default_factory=list)


class BlockAllocator:
    """Physical blocks ``0 .. num_blocks-1`` of ``block_size`` slots each."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"num_blocks and block_size must be >= 1, got {num_blocks} and {block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self._free: deque[int] = deque(range(num_blocks))
        self.refcount = [0] * num_blocks
        self._by_hash: dict[bytes, int] = {}
        self._hash_of: dict[int, bytes] = {}

    @property
    def num_free(self) -> int:
        return len(self._free)

    def blocks_needed(self, table: BlockTable, num_tokens: int) -> int:
        """How many more blocks ``table`` needs to hold ``num_tokens`` tokens."""
        return max(0, -(-num_tokens // self.block_size) - len(table.blocks))

    def match_prefix(self, table: BlockTable, tokens: Sequence[int], hashable: int) -> int:
        """Start an empty ``table`` with the cached full blocks its first ``hashable`` tokens share;
        return how many tokens that covers (leaving at least one token to compute)."""
        assert not table.blocks, "a prefix is matched only when a request is (re)admitted"
        bs, parent = self.block_size, b""
        limit = min(hashable, len(tokens) - 1) // bs  # the last token's logits must be computed
        for i in range(limit):
            h = block_hash(parent, tokens[i * bs:(i + 1) * bs])
            block = self._by_hash.get(h)
            if block is None:
                break
            self.refcount[block] += 1
            table.blocks.append(block)
            table.hashes.append(h)
            parent = h
        return len(table.blocks) * bs

    def allocate(self, table: BlockTable, num_tokens: int) -> None:
        """Grow ``table`` to hold ``num_tokens`` tokens, or raise ``OutOfBlocks`` and change nothing."""
        need = self.blocks_needed(table, num_tokens)
        if need > len(self._free):
            raise OutOfBlocks(f"need {need} blocks, {len(self._free)} free")
        for _ in range(need):
            block = self._free.popleft()
            self.refcount[block] = 1
            table.blocks.append(block)

    def register_full_blocks(self, table: BlockTable, tokens: Sequence[int], computed: int, hashable: int) -> None:
        """Publish the content hashes of ``table``'s blocks that are now full of computed prompt tokens
        (the first ``hashable`` tokens), so later requests with the same prefix can share them."""
        bs = self.block_size
        for i in range(len(table.hashes), min(computed, hashable) // bs):
            parent = table.hashes[-1] if table.hashes else b""
            h = block_hash(parent, tokens[i * bs:(i + 1) * bs])
            table.hashes.append(h)
            block = table.blocks[i]
            if h not in self._by_hash and block not in self._hash_of:
                self._by_hash[h] = block
                self._hash_of[block] = h

    def free(self, table: BlockTable) -> None:
        """Drop ``table``'s references; blocks nobody holds any more go to the back of the free list."""
        for block in table.blocks:
            self.refcount[block] -= 1
            assert self.refcount[block] >= 0, f"block {block} freed twice"
            if self.refcount[block] == 0:
                h = self._hash_of.pop(block, None)
                if h is not None:
                    del self._by_hash[h]
                self._free.append(block)
        table.blocks.clear()
        table.hashes.clear()
