"""Find a FastDeploy checkout's files, its commit, and which slot-mapping code shape it has.

The shape is read from the files (never from the commit): the runner's ``_compute_position_ids_and_slot_mapping``
calling ``get_position_ids_and_slot_mapping`` is the fused shape (#7960); the same method calling a position op
is the single-step shape (#7367 and after); no such method, but a ``compute_slot_mapping`` in the DeepSeek-V3
model, is the legacy per-layer shape (parent of #7367). Anything else is exit 2 with one line naming the file and
what was looked for. Nothing here imports ``fastdeploy``: files are parsed with ``ast``.
"""

from __future__ import annotations

import ast
import functools
import re
import subprocess
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from validation.errors import InputError

RUNNER = "fastdeploy/worker/gpu_model_runner.py"
INPUT_BATCH = "fastdeploy/worker/input_batch.py"
MODEL = "fastdeploy/model_executor/models/deepseek_v3.py"
DSA_BACKEND = "fastdeploy/model_executor/layers/attention/dsa_attention_backend.py"
OPS_DIR = "custom_ops/gpu_ops"
STEP_FUNCTION = "_compute_position_ids_and_slot_mapping"
LAYER_FUNCTION = "compute_slot_mapping"
FUSED_OP = "get_position_ids_and_slot_mapping"
HEX_COMMIT = re.compile(r"^[0-9a-f]{7,40}$")


class Shape(StrEnum):
    """The three code shapes of FastDeploy's DSA slot mapping."""

    LEGACY = "legacy per-layer compute_slot_mapping"
    SINGLE_STEP = "single-step _compute_position_ids_and_slot_mapping"
    FUSED = "fused get_position_ids_and_slot_mapping"


@dataclass(frozen=True)
class Checkout:
    """A checkout root (or snapshot folder): its commit, its shape, and its parsed Python files."""

    root: Path
    commit: str
    shape: Shape
    trees: dict[str, ast.Module] = field(repr=False, compare=False)

    def function(self, relpath: str, name: str, cls: str | None = None) -> ast.FunctionDef:
        """The ``def name`` in ``relpath`` (inside class ``cls`` when given); exit 2 naming both when absent."""
        found = find_function(self.trees[relpath], name, cls)
        if found is None:
            where = f"{cls}.{name}" if cls else name
            raise InputError("fastdeploy", f"{self.root / relpath}: no def {where} (looked for it by ast)")
        return found

    def cite(self, relpath: str, node: ast.AST) -> str:
        """``file:line@commit`` for reports."""
        return f"{relpath}:{node.lineno}@{self.commit}"

    def op_source(self, op: str) -> Path | None:
        """The ``.cu`` file defining the custom op ``op`` (by FastDeploy's one-file-per-op naming), if present."""
        path = self.root / OPS_DIR / f"{op}.cu"
        return path if path.is_file() else None


def find_function(tree: ast.Module, name: str, cls: str | None = None) -> ast.FunctionDef | None:
    """First ``def name`` at module level, or in class ``cls``."""
    scopes: list[ast.AST] = [tree]
    if cls is not None:
        scopes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls]
    for scope in scopes:
        for node in ast.walk(scope):
            if isinstance(node, ast.FunctionDef) and node.name == name:
                return node
    return None


def called_names(node: ast.AST) -> set[str]:
    """Names of every function a piece of code calls (``f(...)`` and ``x.f(...)``)."""
    names = set()
    for call in ast.walk(node):
        if isinstance(call, ast.Call):
            if isinstance(call.func, ast.Name):
                names.add(call.func.id)
            elif isinstance(call.func, ast.Attribute):
                names.add(call.func.attr)
    return names


def _parse(root: Path, relpath: str) -> ast.Module:
    path = root / relpath
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("fastdeploy", f"{path}: cannot read ({type(exc).__name__})") from None
    try:
        return ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise InputError("fastdeploy", f"{path}:{exc.lineno}: does not parse as Python ({exc.msg})") from None


def read_commit(root: Path) -> str:
    """The checkout's commit: ``git rev-parse HEAD`` where it is a git checkout, else a hex folder name
    (the snapshots' layout), else ``unknown``."""
    if (root / ".git").exists():
        try:
            out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                 text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            out = None
        if out is not None and out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    name = root.name.split("+", 1)[0]
    return name[:12] if HEX_COMMIT.match(name) else "unknown"


def detect_shape(root: Path, trees: dict[str, ast.Module]) -> Shape:
    """The code shape, from the runner first (newer code keeps the model's helper around), then the model."""
    step = find_function(trees[RUNNER], STEP_FUNCTION)
    if step is not None:
        return Shape.FUSED if FUSED_OP in called_names(step) else Shape.SINGLE_STEP
    model = trees.get(MODEL)
    if model is not None and find_function(model, LAYER_FUNCTION) is not None:
        return Shape.LEGACY
    raise InputError("fastdeploy", f"{root / RUNNER}: unrecognised code shape: no def {STEP_FUNCTION} in it, and no "
                     f"def {LAYER_FUNCTION} in {MODEL} (looked for the single-step, fused and legacy shapes)")


@functools.lru_cache(maxsize=32)
def open_checkout(path: str, commit: str | None = None) -> Checkout:
    """Read a checkout once per process (the fuzzer resolves the same spec many times)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise InputError("fastdeploy", f"{path}: not a directory (expected a FastDeploy checkout root)")
    if not (root / RUNNER).is_file():
        raise InputError("fastdeploy", f"{root}: not a FastDeploy checkout (looked for {RUNNER})")
    wanted = [RUNNER, INPUT_BATCH, MODEL, DSA_BACKEND]
    trees = {}
    for relpath in wanted:
        if (root / relpath).is_file():
            trees[relpath] = _parse(root, relpath)
    shape = detect_shape(root, trees)
    needed = [INPUT_BATCH] if shape is not Shape.LEGACY else [MODEL, DSA_BACKEND]
    for relpath in needed:
        if relpath not in trees:
            raise InputError("fastdeploy", f"{root / relpath}: missing (the {shape} shape reads it)")
    return Checkout(root.resolve(), commit or read_commit(root.resolve()), shape, trees)
