"""Eight app sessions at once on one shared model: does each get exactly its solo result, and
how long does each wait?

    .venv/bin/python benchmarks/concurrent_load.py [--sessions 8] [--out benchmarks/results/concurrent_load.json]

Each session (a thread, as Streamlit runs sessions) synthesizes its own class set (different
classes and K) through the app's shared :class:`~n3core.workbench.Workbench` and classifies
the ten demo photos. Solo: sessions one after another. Concurrent: all released together by a
barrier. Reports per-session latency both ways and the largest difference between any
session's concurrent and solo probabilities (0 means no cross-talk).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import threading
import time
from pathlib import Path

import torch

from n3core.data import load_image, resolve_data_root
from n3core.evaluate import write_report
from n3core.workbench import Workbench, demo_photos, split_classes

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "concurrent_load.json"))
    args = ap.parse_args()
    wb = Workbench.load(device="cpu", )
    photos = [load_image(p) for p in demo_photos()]
    pool = split_classes(resolve_data_root(None), "ss0", "test")
    names = list(pool)
    sets = [{n: pool[n] + f" (session {i})" for n in names[i:i + 5 + 2 * i]} for i in range(args.sessions)]
    wb.synthesize({n: pool[n] for n in names[:3]})                      # warm-up
    for s in sets:                                                      # both runs start with a warm text cache
        wb.full.text_encoder.encode(list(s.values()))

    def session(i, out, times):
        t0 = time.perf_counter()
        out[i] = wb.classify(wb.synthesize(sets[i]), photos)
        times[i] = (time.perf_counter() - t0) * 1000

    solo, solo_ms = [None] * len(sets), [0.0] * len(sets)
    for i in range(len(sets)):
        session(i, solo, solo_ms)
    wb.clear_caches()                                                   # synthesize and classify again, concurrently
    conc, conc_ms = [None] * len(sets), [0.0] * len(sets)
    barrier = threading.Barrier(len(sets))

    def run(i):
        barrier.wait()
        session(i, conc, conc_ms)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(sets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = (time.perf_counter() - t0) * 1000
    diff = max(float((conc[i][m] - solo[i][m]).abs().max()) for i in range(len(sets)) for m in ("full", "fc-only"))
    report = {"machine": f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads",
              "sessions": len(sets), "k_per_session": [len(s) for s in sets], "photos_per_session": len(photos),
              "solo_ms": [round(t, 1) for t in solo_ms], "concurrent_ms": [round(t, 1) for t in conc_ms],
              "solo_total_ms": round(sum(solo_ms), 1), "concurrent_wall_ms": round(wall, 1),
              "concurrent_median_ms": round(statistics.median(conc_ms), 1),
              "max_abs_probability_difference_vs_solo": diff}
    write_report(report, args.out)
    print(f"{len(sets)} sessions: solo {sum(solo_ms):.0f} ms in sequence, concurrent wall {wall:.0f} ms "
          f"(median session {statistics.median(conc_ms):.0f} ms, slowest {max(conc_ms):.0f} ms); "
          f"largest difference from solo results {diff:.2e}")


if __name__ == "__main__":
    from n3core import runtime

    runtime.setup()
    main()
