"""Lite0 forward time with and without n3core's malloc tuning (n3core/runtime.py).

    .venv/bin/python benchmarks/malloc_tuning.py [--out benchmarks/results/malloc_tuning.json]

Each setting runs in its own process (glibc's settings are per process); the median of 5
forward passes of 64 images at 160 px, after one warm-up, is reported.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from pathlib import Path

from n3core.evaluate import write_report

CHILD = """
import statistics, time, torch
from n3core import runtime
runtime.setup()
from n3core.backbones import create_backbone
m = create_backbone().module
x = torch.randn(64, 3, 160, 160)
ts = []
for i in range(6):
    t = time.perf_counter()
    with torch.no_grad():
        m(x)
    ts.append(time.perf_counter() - t)
print(statistics.median(ts[1:]), runtime.malloc_tuned())
"""


def run(env_extra: dict) -> tuple[float, bool]:
    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    t, tuned = out.stdout.split()
    return float(t), tuned == "True"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "malloc_tuning.json"))
    args = ap.parse_args()
    default_s, d_tuned = run({"N3_NO_MALLOC_TUNING": "1"})
    tuned_s, t_tuned = run({})
    assert t_tuned and not d_tuned
    rep = {"forward_64x160_s": {"glibc_default": default_s, "n3core_tuned": tuned_s},
           "speedup": default_s / tuned_s, "machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    write_report(rep, args.out)
    print(f"Lite0 forward, 64 images at 160 px: {default_s:.2f} s with glibc defaults, {tuned_s:.2f} s tuned "
          f"({rep['speedup']:.1f}x)")


if __name__ == "__main__":
    main()
