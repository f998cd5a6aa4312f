"""How well the mapped Lite0 weights classify CUB photos of species ImageNet-1k knows.

    .venv/bin/python experiments/imagenet_sanity.py [--out experiments/results/imagenet_sanity.json]

The same check as tests/test_backbones.py (which asserts top-5 >= 80%), with the numbers
written out: every photo of 8 CUB classes, ImageNet head kept, eval preprocessing at 224 px.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from n3core.backbones import create_backbone, imagenet_class_names
from n3core.evaluate import write_report
from n3core.data import load_image, read_cub, resolve_data_root
from n3core.preprocess import PreprocessSpec

KNOWN = {"047.American_Goldfinch": "goldfinch", "048.European_Goldfinch": "goldfinch",
         "014.Indigo_Bunting": "indigo bunting", "073.Blue_Jay": "jay", "100.Brown_Pelican": "pelican",
         "101.White_Pelican": "pelican", "001.Black_footed_Albatross": "albatross", "087.Mallard": "drake"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "imagenet_sanity.json"))
    args = ap.parse_args()
    bb = create_backbone("efficientnet_lite0", keep_imagenet_head=True)
    names, cub = imagenet_class_names(), read_cub(resolve_data_root(None))
    spec = PreprocessSpec.for_backbone(bb, crop_pct=bb.preprocess.crop_pct)     # timm's ImageNet evaluation
    per, hits5, hits1, total = {}, 0, 0, 0
    for cls, target in KNOWN.items():
        recs = [cub.records[i] for i in cub.indices(cls)]
        x = spec.pil_batch([load_image(r.path) for r in recs])
        with torch.no_grad():
            top = bb.imagenet_head(bb.module(x)).topk(5, 1).indices
        t = names.index(target)
        h5, h1 = int((top == t).any(1).sum()), int((top[:, 0] == t).sum())
        per[cls] = {"imagenet_class": target, "photos": len(recs), "top5": h5 / len(recs), "top1": h1 / len(recs)}
        hits5, hits1, total = hits5 + h5, hits1 + h1, total + len(recs)
    report = {"photos": total, "top5": hits5 / total, "top1": hits1 / total, "per_class": per,
              "weights": bb.weights_source.split("/")[-1], "input": "224 px: the central 0.875 of the short side, bicubic, mean=std=0.5"}
    write_report(report, args.out)
    print(f"ImageNet class in top-5 for {hits5}/{total} photos ({100 * hits5 / total:.1f}%), top-1 {100 * hits1 / total:.1f}%")


if __name__ == "__main__":
    from n3core import runtime

    runtime.setup()
    main()
