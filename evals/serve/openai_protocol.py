"""The OpenAI request bodies the server accepts, and the OpenAI error shape it answers with.

Types are strict where a silent coercion would change a run (``max_tokens: "5"`` is a 400, not 5); fields the
engine has no use for (``user``, ``logit_bias``, FastDeploy's ``chat_template_kwargs`` ...) are ignored, so clients
written for other OpenAI-compatible servers work unchanged. Decoding is always greedy: ``temperature``/``top_p`` are
accepted and range-checked but do not change the answer (this server exists to compare two slot-mapping
implementations bit for bit, which needs deterministic decoding).

Text must be valid Unicode: JSON can spell a lone surrogate (``"\\ud800"``), which no tokenizer can encode, so it is
refused here with the field named (a 400), never left to fail in the tokenizer (once a plain-text 500). Stop strings
are bounded as OpenAI bounds them (at most ``MAX_STOP_STRINGS``), and in length (``MAX_STOP_CHARS``): each step
checks every stop string against the text's tail, on the engine thread that serves every client.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

MAX_STOP_STRINGS = 4  # OpenAI's documented limit ("up to 4 sequences")
MAX_STOP_CHARS = 256  # per stop string: the tail check costs about its square per step


def _unicode(text: str) -> str:
    """Refuse a lone surrogate, naming where it is (pydantic reports the field)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"a lone surrogate (U+{ord(text[exc.start]):04X}) at character {exc.start} is not valid "
                         "Unicode text") from None
    return text


_Number = StrictInt | StrictFloat
Text = Annotated[StrictStr, AfterValidator(_unicode)]
_Stop = Annotated[Text, Field(max_length=MAX_STOP_CHARS)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: Text | None = None
    max_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    stop: _Stop | Annotated[list[_Stop], Field(max_length=MAX_STOP_STRINGS)] | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    seed: StrictInt | None = None
    temperature: Annotated[_Number, Field(ge=0, le=2)] | None = None
    top_p: Annotated[_Number, Field(gt=0, le=1)] | None = None
    n: Literal[1] = 1

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: StrictBool = False


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: Text


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatCompletionRequest(_Request):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[StrictInt, Field(ge=1)] | None = None

    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_Request):
    prompt: Text | Annotated[list[StrictInt], Field(min_length=1)] | Annotated[
        list[Text], Field(min_length=1, max_length=1)]
    echo: Literal[False] = False
    logprobs: None = None

    def token_limit(self) -> int:
        return 16 if self.max_tokens is None else self.max_tokens  # OpenAI's default for completions


_Request.model_rebuild()
ChatCompletionRequest.model_rebuild()
CompletionRequest.model_rebuild()


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    """The OpenAI error object, as its clients parse it."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def describe_validation_errors(errors: list[dict]) -> tuple[str, str | None]:
    """One line naming the first offending field and its rule (FastAPI/pydantic errors), and that field."""
    first = errors[0]
    if first.get("type") == "json_invalid":
        return f"the request body is not valid JSON: {first.get('ctx', {}).get('error', first.get('msg'))}", None
    param = _field_path(first)
    if first.get("type") == "missing" and param:
        return f"'{param}' is a required property", param
    # a union field fails once per member (stop: not a string, not a list): say all of them in one line
    rules = list(dict.fromkeys(e.get("msg", "invalid value") for e in errors if _field_path(e) == param))
    where = f"'{param}': " if param else ""
    return where + "; or ".join(rules), param


def _field_path(error: dict) -> str | None:
    """``body.stop.list[str].0`` -> ``stop.0``: the request's own field path, without pydantic's union tags."""
    parts = [str(p) for p in error.get("loc", ()) if p != "body"]
    parts = [p for p in parts if not any(c in p for c in "[]") and p not in {"str", "int", "float", "bool"}]
    return ".".join(parts) or None
