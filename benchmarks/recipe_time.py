"""The shipped recipe from scratch on this machine: wall time and peak memory per stage.

    .venv/bin/python benchmarks/recipe_time.py [--split ss0] [--work runs/recipe-time-ss0] [--threads 2]
    .venv/bin/python benchmarks/recipe_time.py --split ss0 --from-work runs/ss0   # a run already made

Runs ``python -m n3core recipe --split SPLIT --out WORK`` in a child process with an empty
``N3_CACHE`` (every photo decoded and every feature computed inside the timed stages, as on a
fresh clone), and writes ``benchmarks/results/recipe_time-<split>.json``: each stage's wall
minutes and the recipe process's peak resident memory up to its end (the recipe's own
``stages.jsonl``), the totals, and the child's peak as the kernel counted it (``wait4``).
``--from-work`` reports a work folder that the recipe command already filled (its cache
must have been empty too; the report says it was not timed here).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def summarise(work: Path) -> dict:
    stages = [json.loads(x) for x in (work / "stages.jsonl").read_text().splitlines() if x.strip()]
    return {"stages": stages, "total_min": round(sum(s["wall_min"] for s in stages), 1),
            "peak_rss_gb": max(s["peak_rss_gb"] for s in stages)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", default="ss0")
    ap.add_argument("--work", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--from-work", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"recipe_time-{args.split}.json")
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}", "split": args.split,
              "threads": args.threads}
    if args.from_work:
        work = Path(args.from_work)
        report.update(timed_here=False, work=str(work), **summarise(work))
    else:
        work = Path(args.work or ROOT / "runs" / f"recipe-time-{args.split}")
        cache = tempfile.mkdtemp(prefix="n3-cache-")
        cmd = [sys.executable, "-m", "n3core", "recipe", "--split", args.split, "--out", str(work),
               "--threads", str(args.threads), "--no-progress"]
        t0 = time.time()
        with open(work.parent / f"{work.name}.log", "w") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "N3_CACHE": cache}, stdout=log,
                                    stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"the recipe failed; see {work.parent / f'{work.name}.log'}")
        report.update(timed_here=True, command=" ".join(cmd[1:]), wall_min=round((time.time() - t0) / 60, 1),
                      child_peak_rss_gb=round(usage.ru_maxrss / 2**20, 2), **summarise(work))
    out.write_text(json.dumps(report, indent=1))
    print(f"{args.split}: {report['total_min']} min, peak {report['peak_rss_gb']} GB → {out}")


if __name__ == "__main__":
    main()
