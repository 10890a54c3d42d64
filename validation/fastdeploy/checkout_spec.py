"""``fastdeploy:PATH`` and ``fastdeploy:PATH+FILE.patch``: the spec a baseline or candidate may be, resolved.

The seam calls ``resolve_spec`` for any spec starting ``fastdeploy:``; it returns a display name that says what
runs (the code shape, the commit, and for every op the checkout calls whether its compiled kernel or a named
model of it runs) and the class the seam instantiates once per run.
"""

from __future__ import annotations

from pathlib import Path

from validation.errors import InputError
from validation.fastdeploy.checkout import MODEL, Checkout, RUNNER, STEP_FUNCTION, Shape, called_names, open_checkout, read_commit
from validation.fastdeploy.op_provider import OpProvider
from validation.fastdeploy.patching import patched_copy
from validation.fastdeploy.source_exec import LEGACY_CLASS_METHOD, CheckoutPath, path_class

PREFIX = "fastdeploy:"
PATCH_SUFFIXES = (".patch", ".diff")


def split_spec(spec: str, field_name: str) -> tuple[str, str | None]:
    """``(checkout path, patch path or None)`` from ``fastdeploy:PATH[+PATCH]``."""
    body = spec[len(PREFIX):]
    if not body:
        raise InputError(field_name, f"{spec!r}: give a checkout, fastdeploy:PATH or fastdeploy:PATH+FILE.patch")
    root, plus, patch = body.rpartition("+")
    if plus and patch.endswith(PATCH_SUFFIXES) and root:
        return root, patch
    return body, None


def resolve_spec(spec: str, field_name: str) -> tuple[str, type[CheckoutPath]]:
    """Display name and step-function class of a ``fastdeploy:`` spec (exit 2 on anything that is not a checkout)."""
    root, patch = split_spec(spec, field_name)
    try:
        if patch is None:
            checkout = open_checkout(root)
        else:
            base_commit = read_commit(Path(root).expanduser().resolve())
            copy = patched_copy(root, patch)
            checkout = open_checkout(str(copy), f"{base_commit}+{copy.name.split('+', 1)[1]}")
    except InputError as exc:
        raise InputError(field_name, str(exc)) from None
    kernels = "; ".join(f"{op}: {short_origin(origin)}" for op, origin in op_origins(checkout).items())
    return f"{spec} [{checkout.shape.name.lower()} @{checkout.commit}; {kernels}]", path_class(checkout)


def op_origins(checkout: Checkout) -> dict[str, str]:
    """Each custom op the checkout's slot-mapping lines call, and what runs it here."""
    if checkout.shape is Shape.LEGACY:
        node = checkout.function(MODEL, LEGACY_CLASS_METHOD)
    else:
        node = checkout.function(RUNNER, STEP_FUNCTION)
    ops = OpProvider(checkout)
    return {op: ops.origin(op) for op in sorted(called_names(node) & set(ops.namespace()))}


def short_origin(origin: str) -> str:
    """``kernel: model positions_v1 of X.cu@c (why)`` -> ``model positions_v1 (why)``; compiled origins unchanged."""
    if not origin.startswith("kernel: model "):
        return origin
    model, _, rest = origin.removeprefix("kernel: ").partition(" of ")
    why = rest[rest.find(" ("):] if " (" in rest else ""
    return f"{model}{why}" if rest else origin.removeprefix("kernel: ")
