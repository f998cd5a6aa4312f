"""The N3 paper's evaluation protocol (``python -m n3core evaluate``).

One K-way classifier over all test classes, evaluated on every photo of those classes;
per-class averaged accuracy (mean over classes of correct/images in that class), top-1 and
top-5; the classifier is synthesized for 10 random permutations of the class order (the
set encoder is permutation-equivariant only up to numerics and dropout-free noise, and the
paper reports the median), and the median is reported.
"""
from __future__ import annotations

import json
import random
import statistics
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

__all__ = ["per_class_accuracy", "evaluate_protocol", "format_summary"]


def per_class_accuracy(logits: torch.Tensor, labels: torch.Tensor, n_classes: int) -> dict:
    """``logits`` ``[N, K]``, ``labels`` ``[N]`` → per-class averaged top-1 and top-5 (fractions),
    and the per-class top-1 list. Classes with no images are left out of the mean."""
    k5 = min(5, logits.shape[1])
    top = logits.topk(k5, dim=1).indices
    hit1 = top[:, 0] == labels
    hit5 = (top == labels[:, None]).any(1)
    per1, per5 = [], []
    for c in range(n_classes):
        m = labels == c
        if m.any():
            per1.append(hit1[m].float().mean().item())
            per5.append(hit5[m].float().mean().item())
        else:
            per1.append(float("nan"))
            per5.append(float("nan"))
    valid1 = [v for v in per1 if v == v]
    valid5 = [v for v in per5 if v == v]
    return {"top1": sum(valid1) / len(valid1), "top5": sum(valid5) / len(valid5), "per_class_top1": per1}


def evaluate_protocol(synthesizer, descriptions: dict[str, str], images, *, permutations: int = 10,
                      seed: int = 0, batch_size: int = 64, progress: bool = True, image_size: int | None = None) -> dict:
    """Run the protocol for ``descriptions`` (class → text) over ``images`` (an ImageSet of
    exactly those classes). Returns the JSON-able report."""
    from .imagecache import ImageCache, eval_batch

    classes = list(descriptions)
    t0 = time.time()
    cache = ImageCache(images.records, 192, progress=progress)
    size = image_size or synthesizer.config.image_size
    pre = synthesizer.backbone.preprocess
    rng = random.Random(seed)
    orders = [classes] + [rng.sample(classes, len(classes)) for _ in range(permutations - 1)]
    top1, top5, per_class_runs = [], [], []
    shared_features, shared_backbone, reused = None, None, 0
    for order in tqdm(orders, desc="class-order permutations", disable=not progress):
        clf = synthesizer.synthesize({c: descriptions[c] for c in order})
        idx = {c: i for i, c in enumerate(order)}
        labels = torch.tensor([idx[r.label] for r in cache.records])
        with torch.no_grad():
            # The features depend on the class order only through Θ' (fc-only: never). When this
            # order's adapted backbone equals the first one's to float precision, its features
            # are the first one's too, and the backbone pass is skipped.
            bb = dict(clf.backbone.state_dict())
            same = shared_backbone is not None and all(
                torch.allclose(bb[k].float(), v.float(), rtol=1e-5, atol=1e-7) for k, v in shared_backbone.items())
            if same:
                feats = shared_features
                reused += 1
            else:
                feats = torch.cat([clf.backbone(eval_batch(cache.images[s:s + batch_size], size, pre.mean, pre.std)
                                                .to(clf.device)).float().cpu()
                                   for s in range(0, len(cache), batch_size)])
                if shared_backbone is None:
                    shared_features, shared_backbone = feats, bb
            logits = clf.head(feats.to(clf.device)).float().cpu()
        res = per_class_accuracy(logits, labels, len(order))
        top1.append(res["top1"])
        top5.append(res["top5"])
        per_class_runs.append({c: res["per_class_top1"][idx[c]] for c in classes})
    med_run = sorted(range(len(top1)), key=lambda i: top1[i])[len(top1) // 2]
    return {
        "per_class_top1": {"median": statistics.median(top1), "all": top1},
        "per_class_top5": {"median": statistics.median(top5), "all": top5},
        "classes": len(classes), "images": len(images), "permutations": len(orders),
        "per_class_top1_of_median_run": per_class_runs[med_run],
        "mode": synthesizer.config.mode, "wall_s": round(time.time() - t0, 1),
        "backbone_passes_reused": reused,
        "mu": float(synthesizer.model.meta.mu.detach()), "gamma": float(synthesizer.config.gamma),
    }


def format_summary(report: dict) -> str:
    return (f"{report.get('mode', '')} N3 on {report['classes']} classes, {report['images']} images: "
            f"per-class top-1 {report['per_class_top1']['median'] * 100:.1f}%  "
            f"top-5 {report['per_class_top5']['median'] * 100:.1f}%  "
            f"(median of {report['permutations']} class orders; chance {100 / report['classes']:.1f}%)")


def write_report(report: dict, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=1))
