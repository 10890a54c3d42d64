"""``--backend cuda``: the same code paths as real CUDA kernels. Runs only where a GPU and CuPy are.

On a machine without them every test here is skipped with the reason printed (``pytest -ra``).
"""

from __future__ import annotations

import pytest

from support import load_fixture, make_state, state_files
from validation import compare, seam
from validation.impls import cuda_paths
from validation.state import BatchState

REASON = cuda_paths.available()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"CUDA backend cannot run here: {REASON}")

IMPLS = ("legacy", "single_step", "chunked_fix", "get_position_ids", "fused", "tail_reset", "tail_reset_fused")


@pytest.mark.parametrize(("path", "pair"), [(p, pair) for p in state_files() for pair in load_fixture(p)["triage"]],
                         ids=lambda x: getattr(x, "stem", x))
def test_recorded_triage_on_the_gpu(path, pair: str) -> None:
    doc = load_fixture(path)
    base, cand = pair.split("->")
    resolve = lambda name: seam.resolve(name, backend="cuda")  # noqa: E731
    report = compare.compare_state(BatchState.from_dict(doc["state"]), resolve(base), resolve(cand), 2)
    assert sorted({f"{f.verdict} {f.consumer}" for f in report.findings}) == sorted(doc["triage"][pair]), report.render()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("path", state_files(), ids=lambda p: p.stem)
def test_gpu_kernels_reproduce_the_vectors_where_the_path_is_correct(path, impl: str) -> None:
    doc = load_fixture(path)
    state = BatchState.from_dict(doc["state"])
    obs = seam.observe(seam.resolve(impl, backend="cuda").new(), state.step_inputs(), 1)
    want = doc["expected"]
    right = obs.error is None and obs.position_ids.tolist() == want["position_ids"] and all(
        all(g < 0 if w < 0 else g == w for g, w in zip(obs.layers[0][c].tolist(), want["slot_mapping"], strict=True))
        for c in seam.CONSUMERS)
    assert right == (impl in doc["correct"])


def test_a_1025_thread_block_really_does_not_launch() -> None:
    """The model's launch limit is the hardware's: CUDA refuses <<<1, 1025>>>."""
    cp = cuda_paths.cupy()
    kernel = cp.RawKernel('extern "C" __global__ void noop(int* x) { x[threadIdx.x] = 1; }', "noop")
    buf = cp.zeros(2048, dtype=cp.int32)
    kernel((1,), (1024,), (buf,))
    with pytest.raises(Exception, match="(?i)invalid"):
        kernel((1,), (1025,), (buf,))
        cp.cuda.runtime.deviceSynchronize()


def _cuda(name: str, **fields):
    return seam.observe(seam.resolve(name, backend="cuda").new(), make_state(**fields).step_inputs(), 1)


TWO_DECODES = dict(seq_lens_encoder=[0, 0], seq_lens_decoder=[5, 130], seq_lens_this_time=[1, 1],
                   block_tables=[[2, -1, -1], [4, 6, 8]])


def test_gpu_buffers_zero_filled_overlap_rows_eager_and_legacy_prior_contents() -> None:
    """The same values tests/test_paddle_models.py asserts for the Paddle models (SPEC 4a)."""
    assert _cuda("single_step", padded_num_tokens=4, launch_num_tokens=3,
                 **TWO_DECODES).layers[0]["attention"].tolist() == [133, 514, 4 * 64, 0]
    assert _cuda("tail_reset", padded_num_tokens=4, launch_num_tokens=3,
                 **TWO_DECODES).layers[0]["attention"].tolist() == [133, 514, -1, -1]
    assert _cuda("legacy", padded_num_tokens=4, prior_position_ids=[0, 0, 70, -1],
                 **TWO_DECODES).layers[0]["attention"].tolist() == [133, 514, 6 * 64 + 6, 8 * 64 + 63]
    assert _cuda("legacy", padded_num_tokens=3, block_tables_past_bsz=[[-1, -1, -1], [7, 9, -1]],
                 **TWO_DECODES).layers[0]["attention"].tolist() == [133, 514, 7 * 64]
    fault = _cuda("legacy", padded_num_tokens=3, prior_position_ids=[0, 0, 2**31 - 1], **TWO_DECODES)
    assert fault.error is not None and "token row 2" in fault.error


def test_gpu_fused_reports_the_minus_one_read_like_the_paddle_model() -> None:
    obs = _cuda("fused", padded_num_tokens=2, batch_id_per_token=[0, -1], **TWO_DECODES)
    assert obs.hazards == ["get_position_ids_and_slot_mapping: 1 token(s) with batch id -1 read block_tables before "
                           "its start; first: token 1 reads element -1 (4 bytes before the table)"]
    assert obs.layers[0]["attention"].tolist() == [133, 0]
    fixed = _cuda("tail_reset_fused", padded_num_tokens=2, batch_id_per_token=[0, -1], **TWO_DECODES)
    assert fixed.hazards == [] and fixed.layers[0]["attention"].tolist() == [133, -1]


def test_fuzz_workers_judge_on_the_gpu(tmp_path) -> None:
    """Workers on the cuda backend find what the Paddle models find (tests/test_fuzz_runner.py), even from a
    process that already holds a CUDA context (earlier tests here): a context made before a plain fork once made
    every call in the workers fail, and the run passed."""
    from properties.fuzz import run_fuzz  # noqa: PLC0415 - the property layer, only for this test

    result = run_fuzz("legacy", "single_step", profile="dev", properties=["equivalence", "truth"], backend="cuda",
                      out_dir=tmp_path, jobs=2)
    scenarios = {(g.verdict, g.scenario) for g in result.groups}
    assert ("SHARED-BUG", "phase:chunked") in scenarios and ("REGRESSION", "padding:capture") in scenarios
    assert result.exit_code == 0
