"""Does training on more than one description per class help zero-shot? A fast probe on frozen
features that never reads a ss0 test class.

    .venv/bin/python experiments/text_sets_probe.py [--out experiments/results/text_sets_probe.json]

Learner: PDCNN-FC (``n3core.baselines``: an MLP from the description's sentence embedding to
cosine-classifier weights; hidden 1024, dropout 0.5, lr 3e-4, weight decay 1e-2, 60 epochs, the
recipe probe's best setting) over frozen EfficientNet-Lite0 features at 224 px. Evaluation text
is always the main set (All About Birds). What varies is the text each training class reads in a
mini-batch:

* ``main``: its All About Birds paragraph only;
* ``sets, main P``: with probability P the main paragraph, else one of the class's other
  descriptions (Wikipedia lead where there is one, the GPT-3 descriptors, the GPT-4 part
  descriptors; phrase lists joined) — ``train_pdcnn(..., alternatives=, main_prob=)``, what
  N3's ``main_text_prob`` and ``extra_descriptions`` do;
* ``drop, main 0.5``: the same, the alternatives being 8 copies of the main paragraph with
  sentences dropped (keep 0.7, N3's ``text_variants``);
* ``sets+drop, main 0.5``: both kinds of alternatives.

Two protocols: 5-fold CV over ss0's 75 train + val classes with two fold seeds (10 held-out sets
of 15 classes, mean), and the development split ``experiments/splits/ss0-dev.json`` (50 train /
25 held-out classes, as ``experiments/dev_split_runs.sh`` uses for N3 itself).
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

import torch

from n3core.backbones import create_backbone
from n3core.baselines import PDCNNConfig, PDCNNFC, cached_features, meanpool_text, per_class_top1, predict, train_pdcnn
from n3core.data import description_file, load_descriptions, resolve_data_root
from n3core.datasets import class_folds, trainval_records
from n3core.evaluate import write_report
from n3core.imagecache import ImageCache
from n3core.preprocess import PreprocessSpec
from n3core.text import TextEncoder
from n3core.textbank import text_variants

ROOT = Path(__file__).resolve().parent.parent
HP = dict(hidden=1024, dropout=0.5, lr=3e-4, weight_decay=1e-2, epochs=60)
EXTRA_SETS = ("wikipedia_lead", "gpt3_descriptors", "gpt4_part_descriptors")
VARIANTS = {"main": ("", 1.0), "sets, main 0.7": ("sets", 0.7), "sets, main 0.5": ("sets", 0.5),
            "sets, main 0.25": ("sets", 0.25), "sets, main 0": ("sets", 0.0), "drop, main 0.5": ("drop", 0.5),
            "sets+drop, main 0.5": ("sets+drop", 0.5)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "text_sets_probe.json"))
    args = ap.parse_args()
    root = resolve_data_root(None)
    classes, records, labels_of = trainval_records(root, "ss0")
    bb = create_backbone("efficientnet_lite0")
    feats = cached_features(bb, ImageCache(records, PreprocessSpec.for_backbone(bb, 224)), "probe")[0]
    te = TextEncoder()

    main_text = load_descriptions(description_file(root, "allaboutbirds"), classes)
    vec = dict(zip(classes, meanpool_text(te, [main_text[c] for c in classes])))
    sets = {c: [] for c in classes}
    for name in EXTRA_SETS:
        d = load_descriptions(description_file(root, name))
        have = [c for c in classes if c in d]
        for c, v in zip(have, meanpool_text(te, [d[c] for c in have])):
            sets[c].append(v)
    rng = random.Random(0)
    drops = {c: list(meanpool_text(te, text_variants(main_text[c], 9, 0.7, rng)[1:])) for c in classes}

    def part(cs):
        idx = {c: i for i, c in enumerate(cs)}
        rows = [i for i, c in enumerate(labels_of) if c in idx]
        return feats[rows], torch.tensor([idx[labels_of[i]] for i in rows])

    def score(variant: str, train: list[str], held: list[str]) -> float:
        kind, main_prob = VARIANTS[variant]
        alts = [(sets[c] if "sets" in kind else []) + (drops[c] if "drop" in kind else []) for c in train]
        f, y = part(train)
        fv, yv = part(held)
        cfg = PDCNNConfig(**HP)
        model, _ = train_pdcnn(PDCNNFC(len(vec[train[0]]), f.shape[1], cfg), f, y,
                               torch.stack([vec[c] for c in train]), cfg, alternatives=alts, main_prob=main_prob)
        return per_class_top1(predict(model, fv, torch.stack([vec[c] for c in held])), yv, len(held))

    dev = json.loads((ROOT / "experiments" / "splits" / "ss0-dev.json").read_text())
    cv_sets = [held for seed in (0, 1) for held in class_folds(classes, 5, seed)]
    report = {"machine": f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads",
              "learner": f"PDCNN-FC {HP} on frozen Lite0 features, 224 px; evaluation text: All About Birds",
              "protocols": {"cv": "5-fold CV over ss0 train+val, fold seeds 0 and 1 (10 held-out sets of 15 classes)",
                            "dev": "experiments/splits/ss0-dev.json: 50 train / 25 held-out classes"},
              "results": {}}
    for variant in VARIANTS:
        t0 = time.time()
        cv = [score(variant, [c for c in classes if c not in held], held) for held in cv_sets]
        d = score(variant, dev["train"], dev["val"])
        report["results"][variant] = {"cv_top1": sum(cv) / len(cv), "cv_per_set": cv, "dev_top1": d,
                                      "wall_s": round(time.time() - t0, 1)}
        print(f"{variant:20s} cv {100 * sum(cv) / len(cv):5.1f}  dev {100 * d:5.1f}  ({time.time() - t0:.0f} s)", flush=True)
        write_report(report, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    from n3core import runtime

    runtime.setup()
    main()
