"""``--backend cuda``: the same code paths as real CUDA kernels. Runs only where a GPU and CuPy are.

On a machine without them every test here is skipped with the reason printed (``pytest -ra``).
"""

from __future__ import annotations

import pytest

from support import load_fixture, state_files
from validation import compare, seam
from validation.impls import cuda_paths
from validation.state import BatchState

REASON = cuda_paths.available()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"CUDA backend cannot run here: {REASON}")

IMPLS = ("legacy", "single_step", "chunked_fix", "get_position_ids", "fused")


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
