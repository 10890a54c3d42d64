"""Generated malformed files thrown at every command that reads one: never a traceback, never exit 1 on bad input.

Exit 1 means a finding (REGRESSION) in this tool, so a CI gate would misread a crash on a bad file as one. Hypothesis
draws JSON shapes (any value where a state, case or response field goes, near-valid states with one field replaced)
and byte mutations of the shipped valid files (fixtures/states, fixtures/regressions, the IFEval sample responses):
flipped and deleted bytes, truncation, and inserted tokens that once crashed a reader (a 5,000-digit integer, NaN,
1e999, a lone surrogate, deep brackets, a position past int32). Most examples run ``validation.cli.main`` in this
process (fast); a few run the real console script. A command may exit 1 only on a file that is a valid state (a real
finding); exit 2 must print exactly one line.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fixtures
import validation.cli
from ifeval_support import SAMPLE_INPUT, SAMPLE_RESPONSES
from validation.errors import InputError
from validation.state import ALL_FIELDS, load_steps

VALID_STATES = sorted((fixtures.ROOT / "states").glob("*.json"))[:4] + sorted(
    (fixtures.ROOT / "regressions").glob("*.json"))[:2]
STATE_COMMANDS = (["slots", "--impl", "oracle"], ["check", "--baseline", "legacy", "--candidate", "single_step",
                                                   "--layers", "1"])
# Tokens that once crashed a reader or sit on a rule's edge, spliced into valid files.
POISON = [b"9" * 5000, b"NaN", b"-Infinity", b"1e999", b'"\\ud800"', b"[" * 3000, b"2147483648", b"-1", b"null",
          b"{}", b"[]", b"\xff\xfe", b'"', b",", b"2147483646"]

scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=6) | st.sampled_from([2**31 - 1, 2**31, -(2**31) - 1, 65536, 0, -1]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from(ALL_FIELDS) | st.text(max_size=5), inner, max_size=4), max_leaves=10)
mutations = st.lists(st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(1, 255).map(lambda b: bytes([b]))),
    st.tuples(st.just("insert"), st.integers(0, 1 << 20), st.sampled_from(POISON) | st.binary(min_size=1, max_size=6)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 20), st.integers(1, 64).map(lambda n: b"\0" * n)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 20), st.just(b"")),
), min_size=1, max_size=3)


def _mutate(data: bytes, ops: list[tuple[str, int, bytes]]) -> bytes:
    for kind, where, payload in ops:
        at = where % (len(data) + 1)
        if kind == "flip" and data:
            at = min(at, len(data) - 1)
            data = data[:at] + bytes([data[at] ^ payload[0]]) + data[at + 1:]
        elif kind == "insert":
            data = data[:at] + payload + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + len(payload):]
        elif kind == "truncate":
            data = data[:at]
    return data


def _plain_state(path: Path) -> dict:
    """The state of a shipped file (a case file wraps it with its history and notes)."""
    document = json.loads(path.read_text())
    return document.get("state", document)


def _run(argv: list[str]) -> tuple[int, str]:
    """``validation.cli.main`` in this process; an exception escaping it is the traceback a user would see."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = validation.cli.main(argv)
    return rc, err.getvalue()


def _is_valid_state(path: Path) -> bool:
    try:
        load_steps(path)
    except InputError:
        return False
    return True


def _assert_state_commands_hold(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "state.json"
        path.write_bytes(data)
        for command in STATE_COMMANDS:
            rc, err = _run([*command, "--state", str(path)])
            assert rc in (0, 1, 2), (command, rc, err)
            if rc == 2:
                assert len(err.strip().splitlines()) == 1 and err.startswith(f"dsa-validate {command[0]}: error: "), err
            if rc == 1:  # a finding: only ever about a state the validator accepts
                assert _is_valid_state(path), (command, err)


FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(st.sampled_from(VALID_STATES), mutations)
def test_byte_mutations_of_valid_states_and_cases(path: Path, ops) -> None:
    _assert_state_commands_hold(_mutate(path.read_bytes(), ops))


@FUZZ
@given(st.sampled_from(VALID_STATES[:4]), st.sampled_from(ALL_FIELDS), json_values, st.booleans())
def test_json_shapes_in_state_and_case_fields(path: Path, field: str, value: object, as_case: bool) -> None:
    state = {**_plain_state(path), field: value}
    document = {"state": state, "history": [state]} if as_case else state
    _assert_state_commands_hold(json.dumps(document, allow_nan=True).encode())


@FUZZ
@given(st.one_of(
    mutations.map(lambda ops: _mutate(SAMPLE_RESPONSES.read_bytes(), ops)),
    st.lists(st.dictionaries(st.sampled_from(["key", "prompt", "response"]), json_values, max_size=3), min_size=1,
             max_size=3).map(lambda rows: "".join(json.dumps(r, allow_nan=True) + "\n" for r in rows).encode()),
))
def test_malformed_responses_files_for_ifeval_score(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "responses.jsonl"
        path.write_bytes(data)
        rc, err = _run(["ifeval", "score", "--responses", str(path), "--data", str(SAMPLE_INPUT)])
    assert rc in (0, 2), (rc, err)
    if rc == 2:
        assert len(err.strip().splitlines()) == 1 and err.startswith("dsa-validate ifeval: error: "), err


def test_the_console_script_on_a_few_poisoned_files_prints_one_line(tmp_path) -> None:
    """The same through real processes (the interpreter's own error paths, not only ``main``'s)."""
    state = _plain_state(VALID_STATES[0])
    files = {
        "digits.json": json.dumps({**state, "block_size": "N"}).replace('"N"', "1" + "0" * 5000).encode(),
        "surrogate.json": json.dumps({**state, "name": "x\ud800y", "seq_lens_decoder": "\ud800"}).encode(),
        "responses.jsonl": b'{"key": 1' + b"0" * 5000 + b', "response": "x"}\n',
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    runs = [["check", "--state", str(tmp_path / "digits.json")], ["slots", "--state", str(tmp_path / "surrogate.json")],
            ["ifeval", "score", "--responses", str(tmp_path / "responses.jsonl"), "--data", str(SAMPLE_INPUT)]]
    for argv in runs:
        done = subprocess.run([sys.executable, "-m", "validation.cli", *argv], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 2, (argv, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
