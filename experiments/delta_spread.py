"""How much of ΔΘ is written for *this* class set? (issue 14: why the language control finds so little)

The meta-model writes one ΔΘ for a whole class set; every decoder column is an attention-weighted
mix over the K classes plus a text-free part. For each checkpoint this script writes the
adaptation's change to the network, C(S) = μ·ΔΘ(S) (with keep_scale: Θ' − Θ) over every adapted
tensor, for:

* the split's test classes (K = 25, what the paper protocol evaluates),
* ``--draws`` random sets of 25 *train* classes (what the language control writes ΔΘ from),
* each test class's hard5 task (it and its 4 nearest test classes by sentence embedding) and
  ``--draws`` random sets of 5 train classes,

and reports, relative to ‖C(test set)‖:

* ``generic``: G = the mean of C over the random train sets of the same K; ``specific`` =
  ‖C(S) − G‖ / ‖C(S)‖, the part of the test set's adaptation that is not the generic one;
* ``true_vs_swapped``: median ‖C(test) − C(train draw)‖ / ‖C(test)‖ (the language control's gap
  in weight space) and ``swapped_vs_swapped``: the same between two train draws (what two
  unrelated class sets already differ by).

A set-level ΔΘ that carried the words would put a sizeable fraction into ``specific`` and a
``true_vs_swapped`` well above ``swapped_vs_swapped``.

    .venv/bin/python experiments/delta_spread.py --checkpoints checkpoints/n3-effl0-minilm-ss0 \\
        --out experiments/results/delta_spread.json
"""
from __future__ import annotations

import argparse
import platform
import random
import statistics
from pathlib import Path

import torch

from n3core.data import description_file, load_descriptions, load_split, resolve_data_root
from n3core.evaluate import nearest_tasks, write_report
from n3core.synthesize import Synthesizer

ROOT = Path(__file__).resolve().parent.parent


def change_vector(synth: Synthesizer, descriptions: dict[str, str]) -> torch.Tensor:
    """C(S): the adaptation's change to every adapted tensor, flattened into one vector."""
    a = synth.adaptation(descriptions)
    changes = a.changes(synth.model.theta())
    return torch.cat([changes[n].detach().flatten().double() for n in sorted(changes)])


def spread(synth: Synthesizer, sets: list[dict[str, str]], controls: list[dict[str, str]]) -> dict:
    """For each set S: ‖C(S) − G‖/‖C(S)‖ (G: mean over ``controls``) and the median over controls of
    ‖C(S) − C(control)‖/‖C(S)‖; over the controls, the median pairwise distance relative to their
    own norm."""
    ctrl = [change_vector(synth, c) for c in controls]
    g = torch.stack(ctrl).mean(0)
    specific, true_vs = [], []
    for s in sets:
        c = change_vector(synth, s)
        n = c.norm()
        specific.append(float((c - g).norm() / n))
        true_vs.append(statistics.median(float((c - o).norm() / n) for o in ctrl))
    pairs = [float((a - b).norm() / a.norm()) for i, a in enumerate(ctrl) for b in ctrl[i + 1:]]
    return {"sets": len(sets), "controls": len(controls), "specific": statistics.median(specific),
            "specific_all": specific, "true_vs_swapped": statistics.median(true_vs),
            "swapped_vs_swapped": statistics.median(pairs), "norm_of_generic_change": float(g.norm())}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoints", nargs="+", default=["checkpoints/n3-effl0-minilm-ss0"])
    ap.add_argument("--split", default="ss0")
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--data")
    ap.add_argument("--out", default=str(ROOT / "experiments/results/delta_spread.json"))
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    root = resolve_data_root(args.data)
    split = load_split(root, args.split)
    texts = load_descriptions(description_file(root, "allaboutbirds"))
    test = {c: texts[c] for c in split["test"]}
    train = sorted(split["train"])
    rng = random.Random(0)
    controls = {k: [{c: texts[c] for c in rng.sample(train, k)} for _ in range(args.draws)] for k in (len(test), 5)}
    out = {"split": args.split, "draws": args.draws, "machine": f"{platform.machine()} CPU", "checkpoints": {}}
    for ck in args.checkpoints:
        synth = Synthesizer.from_checkpoint(ck, device="cpu")
        tasks = nearest_tasks(synth, test)
        out["checkpoints"][ck] = {
            "keep_scale": synth.config.keep_scale, "mu": float(synth.model.meta.mu),
            "paper": spread(synth, [test], controls[len(test)]),
            "hard5": spread(synth, [{t: texts[t] for t in task} for task in tasks.values()], controls[5])}
        p, h = out["checkpoints"][ck]["paper"], out["checkpoints"][ck]["hard5"]
        print(f"{ck}: paper specific {p['specific']:.3f} true-vs-swapped {p['true_vs_swapped']:.3f} "
              f"swapped-vs-swapped {p['swapped_vs_swapped']:.3f} | hard5 specific {h['specific']:.3f} "
              f"true-vs-swapped {h['true_vs_swapped']:.3f} swapped-vs-swapped {h['swapped_vs_swapped']:.3f}")
    write_report(out, args.out)


if __name__ == "__main__":
    main()
