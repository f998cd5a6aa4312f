"""The committed reports the generated documents read, in one place.

* The recipe's reports per split (``python -m n3core recipe``): for ss0 in the shipped
  checkpoints' folders, for the other splits in ``experiments/results/cub/recipe/<split>/``
  (``full/`` and ``fconly/``, each with its ``eval-*.json``), and each split's
  ``stages.jsonl`` there.
* The frozen-feature baselines (``experiments/baselines.py``):
  ``experiments/results/cub/baselines.json``.
* The encoder screen (``experiments/encoder_screen.py`` of commit 7e324e8):
  ``experiments/results/cub/encoder_screen.json``.

A report that is not there yet is None; the documents then say "not run".
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CK = ROOT / "checkpoints"
RES = ROOT / "experiments" / "results" / "cub"
NAME = "n3-effl0-minilm"
SS = ("ss0", "ss1", "ss2")
SPLITS = SS + ("ps",)
PAPER_TABLE2 = {            # Nguyen et al. (ACL 2020), Table 2, CUB-50, per-class top-1 %
    "PDCNN-FC": (6.1, 6.1), "PDCNN-FC+Conv": (7.5, 6.5), "MEGAZSL": (2.9, 1.8), "N3 (ResNet-18)": (17.6, 9.5)}


def load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def model_dir(split: str, which: str) -> Path:
    """Where a split's recipe output lives: ``which`` is "full" or "fc-only"."""
    if split == "ss0":
        return CK / (f"{NAME}-ss0" if which == "full" else f"{NAME}-ss0-fconly")
    return RES / "recipe" / split / ("full" if which == "full" else "fconly")


def report_path(split: str, which: str, kind: str = "") -> Path:
    """``kind``: "" (paper protocol), "-hard5" or "-delta-only" (κ = 0, full only)."""
    return model_dir(split, which) / f"eval-{split}-test{kind}.json"


def report(split: str, which: str, kind: str = "") -> dict | None:
    return load(report_path(split, which, kind))


def stages(split: str) -> list[dict] | None:
    p = RES / "recipe" / split / "stages.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()] if p.exists() else None


def baselines() -> dict | None:
    return load(RES / "baselines.json")


def top1(r: dict | None) -> float | None:
    return None if r is None else 100 * r["per_class_top1"]["median"]


def top5(r: dict | None) -> float | None:
    return None if r is None or "per_class_top5" not in r else 100 * r["per_class_top5"]["median"]


def key(r: dict | None, k: str) -> float | None:
    return None if r is None or r.get(k) is None else 100 * r[k]


def ss_summary(values: dict[str, float | None]) -> tuple[str, float | None]:
    """Per-split values → the SS cell ("38.2 ± 1.1" over ss0–2; "ss0 only: 38.2" while the
    others are not run) and the mean when all three exist."""
    have = {s: v for s, v in values.items() if s in SS and v is not None}
    if len(have) == len(SS):
        m = statistics.mean(have.values())
        return f"{m:.1f} ± {statistics.stdev(have.values()):.1f}", m
    if not have:
        return "not run", None
    return ", ".join(f"{s} only: {v:.1f}" for s, v in have.items()) if len(have) == 1 else \
        " / ".join(f"{s} {v:.1f}" for s, v in have.items()) + " (not all of ss0–2 run)", None


def fmt(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "not run"
    return f"{x:+.1f}" if signed else f"{x:.1f}"
