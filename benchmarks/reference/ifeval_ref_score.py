"""The reference side of bench_ifeval_process.py: google-research IFEval as lm-eval 0.4.13 ships it (its four
ifeval files copied into a package ``ifref`` by make_ifeval_reference.sh, so lm_eval's own heavy __init__ is not
imported), run as a whole process. Reads input_data.jsonl and a responses jsonl (key or prompt -> response) and
prints the four metrics."""
import json, os, sys
from pathlib import Path

# Offline, NLTK finds no punkt_tab of its own: use the one dsa-validate's scorer writes on its first run.
_ours = Path.home() / ".cache" / "dsa-validation" / "nltk_data"
if "NLTK_DATA" not in os.environ and _ours.is_dir():
    os.environ["NLTK_DATA"] = str(_ours)
from ifref import utils  # noqa: E402 - after NLTK_DATA
data, responses = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(data, encoding="utf-8") if l.strip()]
by_key, by_prompt = {}, {}
for l in open(responses, encoding="utf-8"):
    if l.strip():
        r = json.loads(l)
        if "key" in r: by_key[r["key"]] = r["response"]
        if "prompt" in r: by_prompt[r["prompt"]] = r["response"]
results = []
for row in rows:
    resp = by_key.get(row["key"], by_prompt.get(row["prompt"], ""))
    results.append(utils.process_results(row, [resp]))
n = len(results)
ps = sum(r["prompt_level_strict_acc"] for r in results) / n
pl = sum(r["prompt_level_loose_acc"] for r in results) / n
ist = [x for r in results for x in r["inst_level_strict_acc"]]
il = [x for r in results for x in r["inst_level_loose_acc"]]
print(f"prompt strict {100*ps:.2f} inst strict {100*sum(ist)/len(ist):.2f} prompt loose {100*pl:.2f} inst loose {100*sum(il)/len(il):.2f}")
