"""Run an op's host wrapper (the C++ function ``SetKernelFn`` names) as the checkout wrote it.

The wrapper decides the launch: grid, block, shared memory, which tensors it allocates
(``paddle::full`` / ``paddle::empty``), which scalars it derives from shapes and attributes, which
arguments the kernel gets and what it returns. Rather than restating that per op, this module reads
the wrapper's statements and executes them: declarations and assignments of integers with C's
integer semantics (truncating ``/`` and ``%``, ``int`` narrowing), ``if``/``else``, early ``return``,
``min``/``max``, ``shape()``, ``data<T>()``, ``const_cast``, optionals, and each ``K<<<g, b, smem,
stream>>>(args)`` launch, which is handed to the caller's ``Device``. A statement outside that subset
is an ``InputError`` naming the file, line and text, never a guess.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from validation.errors import InputError
from validation.impls.faults import KernelFault

CTYPES = {"int": np.int32, "int32_t": np.int32, "unsigned": np.uint32, "uint32_t": np.uint32,
          "int64_t": np.int64, "long long": np.int64, "uint64_t": np.uint64, "float": np.float32,
          "double": np.float64, "bool": np.bool_, "int8_t": np.int8, "uint8_t": np.uint8, "int16_t": np.int16}
DATATYPES = {"INT32": np.int32, "INT64": np.int64, "FLOAT32": np.float32, "BOOL": np.bool_, "INT8": np.int8,
             "UINT8": np.uint8, "INT16": np.int16, "FLOAT64": np.float64}
_TOKEN = re.compile(r'\s*(?:(\d+[uUlL]*)|([A-Za-z_]\w*)|("(?:[^"\\\n]|\\.)*")|(<<<|>>>|::|->|&&|\|\||==|!=|<=|>=|<<|>>|\S))')
# Checks a wrapper may make before its launch: a false condition is the op failing (a KernelFault), and
# calls that only report CUDA's status are read and ignored.
CHECKS = ("PD_CHECK", "PADDLE_ENFORCE", "PADDLE_ENFORCE_EQ", "PADDLE_ENFORCE_NE", "PADDLE_ENFORCE_GT",
          "PADDLE_ENFORCE_GE", "PADDLE_ENFORCE_LT", "PADDLE_ENFORCE_LE")
STATUS_CALLS = ("CUDA_CHECK", "cudaGetLastError", "PADDLE_ENFORCE_GPU_SUCCESS", "cudaPeekAtLastError")


@dataclass
class Tensor:
    """A tensor the wrapper sees: shape, dtype and the caller's storage (numpy or device array)."""

    name: str
    shape: tuple[int, ...]
    dtype: Any
    storage: Any = None


@dataclass(frozen=True)
class Ptr:
    """``t.data<T>()``: the storage of ``tensor`` read as ``dtype``."""

    tensor: Tensor
    dtype: Any


@dataclass(frozen=True)
class Opaque:
    """A value the wrapper only passes along (a stream, a place)."""

    what: str


class Device(Protocol):
    def alloc(self, name: str, shape: tuple[int, ...], dtype: Any, fill: int | None) -> Tensor: ...

    def launch(self, kernel: str, grid: tuple[int, ...], block: tuple[int, ...], smem: int, args: list[Any]) -> None: ...


@dataclass(frozen=True)
class Tok:
    text: str
    line: int


class _Return(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


def tokenize(text: str, first_line: int) -> list[Tok]:
    out, line, pos = [], first_line, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or not m.group(0).strip():
            break
        line += text.count("\n", pos, m.start(m.lastindex))
        out.append(Tok(m.group(m.lastindex), line))
        line += text.count("\n", m.start(m.lastindex), m.end())
        pos = m.end()
    return out


class Wrapper:
    """One host function: its parameters and its statements, executed against a ``Device``."""

    def __init__(self, file: Path, name: str, params: tuple[tuple[str, str], ...], body: str, first_line: int,
                 macros: dict[str, str]) -> None:
        self.file, self.name, self.params = file, name, params
        self.macros = {k: v for k, v in macros.items() if re.fullmatch(r"\s*-?\d+\s*", v or "")}
        self.tokens = tokenize(body, first_line)

    def run(self, args: dict[str, Any], device: Device) -> Any:
        """Execute the body with ``args`` bound to the parameters; the ``return`` value (None for void)."""
        env = dict(args)
        for ctype, pname in self.params:
            if pname not in env:
                raise InputError(pname, f"{self.name} takes it ({ctype}) and it was not given")
        try:
            _Exec(self, env, device).block(0, len(self.tokens))
        except _Return as ret:
            return ret.value
        return None

    def fail(self, tok: Tok | None, why: str) -> InputError:
        where = f"{self.file.as_posix()}:{tok.line}" if tok else self.file.as_posix()
        return InputError(where, f"{self.name}: {why}")


class _Exec:
    """A recursive-descent reader that executes as it parses (the bodies are a few statements long)."""

    def __init__(self, fn: Wrapper, env: dict[str, Any], device: Device) -> None:
        self.fn, self.t, self.env, self.device = fn, fn.tokens, env, device
        self.i = 0
        self.live = True

    # ---- statements -------------------------------------------------------------------------

    def block(self, start: int, end: int) -> None:
        self.i = start
        while self.i < end:
            self.statement()

    def _peek(self, k: int = 0) -> str:
        return self.t[self.i + k].text if self.i + k < len(self.t) else ""

    def _expect(self, text: str) -> None:
        if self._peek() != text:
            raise self.fn.fail(self.t[min(self.i, len(self.t) - 1)] if self.t else None,
                               f"expected {text!r}, found {self._peek()!r}")
        self.i += 1

    def statement(self) -> None:
        tok = self._peek()
        if tok == "{":
            self.i += 1
            while self._peek() != "}":
                if self.i >= len(self.t):
                    raise self.fn.fail(self.t[-1], "unbalanced braces")
                self.statement()
            self.i += 1
        elif tok == ";":
            self.i += 1
        elif tok == "if":
            self.i += 1
            self._expect("(")
            cond = self.expr()
            self._expect(")")
            self._branch(bool(_truth(cond)) if self.live else False)
            if self._peek() == "else":
                self.i += 1
                self._branch(not _truth(cond) if self.live else False)
        elif tok == "return":
            self.i += 1
            value = None if self._peek() == ";" else self.expr()
            self._expect(";")
            if self.live:
                raise _Return(value)
        else:
            self.simple()

    def _branch(self, taken: bool) -> None:
        outer = self.live
        self.live = outer and taken
        self.statement()
        self.live = outer

    def simple(self) -> None:
        start = self.i
        depth, end, assign, launch = 0, None, None, None
        j = self.i
        while j < len(self.t):
            text = self.t[j].text
            if text in "([{":
                depth += 1
            elif text in ")]}":
                depth -= 1
            elif depth == 0 and text == ";":
                end = j
                break
            elif depth == 0 and text == "=" and assign is None:
                assign = j
            elif depth == 0 and text == "<<<" and launch is None:
                launch = j
            j += 1
        if end is None:
            raise self.fn.fail(self.t[start], "a statement without its ';'")
        if launch is not None:
            self._launch(start, launch, end)
        elif assign is None and self.t[start].text == "dim3" and end - start >= 3:
            name = self.t[start + 1].text
            self.i = start + 2
            dims = self._args() if self._peek() == "(" else [1]
            if self.i != end:
                raise self.fn.fail(self.t[self.i], f"cannot read {self._text(start, end)!r}")
            if self.live:
                self.env[name] = [int(d) for d in dims]
        elif assign is not None:
            names = [t.text for t in self.t[start:assign]]
            self.i = assign + 1
            value = self.expr()
            if self.i != end:
                raise self.fn.fail(self.t[self.i], f"cannot read {self._text(start, end)!r}")
            if self.live:
                ctype = " ".join(n for n in names[:-1] if n not in ("const", "constexpr", "static"))
                self.env[names[-1]] = _narrow(ctype, value)
        else:
            self.i = start
            value = self.expr()
            if self.i != end:
                raise self.fn.fail(self.t[self.i], f"cannot read {self._text(start, end)!r}")
            del value
        self.i = end + 1

    def _launch(self, start: int, at: int, end: int) -> None:
        if at - start != 1:
            raise self.fn.fail(self.t[start], f"cannot read the launch {self._text(start, end)!r}")
        kernel = self.t[start].text
        self.i = at + 1
        config = [self.expr()]
        while self._peek() == ",":
            self.i += 1
            config.append(self.expr())
        self._expect(">>>")
        args = self._args()
        if self.i != end:
            raise self.fn.fail(self.t[self.i], f"cannot read the launch {self._text(start, end)!r}")
        if not self.live:
            return
        grid, block = _dim(config[0]), _dim(config[1])
        smem = int(config[2]) if len(config) > 2 else 0
        self.device.launch(kernel, grid, block, smem, args)

    def _text(self, start: int, end: int) -> str:
        return " ".join(t.text for t in self.t[start:end])

    # ---- expressions ------------------------------------------------------------------------

    def expr(self) -> Any:
        cond = self._binary(0)
        if self._peek() != "?":
            return cond
        self.i += 1
        outer, taken = self.live, self.live and _truth(cond)
        self.live = taken  # the branch not taken is read, not executed (it may call .get() on a null optional)
        yes = self.expr()
        self._expect(":")
        self.live = outer and not taken
        no = self.expr()
        self.live = outer
        return yes if taken else no

    _LEVELS = (("||",), ("&&",), ("|",), ("^",), ("&",), ("==", "!="), ("<", ">", "<=", ">="), ("<<", ">>"),
               ("+", "-"), ("*", "/", "%"))

    def _binary(self, level: int) -> Any:
        if level == len(self._LEVELS):
            return self._unary()
        left = self._binary(level + 1)
        while self._peek() in self._LEVELS[level]:
            op = self._peek()
            self.i += 1
            right = self._binary(level + 1)
            left = _apply(op, left, right, self)
        return left

    def _unary(self) -> Any:
        tok = self._peek()
        if tok in ("-", "+", "!", "~"):
            self.i += 1
            value = self._unary()
            return {"-": lambda v: -v, "+": lambda v: v, "!": lambda v: int(not _truth(v)),
                    "~": lambda v: ~v}[tok](value)
        return self._postfix(self._primary())

    def _type_args(self) -> str:
        """``<...>`` after a name: the type text inside."""
        self._expect("<")
        depth, parts = 1, []
        while depth:
            tok = self._peek()
            self.i += 1
            depth += {"<": 1, ">": -1, ">>": -2}.get(tok, 0)
            if depth > 0:
                parts.append(tok)
        return " ".join(parts)

    def _primary(self) -> Any:
        tok = self.t[self.i] if self.i < len(self.t) else None
        if tok is None:
            raise self.fn.fail(self.t[-1] if self.t else None, "the body ends inside an expression")
        text = tok.text
        if text == "(":
            self.i += 1
            value = self.expr()
            self._expect(")")
            return value
        if text == "{":
            self.i += 1
            items = []
            while self._peek() != "}":
                items.append(self.expr())
                if self._peek() == ",":
                    self.i += 1
            self.i += 1
            return items
        if text.startswith('"'):
            self.i += 1
            return text[1:-1]
        if text[0].isdigit():
            self.i += 1
            return int(re.sub(r"[uUlL]+$", "", text), 0)
        if not re.fullmatch(r"[A-Za-z_]\w*", text):
            raise self.fn.fail(tok, f"unexpected {text!r}")
        self.i += 1
        if text in ("const_cast", "static_cast", "reinterpret_cast"):
            ctype = self._type_args()
            self._expect("(")
            value = self.expr()
            self._expect(")")
            return _cast(ctype, value)
        if text == "nullptr":
            return None
        if text in ("true", "false"):
            return int(text == "true")
        name = text
        while self._peek() == "::":
            self.i += 1
            name += "::" + self._peek()
            self.i += 1
        if self._peek() == "(":
            return self._call(name, tok)
        if name.startswith("paddle::DataType::"):
            return DATATYPES[name.rsplit("::", 1)[1]]
        if name in self.env:
            return self.env[name]
        if name in self.fn.macros:
            return int(self.fn.macros[name])
        if not self.live:
            return 0
        raise self.fn.fail(tok, f"unknown name {name!r}")

    def _args(self) -> list[Any]:
        self._expect("(")
        args = []
        while self._peek() != ")":
            args.append(self.expr())
            if self._peek() == ",":
                self.i += 1
        self.i += 1
        return args

    def _call(self, name: str, tok: Tok) -> Any:
        args = self._args()
        if not self.live:
            return 0
        short = name.removeprefix("std::")
        if name in CHECKS:
            held = _truth(args[0]) if name in ("PD_CHECK", "PADDLE_ENFORCE") else _apply(
                {"EQ": "==", "NE": "!=", "GT": ">", "GE": ">=", "LT": "<", "LE": "<="}[name[-2:]], args[0], args[1], self)
            if not held:
                raise KernelFault(f"{self.fn.name}: {name} at {self.fn.file.as_posix()}:{tok.line} does not hold")
            return 0
        if name in STATUS_CALLS or name == "dim3":
            return [int(a) for a in args] if name == "dim3" else 0
        if short in ("min", "max") and len(args) == 2:
            return (min if short == "min" else max)(args[0], args[1])
        if name in ("paddle::full", "paddle::empty", "paddle::zeros"):
            shape = tuple(int(x) for x in args[0])
            fill = int(args[1]) if name == "paddle::full" else (0 if name == "paddle::zeros" else None)
            dtype = args[2] if name == "paddle::full" else args[1]
            return self.device.alloc(f"{name}#{tok.line}", shape, dtype, fill)
        raise self.fn.fail(tok, f"calls {name}(), which this reader does not execute")

    def _postfix(self, value: Any) -> Any:
        while True:
            tok = self._peek()
            if tok == "[":
                self.i += 1
                index = self.expr()
                self._expect("]")
                value = value[int(index)] if self.live else 0
            elif tok == ".":
                self.i += 1
                member = self._peek()
                self.i += 1
                ctype = self._type_args() if self._peek() == "<" else ""
                args = self._args() if self._peek() == "(" else None
                value = _member(value, member, ctype, args, self) if self.live else 0
            else:
                return value


def _member(value: Any, member: str, ctype: str, args: list[Any] | None, ex: _Exec) -> Any:
    tok = ex.t[ex.i - 1]
    if isinstance(value, Tensor):
        if member == "shape":
            return list(value.shape)
        if member == "data":
            want = CTYPES.get(ctype)
            if want is None:
                raise ex.fn.fail(tok, f"data<{ctype}>() is a type this reader does not know")
            if np.dtype(want) != np.dtype(value.dtype):
                raise InputError(value.name, f"is {np.dtype(value.dtype)}, but {ex.fn.name} reads it as "
                                 f"data<{ctype}>() ({np.dtype(want)})")
            return Ptr(value, want)
        if member == "get":
            return value
        if member in ("stream", "place"):
            return Opaque(member)
        if member == "numel":
            return int(np.prod(value.shape))
    if isinstance(value, list) and member == "size":
        return len(value)
    raise ex.fn.fail(tok, f".{member}() on {type(value).__name__} is not something this reader executes")


def _truth(value: Any) -> bool:
    return value is not None and (not isinstance(value, int) or value != 0)


def _c_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _apply(op: str, a: Any, b: Any, ex: _Exec) -> Any:
    if not ex.live:
        return 0
    if not (isinstance(a, int) and isinstance(b, int)):
        raise ex.fn.fail(ex.t[ex.i - 1], f"{op} on {type(a).__name__} and {type(b).__name__}")
    if op in ("/", "%") and b == 0:
        raise ex.fn.fail(ex.t[ex.i - 1], "division by zero in the host wrapper")
    table: dict[str, Callable[[int, int], int]] = {
        "||": lambda x, y: int(bool(x) or bool(y)), "&&": lambda x, y: int(bool(x) and bool(y)),
        "|": lambda x, y: x | y, "^": lambda x, y: x ^ y, "&": lambda x, y: x & y,
        "==": lambda x, y: int(x == y), "!=": lambda x, y: int(x != y), "<": lambda x, y: int(x < y),
        ">": lambda x, y: int(x > y), "<=": lambda x, y: int(x <= y), ">=": lambda x, y: int(x >= y),
        "<<": lambda x, y: x << y, ">>": lambda x, y: x >> y, "+": lambda x, y: x + y, "-": lambda x, y: x - y,
        "*": lambda x, y: x * y, "/": _c_div, "%": lambda x, y: x - _c_div(x, y) * y}
    return table[op](a, b)


def _narrow(ctype: str, value: Any) -> Any:
    """An ``int``/``int32_t`` declaration keeps the low 32 bits, as C++ converts."""
    if isinstance(value, int) and ctype in ("int", "int32_t"):
        return int(np.array(value & 0xFFFFFFFF, dtype=np.uint32).astype(np.int32))
    return value


def _cast(ctype: str, value: Any) -> Any:
    base = ctype.replace("const", "").replace("*", "").strip()
    if isinstance(value, Ptr) and "*" in ctype and np.dtype(CTYPES.get(base, value.dtype)) != np.dtype(value.dtype):
        return Ptr(value.tensor, CTYPES[base])
    return _narrow(base, value) if "*" not in ctype else value


def _dim(value: Any) -> tuple[int, ...]:
    if isinstance(value, list):
        return tuple(int(v) for v in value)
    return (int(value),)
