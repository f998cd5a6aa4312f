"""Edit → updated predictions in the app, for K = 5 (the demo) and K = 25 (ss0 test classes).

    .venv/bin/python benchmarks/app_latency.py [--repeats 7] [--out benchmarks/results/app_latency.json]

Two measurements per K, medians over ``--repeats`` edits (each edit appends a new sentence to
one description, so exactly one description is re-encoded):

* ``predictions_ms``: what the app does before it can draw the new predictions: re-synthesize
  both classifiers (full and fc-only) through the shared :class:`~n3core.workbench.Workbench`
  and classify the ten demo photos with both (the photos were classified before the edit, as
  on the app's landing view, so their prepared tensors and plain-backbone features are cached);
* ``page_rerun_ms``: the whole Streamlit script rerun after the edit, measured with AppTest, on
  the landing view (classes, predictions with before-edit ticks, the edit-diff chart; the other
  views are lazy tabs and do not run).

For a real browser, see ``benchmarks/browser_latency.py``.

Needs the data folder for the 25 ss0 test descriptions (All About Birds).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from n3core.data import load_image, resolve_data_root
from n3core.evaluate import write_report
from n3core.data import split_classes
from n3core.workbench import Workbench, demo_descriptions, demo_photos

ROOT = Path(__file__).resolve().parent.parent


def library_latency(wb: Workbench, descriptions: dict[str, str], images, repeats: int) -> dict:
    wb.classify(wb.synthesize(descriptions), images)  # cold: every description encoded, photos prepared
    first = next(iter(descriptions))
    times, synth = [], []
    for r in range(repeats):
        edited = {**descriptions, first: descriptions[first] + f" Edit number {r} of the benchmark."}
        t0 = time.perf_counter()
        syn = wb.synthesize(edited)
        wb.classify(syn, images)
        times.append((time.perf_counter() - t0) * 1000)
        synth.append(syn.ms)
        assert syn.encoded == 1, syn.encoded
    return {"predictions_ms": round(statistics.median(times), 1), "synthesis_ms": round(statistics.median(synth), 1),
            "all_predictions_ms": [round(t, 1) for t in times]}


def page_latency(descriptions: dict[str, str], repeats: int) -> dict:
    import json
    import tempfile

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=600)
    at.run()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(descriptions, f)
    at.sidebar.file_uploader(key="import_json").set_value(("k.json", Path(f.name).read_bytes(), "application/json"))
    at.run()
    first = at.session_state["classes"][0]["id"]
    times = []
    for r in range(repeats):
        box = at.text_area(key=f"text_{first}")
        t0 = time.perf_counter()
        box.set_value(box.value + f" Page edit {r}.").run()
        times.append((time.perf_counter() - t0) * 1000)
        assert not at.exception, [e.value for e in at.exception]
        assert any("1 description(s) re-encoded" in s.value for s in at.success), [s.value for s in at.success]
    return {"page_rerun_ms": round(statistics.median(times), 1), "all_page_rerun_ms": [round(t, 1) for t in times]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "app_latency.json"))
    args = ap.parse_args()
    wb = Workbench.load(device="cpu")
    images = [load_image(p) for p in demo_photos()]
    sets = {"5": demo_descriptions(), "25": split_classes(resolve_data_root(None), "ss0", "test")}
    report = {"machine": f"{platform.machine()} {platform.processor() or ''}, {torch.get_num_threads()} torch threads, "
                         f"CPU".strip(),
              "images_classified": len(images), "repeats": args.repeats, "targets": {"predictions_ms, K = 5": 300, "page_rerun_ms, K = 5": 800}}
    for k, desc in sets.items():
        assert len(desc) == int(k), (k, len(desc))
        row = library_latency(wb, desc, images, args.repeats)
        row.update(page_latency(desc, args.repeats))
        report[k] = row
        print(f"K = {k}: predictions {row['predictions_ms']:.0f} ms (synthesis {row['synthesis_ms']:.0f} ms), "
              f"whole page rerun {row['page_rerun_ms']:.0f} ms")
    write_report(report, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    from n3core import runtime

    runtime.setup()
    main()
