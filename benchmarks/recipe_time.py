"""The shipped ss0 recipe from scratch: wall time and peak memory of each stage, and how
close its result is to the shipped checkpoint.

    .venv/bin/python benchmarks/recipe_time.py [--work runs/recipe-time] [--threads 2]
        [--out benchmarks/results/recipe_time.json]

Runs, each in a child process with an empty ``N3_CACHE`` (so every photo is decoded and every
feature map computed inside the timed stages, as on a fresh clone):

1. ``train --config checkpoints/recipe-fconly.json`` (the fc-only stage);
2. ``train --config checkpoints/recipe-full.json --init-from <1>/final`` (the full stage; the
   recipe's ``patience`` stops it once val stops improving);
3. ``train-match --checkpoint <2>/best --members 3`` (the sentence match, three seeds).

Writes per stage its command, wall seconds and the child's peak resident memory (``wait4``),
the totals, and, for the result against ``checkpoints/n3-effl0-minilm-ss0``, the largest
difference of any tensor relative to that tensor's largest magnitude (the shipped weights
are fp16), the val curve and the chosen step.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "checkpoints" / "n3-effl0-minilm-ss0"


def run_stage(name: str, args: list[str], env: dict, log: Path) -> dict:
    cmd = [sys.executable, "-m", "n3core", *args]
    print(f"[{name}] {' '.join(args)}", flush=True)
    t0 = time.time()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.time() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"[{name}] failed with exit code {code}; see {log}")
    rec = {"command": "python -m n3core " + " ".join(args), "wall_min": round(wall / 60, 2),
           "peak_rss_gb": round(usage.ru_maxrss / 2**20, 2), "load_avg_after": [round(x, 2) for x in os.getloadavg()]}
    print(f"[{name}] {rec['wall_min']} min, peak RSS {rec['peak_rss_gb']} GB", flush=True)
    return rec


def compare(new: Path) -> dict:
    """Largest |new - shipped| / max|shipped| over the tensors both have, by group."""
    from n3core.checkpoint import load_checkpoint

    a, info_a, _ = load_checkpoint(new)
    b, info_b, _ = load_checkpoint(SHIPPED)
    groups: dict[str, float] = {}
    for k in sorted(set(a) & set(b)):
        x, y = a[k].double(), b[k].double()
        if x.shape != y.shape:
            groups[k] = float("inf")
            continue
        rel = float((x - y).abs().max() / y.abs().max().clamp_min(1e-12))
        g = k.split(".")[0] if not k.startswith("sentence_match") else ".".join(k.split(".")[:2])
        groups[g] = max(groups.get(g, 0.0), rel)
    return {"max_relative_difference_by_group": {g: round(v, 5) for g, v in groups.items()},
            "only_in_new": sorted(set(a) - set(b)), "only_in_shipped": sorted(set(b) - set(a)),
            "step": [info_a["step"], info_b["step"]], "mu": [info_a.get("mu"), info_b.get("mu")]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=str(ROOT / "runs" / "recipe-time"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--split", default="ss0")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "recipe_time.json"))
    args = ap.parse_args()
    work = Path(args.work)
    if work.exists():
        sys.exit(f"{work} exists: a from-scratch timing needs an empty work folder (remove it or pass --work)")
    work.mkdir(parents=True)
    env = {**os.environ, "N3_CACHE": str(work / "cache")}
    th = ["--threads", str(args.threads), "--no-progress"]
    t0 = time.time()
    stages = {
        "fc-only": run_stage("fc-only", ["train", "--split", args.split, "--out", str(work / "fconly"),
                                         "--config", "checkpoints/recipe-fconly.json", *th], env, work / "fconly.log"),
        "full": run_stage("full", ["train", "--split", args.split, "--out", str(work / "full"),
                                   "--config", "checkpoints/recipe-full.json",
                                   "--init-from", str(work / "fconly" / "final"), *th], env, work / "full.log"),
        "sentence match": run_stage("sentence match", ["train-match", "--checkpoint", str(work / "full" / "best"),
                                                       "--split", args.split, "--members", "3", "--seed", "0",
                                                       "--out", str(work / "v4"), *th], env, work / "match.log"),
    }
    total = round((time.time() - t0) / 60, 2)
    full_summary = json.loads((work / "full" / "summary.json").read_text())
    history = [json.loads(line) for line in (work / "full" / "log.jsonl").read_text().splitlines()]
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "threads": args.threads, "split": args.split, "stages": stages, "total_min": total,
        "peak_rss_gb": max(s["peak_rss_gb"] for s in stages.values()),
        "full_stage": {"steps_run": full_summary["steps"], "stopped_early": full_summary.get("stopped_early"),
                       "val_top1_by_step": {h["step"]: round(h["val_top1"], 4) for h in history}},
        "cache_gb": round(sum(p.stat().st_size for p in (work / "cache").rglob("*") if p.is_file()) / 2**30, 2),
    }
    if args.split == "ss0":
        report["against_shipped"] = compare(work / "v4")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    shutil.rmtree(work / "cache", ignore_errors=True)   # ~2 GB of photos and maps
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
