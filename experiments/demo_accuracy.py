"""How well the app's demo classifier does: the five demo descriptions (ours, assets/demo) over
every shared CUB photo of those five ss0 test species (unseen in training).

    .venv/bin/python experiments/demo_accuracy.py [--out experiments/results/demo_accuracy.json]
"""
from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch

from n3core.data import display_name, read_cub, resolve_data_root
from n3core.evaluate import evaluate_protocol, write_report
from n3core.workbench import Workbench, demo_descriptions

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "demo_accuracy.json"))
    args = ap.parse_args()
    desc = demo_descriptions()
    cub = read_cub(resolve_data_root(None))
    label = {display_name(c).replace("-", " ").casefold(): c for c in cub.classes}
    keys = {name: label[name.replace("-", " ").casefold()] for name in desc}
    images = cub.subset(list(keys.values()))
    wb = Workbench.load(device="cpu")
    report = {"machine": f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads",
              "classes": list(desc), "images": len(images)}
    for mode, synth in (("full", wb.full), ("fc-only", wb.fc_only)):
        r = evaluate_protocol(synth, {keys[n]: t for n, t in desc.items()}, images, progress=False)
        report[mode] = r
        print(f"demo, {mode}: {len(desc)}-way per-class top-1 {r['per_class_top1']['median']:.1%} on {len(images)} photos")
    write_report(report, args.out)


if __name__ == "__main__":
    from n3core import runtime

    runtime.setup()
    main()
