"""Which inputs make zero-shot work easier? A fast probe that never reads a test class.

    .venv/bin/python experiments/recipe_probe.py [--out experiments/results/recipe_probe.json]

Cross-validation over the 75 train + val classes of ``ss0`` (5 folds of 15 held-out classes,
train on the other 60; ss0's 25 test classes are never loaded): per-class top-1 on the held-out
classes, one 15-way classifier per fold, mean over folds. Two cheap learners stand in for the
meta-model (ESZSL on L2-normalised inputs, and PDCNN-FC: an MLP from the text vector to
cosine-classifier weights), each with a small grid, best setting by the fold mean.

What varies: the image size of the frozen EfficientNet-Lite0 features (160 vs 224 px; the
photos are 227 px) and how a description becomes a vector (max-pooled token states of the
whole paragraph, as the baselines do; the same over sentences encoded one at a time; the mean
of per-sentence MiniLM sentence embeddings, the pooling MiniLM was trained with).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from n3core.backbones import create_backbone
from n3core.baselines import (PDCNNConfig, PDCNNFC, cached_features, eszsl_fit, eszsl_scores, maxpool_text,
                              meanpool_text, per_class_top1, predict, train_pdcnn)
from n3core.datasets import class_folds, trainval_records
from n3core.data import description_file, load_descriptions, resolve_data_root
from n3core.evaluate import write_report
from n3core.imagecache import ImageCache
from n3core.preprocess import PreprocessSpec
from n3core.text import TextEncoder, split_sentences

ROOT = Path(__file__).resolve().parent.parent
FOLDS = 5
ESZSL_GRID = [(1e-1, 1), (1, 1e-1), (1, 1), (1, 10), (10, 1), (10, 10)]
PDCNN_GRID = [dict(hidden=512, dropout=0.3, lr=1e-3, weight_decay=1e-3, epochs=60),
              dict(hidden=512, dropout=0.5, lr=1e-3, weight_decay=1e-2, epochs=60),
              dict(hidden=1024, dropout=0.5, lr=3e-4, weight_decay=1e-2, epochs=60)]


def features(bb, records, size: int) -> torch.Tensor:
    """Frozen pooled features ``[N, F]`` of ``records``, the whole photo at ``size`` px (cached)."""
    return cached_features(bb, ImageCache(records, PreprocessSpec.for_backbone(bb, size)), "probe")[0]


@torch.no_grad()
def text_vectors(te: TextEncoder, texts: list[str], how: str) -> torch.Tensor:
    """One vector per description ``[K, D]``; the paragraph variants are the baselines' own
    :func:`maxpool_text` / :func:`meanpool_text`, the sentence variants encode each sentence alone."""
    if how == "maxpool-paragraph":
        return maxpool_text(te, texts)
    if how == "mean-paragraph":
        return meanpool_text(te, texts)
    out = []
    for t in texts:
        units = split_sentences(t)
        enc = te.encode(units)
        m = enc.mask.clone()
        m[:, 0] = False
        m[torch.arange(len(units)), enc.mask.sum(1) - 1] = False       # no [CLS] / [SEP]
        w = m.unsqueeze(-1).float()
        if how == "mean-sentence-embeddings":
            sent = (enc.states * w).sum(1) / w.sum(1).clamp_min(1)
            out.append(F.normalize(sent, dim=-1).mean(0))
        elif how == "mean-sentence-tokens":
            out.append((enc.states * w).sum((0, 1)) / w.sum())
        else:
            out.append(enc.states.masked_fill(~m[..., None], float("-inf")).amax((0, 1)))
    return torch.stack(out)


def run(feats, labels_of, text, classes, held_out, method, hp) -> float:
    train = [c for c in classes if c not in held_out]
    def part(cs):
        idx = {c: i for i, c in enumerate(cs)}
        rows = [i for i, c in enumerate(labels_of) if c in idx]
        return feats[rows], torch.tensor([idx[labels_of[i]] for i in rows]), torch.stack([text[c] for c in cs])
    f, y, t = part(train)
    fv, yv, tv = part(held_out)
    if method == "ESZSL":
        V = eszsl_fit(F.normalize(f, dim=-1), y, F.normalize(t, dim=-1), *hp)
        return per_class_top1(eszsl_scores(F.normalize(fv, dim=-1), V, F.normalize(tv, dim=-1)), yv, len(tv))
    cfg = PDCNNConfig(**hp)
    model, _ = train_pdcnn(PDCNNFC(t.shape[1], f.shape[1], cfg), f, y, t, cfg)
    return per_class_top1(predict(model, fv, tv), yv, len(tv))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "recipe_probe.json"))
    ap.add_argument("--sizes", nargs="*", type=int, default=[160, 224])
    ap.add_argument("--texts", nargs="*", default=["maxpool-paragraph", "maxpool-sentences", "mean-paragraph",
                                                   "mean-sentence-embeddings", "mean-sentence-tokens"])
    args = ap.parse_args()
    torch.manual_seed(0)
    root = resolve_data_root(None)
    classes, records, labels_of = trainval_records(root, "ss0")
    desc = load_descriptions(description_file(root, "allaboutbirds"), classes)
    bb = create_backbone("efficientnet_lite0")
    te = TextEncoder()
    fs = class_folds(classes, FOLDS)
    report = {"machine": f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads",
              "protocol": f"{FOLDS}-fold CV over ss0 train+val classes (15 held out per fold); per-class top-1 "
                          "of one 15-way classifier per fold, mean over folds; best grid setting",
              "results": []}
    if Path(args.out).exists():                      # keep the combinations not rerun
        old = json.loads(Path(args.out).read_text())["results"]
        report["results"] = [r for r in old if not (r["image_size"] in args.sizes and r["text"] in args.texts)]
    feats = {s: features(bb, records, s) for s in args.sizes}
    texts = {h: dict(zip(classes, text_vectors(te, [desc[c] for c in classes], h))) for h in args.texts}
    for size in args.sizes:
        for how in args.texts:
            for method, grid in (("ESZSL", ESZSL_GRID), ("PDCNN-FC", PDCNN_GRID)):
                t0 = time.time()
                scores = [(hp, [run(feats[size], labels_of, texts[how], classes, f, method, hp) for f in fs])
                          for hp in grid]
                hp, per_fold = max(scores, key=lambda x: sum(x[1]))
                rec = {"image_size": size, "text": how, "method": method, "chosen": hp,
                       "cv_top1": sum(per_fold) / len(per_fold), "per_fold": per_fold,
                       "wall_s": round(time.time() - t0, 1)}
                report["results"].append(rec)
                print(f"{size}px {how:26s} {method:9s} cv top-1 {rec['cv_top1']:.3f}  ({rec['wall_s']} s)", flush=True)
                write_report(report, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    from n3core import runtime

    runtime.setup()
    main()
