"""The layout's rules, checked statically over every module (ARCHITECTURE.md states them).

- The floor (``validation/`` outside ``validation/cli/``) imports nothing from ``properties`` or ``evals``.
- No module loads one of the project's own modules through ``importlib.import_module`` (imports are plain and
  visible to readers and tools; the seam's loading of a user's ``module:NAME`` plug-in is not the project's own).
- No import circle between modules, counting imports anywhere in a module (a lazy import is still an arrow).
- No two modules share a file name, except ``__init__.py`` and ``cli.py`` (where each package registers its
  commands) and ``__main__.py``.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("validation", "properties", "evals", "fixtures")
SHARED_NAMES = {"__init__.py", "cli.py", "__main__.py"}


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the installed packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module an imported dotted name lands in (a package's ``__init__`` or a module), if any."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    """Every project module ``module`` imports, at top level or inside a function."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            hit = _resolve(target)
            if hit and hit != module:
                found.add(hit)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def test_the_scan_sees_imports() -> None:
    """The checker itself: it must see both top-level and function-level imports, or a pass means nothing."""
    assert "validation.errors" in GRAPH["validation.state"]
    assert "properties.fuzz" in GRAPH["validation.cli.job_parts"]  # imported inside a function
    assert "evals.ifeval.cli" in GRAPH["validation.cli.entry"]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("validation")
                                          and not m.startswith("validation.cli")))
def test_the_floor_imports_nothing_above_it(module: str) -> None:
    upward = sorted(m for m in GRAPH[module] if m.split(".")[0] in ("properties", "evals"))
    assert not upward, f"{MODULES[module].relative_to(REPO)} imports {', '.join(upward)} (only validation/cli/ may)"


def test_no_importlib_loads_of_our_own_modules() -> None:
    offenders = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
                arg = node.args[0] if node.args else None
                if not isinstance(arg, ast.Constant) or str(arg.value).split(".")[0] in PACKAGES:
                    if module != "validation.seam":  # the seam loads a user's module:NAME, by design
                        offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders, f"importlib.import_module of a project module: {', '.join(offenders)}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles() -> None:
    circles = _cycles(GRAPH)
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_every_file_name_says_one_job() -> None:
    names = Counter(p.name for p in MODULES.values())
    for extra in ("tests", "benchmarks"):
        names.update(p.name for p in (REPO / extra).rglob("*.py"))
    shared = sorted(n for n, count in names.items() if count > 1 and n not in SHARED_NAMES)
    assert not shared, f"file names used by more than one module: {', '.join(shared)}"
