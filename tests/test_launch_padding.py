"""Launch padding, written once: FastDeploy's default capture list and the overlap prediction."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from validation.launch_padding import MAX_NUM_SEQS, capture_launch, capture_sizes, launch_size, overlap_launch

CONFIG = Path(__file__).resolve().parents[2] / "shared" / "fastdeploy" / "2d8338f9e4e6" / "fastdeploy" / "config.py"


def test_the_default_list_is_dense_below_128_then_by_16s_and_32s() -> None:
    sizes = capture_sizes()
    assert sizes[:6] == (1, 2, 4, 8, 16, 24) and 40 in sizes and 136 not in sizes and 144 in sizes
    assert 272 not in sizes and 288 in sizes and sizes[-1] == MAX_NUM_SEQS == 512
    assert capture_sizes(48) == (1, 2, 4, 8, 16, 24, 32, 40, 48)
    assert capture_sizes(100) == (1, 2, 4, *range(8, 97, 8), 100)  # the maximum is appended (config.py:1210)
    assert capture_sizes(4000) == capture_sizes(512)  # min(512, max_num_seqs)
    assert capture_sizes(8, num_speculative_tokens=2) == (3, 6, 12, 24)  # MTP: times k + 1 (config.py:1124-1131)


def test_launch_sizes() -> None:
    assert [capture_launch(n, 48) for n in (0, 1, 3, 17, 40, 41, 48, 49)] == [0, 1, 4, 24, 40, 48, 48, 49]
    assert overlap_launch(5, 7) == 7 and overlap_launch(5, -1) == 5 and overlap_launch(5, 3) == 5
    assert overlap_launch(0, 7) == 0  # nothing scheduled, nothing launched
    assert launch_size(5, "none", decode_only=True) == 5 and launch_size(5, "capture", decode_only=True, max_num_seqs=4) == 5
    assert launch_size(3, "capture", decode_only=False) == 3 and launch_size(3, "overlap", decode_only=False, predicted=7) == 3
    assert launch_size(3, "capture", decode_only=True) == 4 and launch_size(3, "overlap", decode_only=True, predicted=7) == 7
    with pytest.raises(ValueError, match="unknown padding"):
        launch_size(5, "sometimes", decode_only=True)


@pytest.mark.skipif(not CONFIG.exists(), reason=f"FastDeploy snapshot not beside the checkout ({CONFIG})")
@pytest.mark.parametrize("k", [0, 2])
@pytest.mark.parametrize("max_num_seqs", [1, 7, 48, 100, 256, 512])
def test_the_list_is_what_fastdeploys_own_code_computes(max_num_seqs: int, k: int) -> None:
    """Run FastDeploy's two methods, cut out of the snapshot's config.py, on a stand-in config object."""
    tree = ast.parse(CONFIG.read_text())
    graph = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "GraphOptimizationConfig")
    methods = [n for n in graph.body if isinstance(n, ast.FunctionDef)
               and n.name in ("_set_cudagraph_sizes", "init_with_cudagrpah_size")]
    module = ast.fix_missing_locations(ast.Module([ast.ClassDef("G", [], [], methods, [])], []))
    namespace: dict = {"logger": type("Log", (), {"info": staticmethod(lambda *args: None)})}
    exec(compile(module, str(CONFIG), "exec"), namespace)
    config = namespace["G"]()
    config.flag_cudagraph_capture_sizes_initlized = False
    largest = min(512, max_num_seqs)
    config._set_cudagraph_sizes(max_capture_size=largest, max_capture_shape_prefill=4)
    config.init_with_cudagrpah_size(max_capture_size=largest, max_capture_shape_prefill=4, num_speculative_tokens=k)
    assert tuple(sorted(config.cudagraph_capture_sizes)) == capture_sizes(max_num_seqs, num_speculative_tokens=k)
    for n in range(1, largest * (k + 1) + 1):
        if n in config.real_shape_to_captured_size:
            assert config.real_shape_to_captured_size[n] == capture_launch(n, max_num_seqs, num_speculative_tokens=k)
