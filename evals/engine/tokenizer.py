"""SmolLM2's tokenizer and chat template, rebuilt from the GGUF's own metadata (no hub download).

The GGUF (``tokenizer.ggml.model = gpt2``, ``pre = smollm``) carries the byte-level BPE vocabulary and merges; the
``smollm`` pre-tokenizer splits every digit on its own before GPT-2's byte-level regex. Tokens of type 3 (control:
``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``, ...) are registered as special tokens, so their text in a
prompt maps to one id and decoding drops them only when asked. The chat template (ChatML) is the Jinja text stored in
``tokenizer.chat_template``, rendered in a sandbox as Hugging Face does.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from validation.errors import MissingDependency

from .weights import load_gguf_metadata

CONTROL_TOKEN_TYPE = 3  # llama.cpp's LLAMA_TOKEN_TYPE_CONTROL


class Tokenizer:
    """encode/decode/apply_chat_template over a ``tokenizers.Tokenizer`` built from the GGUF."""

    def __init__(self, metadata: dict) -> None:
        try:
            from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
            from tokenizers import Tokenizer as HFTokenizer
        except ImportError as exc:
            raise MissingDependency("tokenizers", "engine", "The engine's tokenizer") from exc

        tokens: list[str] = list(metadata["tokenizer.ggml.tokens"])
        types: list[int] = [int(t) for t in metadata["tokenizer.ggml.token_type"]]
        merges = [tuple(m.split(" ", 1)) for m in metadata["tokenizer.ggml.merges"]]
        vocab = {tok: i for i, tok in enumerate(tokens)}

        bpe = HFTokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
        bpe.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(r"\d"), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
        bpe.decoder = decoders.ByteLevel()
        self.special_tokens = [tok for tok, kind in zip(tokens, types) if kind == CONTROL_TOKEN_TYPE]
        bpe.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in self.special_tokens])
        self._tok = bpe
        self.vocab_size = len(tokens)
        # The most characters one token spells: a byte-level token's string has one character per byte, and a
        # decoded character takes at least one byte. The server refuses a prompt longer than the context times this
        # before tokenizing it.
        self.max_token_chars = max(len(t) for t in tokens)
        self.bos_token_id = int(metadata["tokenizer.ggml.bos_token_id"])
        self.eos_token_id = int(metadata["tokenizer.ggml.eos_token_id"])
        self.chat_template: str = metadata["tokenizer.chat_template"]
        # ChatML ends an assistant turn with <|im_end|> (the GGUF's eos); <|endoftext|> ends a document.
        self.stop_token_ids = sorted({self.eos_token_id, vocab["<|endoftext|>"]})

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; special-token text (``<|im_start|>``) maps to its one id; no BOS is added
        (the GGUF says ``add_bos_token = false``). Through ``encode_batch``, which releases the GIL while it works
        (``encode`` holds it), so a server tokenizing a long prompt on a worker thread does not stall its event loop."""
        return self._tok.encode_batch([text], add_special_tokens=False)[0].ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def apply_chat_template(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        """The prompt text for ``messages`` (``[{"role": ..., "content": ...}]``), rendered from the GGUF's
        template; the assistant header is appended when ``add_generation_prompt``."""
        return _compiled_template(self.chat_template).render(
            messages=list(messages), add_generation_prompt=add_generation_prompt
        )


@functools.lru_cache(maxsize=4)
def _compiled_template(source: str):
    try:
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as exc:
        raise MissingDependency("jinja2", "engine", "The engine's chat template") from exc
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    return env.from_string(source)


@functools.lru_cache(maxsize=1)
def load_tokenizer() -> Tokenizer:
    """The tokenizer of the installed GGUF, built once per process."""
    return Tokenizer(load_gguf_metadata())
