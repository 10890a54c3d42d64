"""The one error type for bad user input.

Every command turns an ``InputError`` into a single line on stderr and exit code 2, so a user
who hands the suite a malformed state or responses file sees which field, which index and which
rule failed, never a traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """A user-supplied input broke a rule; ``str()`` is the whole one-line message."""

    def __init__(self, field: str, rule: str, index: object = None) -> None:
        self.field = field
        self.index = index
        self.rule = rule
        where = field if index is None else f"{field}[{_fmt_index(index)}]"
        super().__init__(f"{where}: {rule}")


class MissingDependency(RuntimeError):
    """An optional dependency (an extra) is needed for this command and is not installed."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs {package}, which is not installed: "
            f"pip install 'dsa-validation[{extra}]'"
        )


def _fmt_index(index: object) -> str:
    if isinstance(index, tuple):
        return ", ".join(str(i) for i in index)
    return str(index)
