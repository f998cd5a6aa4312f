"""One-edit synthesis latency of this tree against an earlier commit, measured in turns.

    .venv/bin/python benchmarks/one_edit_ab.py --base 096883a [--rounds 3] [--k 25]
        [--out benchmarks/results/one_edit_ab.json]

This machine's speed drifts over minutes (shared host): two runs of ``perf.py`` gave 77 and
119 ms for the same code. Alternating fresh processes of the two trees, round after round,
puts both under the same conditions. Each process loads the shipped checkpoint (the one in
its own tree), synthesizes K classes once (warm-up), then times ``--edits`` syntheses after
a one-description edit (a sentence appended, as in ``perf.py``); a round reports each
tree's median. The base tree is a ``git worktree`` under a temporary folder.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, statistics, sys, time
from n3core import runtime
runtime.setup()
from n3core.data import description_file, display_name, load_descriptions, resolve_data_root
from n3core.synthesize import Synthesizer
k, edits = int(sys.argv[1]), int(sys.argv[2])
pool = {display_name(a): b for a, b in load_descriptions(description_file(resolve_data_root(None))).items()}
names = list(pool)[:k]
desc = {n: pool[n] for n in names}
s = Synthesizer.from_checkpoint("checkpoints/n3-effl0-minilm-ss0", device="cpu")
s.synthesize(desc)
times = []
for i in range(edits):
    t = time.perf_counter()
    s.synthesize({**desc, names[0]: desc[names[0]] + f" Edit {i}."})
    times.append((time.perf_counter() - t) * 1000)
print(json.dumps({"median_ms": statistics.median(times)}))
"""


def run(tree: Path, k: int, edits: int, data: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree), "N3_DATA": data}
    r = subprocess.run([sys.executable, "-c", CHILD, str(k), str(edits)], cwd=tree, env=env, check=True,
                       capture_output=True, text=True)
    return round(json.loads(r.stdout.strip().splitlines()[-1])["median_ms"], 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="the commit to compare with")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--k", type=int, default=25)
    ap.add_argument("--edits", type=int, default=25)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "one_edit_ab.json"))
    args = ap.parse_args()
    from n3core.data import resolve_data_root

    data = str(resolve_data_root(None))
    base = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.strip()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.strip()
    rounds = []
    with tempfile.TemporaryDirectory() as d:
        wt = Path(d) / "base"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(wt), base], cwd=ROOT, check=True)
        try:
            for r in range(args.rounds):
                rounds.append({"base": run(wt, args.k, args.edits, data), "this": run(ROOT, args.k, args.edits, data)})
                print(f"round {r + 1}: base {base} {rounds[-1]['base']} ms, this tree {rounds[-1]['this']} ms",
                      flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(wt)], cwd=ROOT, check=False)
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "k": args.k, "edits_per_process": args.edits,
              "base": base, "this_tree": f"{head} + uncommitted changes" if subprocess.run(
                  ["git", "diff", "--quiet", "HEAD"], cwd=ROOT).returncode else head,
              "rounds": rounds,
              "median_of_rounds_ms": {"base": statistics.median(x["base"] for x in rounds),
                                      "this": statistics.median(x["this"] for x in rounds)}}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["median_of_rounds_ms"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
