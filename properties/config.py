"""What one fuzz run compares: baseline, candidate, block sizes, backend, layers, strictness.

The pytest plugin and the runner both fill a ``FuzzConfig``; the property modules read the current
one, so ``pytest --pyargs properties --dsa-candidate X`` and ``dsa-validate fuzz --candidate X``
exercise exactly the same properties.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from properties.strategies import DEFAULT_BLOCK_SIZES, SWEEP_BLOCK_SIZES
from validation import seam
from validation.compare import FIX, REGRESSION, SHARED_BUG
from validation.errors import InputError
from validation.options import PAD_CONTRACTS

# Layers are identical by construction in the built-in models; two are enough to catch a layer that
# diverges, at half the Paddle calls of the CLI's default.
PROPERTY_LAYERS = 2
DEFAULT_OUT = Path(".dsa/counterexamples")


@dataclass(frozen=True)
class FuzzConfig:
    baseline: str = "legacy"
    candidate: str = "single_step"
    block_sizes: tuple[int, ...] = DEFAULT_BLOCK_SIZES
    backend: str = "paddle"
    layers: int = PROPERTY_LAYERS
    strict: bool = False
    out_dir: Path = field(default=DEFAULT_OUT)
    use_known: bool = True  # findings listed in fixtures/known_findings.json are reported, not failing
    pad_contract: str = PAD_CONTRACTS[0]  # what a padded row's slot must be (validation.options)
    pre_serving: bool = False  # the state machine may skip the server's start-up (zero-filled first step)

    def known(self, verdict: str, scenario: str) -> str | None:
        """The recorded reason when this (verdict, scenario) is a known finding for these sides."""
        if not self.use_known:
            return None
        from validation.known_findings import match  # noqa: PLC0415 - reads a fixture file

        entry = match(self.baseline, self.candidate, verdict, scenario)
        return None if entry is None else f"{entry.reason} ({entry.evidence})"

    @property
    def failing_verdicts(self) -> frozenset[str]:
        """Verdicts that fail a property (and get shrunk); the others are findings to report."""
        return frozenset({REGRESSION, SHARED_BUG, FIX} if self.strict else {REGRESSION})

    @functools.cached_property
    def baseline_impl(self) -> seam.Implementation:
        return seam.resolve(self.baseline, backend=self.backend, num_layers=self.layers, field_name="baseline")

    @functools.cached_property
    def candidate_impl(self) -> seam.Implementation:
        return seam.resolve(self.candidate, backend=self.backend, num_layers=self.layers, field_name="candidate")

    def __getstate__(self) -> dict:
        """Pickled as its specs: a worker started from a fork server resolves the sides itself (a plug-in file's
        module exists only in the process that loaded it)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("baseline_impl", "candidate_impl")}

    def reproduce(self, path: Path | str) -> str:
        """The one-line command that replays a saved state through the same two sides, failing as this run did
        (``--strict`` when any finding failed it: without it ``check`` passes a SHARED-BUG)."""
        backend = "" if self.backend == "paddle" else f" --backend {self.backend}"
        contract = "" if self.pad_contract == PAD_CONTRACTS[0] else f" --pad-contract {self.pad_contract}"
        strict = " --strict" if self.strict else ""
        return (f"dsa-validate check --state {path} --baseline {self.baseline} --candidate {self.candidate}"
                f"{backend} --layers {self.layers}{contract}{strict}")


def parse_block_sizes(text: str, *, sweep: bool = False) -> tuple[int, ...]:
    """``"16,64,128"`` -> ``(16, 64, 128)``; ``sweep`` gives the sweep list. Bad input is an InputError."""
    if sweep:
        return SWEEP_BLOCK_SIZES
    sizes = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise InputError("block-sizes", f"expected positive integers separated by commas, got {part!r}")
        sizes.append(int(part))
    return tuple(dict.fromkeys(sizes))


_current = FuzzConfig()
_profile = "dev"


def current() -> FuzzConfig:
    """The configuration the property modules run under (set by the plugin or the runner)."""
    return _current


def set_current(config: FuzzConfig) -> None:
    global _current
    _current = config


def current_profile() -> str:
    """The hypothesis profile the pytest property modules run under."""
    return _profile


def set_profile(name: str) -> None:
    global _profile
    _profile = name
