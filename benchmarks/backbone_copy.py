"""What a synthesized classifier's own backbone copy costs: ``copy.deepcopy`` (how it was made
until 2026-11-29) against :func:`n3core.synthesize.clone_module`, on the shipped backbone.

    .venv/bin/python benchmarks/backbone_copy.py [--repeats 21] [--out benchmarks/results/backbone_copy.json]

Both make the same module with Θ' in place (every adapted tensor replaced; here Θ + 0, the
cost does not depend on the values); medians of ``--repeats`` copies, after one warm-up.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "backbone_copy.json"))
    args = ap.parse_args()
    from n3core import runtime

    runtime.setup()
    from n3core.backbones import create_backbone
    from n3core.synthesize import clone_module

    module = create_backbone("efficientnet_lite0").module.eval()
    params = dict(module.named_parameters())
    adapted = {n: p.detach() + 0 for n, p in params.items()}

    def deepcopy():
        memo = {id(params[n]): nn.Parameter(v, requires_grad=False) for n, v in adapted.items()}
        return copy.deepcopy(module, memo)

    report = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
              "modules": sum(1 for _ in module.modules()), "parameters": len(params),
              "deepcopy_ms": median_ms(deepcopy, args.repeats),
              "clone_module_ms": median_ms(lambda: clone_module(module, adapted), args.repeats),
              "repeats": args.repeats}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
