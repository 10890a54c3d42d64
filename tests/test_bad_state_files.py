"""Bad state and case files through every command that reads one, as a new user would run them.

Each must end in exit 2 and one line on stderr naming the file or field (never a traceback), quickly
and in little memory, however large a size the file asks for (issue 10: ``padded_num_tokens:
100000000`` once ran four minutes and grew to 24 GB). The real console script runs in a child
process; its peak RSS is read from ``getrusage(RUSAGE_CHILDREN)`` of a fresh interpreter per run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from validation import limits

GOOD = {"block_size": 64, "seq_lens_encoder": [0], "seq_lens_decoder": [10], "seq_lens_this_time": [1],
        "block_tables": [[3, -1]]}
SCRIPT = shutil.which("dsa-validate") or str(Path(sys.executable).with_name("dsa-validate"))
# Runs the console script as a child and reports its exit code, stderr, peak RSS (KiB on Linux) and CPU
# seconds: CPU time, not wall time, so a loaded CI machine does not fail the bound (wall figures: BENCHMARKS.md).
RUNNER = """
import resource, subprocess, sys, json
script, path, commands = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
out, before = [], 0.0
for command in commands:
    done = subprocess.run([script, *command, "--state", path], capture_output=True, text=True)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    out.append({"command": command[0], "rc": done.returncode, "stderr": done.stderr, "cpu_s": cpu - before,
                "peak_kib": usage.ru_maxrss})  # the peak over this and the earlier runs
    before = cpu
print(json.dumps(out))
"""

# A decode whose last position is 2**31: the issue-19 repro (once a traceback and exit 1 in causes.stand_in).
POSITION_PAST_INT32 = {"block_size": 65536, "seq_lens_encoder": [0], "seq_lens_decoder": [2_147_483_646],
                       "seq_lens_this_time": [3], "block_tables": [list(range(32769))]}


def _state(**changes) -> dict:
    return {**GOOD, **changes}


BAD: dict[str, bytes] = {
    "not_utf8": b'{"block_size": 64, "name": "caf\xe9", "seq_lens_encoder": [0]}',
    "huge_padded_num_tokens": json.dumps(_state(padded_num_tokens=100_000_000)).encode(),
    "huge_buffer": json.dumps(_state(max_num_batched_tokens=2_000_000_000)).encode(),
    "huge_launch": json.dumps(_state(launch_num_tokens=50_000_000, padded_num_tokens=50_000_000)).encode(),
    "huge_table": json.dumps(_state(block_tables=[[-1] * (limits.MAX_TABLE_CELLS + 1)])).encode(),
    "huge_bsz": json.dumps({"block_size": 64, "seq_lens_encoder": [0] * 5000, "seq_lens_decoder": [0] * 5000,
                            "seq_lens_this_time": [0] * 5000, "block_tables": [[-1]] * 5000}).encode(),
    "huge_this_time": json.dumps(_state(block_size=60000, seq_lens_this_time=[2_000_000_000])).encode(),
    "huge_block_size": json.dumps(_state(block_size=2**31)).encode(),  # past the writers' int32 argument
    "wrong_type": json.dumps(_state(seq_lens_decoder="10")).encode(),
    "nan": b'{"block_size": 64, "seq_lens_encoder": [NaN], "seq_lens_decoder": [10], "seq_lens_this_time": [1], '
           b'"block_tables": [[3]]}',
    "float": json.dumps(_state(block_size=64.0)).encode(),
    "nested_junk": json.dumps(_state(seq_lens_encoder=[[[[0]] * 50] * 50])).encode(),
    "deep_nesting": b'{"block_size": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "not_an_object": b"[1, 2, 3]",
    "integer_past_the_int_string_limit": b'{"block_size": 1' + b"0" * 5000 + b', "seq_lens_encoder": [0]}',
    "infinity": b'{"block_size": 64, "seq_lens_encoder": [0], "seq_lens_decoder": [1e999]}',
    "position_past_int32": json.dumps(POSITION_PAST_INT32).encode(),
    "case_history_junk": json.dumps({"state": GOOD, "history": [GOOD, {"block_size": "x"}]}).encode(),
    "case_history_huge": json.dumps({"state": GOOD, "history": [_state(padded_num_tokens=10**9)]}).encode(),
}
# Every command that takes a state or case file (``run`` takes none: it triages the shipped states).
COMMANDS = [["slots", "--impl", "single_step"], ["slots", "--impl", "fused", "--json"], ["check"],
            ["check", "--json", "--strict", "--baseline", "oracle"]]


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_state_file_is_one_line_exit_2_fast_and_small(tmp_path, name: str) -> None:
    path = tmp_path / f"{name}.json"
    path.write_bytes(BAD[name])
    done = subprocess.run([sys.executable, "-c", RUNNER, SCRIPT, str(path), json.dumps(COMMANDS)],
                          capture_output=True, text=True, timeout=120)
    for result in json.loads(done.stdout):
        lines = result["stderr"].strip().splitlines()
        assert result["rc"] == 2, result
        assert len(lines) == 1 and "Traceback" not in result["stderr"], result["stderr"]
        assert lines[0].startswith(f"dsa-validate {result['command']}: error: "), lines
        assert result["cpu_s"] < 2.0, result
        assert result["peak_kib"] < 1024 * 1024, result


def test_the_utf8_error_names_the_file_and_the_byte_offset(tmp_path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(BAD["not_utf8"])
    done = subprocess.run([SCRIPT, "check", "--state", str(path)], capture_output=True, text=True, timeout=60)
    offset = BAD["not_utf8"].index(b"\xe9")
    assert done.returncode == 2
    assert f"{path}: state file is not UTF-8: byte 0xe9 at byte offset {offset}" in done.stderr


def test_a_size_over_a_limit_names_the_field_and_the_limit(tmp_path) -> None:
    path = tmp_path / "big.json"
    path.write_text(json.dumps(_state(padded_num_tokens=100_000_000)))
    done = subprocess.run([SCRIPT, "slots", "--state", str(path)], capture_output=True, text=True, timeout=60)
    assert done.stderr.strip() == (f"dsa-validate slots: error: padded_num_tokens: 100000000 is over the suite's "
                                   f"limit of {limits.MAX_TOKENS} (validation/limits.py)")


def test_the_limits_leave_room_for_every_state_a_server_makes() -> None:
    from properties.schedule_model import LAUNCH_LIMIT, MAX_MODEL_LEN, MAX_TABLE_CELLS
    from validation.launch_padding import capture_sizes

    assert limits.MAX_TOKENS >= MAX_MODEL_LEN and limits.MAX_TOKENS >= max(capture_sizes())
    assert limits.MAX_REQUESTS > LAUNCH_LIMIT + 64  # the op-level over-launch-limit class stays reachable
    assert limits.MAX_TABLE_CELLS >= MAX_TABLE_CELLS and limits.MAX_BLOCK_SIZE >= 256


def test_a_position_past_int32_is_refused_naming_the_rule_wherever_a_state_is_built(tmp_path) -> None:
    from properties.strategies import Case
    from validation.errors import InputError

    path = tmp_path / "int32.json"
    path.write_text(json.dumps(POSITION_PAST_INT32))
    done = subprocess.run([SCRIPT, "check", "--baseline", "oracle", "--candidate", "fused", "--state", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "reaches position 2147483648" in done.stderr and "position buffers are int32" in done.stderr
    with pytest.raises(InputError, match="int32"):  # the form fuzz replays cases through
        Case.from_dict(POSITION_PAST_INT32)


def test_the_number_errors_say_where_and_why(tmp_path) -> None:
    path = tmp_path / "digits.json"
    path.write_bytes(BAD["integer_past_the_int_string_limit"])
    done = subprocess.run([SCRIPT, "slots", "--state", str(path)], capture_output=True, text=True, timeout=60)
    assert done.stderr.strip() == (f"dsa-validate slots: error: {path}: the number at line 1 column 16 has 5001 "
                                   "digits, more than Python's int-string limit of 4300")
