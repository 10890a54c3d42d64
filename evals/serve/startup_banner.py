"""What ``dsa-validate serve`` says when it starts: the path and padding it serves, and the known findings they meet.

Why: a server started to talk to the model must not meet a modelled bug unannounced (issue 19: the old default,
single_step with capture padding, models #7367's stale tail, and 8 of 54 answers under load were degenerate). The
default is the oracle's slots with no padding; any other choice is served as asked, and the banner names each entry
of ``fixtures/known_findings.json`` that applies to it. An entry applies to a server when the path is one of its
candidates; its padding scenarios only when the server pads; op-level entries never (a server cannot reach them:
their batches are past ``max_num_seqs``).
"""

from __future__ import annotations

from validation.known_findings import Known, entries

SHOWN_REASON_CHARS = 110


def applicable_findings(slot_mapping: str, padding: str) -> list[Known]:
    """The recorded findings a server running ``slot_mapping`` with ``padding`` can show in its answers."""
    found = []
    for entry in entries():
        if "*" not in entry.candidates and slot_mapping not in entry.candidates:
            continue
        if entry.scenario_prefix.startswith("op-level"):
            continue
        if "padding" in entry.scenario_prefix and padding == "none":
            continue
        found.append(entry)
    return found


def banner(served_model: str, slot_mapping: str, block_size: int, padding: str, max_model_len: int | None,
           api_key: bool) -> list[str]:
    """The start-up lines: what is served, then one line per known finding that applies (or that none does)."""
    truth = " (the independent truth)" if slot_mapping == "oracle" else ""
    context = f", context {max_model_len} tokens" if max_model_len else ""
    lines = [f"serving {served_model}: slot mapping {slot_mapping}{truth}, padding {padding}, block size "
             f"{block_size}{context}; greedy decoding{'; API key required' if api_key else ''}"]
    found = applicable_findings(slot_mapping, padding)
    if not found:
        lines.append("known findings: none recorded for this path and padding (fixtures/known_findings.json)")
    for entry in found:
        reason = entry.reason if len(entry.reason) <= SHOWN_REASON_CHARS else \
            entry.reason[:SHOWN_REASON_CHARS - 3] + "..."
        lines.append(f"warning: known finding applies ({entry.verdict}, '{entry.scenario_prefix.strip()}'): "
                     f"{reason} [evidence {entry.evidence}]; answers may be degenerate: this server models the bug")
    if slot_mapping != "oracle":  # shared bugs are not recorded as known findings (both sides agree on them)
        lines.append("note: answers follow this path, not the oracle; shared bugs it models are not in that file "
                     "(FINDINGS.md, e.g. chunked-prefill and prefix-hit positions)")
    return lines
