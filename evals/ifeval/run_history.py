"""``dsa-validate ifeval history``: the nightly IFEval runs in time order, each against the last and a reference.

Why: a nightly job needs more than one before/after pair: tonight against last night (what changed since
yesterday) and against a pinned reference run (what drifted since the release everyone trusts), with the
trend visible. A slow slide of 0.5 points a night passes every nightly pair and fails against the reference.

How: every run folder written by ``ifeval run`` (``scores.json`` + ``responses.jsonl``; a folder of such
folders is read as its runs) is ordered by the start of its first session (``run.json``; the time
``scores.json`` was written when there is none). Each run's four metrics get a bootstrap interval over its
prompts; each run is compared with the previous one and with the reference by ``ifeval compare``'s paired
tests (``comparison.compare_loaded``: paired-bootstrap intervals of the difference, exact McNemar, the same
gate). The verdict is the newest run's gate against the reference: exit 1 when it dropped by more than the
margin, 0 otherwise, 2 on bad input (one line).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evals.ifeval import comparison
from evals.ifeval.client import RUN_JSON, SCORES_JSON
from validation.errors import InputError


def find_runs(paths: list[str | Path], skipped: list[str] | None = None) -> list[Path]:
    """Each path as a run folder, or a folder of run folders (its subfolders holding ``scores.json``; the others
    are added to ``skipped``, for the report)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise InputError("RUN_DIR", f"{path} is not a folder")
        if (path / SCORES_JSON).is_file():
            found.append(path)
            continue
        folders = sorted(p for p in path.iterdir() if p.is_dir() and p.name != "history")
        inside = [p for p in folders if (p / SCORES_JSON).is_file()]
        if skipped is not None:
            skipped.extend(str(p) for p in folders if p not in inside)
        if not inside:
            raise InputError("RUN_DIR", f"{path} holds no scores.json and no run folders with one "
                             "(finish a run with ifeval run --resume)")
        found.extend(inside)
    unique = {p.resolve(): p for p in found}  # a run named twice counts once
    return list(unique.values())


def started(folder: Path) -> datetime:
    """When a run began: its run.json's first session, else when its scores.json was written."""
    meta = folder / RUN_JSON
    if meta.is_file():
        try:
            return datetime.fromisoformat(json.loads(meta.read_text(encoding="utf-8"))["started"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise InputError(str(meta), "not a run.json written by dsa-validate ifeval run "
                             "(its 'started' is missing or not an ISO time)") from None
    return datetime.fromtimestamp((folder / SCORES_JSON).stat().st_mtime, timezone.utc)


def history(paths: list[str | Path], *, reference: str | Path | None = None, margin: float = 1.0,
            alpha: float = 0.05, resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The runs in time order with their intervals, their comparisons and the verdict; writes nothing."""
    skipped: list[str] = []
    folders = find_runs(paths, skipped)
    if reference is not None:
        pinned = find_runs([reference])
        if len(pinned) != 1 or not (Path(reference) / SCORES_JSON).is_file():
            raise InputError("--reference", f"{reference} is not one run folder (it needs a scores.json)")
        if pinned[0].resolve() not in {f.resolve() for f in folders}:
            folders.append(pinned[0])
    dated = sorted(((started(f), str(f), f) for f in folders), key=lambda t: (_utc(t[0]), t[1]))
    runs = [dict(comparison.load_run(f, "RUN_DIR"), started=when.isoformat(), name=f.name or str(f))
            for when, _, f in dated]
    ref_index = 0 if reference is None else next(i for i, (_, _, f) in enumerate(dated)
                                                 if f.resolve() == Path(reference).resolve())
    options = {"margin": margin, "alpha": alpha, "resamples": resamples, "seed": seed}
    rows = []
    for i, run in enumerate(runs):
        row: dict[str, Any] = {"name": run["name"], "folder": run["folder"], "started": run["started"],
                               "reference": i == ref_index,
                               "unanswered": sorted(k for k, v in run["verdicts"].items()
                                                    if not v.get("has_response", True)),
                               "metrics": comparison.run_intervals(run, alpha=alpha, resamples=resamples, seed=seed)}
        if i > 0:
            row["vs_previous"] = _summary(comparison.compare_loaded(runs[i - 1], run, **options))
        if i != ref_index:
            row["vs_reference"] = _summary(comparison.compare_loaded(runs[ref_index], run, **options))
        rows.append(row)
    newest = rows[-1]
    against = newest.get("vs_reference")
    if against is None:
        verdict = {"dropped": False, "reasons": [], "note": "the newest run is the reference"}
    else:
        verdict = {"dropped": not against["gate"]["passed"], "reasons": against["gate"]["reasons"]}
    return {"runs": rows, "reference": runs[ref_index]["folder"], "skipped": skipped,
            "reference_pinned": reference is not None, "settings": options, "verdict": verdict}


def _utc(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """What the history keeps of one comparison: differences with intervals, McNemar, identical answers, gate."""
    return {"against": result["before"], "prompts": result["prompts"],
            "identical_responses": result["identical_responses"],
            "metrics": {name: {k: m[k] for k in ("difference", "ci_low", "ci_high", "mcnemar") if k in m}
                        for name, m in result["metrics"].items()},
            "gate": result["gate"]}


def write(result: dict[str, Any], out: str | Path) -> dict[str, str]:
    """history.md, history.png and history.json into ``out``; their paths."""
    from evals.ifeval import run_history_report as report

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    files = {"table": str(folder / "history.md"), "chart": str(folder / "history.png"),
             "json": str(folder / "history.json")}
    report.write_chart(result, folder / "history.png")
    (folder / "history.md").write_text(report.markdown(result), encoding="utf-8")
    (folder / "history.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return files


def default_out(paths: list[str | Path], result: dict[str, Any]) -> Path:
    """A folder of runs keeps its history beside them; named runs, in the newest run's folder."""
    if len(paths) == 1 and not (Path(paths[0]) / SCORES_JSON).is_file():
        return Path(paths[0]) / "history"
    return Path(result["runs"][-1]["folder"]) / "history"
