"""Loading IFEval prompts and model responses, with line-numbered errors.

Prompts come from ``--data`` (a jsonl or parquet file), else ``DSA_IFEVAL_DATA``, else the hub's
``google/IFEval`` when online; a user who has none of these gets one line saying how to get them.
A jsonl file is read line by line with ``json`` (importing ``datasets`` costs more than half a second,
more than scoring 541 responses); parquet files and the hub go through ``datasets``.
The schema is checked row by row so that a broken file is reported by line, never by a traceback.
Responses are JSONL lines ``{"key" or "prompt", "response"}`` (the reference's own ``{"prompt",
"response"}`` output works unchanged), matched to prompts by key, else by exact prompt text.
"""

from __future__ import annotations

import fixtures
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals.ifeval import jsonl
from evals.ifeval.checkers import REGISTRY, Checker, build
from validation.errors import InputError, MissingDependency

DATA_ENV = "DSA_IFEVAL_DATA"
HUB_DATASET = "google/IFEval"
HOW_TO_GET = (f"no IFEval prompts: pass --data PATH (jsonl or parquet, e.g. google-research's "
              f"instruction_following_eval/data/input_data.jsonl), set {DATA_ENV}, or run online to use "
              f"the hub's {HUB_DATASET}")
SAMPLE_DIR = fixtures.ROOT / "ifeval"


@dataclass(frozen=True)
class Prompt:
    """One IFEval prompt with its instructions, each already built into a checker."""

    key: int
    prompt: str
    instruction_ids: tuple[str, ...]
    kwargs: tuple[dict[str, Any], ...]
    checkers: tuple[Checker, ...] = field(compare=False, repr=False)


@dataclass(frozen=True)
class Responses:
    """Responses matched to prompt keys, plus the lines that matched no prompt."""

    by_key: dict[int, str]
    unmatched: tuple[dict[str, Any], ...]


def sample_paths() -> tuple[Path, Path]:
    """The shipped, self-written sample: (prompts, responses) — the offline default of the main job."""
    return SAMPLE_DIR / "sample_input.jsonl", SAMPLE_DIR / "sample_responses.jsonl"


def resolve_source(data: str | os.PathLike[str] | None) -> str:
    """The prompts' location: ``--data``, else ``$DSA_IFEVAL_DATA``, else the hub id (tried online)."""
    chosen = data if data else os.environ.get(DATA_ENV)
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise InputError("--data", f"{path} is not a file")
        return str(path)
    return HUB_DATASET


def load_prompts(data: str | os.PathLike[str] | None = None) -> list[Prompt]:
    """Load and validate the prompts (see ``resolve_source``), in the data's order."""
    source = resolve_source(data)
    if source == HUB_DATASET or source.endswith(".parquet"):
        rows = _load_hub() if source == HUB_DATASET else _load_local("parquet", source)
        where = [f"row {i}" for i in range(len(rows))]
    else:
        numbered = [(f"line {number}", row) for number, _, row in jsonl.iter_objects(Path(source))]
        where = [label for label, _ in numbered]
        rows = [row for _, row in numbered]
    prompts = [_to_prompt(row, where[i]) for i, row in enumerate(rows)]
    seen: dict[int, str] = {}
    for i, p in enumerate(prompts):
        if p.key in seen:
            raise InputError("key", f"duplicate key {p.key} (also at {seen[p.key]})", index=where[i])
        seen[p.key] = where[i]
    if not prompts:
        raise InputError("--data", f"{source} holds no prompts")
    return prompts


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise MissingDependency("datasets", "ifeval", "Loading IFEval prompts") from exc
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


def _load_local(builder: str, path: str) -> list[dict[str, Any]]:
    """A local file through ``datasets``, offline, with its cache in a throw-away folder."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    datasets = _datasets()
    with tempfile.TemporaryDirectory(prefix="dsa-ifeval-") as cache:
        try:
            table = datasets.load_dataset(builder, data_files=path, split="train", cache_dir=cache)
        except Exception as exc:  # datasets/arrow raise many types for a file they cannot read
            raise InputError("--data", f"{path} could not be read as {builder}: {_one_line(exc)}") from None
        return list(table)


def _load_hub() -> list[dict[str, Any]]:
    datasets = _datasets()
    try:
        return list(datasets.load_dataset(HUB_DATASET, split="train"))
    except Exception:  # offline, hub unreachable, or not cached: tell the user where to get it
        raise InputError("--data", HOW_TO_GET) from None


def _to_prompt(row: Mapping[str, Any], where: str) -> Prompt:
    """Check one row's schema and build its checkers; errors name the row's line."""
    try:
        key = row.get("key")
        if isinstance(key, bool) or not isinstance(key, int):
            raise InputError("key", f"must be an integer, got {key!r}")
        prompt = row.get("prompt")
        if not isinstance(prompt, str):
            raise InputError("prompt", "must be a string")
        ids = row.get("instruction_id_list")
        if not isinstance(ids, Sequence) or isinstance(ids, str) or not ids:
            raise InputError("instruction_id_list", "must be a non-empty list of instruction ids")
        kwargs = row.get("kwargs")
        if not isinstance(kwargs, Sequence) or isinstance(kwargs, str) or len(kwargs) != len(ids):
            raise InputError("kwargs", f"must be a list of {len(ids)} objects, one per instruction")
        cleaned = []
        for i, args in enumerate(kwargs):
            if args is not None and not isinstance(args, Mapping):
                raise InputError("kwargs", f"item {i} must be an object")
            cleaned.append({k: v for k, v in (args or {}).items() if v is not None})
        for instruction_id in ids:
            if instruction_id not in REGISTRY:
                raise InputError("instruction_id_list", f"unknown instruction id {instruction_id!r}")
        checkers = tuple(build(i, a) for i, a in zip(ids, cleaned))
    except InputError as exc:
        raise InputError(f"prompt data {where}", str(exc)) from None
    return Prompt(key, prompt, tuple(ids), tuple(cleaned), checkers)


def load_responses(path: str | os.PathLike[str], prompts: Sequence[Prompt]) -> Responses:
    """Read a responses JSONL and match each line to a prompt, by key or else by exact prompt text."""
    keys = {p.key for p in prompts}
    by_text = {}
    for p in prompts:
        by_text.setdefault(p.prompt, p.key)
    by_key: dict[int, str] = {}
    line_of: dict[int, int] = {}
    unmatched: list[dict[str, Any]] = []
    source = Path(path)
    if not source.is_file():
        raise InputError("--responses", f"{source} is not a file")
    for number, _, row in jsonl.iter_objects(source):
        where = f"line {number}"
        response = row.get("response")
        if not isinstance(response, str):
            raise InputError(str(source), '"response" must be a string', index=where)
        key, prompt = row.get("key"), row.get("prompt")
        if key is not None and (isinstance(key, bool) or not isinstance(key, int)):
            raise InputError(str(source), f'"key" must be an integer, got {key!r}', index=where)
        if prompt is not None and not isinstance(prompt, str):
            raise InputError(str(source), '"prompt" must be a string', index=where)
        if key is None and prompt is None:
            raise InputError(str(source), 'each line needs "key" or "prompt"', index=where)
        matched = key if key in keys else by_text.get(prompt) if prompt is not None else None
        if matched is None:
            unmatched.append({"line": number, "key": key, "prompt": prompt})
            continue
        if matched in by_key:
            raise InputError(str(source), f"second response for key {matched} "
                             f"(first at line {line_of[matched]})", index=where)
        by_key[matched] = response
        line_of[matched] = number
    return Responses(by_key, tuple(unmatched))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
