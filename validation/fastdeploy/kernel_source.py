"""A FastDeploy checkout's own CUDA ops, read from its ``.cu`` files as compilable source.

FastDeploy builds its custom ops against Paddle's headers (``helper.h`` pulls in Paddle, glog, NVML,
nlohmann json), which a validation machine does not have. The kernels themselves need none of that:
this module finds the op's ``PD_BUILD_STATIC_OP`` declaration, its host wrapper (``SetKernelFn``) and
the ``__global__`` functions the wrapper launches, and emits those kernels, the ``__device__``
functions and macros they use (from the ``.cu`` file and ``helper.h``) and nothing else, each piece
behind a ``#line`` directive so a compiler error names the FastDeploy file and line. The checkout is
read at run time, never copied. The preprocessor conditionals are resolved for a plain CUDA build
(no ``PADDLE_WITH_HIP``, ``PADDLE_WITH_COREX`` or ``PADDLE_WITH_CUSTOM_DEVICE``), as FastDeploy's
GPU build sees them.

Anything this module cannot find is an ``InputError`` naming the file and what was looked for.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from validation.errors import InputError

OPS_DIR = Path("custom_ops/gpu_ops")
HELPER = OPS_DIR / "helper.h"
# The custom ops the slot-mapping code paths call, as FastDeploy's Python imports them.
POSITION_OPS = ("get_position_ids_and_mask_encoder_batch", "get_position_ids", "get_position_ids_and_slot_mapping")
PADDING_OP = "get_padding_offset"
OP_NAMES = POSITION_OPS + (PADDING_OP,)
# Types the kernels use that a standalone NVRTC compile lacks (``helper.h`` brings them via <cstdint>).
PRELUDE = """#ifdef __CUDACC_RTC__
typedef signed char int8_t; typedef unsigned char uint8_t; typedef short int16_t; typedef unsigned short uint16_t;
typedef int int32_t; typedef unsigned int uint32_t; typedef long long int64_t; typedef unsigned long long uint64_t;
#else
#include <cstdint>
#endif
"""
_BUILD_OP = re.compile(r"\bPD_BUILD(?:_STATIC)?_OP\s*\(\s*(\w+)\s*\)")
_GLOBAL = re.compile(r"__global__\s+void\s+(\w+)\s*\(")
_DEVICE = re.compile(r"__device__\s+(?:__forceinline__\s+|inline\s+|static\s+)*[\w:<>\s\*&]+?\b(\w+)\s*\(")
_DEFINE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+(\w+)")
_IDENT = re.compile(r"[A-Za-z_]\w*")


@dataclass(frozen=True)
class Piece:
    """A span of a FastDeploy file: where it starts (1-based line) and its text."""

    file: Path  # relative to the checkout root
    line: int
    text: str

    def emit(self, prefix: str = "") -> str:
        return f'#line {self.line} "{self.file.as_posix()}"\n{prefix}{self.text}\n'


@dataclass(frozen=True)
class Kernel:
    """One ``__global__`` function: its text and its parameters as (type text, name)."""

    name: str
    piece: Piece
    params: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class OpSource:
    """Everything the suite needs to compile and launch one custom op the way the checkout builds it."""

    name: str
    file: Path  # relative to the root
    inputs: tuple[str, ...]
    optional: frozenset[str]
    outputs: tuple[str, ...]
    attrs: tuple[tuple[str, str], ...]  # (name, C type)
    inplace: dict[str, str]  # input name -> output name
    wrapper: str  # the host function's name
    wrapper_params: tuple[tuple[str, str], ...]
    wrapper_body: Piece  # the text between the braces (active lines only)
    kernels: dict[str, Kernel]
    source: str  # compilable CUDA C++: prelude, macros, device helpers, kernels with extern "C"
    commit: str = ""
    macros: dict[str, str] = field(default_factory=dict)  # object-like macro -> replacement (host wrapper)

    @property
    def origin(self) -> str:
        return f"kernel compiled from {self.file.as_posix()} at {self.commit}"


def checkout_commit(root: Path) -> str:
    """The commit a checkout is at: ``git rev-parse`` where it is a git work tree, else the folder's name
    (the shared snapshots are named by their commit)."""
    if (root / ".git").exists():
        try:
            done = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                                  capture_output=True, text=True, timeout=30, check=True)
            return done.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return root.resolve().name


def find_op_files(root: Path) -> dict[str, Path]:
    """Op name -> the ``.cu`` file (relative to ``root``) that declares it, for the ops in ``OP_NAMES``."""
    ops_dir = root / OPS_DIR
    if not ops_dir.is_dir():
        raise InputError("fastdeploy", f"{root} is not a FastDeploy checkout: no {OPS_DIR.as_posix()}/ folder")
    found: dict[str, Path] = {}
    for path in sorted(ops_dir.glob("*.cu")):
        for name in _BUILD_OP.findall(strip_comments(_read(path))):
            if name in OP_NAMES:
                found.setdefault(name, path.relative_to(root))
    return found


def read_op(root: Path, name: str, rel: Path | None = None) -> OpSource:
    """The op ``name`` from its ``.cu`` file in the checkout at ``root`` (found by its declaration when
    ``rel`` is not given)."""
    if rel is None:
        files = find_op_files(root)
        if name not in files:
            raise InputError("fastdeploy", f"no PD_BUILD_STATIC_OP({name}) in {root / OPS_DIR}/*.cu")
        rel = files[name]
    text = active(strip_comments(_read(root / rel)))
    decl = _declaration(text, name, rel)
    wrapper = _call_arg(decl, "SetKernelFn", rel, name)
    wrapper = re.fullmatch(r"\s*PD_KERNEL\s*\(\s*(\w+)\s*\)\s*", wrapper)
    if wrapper is None:
        raise InputError(rel.as_posix(), f"{name}: SetKernelFn(PD_KERNEL(...)) not found in its declaration")
    fn = wrapper[1]
    params, body = _function(text, fn, rel)
    launched = re.findall(r"\b(\w+)\s*<<<", body.text)
    if not launched:
        raise InputError(rel.as_posix(), f"{name}: its host function {fn} launches no kernel (looked for NAME<<<...>>>)")
    kernels = {k: _kernel(text, k, rel) for k in dict.fromkeys(launched)}
    helper = active(strip_comments(_read(root / HELPER))) if (root / HELPER).exists() else ""
    macros = _macros(((HELPER, helper), (rel, text)))
    devices = _device_functions(helper, HELPER) | _device_functions(text, rel)  # the op's file wins
    source = _assemble(kernels, macros, devices)
    inputs, optional = _inputs(decl, rel, name)
    return OpSource(
        name=name, file=rel, inputs=inputs, optional=optional,
        outputs=tuple(_strings(_call_arg(decl, "Outputs", rel, name))),
        attrs=tuple(_attr(a) for a in _strings(_call_arg(decl, "Attrs", rel, name, required=False))),
        inplace=dict(zip(*[iter(_strings(_call_arg(decl, "SetInplaceMap", rel, name, required=False)))] * 2)),
        wrapper=fn, wrapper_params=params, wrapper_body=body, kernels=kernels, source=source,
        commit=checkout_commit(root), macros=_object_macros(macros))


# ---- the C text -------------------------------------------------------------------------------

def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError("fastdeploy", f"cannot read {path}: {exc.strerror}") from None


def strip_comments(text: str) -> str:
    """``text`` with every comment replaced by spaces (newlines kept, so line numbers hold); string and
    character literals are left alone."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _condition(expr: str, defined: dict[str, str]) -> bool:
    """An ``#if`` expression as the preprocessor reads it: ``defined`` names, 0 for unknown names."""
    expr = re.sub(r"\bdefined\s*\(\s*(\w+)\s*\)|\bdefined\s+(\w+)",
                  lambda m: "1" if (m[1] or m[2]) in defined else "0", expr)
    expr = re.sub(r"(?<=\d)[uUlL]+\b", "", expr)
    expr = _IDENT.sub(lambda m: defined.get(m[0], "0").strip() or "0", expr)
    expr = expr.replace("&&", " and ").replace("||", " or ").replace("!=", " != ")
    expr = re.sub(r"!(?!=)", " not ", expr)
    try:
        return bool(eval(expr, {"__builtins__": {}}, {}))  # noqa: S307 - digits and operators only
    except Exception:  # noqa: BLE001 - an expression this reader cannot evaluate counts as false
        return False


def active(text: str, defined: dict[str, str] | None = None) -> str:
    """``text`` (comments stripped) with the branches a CUDA build does not compile blanked, and the
    conditional directives themselves blanked; line numbers are kept."""
    macros = dict(defined or {})
    lines = text.split("\n")
    stack: list[tuple[bool, bool]] = []  # (this branch is live, some branch of this group was taken)
    out = []
    i = 0
    while i < len(lines):
        # Join continued lines so a directive is read whole; the continuation lines stay in place.
        line, span = lines[i], 1
        while line.endswith("\\") and i + span < len(lines):
            line = line[:-1] + " " + lines[i + span]
            span += 1
        live = all(s[0] for s in stack)
        m = re.match(r"\s*#\s*(\w+)\s*(.*)", line)
        kind = m[1] if m else ""
        if kind in ("if", "ifdef", "ifndef"):
            arg = m[2].strip()
            value = (arg.split()[0] in macros) if kind == "ifdef" else (
                arg.split()[0] not in macros if kind == "ifndef" else _condition(arg, macros))
            stack.append((value, value))
        elif kind in ("elif", "else") and stack:
            taken = stack[-1][1]
            value = not taken and (kind == "else" or _condition(m[2], macros))
            stack[-1] = (value, taken or value)
        elif kind == "endif" and stack:
            stack.pop()
        elif kind == "define" and live:
            name = re.match(r"(\w+)(\([^)]*\))?\s*(.*)", m[2])
            if name:
                macros[name[1]] = "" if name[2] else name[3]
            out.extend(lines[i:i + span])
            i += span
            continue
        elif kind == "undef" and live:
            macros.pop(m[2].strip(), None)
        elif live and not kind:
            out.extend(lines[i:i + span])
            i += span
            continue
        elif live and kind not in ("include", "pragma") and kind:
            out.extend(lines[i:i + span])
            i += span
            continue
        if live and kind == "pragma":
            out.extend(lines[i:i + span])
            i += span
            continue
        out.extend([""] * span)
        i += span
    return "\n".join(out)


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _matching(text: str, open_at: int) -> int:
    """Index of the bracket closing the one at ``open_at`` (comments already stripped)."""
    pairs = {"(": ")", "{": "}", "[": "]"}
    opener, closer, depth, i = text[open_at], pairs[text[open_at]], 0, open_at
    while i < len(text):
        c = text[i]
        if c in "\"'":
            j = i + 1
            while j < len(text) and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            i = j
        elif c == opener:
            depth += 1
        elif c == closer:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _declaration(text: str, name: str, rel: Path) -> str:
    """The chained calls after ``PD_BUILD_STATIC_OP(name)`` up to the terminating semicolon."""
    for m in _BUILD_OP.finditer(text):
        if m[1] != name:
            continue
        i = m.end()
        while i < len(text) and text[i] != ";":
            i = _matching(text, i) + 1 if text[i] in "({[" else i + 1
            if i == 0:
                break
        return text[m.end():i]
    raise InputError(rel.as_posix(), f"no PD_BUILD_STATIC_OP({name}) declaration")


def _call_arg(decl: str, method: str, rel: Path, name: str, *, required: bool = True) -> str:
    m = re.search(rf"\.\s*{method}\s*\(", decl)
    if m is None:
        if required:
            raise InputError(rel.as_posix(), f"{name}: .{method}(...) not found in its PD_BUILD_STATIC_OP declaration")
        return ""
    end = _matching(decl, m.end() - 1)
    return decl[m.end():end]


def _strings(text: str) -> list[str]:
    return re.findall(r'"([^"]*)"', text)


def _inputs(decl: str, rel: Path, name: str) -> tuple[tuple[str, ...], frozenset[str]]:
    text = _call_arg(decl, "Inputs", rel, name)
    optional = frozenset(re.findall(r'paddle::Optional\s*\(\s*"([^"]*)"\s*\)', text))
    return tuple(_strings(text)), optional


def _attr(text: str) -> tuple[str, str]:
    name, _, ctype = text.partition(":")
    return name.strip(), ctype.strip()


def _params(text: str) -> tuple[tuple[str, str], ...]:
    """``const int* __restrict__ a, const int b`` -> (("const int* __restrict__", "a"), ("const int", "b"))."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        m = re.match(r"(.*?)(\w+)\s*(\[\s*\])?$", part, re.S)
        if m is None:
            continue
        ctype = " ".join(m[1].split()) + ("*" if m[3] else "")
        out.append((ctype, m[2]))
    return tuple(out)


def _function(text: str, fn: str, rel: Path) -> tuple[tuple[tuple[str, str], ...], Piece]:
    """The parameters and body of the function *defined* as ``fn`` (a prototype or a call is skipped)."""
    for m in re.finditer(rf"\b{fn}\s*\(", text):
        close = _matching(text, m.end() - 1)
        after = text[close + 1:close + 200].lstrip()
        if close < 0 or not after.startswith("{"):
            continue
        brace = text.index("{", close)
        end = _matching(text, brace)
        if end < 0:
            break
        return _params(text[m.end():close]), Piece(rel, _line_of(text, brace), text[brace + 1:end])
    raise InputError(rel.as_posix(), f"no definition of the host function {fn} (named by SetKernelFn)")


def _kernel(text: str, name: str, rel: Path) -> Kernel:
    for m in _GLOBAL.finditer(text):
        if m[1] != name:
            continue
        start = text.rfind("\n", 0, m.start()) + 1
        if re.search(r"template\s*<[^;{}]*>\s*$", text[:start]):
            raise InputError(rel.as_posix(), f"the kernel {name} is a template, which this reader does not instantiate")
        close = _matching(text, m.end() - 1)
        brace = text.find("{", close)
        end = _matching(text, brace) if brace >= 0 else -1
        if close < 0 or end < 0:
            raise InputError(rel.as_posix(), f"the kernel {name} has unbalanced brackets")
        return Kernel(name, Piece(rel, _line_of(text, start), text[start:end + 1]), _params(text[m.end():close]))
    raise InputError(rel.as_posix(), f"no __global__ void {name}(...) (launched by the op's host function)")


def _macros(files: tuple[tuple[Path, str], ...]) -> dict[str, Piece]:
    """Every active ``#define`` of the given (path, active text) files, a later file's winning, as pieces."""
    out: dict[str, Piece] = {}
    for path, body in files:
        lines = body.split("\n")
        for i, line in enumerate(lines):
            m = _DEFINE.match(line)
            if m:
                j = i
                while lines[j].endswith("\\") and j + 1 < len(lines):
                    j += 1
                out[m[1]] = Piece(path, i + 1, "\n".join(lines[i:j + 1]))
    return out


def _object_macros(macros: dict[str, Piece]) -> dict[str, str]:
    """Object-like macros as name -> replacement text (what the host wrapper's expressions may use)."""
    out = {}
    for name, piece in macros.items():
        m = re.match(r"\s*#\s*define\s+\w+(\()?(.*)", piece.text.replace("\\\n", " "), re.S)
        if m and not m[1]:
            out[name] = m[2].strip()
    return out


def _device_functions(text: str, rel: Path) -> dict[str, Piece]:
    out: dict[str, Piece] = {}
    for m in _DEVICE.finditer(text):
        close = _matching(text, text.index("(", m.end() - 1))
        brace = text.find("{", close)
        if close < 0 or brace < 0 or text[close + 1:brace].strip():
            continue
        end = _matching(text, brace)
        start = text.rfind("\n", 0, m.start()) + 1
        out[m[1]] = Piece(rel, _line_of(text, start), text[start:end + 1])
    return out


def _assemble(kernels: dict[str, Kernel], macros: dict[str, Piece], devices: dict[str, Piece]) -> str:
    """Prelude, then the macros and device functions the kernels reach (transitively, in file order),
    then each kernel with C linkage so its name survives compilation."""
    needed_macros: dict[str, Piece] = {}
    needed_devices: dict[str, Piece] = {}
    todo = [k.piece.text for k in kernels.values()]
    while todo:
        for ident in set(_IDENT.findall(todo.pop())):
            if ident in macros and ident not in needed_macros:
                needed_macros[ident] = macros[ident]
                todo.append(macros[ident].text)
            elif ident in devices and ident not in needed_devices and ident not in kernels:
                needed_devices[ident] = devices[ident]
                todo.append(devices[ident].text)
    ordered = sorted(needed_macros.values(), key=lambda p: (p.file != HELPER, p.line))
    parts = [PRELUDE] + [p.emit() for p in ordered]
    parts += [p.emit() for p in sorted(needed_devices.values(), key=lambda p: (p.file != HELPER, p.line))]
    parts += [k.piece.emit('extern "C" ') for k in kernels.values()]
    return "".join(parts)


def first_compiler_error(log: str) -> str:
    """The first ``error`` line of an NVRTC or nvcc log (the whole first line when none says error)."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for line in lines:
        if re.search(r"\berror\b", line):
            return line
    return lines[0] if lines else "no compiler output"
