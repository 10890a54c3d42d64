"""The plug-in seam: registry names, module:NAME, file.py:NAME, functions and classes, and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from support import make_state
from validation import seam
from validation.errors import InputError

PLUGIN = '''
import numpy as np

def decode_only(inputs):
    dec, bt, bs = inputs["seq_lens_decoder"], inputs["block_tables"], inputs["block_size"]
    pos = np.asarray(dec[:1], dtype=np.int32)
    return {"position_ids": pos, "slot_mapping": np.asarray([bt[0][pos[0] // bs] * bs + pos[0] % bs], dtype=np.int64)}

class Counting:
    def __init__(self):
        self.calls = 0
    def __call__(self, inputs):
        self.calls += 1
        out = decode_only(inputs)
        out["slot_mapping"] = out["slot_mapping"] + (self.calls - 1)
        return out
'''


def test_registry_names_resolve_for_every_backend() -> None:
    for backend in seam.BACKENDS:
        assert {"oracle", "legacy", "single_step", "chunked_fix", "get_position_ids", "fused"} <= set(seam.names(backend))
    assert seam.resolve("oracle").builtin


def test_file_plugin_function_and_class(tmp_path) -> None:
    path = tmp_path / "m.py"
    path.write_text(PLUGIN)
    inputs = make_state().step_inputs()
    fn = seam.resolve(f"{path}:decode_only")
    assert fn.new()(inputs)["slot_mapping"].tolist() == [202]
    cls = seam.resolve(f"{path}:Counting")
    first = cls.new()
    assert first(inputs)["slot_mapping"].tolist() == [202]
    assert first(inputs)["slot_mapping"].tolist() == [203]  # the instance keeps its state across steps
    assert cls.new()(inputs)["slot_mapping"].tolist() == [202]  # a fresh instance per case


def test_module_plugin() -> None:
    impl = seam.resolve("validation.oracle:Oracle")
    assert impl.new()(make_state().step_inputs())["slot_mapping"].tolist() == [202]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", "candidate: unknown implementation 'nope'"),
        ("no_such_module_xyz:f", "candidate: cannot import module 'no_such_module_xyz'"),
        ("validation.oracle:Missing", "candidate: 'validation.oracle' has no attribute 'Missing'"),
        ("validation.oracle:INT_NOT_CALLABLE", "candidate: 'validation.oracle' has no attribute"),
        ("/tmp/definitely/not/here.py:f", "candidate: no such file"),
        (":f", "candidate: ':f' must look like module:NAME"),
    ],
)
def test_bad_specs_are_one_line_input_errors(spec: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        seam.resolve(spec)
    assert str(info.value).startswith(message)


def test_unknown_backend() -> None:
    with pytest.raises(InputError, match="backend: unknown backend 'tpu'"):
        seam.resolve("legacy", backend="tpu")


def test_observe_normalises_results_and_turns_crashes_into_errors() -> None:
    inputs = make_state().step_inputs()

    def crashes(_):
        raise RuntimeError("kaput")

    assert seam.observe(crashes, inputs, 2).error == "RuntimeError: kaput"
    assert seam.observe(lambda _: [1], inputs, 2).error == "returned list, not a mapping"
    assert seam.observe(lambda _: {"position_ids": np.zeros(1)}, inputs, 2).error == "result has no 'slot_mapping'"
    obs = seam.observe(lambda _: {"position_ids": np.asarray([10]), "slot_mapping": np.asarray([202]),
                                  "indexer_slot_mapping": np.asarray([7])}, inputs, 3)
    assert len(obs.layers) == 3 and obs.layers[2]["indexer"].tolist() == [7]
    assert obs.layers[0]["attention"].tolist() == [202]
