"""CPU half of the compiled FastDeploy ops: reading kernels, declarations and host wrappers from the
shared snapshots (no GPU needed), the one-line errors, and (where nvcc is installed) that the emitted
source compiles."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from validation.errors import InputError
from validation.impls.faults import KernelFault
from validation.fastdeploy import host_wrapper as hw, kernel_source as ks
from validation.fastdeploy.op_test_vectors import run_op_tests

# The shared snapshots beside the checkout (what CI and benchmarks/gpu_run.sh lay out), or $DSA_FASTDEPLOY_SNAPSHOTS.
SNAPSHOTS = Path(os.environ.get("DSA_FASTDEPLOY_SNAPSHOTS", Path(__file__).resolve().parents[2] / "shared" / "fastdeploy"))
ROOTS = sorted(p for p in SNAPSHOTS.glob("*") if (p / "custom_ops").is_dir()) if SNAPSHOTS.is_dir() else []
pytestmark = pytest.mark.skipif(not ROOTS, reason=f"no FastDeploy snapshots at {SNAPSHOTS}")


class _Recorder:
    def __init__(self) -> None:
        self.launches: list[tuple] = []

    def alloc(self, name, shape, dtype, fill):
        return hw.Tensor(name, shape, dtype, np.full(int(np.prod(shape)), 0 if fill is None else fill, dtype))

    def launch(self, kernel, grid, block, smem, args):
        self.launches.append((kernel, grid, block, smem, args))


def _wrapper(op: ks.OpSource) -> hw.Wrapper:
    return hw.Wrapper(op.file, op.wrapper, op.wrapper_params, op.wrapper_body.text, op.wrapper_body.line, op.macros)


def test_every_snapshot_declares_a_position_op_and_the_padding_op() -> None:
    for root in ROOTS:
        ops = ks.find_op_files(root)
        assert ks.PADDING_OP in ops and set(ops) & set(ks.POSITION_OPS), (root.name, ops)
    fused = ks.read_op(SNAPSHOTS / "7198b5883a0e", "get_position_ids_and_slot_mapping")
    assert fused.inputs[-2:] == ("position_ids", "slot_mapping") and fused.attrs == (("block_size", "int"),)
    assert fused.inplace == {"position_ids": "position_ids_out", "slot_mapping": "slot_mapping_out"}
    assert fused.origin == "kernel compiled from custom_ops/gpu_ops/get_position_ids_and_slot_mapping.cu at 7198b5883a0e"
    src = fused.source
    assert 'extern "C" __global__ void GetPositionIdsAndSlotMappingKernel(' in src
    assert '#line 18 "custom_ops/gpu_ops/get_position_ids_and_slot_mapping.cu"' in src
    assert "paddle" not in src and "#include \"helper.h\"" not in src


def test_the_padding_kernel_gets_warp_size_from_helper_h_for_a_cuda_build() -> None:
    op = ks.read_op(SNAPSHOTS / "d2d633b05c2c", ks.PADDING_OP)
    assert '"custom_ops/gpu_ops/helper.h"\n#define WARP_SIZE 32\n' in op.source
    assert "threadIdx.x / 64" not in op.source  # the PADDLE_WITH_COREX branch is not compiled


@pytest.mark.parametrize(("tokens", "block"), [(1, 32), (33, 64), (1000, 128)])
def test_the_padding_wrappers_launch_shape_is_read_from_its_source(tokens: int, block: int) -> None:
    op = ks.read_op(SNAPSHOTS / "2d8338f9e4e6", ks.PADDING_OP)
    dev = _Recorder()
    args = {"input_ids": hw.Tensor("input_ids", (5, 40), np.int64), "seq_len": hw.Tensor("seq_len", (5,), np.int32),
            "draft_tokens": None, "seq_lens_encoder": None, "cpu_token_num": tokens}
    returned = _wrapper(op).run(args, dev)
    assert [(k, g, b, s) for k, g, b, s, _ in dev.launches] == [("PrefixSumKernel", (5,), (block,), 0)]
    assert dev.launches[0][4][6] == 40 and dev.launches[0][4][7] is None  # max_seq_len, draft_tokens nullptr
    assert [t.shape for t in returned] == [(tokens,), (tokens,), (6,), (6,)]
    assert returned[1].storage[0] == -1  # batch_id_per_token starts as paddle::full(..., -1)


def test_a_zero_token_step_returns_before_the_launch() -> None:
    op = ks.read_op(SNAPSHOTS / "2d8338f9e4e6", ks.PADDING_OP)
    dev = _Recorder()
    args = {"input_ids": hw.Tensor("input_ids", (5, 40), np.int64), "seq_len": hw.Tensor("seq_len", (5,), np.int32),
            "draft_tokens": None, "seq_lens_encoder": None, "cpu_token_num": 0}
    assert len(_wrapper(op).run(args, dev)) == 4 and dev.launches == []


def test_the_position_ops_launch_one_block_of_bsz_threads() -> None:
    for root in ROOTS:
        for name in set(ks.find_op_files(root)) & set(ks.POSITION_OPS):
            op = ks.read_op(root, name)
            dev = _Recorder()
            dtype = np.int64 if name == "get_position_ids_and_slot_mapping" else np.int32
            args = {p: hw.Tensor(p, (7, 3) if p == "block_tables" else (7,),
                                 dtype if p in ("position_ids", "slot_mapping") else np.int32)
                    for ctype, p in op.wrapper_params if "Tensor" in ctype} | {"block_size": 64}
            _wrapper(op).run(args, dev)
            assert [(g, b) for _, g, b, _, _ in dev.launches] == [((1,), (7,))], (root.name, name)


def test_a_tensor_of_the_wrong_dtype_is_one_line_naming_it() -> None:
    op = ks.read_op(SNAPSHOTS / "7198b5883a0e", "get_position_ids")
    args = {p: hw.Tensor(p, (3,), np.int64 if p == "position_ids" else np.int32) for _, p in op.wrapper_params}
    with pytest.raises(InputError, match=r"^position_ids: is int64, but GetPositionIds reads it as data<int>\(\)"):
        _wrapper(op).run(args, _Recorder())


def test_missing_checkout_op_kernel_and_wrapper_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is not a FastDeploy checkout: no custom_ops/gpu_ops/ folder"):
        ks.find_op_files(tmp_path)
    copy = tmp_path / "fd"
    shutil.copytree(SNAPSHOTS / "7198b5883a0e" / "custom_ops", copy / "custom_ops")
    with pytest.raises(InputError, match=r"no PD_BUILD_STATIC_OP\(get_position_ids_and_mask_encoder_batch\)"):
        ks.read_op(copy, "get_position_ids_and_mask_encoder_batch")
    cu = copy / "custom_ops/gpu_ops/get_position_ids.cu"
    cu.write_text(cu.read_text().replace("__global__ void GetPositionIdsKernel(", "__global__ void Renamed("))
    with pytest.raises(InputError, match=r"^custom_ops/gpu_ops/get_position_ids.cu: no __global__ void GetPositionIdsKernel"):
        ks.read_op(copy, "get_position_ids")
    cu.write_text(cu.read_text().replace("PD_KERNEL(GetPositionIds)", "PD_KERNEL(Elsewhere)"))
    with pytest.raises(InputError, match="no definition of the host function Elsewhere"):
        ks.read_op(copy, "get_position_ids")


def test_a_wrapper_statement_outside_the_subset_names_file_and_line(tmp_path: Path) -> None:
    copy = tmp_path / "fd"
    shutil.copytree(SNAPSHOTS / "7198b5883a0e" / "custom_ops", copy / "custom_ops")
    cu = copy / "custom_ops/gpu_ops/get_position_ids.cu"
    cu.write_text(cu.read_text().replace("  const int bsz = seq_lens_this_time.shape()[0];",
                                         "  const int bsz = launch_plan(seq_lens_this_time);"))
    op = ks.read_op(copy, "get_position_ids")
    args = {p: hw.Tensor(p, (3,), np.int32) for _, p in op.wrapper_params}
    with pytest.raises(InputError, match=r"^custom_ops/gpu_ops/get_position_ids.cu:48: GetPositionIds: calls launch_plan"):
        _wrapper(op).run(args, _Recorder())


def test_first_compiler_error_picks_the_error_line() -> None:
    log = "remark: something\ncustom_ops/gpu_ops/x.cu(33): error: identifier \"q\" is undefined\n1 error detected"
    assert ks.first_compiler_error(log) == 'custom_ops/gpu_ops/x.cu(33): error: identifier "q" is undefined'


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_the_emitted_sources_compile_and_a_broken_kernel_reports_its_fastdeploy_line(tmp_path: Path) -> None:
    root = SNAPSHOTS / "7198b5883a0e"
    good = tmp_path / "good.cu"
    good.write_text(ks.read_op(root, "get_position_ids_and_slot_mapping").source)
    subprocess.run(["nvcc", "-arch=sm_90", "-cubin", "-o", str(tmp_path / "good.cubin"), str(good)], check=True,
                   capture_output=True)
    copy = tmp_path / "fd"
    shutil.copytree(root / "custom_ops", copy / "custom_ops")
    cu = copy / "custom_ops/gpu_ops/get_position_ids_and_slot_mapping.cu"
    cu.write_text(cu.read_text().replace("int block_idx = pos_id / block_size;", "int block_idx = pos_id / blok_size;"))
    bad = tmp_path / "bad.cu"
    bad.write_text(ks.read_op(copy, "get_position_ids_and_slot_mapping").source)
    done = subprocess.run(["nvcc", "-arch=sm_90", "-cubin", "-o", str(tmp_path / "bad.cubin"), str(bad)],
                          capture_output=True, text=True)
    assert done.returncode != 0
    assert ks.first_compiler_error(done.stderr + done.stdout) == (
        'custom_ops/gpu_ops/get_position_ids_and_slot_mapping.cu(53): error: identifier "blok_size" is undefined')


def test_op_tests_whose_op_is_not_compiled_are_reported_as_errors() -> None:
    results = run_op_tests(SNAPSHOTS / "7198b5883a0e", {})
    assert {(r.file, r.outcome) for r in results} == {
        ("tests/operators/test_get_position_ids_and_mask_encoder_batch.py", "error"),
        ("tests/operators/test_get_position_ids_and_slot_mapping.py", "error")}
    assert all("not compiled here" in r.detail for r in results)


class _NumpyOp:
    """A stand-in with ``CompiledOp``'s interface (parameters, in-place map, outputs, call by name) whose
    arithmetic is plain numpy: it exercises the op-test runner's plumbing on a machine without a GPU."""

    def __init__(self, root: Path, name: str, shift: int = 0) -> None:
        self.source, self.name, self.shift = ks.read_op(root, name), name, shift

    @property
    def parameters(self) -> tuple[str, ...]:
        return self.source.inputs + tuple(a for a, _ in self.source.attrs)

    def __call__(self, **a):
        this, dec = a["seq_lens_this_time"].astype(np.int64), a["seq_lens_decoder"].astype(np.int64)
        pos = np.concatenate([d + np.arange(t) for d, t in zip(dec, this)] or [np.zeros(0, np.int64)]) + self.shift
        out = {"position_ids_out": a["position_ids"].copy()}
        out["position_ids_out"][: pos.size] = pos
        if "slot_mapping" in a:
            bs, ids = a["block_size"], a["batch_id_per_token"][: pos.size]
            slots = a["block_tables"][ids, pos // bs].astype(np.int64) * bs + pos % bs
            out["slot_mapping_out"] = a["slot_mapping"].copy()
            out["slot_mapping_out"][: pos.size] = slots
        return out


def test_fastdeploys_op_tests_run_through_the_stand_in_paddle_and_catch_a_wrong_op() -> None:
    root = SNAPSHOTS / "7198b5883a0e"
    ops = {n: _NumpyOp(root, n) for n in ("get_position_ids", "get_position_ids_and_slot_mapping")}
    results = run_op_tests(root, ops)
    assert len(results) == 10 and all(r.outcome == "passed" for r in results), [r for r in results if r.outcome != "passed"]
    wrong = {n: _NumpyOp(root, n, shift=1) for n in ops}
    outcomes = {r.test: r.outcome for r in run_op_tests(root, wrong)}
    assert outcomes["TestGetPositionIds.test_basic_functionality"] == "failed"
    assert outcomes["TestGetPositionIdsAndSlotMapping.test_single_batch_decode"] == "failed"


def test_a_wrapper_with_checks_and_dim3_launches_run_as_written(tmp_path: Path) -> None:
    copy = tmp_path / "fd"
    shutil.copytree(SNAPSHOTS / "7198b5883a0e" / "custom_ops", copy / "custom_ops")
    cu = copy / "custom_ops/gpu_ops/get_position_ids.cu"
    text = cu.read_text().replace(
        "  GetPositionIdsKernel<<<1, bsz, 0, position_ids.stream()>>>(",
        '  PD_CHECK(bsz <= 512, "at most 512 requests");\n  dim3 grid(1);\n  dim3 block = dim3(bsz);\n'
        "  GetPositionIdsKernel<<<grid, block, 0, position_ids.stream()>>>(")
    cu.write_text(text)
    op = ks.read_op(copy, "get_position_ids")
    dev = _Recorder()
    _wrapper(op).run({p: hw.Tensor(p, (7,), np.int32) for _, p in op.wrapper_params}, dev)
    assert [(g, b) for _, g, b, _, _ in dev.launches] == [((1,), (7,))]
    with pytest.raises(KernelFault, match=r"GetPositionIds: PD_CHECK at custom_ops/gpu_ops/get_position_ids.cu:\d+ does not hold"):
        _wrapper(op).run({p: hw.Tensor(p, (513,), np.int32) for _, p in op.wrapper_params}, _Recorder())


def test_a_device_helper_the_kernel_calls_comes_along_from_helper_h(tmp_path: Path) -> None:
    copy = tmp_path / "fd"
    shutil.copytree(SNAPSHOTS / "7198b5883a0e" / "custom_ops", copy / "custom_ops")
    helper = copy / "custom_ops/gpu_ops/helper.h"
    helper.write_text(helper.read_text() + "\n__device__ __forceinline__ int twice(int x) { return 2 * x; }\n")
    cu = copy / "custom_ops/gpu_ops/get_position_ids.cu"
    cu.write_text(cu.read_text().replace("= token_offset + i;", "= twice(token_offset) + i;"))
    src = ks.read_op(copy, "get_position_ids").source
    assert src.index('"custom_ops/gpu_ops/helper.h"\n__device__ __forceinline__ int twice(') < src.index("GetPositionIdsKernel")
    assert "get_position_ids.cu" in src and src.count("__device__") == 1
