"""GPU half of the compiled FastDeploy ops: every snapshot's ops compile and run, FastDeploy's own op
tests pass against them, a one-line kernel change changes the result, a compile error is one line,
and the kernels agree with the suite's CUDA models. Skipped, with the reason, without CuPy or a GPU."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from validation.errors import InputError, MissingDependency
from validation.fastdeploy import compiled_ops, kernel_fidelity
from validation.fastdeploy.op_test_vectors import run_op_tests

# The shared snapshots beside the checkout (what CI and benchmarks/gpu_run.sh lay out), or $DSA_FASTDEPLOY_SNAPSHOTS.
SNAPSHOTS = Path(os.environ.get("DSA_FASTDEPLOY_SNAPSHOTS", Path(__file__).resolve().parents[2] / "shared" / "fastdeploy"))
ROOTS = sorted(p for p in SNAPSHOTS.glob("*") if (p / "custom_ops").is_dir()) if SNAPSHOTS.is_dir() else []


def _reason() -> str | None:
    if not ROOTS:
        return f"no FastDeploy snapshots at {SNAPSHOTS}"
    try:
        compiled_ops.cupy()
    except MissingDependency as exc:
        return str(exc)
    return None


REASON = _reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"compiled FastDeploy kernels cannot run here: {REASON}")
FUSED = "get_position_ids_and_slot_mapping"


def _copy(tmp_path: Path, commit: str) -> Path:
    copy = tmp_path / commit
    shutil.copytree(SNAPSHOTS / commit / "custom_ops", copy / "custom_ops")
    return copy


@pytest.mark.parametrize("root", ROOTS, ids=lambda p: p.name)
def test_every_snapshot_compiles_and_passes_fastdeploys_own_op_tests(root: Path) -> None:
    ops = compiled_ops.compile_checkout_ops(root)
    assert all(op.origin.endswith(f" at {root.name}") for op in ops.values())
    results = run_op_tests(root, ops)
    assert results and all(r.outcome == "passed" for r in results), [r for r in results if r.outcome != "passed"]


def test_the_fused_kernel_on_a_hand_vector() -> None:
    op = compiled_ops.compile_checkout_ops(SNAPSHOTS / "7198b5883a0e", [FUSED])[FUSED]
    tables = np.array([[7, 8], [3, 9]], np.int32)
    out = op(seq_lens_encoder=np.array([0, 2], np.int32), seq_lens_decoder=np.array([63, 0], np.int32),
             seq_lens_this_time=np.array([2, 2], np.int32), batch_id_per_token=np.array([0, 0, 1, 1], np.int32),
             block_tables=tables, position_ids=np.zeros(4, np.int64), slot_mapping=np.zeros(4, np.int64), block_size=64)
    assert out["position_ids_out"].tolist() == [63, 64, 0, 1]
    assert out["slot_mapping_out"].tolist() == [7 * 64 + 63, 8 * 64, 3 * 64, 3 * 64 + 1]
    assert out.overruns == {}


def test_the_v1_op_writes_past_the_view_in_a_chunked_prefill_and_the_guard_reports_it() -> None:
    op = compiled_ops.compile_checkout_ops(SNAPSHOTS / "2d8338f9e4e6")["get_position_ids_and_mask_encoder_batch"]
    out = op(seq_lens_encoder=np.array([3], np.int32), seq_lens_decoder=np.array([5], np.int32),
             seq_lens_this_time=np.array([3], np.int32), position_ids=np.zeros(3, np.int32))
    assert out["position_ids_out"].tolist() == [0, 1, 2]
    assert out.overruns["position_ids"].indices.tolist() == [3, 4, 5]
    assert out.overruns["position_ids"].values.tolist() == [5, 6, 7]


def test_one_changed_line_in_a_kernel_changes_the_result(tmp_path: Path) -> None:
    copy = _copy(tmp_path, "7198b5883a0e")
    cu = copy / "custom_ops/gpu_ops/get_position_ids_and_slot_mapping.cu"
    cu.write_text(cu.read_text().replace("int block_offset = pos_id % block_size;", "int block_offset = pos_id % 64;"))
    args = dict(seq_lens_encoder=np.array([0], np.int32), seq_lens_decoder=np.array([20], np.int32),
                seq_lens_this_time=np.array([1], np.int32), batch_id_per_token=np.array([0], np.int32),
                block_tables=np.array([[5, 6]], np.int32), position_ids=np.zeros(1, np.int64),
                slot_mapping=np.zeros(1, np.int64), block_size=16)
    original = compiled_ops.compile_checkout_ops(SNAPSHOTS / "7198b5883a0e", [FUSED])[FUSED](**args)
    changed = compiled_ops.compile_checkout_ops(copy, [FUSED])[FUSED](**args)
    assert original["slot_mapping_out"].tolist() == [6 * 16 + 4]  # position 20: block 1, offset 4
    assert changed["slot_mapping_out"].tolist() == [6 * 16 + 20]
    assert compiled_ops.compile_checkout_ops(copy, [FUSED])[FUSED].origin.endswith(" at 7198b5883a0e")


def test_a_kernel_that_does_not_compile_is_one_line_with_the_compilers_first_error(tmp_path: Path) -> None:
    copy = _copy(tmp_path, "7198b5883a0e")
    cu = copy / "custom_ops/gpu_ops/get_position_ids.cu"
    cu.write_text(cu.read_text().replace("buffer_offset += seq_lens_this_time[i];", "buffer_offset += seq_lens[i];"))
    with pytest.raises(InputError) as err:
        compiled_ops.compile_checkout_ops(copy, ["get_position_ids"])
    message = str(err.value)
    assert "\n" not in message and message.startswith("custom_ops/gpu_ops/get_position_ids.cu: get_position_ids: "
                                                       "the kernel does not compile: ")
    assert "get_position_ids.cu(29)" in message and "seq_lens" in message, message


def test_a_launch_over_1024_threads_faults_as_the_model_does() -> None:
    op = compiled_ops.compile_checkout_ops(SNAPSHOTS / "b5c8290be631", ["get_position_ids"])["get_position_ids"]
    z = np.zeros(1025, np.int32)
    with pytest.raises(compiled_ops.KernelFault, match=r"GetPositionIdsKernel<<<1, 1025>>> does not launch"):
        op(seq_lens_encoder=z, seq_lens_decoder=z, seq_lens_this_time=z + 1, position_ids=np.zeros(1025, np.int32))


@pytest.mark.parametrize("root", ROOTS, ids=lambda p: p.name)
def test_the_kernels_equal_the_suites_cuda_models(root: Path) -> None:
    rows = kernel_fidelity.fidelity_rows([root], fuzz=60, corpus_limit=80)
    assert rows and all(r.identical == r.states for r in rows), kernel_fidelity.render(rows)


def test_a_changed_kernel_is_caught_by_fidelity(tmp_path: Path) -> None:
    copy = _copy(tmp_path, "ad431c77b312")
    cu = copy / "custom_ops/gpu_ops/get_position_ids.cu"
    cu.write_text(cu.read_text().replace("position_ids[buffer_offset + i] = token_offset + i;",
                                         "position_ids[buffer_offset + i] = token_offset + i + (i > 2);"))
    rows = [r for r in kernel_fidelity.fidelity_rows([copy], fuzz=40, corpus_limit=40) if r.op == "get_position_ids"]
    assert rows[0].identical < rows[0].states and "position_ids[" in rows[0].first_difference
