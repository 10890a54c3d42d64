"""Incremental detokenization with OpenAI ``stop`` strings, for the server's responses.

The engine hands out token ids a step at a time; a client wants text. Byte-level BPE can end a step in the middle of
a UTF-8 character, and a stop string can straddle two steps, so only the part of the text that can no longer change
is released: a UTF-8 tail waits for its character to complete, a tail that
starts a stop string waits to see whether the stop string completes. When one appears, the text is cut just before
it and the request is marked stopped: the caller then aborts it in the engine.

Each step decodes only the ids since the text last ended on a whole character (byte-level BPE decodes a
concatenation of complete-character runs to the concatenation of their texts), so a long answer costs linear time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

_REPLACEMENT = "\ufffd"  # what a decoder yields for an incomplete UTF-8 tail


class IncrementalText:
    """The text of one completion, released in deltas that are final."""

    def __init__(self, decode: Callable[[list[int]], str], stop: Sequence[str] = ()) -> None:
        self._decode = decode
        self._stop = tuple(s for s in stop if s)
        self._holdback = max((len(s) for s in self._stop), default=1) - 1
        self._ids: list[int] = []
        self._settled_ids = 0  # ids whose text ended on a whole character: decoded once, kept in _settled_text
        self._settled_text = ""
        self._released = 0  # characters of text already handed out
        self._searched = 0  # text before this index holds no stop string start that could still complete
        self.text = ""
        self.stopped = False

    def feed(self, new_ids: Sequence[int], final: bool = False) -> str:
        """Add a step's ids; return the text newly safe to send (everything left when ``final`` or stopped)."""
        if self.stopped:
            return ""
        self._ids.extend(int(i) for i in new_ids)
        tail = self._decode(self._ids[self._settled_ids:])
        text = self._settled_text + tail
        if not tail.endswith(_REPLACEMENT):
            self._settled_ids, self._settled_text = len(self._ids), text
        if not final:
            text = text.rstrip(_REPLACEMENT)  # the character may complete next step
        cut = self._find_stop(text)
        if cut is not None:
            text, self.stopped = text[:cut], True
        self.text = text
        if final or self.stopped:
            end = len(text)
        else:  # hold back only a tail that could still grow into a stop string
            end = max(self._released, len(text) - self._partial_stop(text))
        delta = text[self._released:end]
        self._released = end
        return delta

    def _partial_stop(self, text: str) -> int:
        """Length of the longest tail of ``text`` that is a proper prefix of a stop string."""
        return max((k for s in self._stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)

    def _find_stop(self, text: str) -> int | None:
        if not self._stop:
            return None
        start = max(0, self._searched - self._holdback)
        hits = [i for i in (text.find(s, start) for s in self._stop) if i >= 0]
        self._searched = len(text)
        return min(hits) if hits else None
