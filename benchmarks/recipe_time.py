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

Writes per stage its command, wall minutes and the child's peak resident memory
(``wait4``), the totals and the full stage's val curve; and, for ss0, how close the two
results come to the shipped checkpoints (:func:`compare`; ``--compare-only`` redoes just
that for an existing work folder).
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
SHIPPED = {"fc-only": ROOT / "checkpoints" / "n3-effl0-minilm-ss0-fconly",
           "full + sentence match": ROOT / "checkpoints" / "n3-effl0-minilm-ss0"}


def rel(text: str) -> str:
    """Paths inside the project written relative to it (the report reads the same on every clone)."""
    return text.replace(f"{ROOT}/", "")


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
    rec = {"command": "python -m n3core " + rel(" ".join(args)), "wall_min": round(wall / 60, 2),
           "peak_rss_gb": round(usage.ru_maxrss / 2**20, 2), "load_avg_after": [round(x, 2) for x in os.getloadavg()]}
    print(f"[{name}] {rec['wall_min']} min, peak RSS {rec['peak_rss_gb']} GB", flush=True)
    return rec


def compare(new: Path, shipped: Path, split: str) -> dict:
    """How close a re-run came to a shipped checkpoint: both synthesized from the split's val
    descriptions and run on every val photo (the classes that chose the checkpoint; test
    classes are not read): per-class top-1 of each, how many photos get the same top class,
    and the largest logit difference relative to the largest logit. Weights alone are a poor
    measure: a few tensors the loss cannot see (a bias added to every class's logit, the
    attention's key biases) drift with float noise under Adam."""
    import torch

    from n3core.data import description_file, load_descriptions, resolve_data_root
    from n3core.datasets import read_images, resolve_split
    from n3core.evaluate import per_class_accuracy
    from n3core.imagecache import ImageCache
    from n3core.synthesize import Synthesizer

    root = resolve_data_root(None)
    images = read_images(root)
    classes = resolve_split(root, split, images)["val"]
    desc = load_descriptions(description_file(root), classes)
    val = images.subset(classes)
    labels = torch.tensor([classes.index(r.label) for r in val.records])
    logits, info = [], []
    for ck in (new, shipped):
        synth = Synthesizer.from_checkpoint(ck, device="cpu")
        cache = ImageCache(val.records, synth.preprocess, progress=False)
        clf = synth.synthesize({c: desc[c] for c in classes})
        with torch.no_grad():
            logits.append(torch.cat([clf(cache.spec.normalize(cache.images[i:i + 64]))
                                     for i in range(0, len(cache), 64)]).float())
        info.append(json.loads((Path(ck) / "checkpoint.json").read_text()))
    a, b = logits
    return {"checkpoints": [rel(str(new)), rel(str(shipped))], "val_classes": len(classes), "val_photos": len(labels),
            "val_top1": [round(per_class_accuracy(x, labels, len(classes))["top1"], 4) for x in logits],
            "same_top_class": round(float((a.argmax(1) == b.argmax(1)).float().mean()), 4),
            "max_logit_difference_relative": round(float((a - b).abs().max() / b.abs().max()), 5),
            "step": [info[0]["step"], info[1]["step"]], "mu": [info[0].get("mu"), info[1].get("mu")]}


STAGES = ("fc-only", "full", "sentence match")
OUT_DIR = {"fc-only": "fconly", "full": "full", "sentence match": "v4"}   # each stage's result in the work folder


def stage_args(name: str, args, work: Path) -> list[str]:
    th = ["--threads", str(args.threads), "--no-progress"]
    out = str(work / OUT_DIR[name])
    if name == "fc-only":
        return ["train", "--split", args.split, "--out", out, "--config", "checkpoints/recipe-fconly.json", *th]
    if name == "full":
        return ["train", "--split", args.split, "--out", out, "--config", "checkpoints/recipe-full.json",
                "--init-from", str(work / OUT_DIR["fc-only"] / "final"), *th]
    return ["train-match", "--checkpoint", str(work / OUT_DIR["full"] / "best"), "--split", args.split,
            "--members", "3", "--seed", "0", "--out", out, *th]


def full_stage(work: Path) -> dict:
    summary = json.loads((work / "full" / "summary.json").read_text())
    history = [json.loads(line) for line in (work / "full" / "log.jsonl").read_text().splitlines()]
    return {"steps_run": summary["steps"], "stopped_early": summary.get("stopped_early"),
            "val_top1_by_step": {h["step"]: round(h["val_top1"], 4) for h in history},
            "micro_batches": json.loads((work / "full" / "final" / "checkpoint.json").read_text())
            ["train_config"].get("micro_batches", 1)}


def again(args, work: Path) -> int:
    """Re-run some stages (their outputs removed first, in recipe order) and update the report:
    each stage's record, the total as the sum of the stages, the peak, the comparison."""
    out = Path(args.out)
    report = json.loads(out.read_text())
    env = {k: v for k, v in os.environ.items() if k != "N3_CACHE"}
    for name in (n for n in STAGES if n in args.again):
        shutil.rmtree(work / OUT_DIR[name], ignore_errors=True)
        rec = run_stage(name, stage_args(name, args, work), env, work / f"{name.split()[-1]}.log")
        rec["note"] = "re-run on its own after a recipe change; photos and feature maps from the default cache"
        report["stages"][name] = rec
    if "full" in args.again and "sentence match" not in args.again:
        # the matches were trained on the frozen backbone, not on the full stage: the recipe's result is
        # the new full model with the same matches (join-matches writes exactly that)
        from n3core.sentence_match import join_matches

        join_matches(work / "full" / "best", [work / "v4"], work / "v4-new")
        shutil.rmtree(work / "v4")
        (work / "v4-new").rename(work / "v4")
        report["stages"]["sentence match"]["note"] = ("from the first run; joined onto the re-run full model with "
                                                      "join-matches (the matches do not depend on it)")
    report["total_min"] = round(sum(s["wall_min"] for s in report["stages"].values()), 2)
    report["total_is"] = "the sum of the stages' wall times (some re-run on their own)"
    report["peak_rss_gb"] = max(s["peak_rss_gb"] for s in report["stages"].values())
    report["full_stage"] = full_stage(work)
    if args.split == "ss0":
        report["against_shipped"] = against_shipped(work)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


def against_shipped(work: Path) -> dict:
    return {name: compare(work / sub, SHIPPED[name], "ss0")
            for name, sub in (("fc-only", "fconly/final"), ("full + sentence match", "v4"))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=str(ROOT / "runs" / "recipe-time"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--split", default="ss0")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "recipe_time.json"))
    ap.add_argument("--compare-only", action="store_true",
                    help="redo only the comparison with the shipped checkpoints, for the report at --out")
    ap.add_argument("--again", nargs="+", choices=STAGES, default=None,
                    help="re-run these stages in the existing --work folder (after a recipe change), keeping the "
                         "others' records in the report at --out; photos come from the default cache")
    args = ap.parse_args()
    work = Path(args.work)
    if args.again:
        return again(args, work)
    if args.compare_only:
        report = json.loads(Path(args.out).read_text())
        report["against_shipped"] = against_shipped(work)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        print(json.dumps(report["against_shipped"], indent=1))
        return 0
    if work.exists():
        sys.exit(f"{work} exists: a from-scratch timing needs an empty work folder (remove it or pass --work)")
    work.mkdir(parents=True)
    env = {**os.environ, "N3_CACHE": str(work / "cache")}
    t0 = time.time()
    stages = {name: run_stage(name, stage_args(name, args, work), env, work / f"{name.split()[-1]}.log")
              for name in STAGES}
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "threads": args.threads, "split": args.split, "stages": stages, "total_min": round((time.time() - t0) / 60, 2),
        "peak_rss_gb": max(s["peak_rss_gb"] for s in stages.values()), "full_stage": full_stage(work),
        "cache_gb": round(sum(p.stat().st_size for p in (work / "cache").rglob("*") if p.is_file()) / 2**30, 2),
    }
    if args.split == "ss0":
        report["against_shipped"] = against_shipped(work)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    shutil.rmtree(work / "cache", ignore_errors=True)   # photos and maps: GBs
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
