"""Where a fuzz run's time goes: a py-spy sample of ``dsa-validate fuzz``, summed by stage.

Why: issue 18 asks for the ``ci`` profile's cost split into generation, model calls, oracle, triage and
reporting before choosing a fix. py-spy samples the real process (no tracing overhead that would inflate
Python-heavy stages, as cProfile does); each sample is charged to the innermost stage on its stack.

    py-spy record -r 200 -f raw -o /tmp/fuzz.raw -- .venv/bin/python -m validation.cli fuzz --profile ci
    .venv/bin/python benchmarks/profile_fuzz.py /tmp/fuzz.raw
"""

from __future__ import annotations

import argparse
from collections import Counter

# (stage, frame markers), innermost first wins: a frame whose text contains a marker charges its sample.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model calls (Paddle paths)", ("validation/seam.py", "validation/impls/")),
    ("oracle", ("validation/oracle.py", "properties/oracle_batch.py")),
    ("triage and property checks", ("validation/compare.py", "validation/causes.py", "properties/checks.py")),
    ("recording and reporting", ("properties/collector.py", "properties/cli.py", "(hypothesis/control.py",
                                 "hypothesis/internal/conjecture/optimiser.py")),
    ("generation (scheduler model)", ("properties/schedule_model.py", "properties/strategies.py",
                                      "validation/state.py", "properties/machine.py")),
    ("hypothesis engine", ("hypothesis/",)),
)
OTHER = "start-up, imports and the rest"


def stage_of(stack: str) -> str:
    """The stage of one collapsed stack (frames outermost first, ``;``-separated)."""
    for frame in reversed(stack.split(";")):
        for stage, markers in STAGES:
            if any(m in frame for m in markers):
                return stage
    return OTHER


def summarise(lines: list[str]) -> Counter:
    totals: Counter = Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack and count.isdigit():
            totals[stage_of(stack)] += int(count)
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", nargs="+", help="py-spy raw (collapsed) sample files")
    args = parser.parse_args()
    for path in args.raw:
        with open(path, encoding="utf-8") as handle:
            totals = summarise(handle.readlines())
        whole = sum(totals.values()) or 1
        print(f"{path}: {whole} samples")
        print("| stage | share of samples |")
        print("| --- | --- |")
        for stage, n in totals.most_common():
            print(f"| {stage} | {100 * n / whole:.1f}% |")


if __name__ == "__main__":
    main()
