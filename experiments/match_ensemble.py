"""Issue 14 probe: does averaging several independently trained sentence matches beat one?

On ss0 test the three match seeds scored 38.8, 37.0 and 34.7 on the same v3 full model (sd
2.0), on the dev split 36.1, 34.5, 36.1: the match's seed carries more of the result than any
choice made so far. Matches trained on the same split see the same frozen feature maps (the
backbone's Θ; ΔΘ does not enter their training), so they are interchangeable between the full
models of one split, and their mean is a drop-in replacement.

This script evaluates a checkpoint with its sentence match replaced by the mean of the matches
of ``--members`` (each a checkpoint from ``train-match`` on the same split), through the
``evaluate`` command unchanged (its flags follow ``--``):

    .venv/bin/python experiments/match_ensemble.py --checkpoint runs/dev-match-s0 \\
        --members runs/dev-match-s0 runs/dev-match-s1 runs/dev-match-s2 --threads 1 -- \\
        --split experiments/splits/ss0-dev.json --part val --kappa 1 --out REPORT.json

The language control swaps every member's sentences, as it does the single match's. The dev
numbers in RESULTS were made with this script's first version, which averaged the members' heads
itself; it now uses n3core's ``MatchEnsemble`` (the same mean), and ``python -m n3core
join-matches`` writes such a checkpoint for good.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from n3core import cli  # noqa: E402
from n3core.checkpoint import load_checkpoint  # noqa: E402
from n3core.sentence_match import MatchEnsemble  # noqa: E402
from n3core.synthesize import Synthesizer  # noqa: E402


def load_match(path) -> MatchEnsemble:
    weights, info, _ = load_checkpoint(path)
    if "sentence_match" not in info:
        raise SystemExit(f"{path} has no sentence match")
    return MatchEnsemble.from_checkpoint(weights, info["sentence_match"])


def main() -> int:
    argv = sys.argv[1:]
    rest = argv[argv.index("--") + 1:] if "--" in argv else []
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="the full model (with a match, whose kappa is the default)")
    ap.add_argument("--members", nargs="+", required=True, help="checkpoints whose matches are averaged")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    members = [m for p in args.members for m in load_match(p).members]
    original = Synthesizer.from_checkpoint.__func__

    def from_checkpoint(cls, directory, *a, **kw):
        synth = original(cls, directory, *a, **kw)
        dev = next(synth.model.meta.parameters()).device
        synth.match = MatchEnsemble(members).to(dev).eval()
        return synth

    Synthesizer.from_checkpoint = classmethod(from_checkpoint)
    return cli.main(["evaluate", "--checkpoint", args.checkpoint, *rest])


if __name__ == "__main__":
    sys.exit(main())
