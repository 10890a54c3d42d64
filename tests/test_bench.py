"""``dsa-validate bench``: the table, the JSON and the plot, on Paddle (CPU) and on CUDA where a GPU is.

No timing is asserted here (figures live in BENCHMARKS.md); these tests check that every path is
timed on every shape and layer count, that the JSON carries what the table shows, that what is not
measured is said, and that the timed CUDA work is checked against the seam call.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support import requires_paddle
from validation.cli import entry as cli
from validation import seam
from validation.bench import timing_report as report, shapes, traffic
from validation.impls import cuda_paths, paddle_paths

SMALL = ["--layers", "1,3", "--shapes", "decode:4x1,decode:3x2,prefill:2x16", "--repeats", "2", "--warmup", "1"]
CUDA_REASON = cuda_paths.available()


def _bench(tmp_path: Path, capsys, *extra: str) -> tuple[int, str, str, dict]:
    out = tmp_path / "bench.json"
    code = cli.main(["bench", *SMALL, "--json", str(out), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err, json.loads(out.read_text())


def _check_document(doc: dict, backend: str, modes: list[str]) -> None:
    paths = sorted(seam.BUILTINS[backend])
    assert doc["schema"] == report.SCHEMA and doc["backend"] == backend and doc["modes"] == modes
    assert sorted(doc["paths"]) == paths and doc["layers"] == [1, 3]
    assert [s["name"] for s in doc["shapes"]] == ["decode 4x1", "decode 3x2 MTP", "prefill 2x16"]
    keys = {(r["shape"], r["path"], r["layers"], r["mode"]) for r in doc["results"]}
    assert len(keys) == len(doc["results"]) == 3 * len(paths) * 2 * len(modes)
    for row in doc["results"]:
        assert row["error"] is None, row
        s = row["stats"]
        assert s["samples"] == 2 and s["min_us"] <= s["p10_us"] <= s["median_us"] <= s["p90_us"]
    ratios = {(h["shape"], h["mode"], h["layers"]) for h in doc["headline"]}
    assert len(ratios) == 3 * 2 * len(modes)


@requires_paddle
def test_paddle_bench_prints_the_table_and_writes_the_json(tmp_path: Path, capsys) -> None:
    code, out, err, doc = _bench(tmp_path, capsys, "--backend", "paddle", "--graph")
    assert code == 0, err
    _check_document(doc, "paddle", ["eager"])
    assert "host wall-clock" in doc["timer"] and "host wall-clock" in out
    assert doc["skipped"] == [report_line := "graph timing skipped: the Paddle backend runs on the CPU here, which has no CUDA graphs to capture"]
    assert report_line in out and report_line in err
    assert "smoke run, not a measurement" in out
    block = out.split("\neager: ")[1].split("\n\n")[0].splitlines()
    table = [line for line in block if line.startswith("  decode 4x1 ")]
    assert [line.split()[2] for line in table] == doc["paths"]
    assert all(len(line.split("[")) == 3 for line in table)  # one cell per layer count


def test_a_result_renders_and_plots_again_from_its_json(tmp_path: Path, capsys) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install 'dsa-validation[bench]')")
    doc = {"schema": report.SCHEMA, "backend": "cuda", "timer": "CUDA events (device time)", "environment": {"gpu": "X"},
           "date": "2026-01-01 00:00 UTC", "command": "dsa-validate bench", "repeats": 100, "warmup": 1,
           "layers": [1, 5, 16], "shapes": [shapes.Shape("decode", 64, 1).to_dict()], "paths": ["legacy", "single_step"],
           "modes": ["eager", "graph"], "skipped": [], "floor": {"graph": report.stats([2.0, 2.1])},
           "bandwidth": {"bytes_per_s": traffic.H200_BANDWIDTH, "source": traffic.BANDWIDTH_SOURCE}, "results": []}
    for mode in doc["modes"]:
        for layers in doc["layers"]:
            doc["results"].append({"shape": "decode 64x1", "path": "legacy", "layers": layers, "mode": mode, "bytes": 1,
                                   "bandwidth_floor_us": 0.0, "error": None, "stats": report.stats([3.0 * layers])})
            doc["results"].append({"shape": "decode 64x1", "path": "single_step", "layers": layers, "mode": mode,
                                   "bytes": 1, "bandwidth_floor_us": 0.0, "error": None, "stats": report.stats([3.0])})
    report.derive(doc)
    fit = {(f["path"], f["mode"]): f for f in doc["fits"]}
    assert fit["legacy", "graph"]["slope_us_per_layer"] == 3.0 and fit["legacy", "graph"]["r2"] == 1.0
    assert fit["single_step", "graph"]["slope_us_per_layer"] == 0.0
    assert [h["ratio"] for h in doc["headline"] if h["mode"] == "graph"] == [1.0, 5.0, 16.0]
    saved, png = tmp_path / "r.json", tmp_path / "r.png"
    report.write_json(doc, saved)
    assert cli.main(["bench", "--from-json", str(saved), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "48.00 / 3.00 us = 16.0x" in out and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("args", "message"), [
    (["--shapes", "decode:0x1"], "shapes[0]: 'decode:0x1' is not decode:BSZxTOKENS"),
    (["--shapes", "decode:64x1,prefill:9000x1024"], "shapes[1]:"),
    (["--layers", "1,0"], "layers[1]: must be between 1 and"),
    (["--layers", "1,x"], "layers[1]: 'x' is not an integer"),
    (["--paths", "legacy,nope"], "paths[1]: 'nope' is not a paddle path"),
])
def test_bad_options_are_one_line_and_exit_2(args: list[str], message: str, capsys) -> None:
    assert cli.main(["bench", "--backend", "paddle", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bytes_grow_with_layers_only_on_the_legacy_path() -> None:
    shape = shapes.Shape("decode", 64, 1)
    legacy = [traffic.step_bytes(paddle_paths.Legacy, shape, n) for n in (1, 2, 61)]
    assert legacy[1] - legacy[0] == (legacy[2] - legacy[0]) / 60 > 0
    single = {traffic.step_bytes(paddle_paths.SingleStep, shape, n) for n in (1, 2, 61)}
    assert len(single) == 1 and single.pop() < legacy[0]
    assert traffic.step_bytes(object, shape, 1) is None


def test_every_shape_is_a_state_the_suite_accepts() -> None:
    for shape in shapes.parse_shapes(shapes.DEFAULT_SHAPES):
        state = shape.state()
        assert state.num_tokens == state.padded_num_tokens == shape.num_tokens


@pytest.mark.skipif(CUDA_REASON is not None, reason=f"CUDA backend cannot run here: {CUDA_REASON}")
def test_cuda_bench_times_eager_and_graph_and_checks_the_timed_work(tmp_path: Path, capsys) -> None:
    code, out, err, doc = _bench(tmp_path, capsys, "--backend", "cuda", "--graph")
    assert code == 0, out + err
    _check_document(doc, "cuda", ["eager", "graph", "in_graph"])
    assert set(doc["floor"]) == {"eager", "graph", "in_graph"} and doc["environment"]["gpu"]
    assert all(row["bytes"] > 0 for row in doc["results"] if row["path"] in ("legacy", "single_step", "fused"))


@pytest.mark.skipif(CUDA_REASON is not None, reason=f"CUDA backend cannot run here: {CUDA_REASON}")
def test_timed_work_that_disagrees_with_the_seam_call_is_an_error() -> None:
    from validation.bench.cuda_timer import CudaTimer, StepMismatch  # noqa: PLC0415

    class Lying(cuda_paths.SingleStep):
        def __call__(self, inputs):
            result = super().__call__(inputs)
            return result | {"slot_mapping": result["slot_mapping"] + 1}

    inputs = shapes.Shape("decode", 4, 1).state().step_inputs()
    samples = CudaTimer(3, 1).path(cuda_paths.SingleStep(), inputs, graph=True)
    assert {k: len(v) for k, v in samples.items()} == {"eager": 3, "graph": 3, "in_graph": 3}
    with pytest.raises(StepMismatch, match="slot_mapping differs"):
        CudaTimer(3, 1).path(Lying(), inputs, graph=True)
