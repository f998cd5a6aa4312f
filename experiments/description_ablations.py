"""Does N3 read the descriptions? The shipped ss0 models (full and fc-only) evaluated on ss0
test with other description sources, for docs/RESULTS.md.

    .venv/bin/python experiments/description_ablations.py [--permutations 10] [--out experiments/results/description_ablations.json]

Sources (the models were trained on All About Birds; every other source is swapped in at
test time):
  allaboutbirds, gpt3_descriptors, gpt4_part_descriptors (phrase lists joined into sentences);
  wikipedia_lead, on the test classes it covers, with allaboutbirds on the same classes beside it;
  class_name_only ("Red winged Blackbird.");
  shuffled: every class gets another test class's All About Birds text (a seeded derangement);
  name_masked: All About Birds with the class's own name (and its plural) replaced by "this bird".
"""
from __future__ import annotations

import argparse
import platform
import random
import re
from pathlib import Path

import torch

from n3core.data import description_file, display_name, load_descriptions, load_split, read_cub, resolve_data_root
from n3core.evaluate import evaluate_protocol, write_report
from n3core.synthesize import Synthesizer

ROOT = Path(__file__).resolve().parent.parent


def mask_name(text: str, label: str) -> str:
    """Replace the class's display name (hyphens/spaces interchangeable, optional plural,
    any case) with "this bird"."""
    words = re.split(r"[\s\-_']+", display_name(label))
    pattern = r"(?:'s)?[\s\-']*".join(re.escape(w) for w in words if w) + r"(?:e?s)?\b"
    return re.sub(pattern, "this bird", text, flags=re.IGNORECASE)


def derangement(items: list, seed: int = 0) -> list:
    rng = random.Random(seed)
    while True:
        out = items[:]
        rng.shuffle(out)
        if all(a != b for a, b in zip(items, out)):
            return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--permutations", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "description_ablations.json"))
    args = ap.parse_args()
    root = resolve_data_root(None)
    test = load_split(root, "ss0")["test"]
    cub = read_cub(root)
    aab = load_descriptions(description_file(root, "allaboutbirds"))
    wiki = load_descriptions(description_file(root, "wikipedia_lead"))
    gpt3 = load_descriptions(description_file(root, "gpt3_descriptors"), test)
    gpt4 = load_descriptions(description_file(root, "gpt4_part_descriptors"), test)
    wiki_classes = [c for c in test if c in wiki]
    shuffled = dict(zip(test, derangement([aab[c] for c in test])))
    sources = {
        "allaboutbirds": {c: aab[c] for c in test},
        "gpt3_descriptors": {c: gpt3[c] for c in test},
        "gpt4_part_descriptors": {c: gpt4[c] for c in test},
        "wikipedia_lead": {c: wiki[c] for c in wiki_classes},
        "allaboutbirds_on_wikipedia_classes": {c: aab[c] for c in wiki_classes},
        "class_name_only": {c: display_name(c) + "." for c in test},
        "shuffled": shuffled,
        "name_masked": {c: mask_name(aab[c], c) for c in test},
    }
    masked = sum(aab[c] != sources["name_masked"][c] for c in test)
    report = {"machine": f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads", "split": "ss0 test",
              "permutations": args.permutations, "name_masked_changed": f"{masked} of {len(test)} descriptions",
              "wikipedia_classes": len(wiki_classes), "results": {}}
    full = Synthesizer.from_checkpoint(ROOT / "checkpoints" / "n3-effl0-minilm-ss0", device="cpu")
    fc = Synthesizer.from_checkpoint(ROOT / "checkpoints" / "n3-effl0-minilm-ss0-fconly", device="cpu",
                                     backbone=full.backbone, text_encoder=full.text_encoder)
    for name, desc in sources.items():
        assert set(desc) <= set(test), name
        images = cub.subset(list(desc))
        report["results"][name] = {}
        for mode, synth in (("fc-only", fc), ("full", full)):
            r = evaluate_protocol(synth, desc, images, permutations=args.permutations, progress=False)
            report["results"][name][mode] = r
            print(f"{name:36s} {mode:8s} K={r['classes']:2d} top-1 {r['per_class_top1']['median']:.3f} "
                  f"top-5 {r['per_class_top5']['median']:.3f} ({r['wall_s']} s)", flush=True)
        write_report(report, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    from n3core import runtime

    runtime.setup()
    main()
