"""Which backbone and text encoder to ship: a frozen-feature screen on the dev split only.

    .venv/bin/python experiments/encoder_screen.py [--mpnet DIR] [--out experiments/results/cub/encoder_screen.json]

Reads only ss0's 98 **train** classes (no val or test class). Three dev folds, each holding out
25 of them (seeds 0, 1, 2) and training on the other 73. Per (backbone, text encoder, fold):

* ESZSL on frozen pooled features and mean-pooled description embeddings (All About Birds),
  over the same 8-setting grid for every pair: the best setting and the grid's median;
* a PDCNN-FC head (text → classifier MLP, :class:`n3core.baselines.PDCNNFC`), fixed settings
  (60 epochs, no selection on the held-out classes).

Backbones: EfficientNet-Lite0 / 1 / 2, each at its native size (224 / 240 / 260 px). Text
encoders: all-MiniLM-L6-v2 (the shipped one) and, when ``--mpnet`` names the unzipped
all-mpnet-base-v2 folder, all-mpnet-base-v2. Held-out classes are scored 25-way, per-class top-1,
one class order. ``images_per_s``: each frozen backbone's speed on this machine (2 threads).
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path

import torch

from n3core.backbones import create_backbone
from n3core.baselines import (PDCNNConfig, PDCNNFC, eszsl_fit, eszsl_scores, meanpool_text,
                              per_class_top1, predict, train_pdcnn)
from n3core.data import description_file, load_descriptions, load_split, read_cub, resolve_data_root
from n3core.features import frozen_features
from n3core.imagecache import ImageCache
from n3core.preprocess import PreprocessSpec
from n3core.text import TextEncoder

ROOT = Path(__file__).resolve().parent.parent
BACKBONES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
ESZSL_GRID = [(1e-2, 1e-1), (1e-1, 1), (1, 1e-1), (1, 10), (10, 1), (1e-1, 1e-2), (10, 100), (100, 10)]
FOLDS, HELD_OUT = 3, 25


def dev_classes() -> tuple[object, list[str], list]:
    """The data root, ss0's 98 train classes and their photos' records (2 torch threads)."""
    torch.set_num_threads(2)
    root = resolve_data_root(None)
    train = load_split(root, "ss0")["train"]
    return root, train, read_cub(root).subset(train).records


def folds(train: list[str]) -> list[tuple[list[str], list[str]]]:
    out = []
    for seed in range(FOLDS):
        c = sorted(train)
        random.Random(seed).shuffle(c)
        out.append((sorted(c[HELD_OUT:]), sorted(c[:HELD_OUT])))
    return out


def score(feats, labels_of, classes_tr, classes_ho, text, rows_tr, rows_ho, seed: int) -> dict:
    idx = {c: i for i, c in enumerate(classes_tr)}
    ho = {c: i for i, c in enumerate(classes_ho)}
    xtr, ytr = feats[rows_tr], torch.tensor([idx[labels_of[r]] for r in rows_tr])
    xho, yho = feats[rows_ho], torch.tensor([ho[labels_of[r]] for r in rows_ho])
    ttr, tho = text[classes_tr], text[classes_ho]
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    ztr, zho = (xtr - mu) / sd, (xho - mu) / sd
    es = [per_class_top1(eszsl_scores(zho, eszsl_fit(ztr, ytr, ttr, g, lam), tho), yho, len(classes_ho))
          for g, lam in ESZSL_GRID]
    cfg = PDCNNConfig(epochs=60, seed=seed)
    model, _ = train_pdcnn(PDCNNFC(ttr.shape[1], xtr.shape[1], cfg), xtr, ytr, ttr, cfg)
    pd = per_class_top1(predict(model, xho, tho), yho, len(classes_ho))
    return {"eszsl_best": max(es), "eszsl_median": statistics.median(es), "pdcnn_fc": pd}


@torch.no_grad()
def throughput(bb, cache, n: int = 256, batch: int = 64) -> float:
    """The frozen backbone's photos per second at its native size (one warm-up batch first)."""
    x = cache.spec.normalize(cache.images[:batch])
    bb.module(x)
    t0 = time.perf_counter()
    for s in range(0, n, batch):
        bb.module(cache.spec.normalize(cache.images[s:s + batch]))
    return round(n / (time.perf_counter() - t0), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mpnet", default=None, help="folder of the unzipped all-mpnet-base-v2 model")
    ap.add_argument("--backbones", nargs="+", default=BACKBONES)
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "cub" / "encoder_screen.json"))
    args = ap.parse_args()
    root, train, recs = dev_classes()
    labels_of = [r.label for r in recs]
    desc = load_descriptions(description_file(root, "allaboutbirds"), train)
    encoders = {"all-MiniLM-L6-v2": TextEncoder()}
    if args.mpnet:
        encoders["all-mpnet-base-v2"] = TextEncoder(args.mpnet, name="all-mpnet-base-v2")
    texts = {}
    for name, te in encoders.items():
        t0 = time.time()
        emb = meanpool_text(te, [desc[c] for c in train])
        texts[name] = ({c: i for i, c in enumerate(train)}, emb, round(time.time() - t0, 2))
    report = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads, {platform.system()}",
              "classes": "ss0 train (98); 3 folds of 73 train / 25 held out", "photos": len(recs),
              "text_encode_s": {n: t[2] for n, t in texts.items()}, "results": {}, "images_per_s": {}}
    for bb_name in args.backbones:
        bb = create_backbone(bb_name)
        spec = PreprocessSpec.for_backbone(bb)
        cache = ImageCache(recs, spec)
        feats = frozen_features(bb, cache)[0][:, 0]
        report["images_per_s"][bb_name] = throughput(bb, cache)
        for te_name, (tidx, emb, _) in texts.items():
            per_fold = []
            for f, (ctr, cho) in enumerate(folds(train)):
                rows_tr = [i for i, l in enumerate(labels_of) if l in set(ctr)]
                rows_ho = [i for i, l in enumerate(labels_of) if l in set(cho)]
                text = _Rows(tidx, emb)
                per_fold.append(score(feats, labels_of, ctr, cho, text, rows_tr, rows_ho, seed=f))
            agg = {k: {"folds": [round(r[k], 4) for r in per_fold],
                       "mean": round(statistics.mean(r[k] for r in per_fold), 4),
                       "sd": round(statistics.stdev(r[k] for r in per_fold), 4)} for k in per_fold[0]}
            report["results"][f"{bb_name} + {te_name}"] = agg
            print(bb_name, te_name, {k: (v["mean"], v["sd"]) for k, v in agg.items()}, flush=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"written {args.out}")


class _Rows:
    """Embedding rows by class list: ``text[classes]`` → ``[len(classes), D]``."""

    def __init__(self, index: dict[str, int], emb: torch.Tensor):
        self.index, self.emb = index, emb

    def __getitem__(self, classes: list[str]) -> torch.Tensor:
        return self.emb[torch.tensor([self.index[c] for c in classes])]


if __name__ == "__main__":
    main()
