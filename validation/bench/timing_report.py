"""Samples into figures: per-row statistics, the headline ratio, the fit against layers, the table,
the JSON document and the plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from validation import atomic_file

SCHEMA = "dsa-validation/bench/1"
PERCENTILES = (10, 25, 75, 90)
MIN_REPEATS = 100  # below this a run is a smoke test, and the table says so
MODES = {
    "eager": "each step launched kernel by kernel from Python (device time from the first launch to the last kernel's end)",
    "graph": "each step captured alone into a CUDA graph and replayed (device time of one replay)",
    "in_graph": "20 steps captured back to back into one graph and replayed (device time per step)",
}
# On a host-timed backend the one mode is a whole seam call on the CPU.
HOST_MODE = "each step one whole seam call on the CPU (host wall-clock: input conversion, ops, read-back)"
LINE_STYLES = {"eager": ":", "graph": "-", "in_graph": "--"}


def stats(samples: list[float]) -> dict[str, float]:
    """Median, p10/p25/p75/p90 and min of microsecond samples (rounded to 0.01 us)."""
    arr = np.asarray(samples, dtype=float)
    out = {"median_us": float(np.median(arr)), "min_us": float(arr.min())}
    out.update({f"p{p}_us": float(v) for p, v in zip(PERCENTILES, np.percentile(arr, PERCENTILES))})
    return {k: round(v, 2) for k, v in out.items()} | {"samples": int(arr.size)}


def _median(doc: dict, shape: str, path: str, layers: int, mode: str) -> float | None:
    for row in doc["results"]:
        if (row["shape"], row["path"], row["layers"], row["mode"]) == (shape, path, layers, mode) and row["stats"]:
            return row["stats"]["median_us"]
    return None


def derive(doc: dict) -> None:
    """Add the headline (legacy / single_step per shape, mode and layer count) and the straight-line
    fit of each path's median against the layer count (slope, intercept, r^2) to ``doc``."""
    doc["headline"], doc["fits"] = [], []
    for shape in (s["name"] for s in doc["shapes"]):
        for mode in doc["modes"]:
            for layers in doc["layers"]:
                legacy, single = (_median(doc, shape, p, layers, mode) for p in ("legacy", "single_step"))
                if legacy is not None and single:
                    doc["headline"].append({"shape": shape, "mode": mode, "layers": layers, "legacy_us": legacy,
                                            "single_step_us": single, "ratio": round(legacy / single, 2)})
            for path in doc["paths"]:
                points = [(layers, m) for layers in doc["layers"]
                          if (m := _median(doc, shape, path, layers, mode)) is not None]
                if len(points) < 3:
                    continue
                x, y = np.asarray(points, dtype=float).T
                slope, intercept = np.polyfit(x, y, 1)
                residual = float(((y - (slope * x + intercept)) ** 2).sum())
                total = float(((y - y.mean()) ** 2).sum())
                doc["fits"].append({"shape": shape, "mode": mode, "path": path,
                                    "slope_us_per_layer": round(float(slope), 3), "intercept_us": round(float(intercept), 2),
                                    "r2": round(1 - residual / total, 4) if total > 0 else None})


def _cell(row: dict | None) -> str:
    if row is None:
        return "-"
    if row.get("error"):
        return "error"
    s = row["stats"]
    digits = 2 if s["median_us"] < 10 else 1
    return f"{s['median_us']:.{digits}f} [{s['p10_us']:.{digits}f}-{s['p90_us']:.{digits}f}]"


def render(doc: dict) -> str:
    """The table as text: one block per mode, a row per shape and path, a column per layer count."""
    rows = {(r["shape"], r["path"], r["layers"], r["mode"]): r for r in doc["results"]}
    lines = [f"dsa-validate bench: backend {doc['backend']}, {doc['timer']}",
             "  " + ", ".join(f"{k} {v}" for k, v in doc["environment"].items()),
             f"  median [p10-p90] in us per step, {doc['repeats']} samples each after {doc['warmup']} warm-up runs"]
    if doc["repeats"] < MIN_REPEATS:
        lines.append(f"  (fewer than {MIN_REPEATS} samples per figure: a smoke run, not a measurement)")
    lines += [f"  {line}" for line in doc["skipped"]]
    width = max([len(p) for p in doc["paths"]] + [10])
    for mode in doc["modes"]:
        lines.append("")
        lines.append(f"{mode}: {MODES.get(mode, '') if doc['bandwidth'] else HOST_MODE}")
        lines.append(f"  {'shape':<20} {'path':<{width}} " + " ".join(f"{'L=' + str(n):>22}" for n in doc["layers"])
                     + (f" {'bytes@L=' + str(doc['layers'][-1]):>14} {'BW floor us':>11}" if doc["bandwidth"] else ""))
        for shape in (s["name"] for s in doc["shapes"]):
            for path in doc["paths"]:
                cells = [rows.get((shape, path, n, mode)) for n in doc["layers"]]
                last = cells[-1] or {}
                floor = last.get("bandwidth_floor_us")
                traffic = f" {last.get('bytes') or '-':>14} {('%.4f' % floor) if floor is not None else '-':>11}"
                lines.append(f"  {shape:<20} {path:<{width}} " + " ".join(f"{_cell(c):>22}" for c in cells)
                             + (traffic if doc["bandwidth"] else ""))
    floor = doc.get("floor") or {}
    if floor:
        lines.append("")
        lines.append("floor: one empty kernel, " + ", ".join(
            f"{mode} {floor[mode]['median_us']:.2f} us [{floor[mode]['p10_us']:.2f}-{floor[mode]['p90_us']:.2f}]"
            for mode in doc["modes"] if floor.get(mode)))
    if doc.get("bandwidth"):
        lines.append(f"bandwidth floor = bytes / {doc['bandwidth']['bytes_per_s'] / 1e12:.1f} TB/s "
                     f"({doc['bandwidth']['source']})")
    errors = [r for r in doc["results"] if r.get("error")]
    for row in errors:
        lines.append(f"error: {row['shape']} {row['path']} L={row['layers']} {row['mode']}: {row['error']}")
    top = max(doc["layers"])
    heads = [h for h in doc["headline"] if h["layers"] == top]
    if heads:
        lines.append("")
        lines.append(f"headline, legacy / single_step at L={top}:")
        lines += [f"  {h['shape']:<20} {h['mode']:<8} {h['legacy_us']:>9.2f} / {h['single_step_us']:.2f} us = {h['ratio']:.1f}x"
                  for h in heads]
    fits = [f for f in doc["fits"] if f["path"] in ("legacy", "single_step")]
    if fits:
        lines.append("")
        lines.append("growth with layers (least-squares line through the medians):")
        lines += [f"  {f['shape']:<20} {f['mode']:<8} {f['path']:<12} {f['slope_us_per_layer']:+8.3f} us/layer, "
                  f"intercept {f['intercept_us']:.1f} us, r^2 {f['r2']}" for f in fits]
    return "\n".join(lines)


def write_json(doc: dict, path: Path) -> None:
    atomic_file.write_text(path, json.dumps(doc, indent=1) + "\n")


def read_json(path: Path) -> dict:
    from validation.errors import InputError  # noqa: PLC0415

    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError("from-json", f"cannot read {path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise InputError("from-json", f"{path} is not a bench result (schema {SCHEMA!r})")
    return doc


def plot(doc: dict, out: Path) -> None:
    """Median cost against layers, one panel per shape, a line per path and mode, the floor dashed."""
    from validation.errors import MissingDependency  # noqa: PLC0415

    try:
        import matplotlib  # noqa: PLC0415
    except ImportError:
        raise MissingDependency("matplotlib", "bench", "--plot") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    from matplotlib.lines import Line2D  # noqa: PLC0415

    shapes = [s["name"] for s in doc["shapes"]]
    cols = min(2, len(shapes))
    rows_n = (len(shapes) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(6 * cols, 3.6 * rows_n + 0.8), squeeze=False)
    colours = dict(zip(doc["paths"], plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3))
    for ax, shape in zip(axes.flat, shapes):
        for mode in doc["modes"]:
            style = LINE_STYLES.get(mode, "-")
            for path in doc["paths"]:
                pts = [(n, m) for n in doc["layers"] if (m := _median(doc, shape, path, n, mode)) is not None]
                if pts:
                    ax.plot(*zip(*pts), marker="o", ms=3, color=colours[path], ls=style)
            floor = (doc.get("floor") or {}).get(mode)
            if floor:
                ax.axhline(floor["median_us"], color="grey", lw=0.8, ls=style)
        ax.set_title(shape, fontsize=10)
        ax.set_xlabel("layers (L)")
        ax.set_ylabel("us per step (median, log scale)")
        ax.set_yscale("log")
        ax.set_xticks(doc["layers"])
        ax.grid(True, which="both", lw=0.3)
    for ax in list(axes.flat)[len(shapes):]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=colours[p], marker="o", ms=3, label=p) for p in doc["paths"]]
    handles += [Line2D([], [], color="black", ls=LINE_STYLES.get(m, "-"), label=m) for m in doc["modes"]]
    if doc.get("floor"):
        handles.append(Line2D([], [], color="grey", lw=0.8, label="empty kernel (floor)"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=8, frameon=False)
    fig.suptitle(f"slot mapping per step: {doc['backend']}, {doc['timer']}", fontsize=10)
    fig.tight_layout(rect=(0, 0.6 / (3.6 * rows_n + 0.8), 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
