"""Time one explanation: token evidence plus full and fc-only saliency maps and their difference
(smoothed, as the app draws them), and, when the full checkpoint has a sentence match, where
each sentence of the predicted class looked (the Explain view draws it too), K = 25.

    .venv/bin/python benchmarks/explain_speed.py [--out benchmarks/results/explain_speed.json]

Uses the shipped checkpoints, the ss0 test classes (All About Birds descriptions) and real
test photos. Classifiers are synthesized once (as the app does); the timed part is what the
app does per image: evidence for the prediction and a saliency map from each classifier.
Reports the median over photos and the machine it ran on.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from n3core.data import description_file, load_descriptions, load_image, load_split, read_cub, resolve_data_root
from n3core.evaluate import write_report
from n3core.explain import saliency_maps, sentence_attention, token_evidence
from n3core.synthesize import Synthesizer

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "explain_speed.json"))
    ap.add_argument("--photos", type=int, default=6)
    ap.add_argument("--method", default="saliency")
    ap.add_argument("--smooth", type=float, default=6.0, help="σ in pixels of the maps' blur (the app's default)")
    args = ap.parse_args()
    root = resolve_data_root(None)
    classes = load_split(root, "ss0")["test"]
    desc_all = load_descriptions(description_file(root), classes)
    desc = {c: desc_all[c] for c in classes}
    cub = read_cub(root)
    full = Synthesizer.from_checkpoint(ROOT / "checkpoints" / "n3-effl0-minilm-ss0", device="cpu")
    fc = Synthesizer.from_checkpoint(ROOT / "checkpoints" / "n3-effl0-minilm-ss0-fconly", device="cpu",
                                     backbone=full.backbone, text_encoder=full.text_encoder)
    t0 = time.perf_counter()
    clf_full, clf_fc = full.synthesize(desc), fc.synthesize(desc)
    synth_s = time.perf_counter() - t0
    images = [load_image(cub.records[cub.indices(c)[0]].path) for c in classes[:args.photos + 1]]
    token_evidence(full, desc, images[0])                      # warm-up
    times, parts = [], []
    for im in images[1:]:
        t = time.perf_counter()
        ev = token_evidence(full, desc, im)
        t1 = time.perf_counter()
        target = list(desc).index(ev.label)
        saliency_maps({"full": clf_full, "fc-only": clf_fc}, im, target, args.method, smooth=args.smooth)
        t2 = time.perf_counter()
        if clf_full.words is not None:
            sentence_attention(clf_full, im, target)
        t3 = time.perf_counter()
        times.append(t3 - t)
        parts.append({"evidence_s": t1 - t, "saliency_both_s": t2 - t1, "sentence_attention_s": t3 - t2})
    report = {"k": len(desc), "photos": len(times), "saliency_method": args.method, "smooth_sigma_px": args.smooth,
              "explain_s_median": statistics.median(times), "explain_s_all": times, "parts": parts,
              "synthesize_both_s": synth_s, "sentence_match": clf_full.words is not None,
              "threads": torch.get_num_threads(),
              "machine": f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads".strip(),
              "target_s": 5.0}
    write_report(report, args.out)
    what = "evidence + 2 saliency maps" + (" + sentence attention" if report["sentence_match"] else "")
    print(f"explanation ({what}, K={len(desc)}): median {report['explain_s_median']:.2f} s "
          f"over {len(times)} photos (target < 5 s) → {args.out}")


if __name__ == "__main__":
    from n3core import runtime

    runtime.setup()
    main()
