"""Generate docs/RESULTS.md from the JSON reports the benchmark scripts write.

    .venv/bin/python docs/writers/write_results.py

Inputs (each written by a committed script; missing ones are reported as missing):
  checkpoints/*/eval-ss0-test.json           python -m n3core evaluate (shipped models)
  experiments/results/n3/*.json                experiments/n3_runs.sh (ss1, ss2, gamma/mu0 ablation)
  experiments/results/ps-*-on-ps-test.json     experiments/ps_runs.sh
  experiments/results/baselines.json           experiments/baselines.py (v1 inputs: 160 px, max-pooled text)
  experiments/results/baselines-v2.json        experiments/baselines.py --image-size 224 --text mean
  experiments/results/baselines-v3.json        the same with --extra-sets (see the main table's notes)
  experiments/results/text_sets_probe.json     experiments/text_sets_probe.py
  experiments/results/recipe_probe.json        experiments/recipe_probe.py
  experiments/results/dev_split.json           experiments/dev_split_runs.sh
  experiments/results/description_ablations.json  experiments/description_ablations.py
  experiments/results/late_conditioning-*.json    experiments/late_conditioning.py (commands in its docstring)
  experiments/results/sentence_match_dev/*.json  experiments/sentence_match_dev.sh
  experiments/results/sentence_match/*.json      experiments/sentence_match_runs.sh (one match per seed)
  experiments/results/match_ensemble/*.json      experiments/match_ensemble.py (dev), match_ensemble_runs.sh
  experiments/results/keep_scale_dev/*.json      experiments/keep_scale_dev.sh
  experiments/results/hard_episodes_dev/*.json   experiments/hard_episodes_dev.sh
  experiments/results/seen_language_gain/*.json  experiments/seen_language_gain.sh
  experiments/results/unseen_full_stage/*.json   experiments/unseen_full_stage.sh
  benchmarks/results/perf.json                benchmarks/perf.py
"""
from __future__ import annotations

import fnmatch
import functools
import json
import math
import statistics
from pathlib import Path

from _emit import emit   # this folder is on sys.path when a writer runs as a script

ROOT = Path(__file__).resolve().parents[2]
RES = ROOT / "experiments" / "results"          # experiment drivers and probes
PERF = ROOT / "benchmarks" / "results"          # performance measurements
OUT = ROOT / "docs" / "RESULTS.md"
SPLITS3 = ["ss0", "ss1", "ss2"]
V2_DEV_RUNS = ("label", "classifier", "classifier-extra")


# Reports evaluated before issue 13's one preprocessing pipeline (test photos cached at 192 px, then
# upsampled to 224). Their models are not kept, so they stand, marked †, until someone retrains them.
OLD_PATH = ("n3/*-v1-*.json", "n3/ss0-v2-*.json", "ps-fconly-on-ps-test.json", "ps-full-on-ps-test.json",
            "ps-v2-*-on-ps-test.json")


def load(path: Path):
    """A JSON report, or None; ``_old_path`` says whether it is one of :data:`OLD_PATH`."""
    if not path.exists():
        return None
    r = json.loads(path.read_text())
    rel = path.relative_to(RES).as_posix() if path.is_relative_to(RES) else ""
    r["_old_path"] = any(fnmatch.fnmatch(rel, pat) for pat in OLD_PATH)
    return r


def load_all(folder: Path, names) -> dict | None:
    """``folder/NAME.json`` for every name, or None when any is missing."""
    reports = {n: load(folder / f"{n}.json") for n in names}
    return None if any(r is None for r in reports.values()) else reports


def mark(r) -> str:
    return "†" if r and r.get("_old_path") else ""


def pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def cell(r) -> tuple:
    if r is None:
        return None, None
    return r["per_class_top1"]["median"], r["per_class_top5"]["median"]


def gamma_section() -> list[str]:
    """The paper's table 3 on ss0: v3 (plain and with keep_scale) and v1, each (γ, μ₀) a 100-step full stage."""
    settings = [("1", "0.001"), ("0.999", "0.001"), ("0.99", "0.01"), ("0.9", "0.1"), ("0.5", "0.5"),
                ("0.1", "0.9"), ("0.01", "0.99")]
    cols = [("v3", "ss0-v3-gamma{}-mu{}"), ("v3 keep_scale", "ss0-v3-keep-gamma{}-mu{}"),
            ("v3 keep_scale, ΔΘ from 0", "ss0-v3-keepzero-gamma{}-mu{}"), ("v1", "ss0-v1-gamma{}-mu{}")]
    lines = ["| γ | μ₀ |" + "".join(f" {c} |" for c, _ in cols), "|" + " --- |" * (2 + len(cols))]
    got = {}
    for g, m in settings:
        row = f"| {g} | {m} |"
        for c, pattern in cols:
            r = got[c, g] = load(RES / "n3" / (pattern.format(g, m) + ".json"))
            t1, t5 = cell(r)
            if r is None:
                row += " not run |"
                continue
            row += f" {pct(t1)} / {pct(t5)}{mark(r)}"
            row += f" · μ {r['mu']:.4f}" if "mu" in r else ""
            row += f" · gain {100 * r['language_gain']:+.1f}" if r.get("language_gain") is not None and c != "v1" else ""
            row += " |"
        lines.append(row)
    out = ["## Ablations\n", "### γ and initial μ (the paper's table 3), N3 full on ss0\n",
           "For each (γ, μ₀) the full stage, shortened to 100 steps (val picks step 50 or 100), starts from the "
           "fc-only model: v3, the shipped recipe from the shipped fc-only checkpoint; v1, the v1 recipe from the v1 "
           "fc-only run (`experiments/n3_runs.sh`, `V1=1` for v1). γ is fixed; μ is trainable (its value in the "
           "evaluated checkpoint is shown), and for v3 the language control of `evaluate` (ΔΘ from other classes' texts). "
           "The shipped full model is γ = 1, μ₀ = 0.001 (a 600-step schedule; the plain v3 γ = 1 row of 100 steps was "
           "not run). *keep_scale* (`KEEP=1 experiments/n3_runs.sh`, issue 14): Θ' = γ·Θ + μ·ΔΘ, then each adapted "
           "output channel (a 1-D BatchNorm tensor as a whole) rescaled to its norm in Θ, so the BatchNorm statistics "
           "frozen at their pretrained values still fit Θ'; γ then only weighs ΔΘ against Θ (γ, μ act as 1, μ/γ). "
           "*ΔΘ from 0* (`KEEP=zero`): keep_scale with the decoders' output maps initialised to zero "
           "(`delta_init=\"zero\"`), so every γ starts at exactly the fc-only network. Each cell: top-1 / top-5, "
           "μ in the evaluated checkpoint, and (v3) `language_gain`.\n",
           "\n".join(lines), "",
           "Reading: γ < 1 scales every adapted tensor, convolutions and BatchNorm scales and shifts alike; "
           "with BatchNorm statistics frozen at their pretrained values the shrinkage compounds over Lite0's "
           "layers, and a short full stage cannot undo it, so plain γ ≤ 0.9 sits at chance here. "]
    keep = {g: cell(got["v3 keep_scale", g])[0] for g, _ in settings if got["v3 keep_scale", g] is not None}
    if "1" in keep and "0.9" in keep:
        gap = round(100 * keep["1"], 1) - round(100 * keep["0.9"], 1)   # as the table shows them
        out[-1] += (f"With keep_scale the shrinkage is undone channel by channel: γ = 0.9 scores "
                    f"{pct(keep['0.9'])} against {pct(keep['1'])} at γ = 1 ({abs(gap):.1f} points "
                    f"{'lower' if gap >= 0 else 'higher'}; the issue's target is within 3). Over the {len(keep)} "
                    f"keep_scale settings run, top-1 spans {pct(min(keep.values()))}–{pct(max(keep.values()))}. "
                    "At γ = 1 and μ₀ = 0.001 keep_scale changes "
                    "nothing measurable (μΔΘ is too small for the rescaling to matter), and its language_gain stays "
                    "as small as plain N3's.")
    zero = {g: got["v3 keep_scale, ΔΘ from 0", g] for g, _ in settings if got["v3 keep_scale, ΔΘ from 0", g] is not None}
    z = {g: cell(r)[0] for g, r in zero.items()}
    if "0.5" in z and "0.5" in keep:
        out[-1] += (f" Where keep_scale alone fails (γ = 0.5, μ₀ = 0.5: {pct(keep['0.5'])}), starting ΔΘ at zero, so that "
                    f"every γ starts at the fc-only network, gives {pct(z['0.5'])}"
                    + (f" (γ = 0.1: {pct(z['0.1'])})" if "0.1" in z else "")
                    + (f"; at γ = 0.9 it gives {pct(z['0.9'])} against {pct(zero['0.9']['no_adaptation'])} with no ΔΘ"
                       if "0.9" in z else "")
                    + ". With a fresh ΔΘ weighted as much as Θ the network starts destroyed; from zero it is not, but "
                    "Adam moves the decoders by steps of about their learning rate whatever μ is, so μ₀ acts as a "
                    "learning rate for Θ' and a large one still costs accuracy within 100 steps.")
    return out + ["\n"]


def n3_results() -> dict:
    out = {}
    for tag in ("fconly", "full"):
        name = f"N3 v1 {'fc-only' if tag == 'fconly' else 'full'}"
        out[name] = {"ss0": load(RES / "n3" / f"ss0-v1-{tag}.json"),
                     **{s: load(RES / "n3" / f"{s}-v1-{tag}.json") for s in ("ss1", "ss2")},
                     "ps": load(RES / f"ps-{tag}-on-ps-test.json")}
    for tag in ("fconly", "full"):
        name = f"N3 v2 {'fc-only' if tag == 'fconly' else 'full'}"
        out[name] = {"ss0": load(RES / "n3" / f"ss0-v2-{tag}.json"), "ps": load(RES / f"ps-v2-{tag}-on-ps-test.json")}
    out["**N3 v3 fc-only (shipped)**"] = {"ss0": load(ROOT / "checkpoints" / "n3-effl0-minilm-ss0-fconly" / "eval-ss0-test.json"),
                                          **{s: load(RES / "n3" / f"{s}-v3-fconly.json") for s in ("ss1", "ss2")},
                                          "ps": load(RES / "ps-v3-fconly-on-ps-test.json")}
    out["N3 v3 full"] = {**{s: load(RES / "n3" / f"{s}-v3-full.json") for s in SPLITS3},
                         "ps": load(RES / "ps-v3-full-on-ps-test.json")}
    kappa = shipped_kappa()
    if kappa is not None:
        m, e = RES / "sentence_match", RES / "match_ensemble"
        out[V4_ONE] = {sp: load(m / f"{sp}-match-s0-k{kappa:g}.json") for sp in ("ss0", "ss1", "ss2", "ps")}
        out[V4] = {"ss0": load(ROOT / "checkpoints" / "n3-effl0-minilm-ss0" / "eval-ss0-test.json"),
                   **{sp: load(e / f"{sp}-mean3-k{kappa:g}.json") for sp in ("ss1", "ss2", "ps")}}
    return out


V4_ONE = "N3 v4 with one sentence match (seed 0)"
V4 = "**N3 v4: v3 full + the mean of 3 sentence matches (shipped)**"


def shipped_kappa() -> float | None:
    """The shipped full checkpoint's sentence-match weight κ, or None without a match."""
    info = json.loads((ROOT / "checkpoints" / "n3-effl0-minilm-ss0" / "checkpoint.json").read_text())
    return info["sentence_match"]["config"]["kappa"] if "sentence_match" in info else None


def main_table(rows: dict) -> str:
    lines = ["| method | ss0 | ss1 | ss2 | mean ± sd (ss0–2) | ps |", "| --- | --- | --- | --- | --- | --- |"]
    for name, per in rows.items():
        cells, t1s = [], []
        for s in SPLITS3:
            t1, t5 = cell(per.get(s))
            cells.append("missing" if t1 is None else f"{pct(t1)} / {pct(t5)}{mark(per.get(s))}")
            if t1 is not None:
                t1s.append(t1)
        ms = (f"{pct(statistics.mean(t1s))} ± {100 * statistics.stdev(t1s):.1f}" if len(t1s) == 3 else "—")
        later = any(v in name for v in ("v2", "v3", "v4"))
        cells = ["not run" if c == "missing" and later else c for c in cells]
        t1, t5 = cell(per.get("ps"))
        ps = ("not run" if later else "missing") if t1 is None else f"{pct(t1)} / {pct(t5)}{mark(per.get('ps'))}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ms} | {ps} |")
    return "\n".join(lines)


def split_reading(rows: dict) -> str:
    """A paragraph comparing, split by split, the shipped recipe's two modes with PDCNN-FC on the same texts;
    computed from the reports so that it cannot go stale."""
    full = rows.get("N3 v3 full", {})
    fc = rows.get("**N3 v3 fc-only (shipped)**", {})
    base = rows.get("PDCNN-FC (v3 inputs)", {})
    have = [s for s in SPLITS3 if all(cell(r.get(s))[0] is not None for r in (full, fc, base))]
    if len(have) < 2:
        return ""
    t1 = lambda r, s: 100 * cell(r.get(s))[0]
    by = "; ".join(f"{s}: full {t1(full, s):.1f}, fc-only {t1(fc, s):.1f}, PDCNN-FC {t1(base, s):.1f}" for s in have)
    mean = lambda r: statistics.mean(t1(r, s) for s in have)
    full_wins = [s for s in have if t1(full, s) > t1(fc, s)]
    beats_base = [s for s in have if t1(full, s) > t1(base, s)]
    def best_val(s, m):
        log = RES / "n3" / f"{s}-v3-{m}.train.jsonl"
        return max(json.loads(l)["val_top1"] for l in log.read_text().splitlines()) if log.exists() else None
    vals = [(s, best_val(s, "full"), best_val(s, "fconly")) for s in have if s != "ss0"]
    vals = [(s, f, c) for s, f, c in vals if f is not None and c is not None]
    val_note = "; ".join(f"{s}: full stage best {100 * f:.1f} vs fc-only stage best {100 * c:.1f}" for s, f, c in vals)
    val_said = ("already said that the full stage did not help there" if vals and all(f <= c for _, f, c in vals)
                else "did not rank the two stages the same way on every split")
    return (f"Reading across splits (v3, top-1 %; {by}). Mean over {', '.join(have)}: full {mean(full):.1f}, "
            f"fc-only {mean(fc):.1f}, PDCNN-FC with the same texts {mean(base):.1f}. Full adaptation beats fc-only on "
            f"{len(full_wins)} of {len(have)} splits ({', '.join(full_wins) or 'none'}) and PDCNN-FC on {len(beats_base)} "
            f"({', '.join(beats_base) or 'none'}). The recipe was chosen on ss0's classes only (its dev split and val); "
            f"on the other splits, val per-class top-1 ({val_note}; `experiments/results/n3/*.train.jsonl`) {val_said}. "
            "The shipped recipe's fc-only model is its final step, not its best on val. "
            + ("So full > fc-only on ss0 is not a general result on this data" if len(full_wins) < len(have)
               else "Full > fc-only held on every split")
            + (", and N3 v3 trails the simpler baseline given the same texts.\n" if mean(full) < mean(base) else ".\n"))


def language_section() -> list[str]:
    """The language control and the hard5 protocol for the v3 ss0 models (the full one's reports kept in
    experiments/results/n3 since the shipped checkpoint gained a sentence match)."""
    fc_dir = ROOT / "checkpoints" / "n3-effl0-minilm-ss0-fconly"
    reports = {("full", "paper"): load(RES / "n3" / "ss0-v3-full.json"),
               ("full", "hard5"): load(RES / "n3" / "ss0-v3-full-hard5.json"),
               ("fc-only", "paper"): load(fc_dir / "eval-ss0-test.json"),
               ("fc-only", "hard5"): load(fc_dir / "eval-ss0-test-hard5.json")}
    if any(r is None for r in reports.values()):
        return []
    lines = ["| protocol | full top-1 | fc-only top-1 | full − fc-only | full, no ΔΘ | full, ΔΘ from other classes' texts "
             "(3 draws) | language_gain |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for proto, chance in (("paper", "25-way, chance 4%"), ("hard5", "5-way, chance 20%")):
        f, c = reports["full", proto], reports["fc-only", proto]
        ft, ct = f["per_class_top1"]["median"], c["per_class_top1"]["median"]
        draws = ", ".join(pct(x) for x in f["swapped_adaptation_all"])
        lines.append(f"| {proto} ({chance}) | {pct(ft)} | {pct(ct)} | {100 * (ft - ct):+.1f} | {pct(f['no_adaptation'])} | "
                     f"{pct(f['swapped_adaptation'])} ({draws}) | {100 * f['language_gain']:+.1f} |")
    other = {sp: (RES / "n3" / f"{sp}-v3-full.json", RES / "n3" / f"{sp}-v3-fconly.json") for sp in ("ss1", "ss2")}
    other["ps"] = (RES / "ps-v3-full-on-ps-test.json", RES / "ps-v3-fconly-on-ps-test.json")
    for sp, (full_path, fc_path) in other.items():   # the same recipe on the other splits (n3_runs.sh, ps_runs.sh)
        f, c = load(full_path), load(fc_path)
        if f is None or c is None or "language_gain" not in f:
            continue
        ft, ct = f["per_class_top1"]["median"], c["per_class_top1"]["median"]
        draws = ", ".join(pct(x) for x in f["swapped_adaptation_all"])
        lines.append(f"| paper, {sp} (same recipe) | {pct(ft)} | {pct(ct)} | {100 * (ft - ct):+.1f} | "
                     f"{pct(f['no_adaptation'])} | {pct(f['swapped_adaptation'])} ({draws}) | "
                     f"{100 * f['language_gain']:+.1f} |")
    f = reports["full", "paper"]
    gain, shift = f["language_gain"], f["swapped_adaptation"] - f["no_adaptation"]
    return ["## Does the language move the network? (v3 ss0 models; ss1, ss2, ps with the same recipe)\n",
            "`python -m n3core evaluate --split ss0 [--protocol hard5]` writes a language control beside every full-"
            "adaptation result: the same classifier rows (written from the test descriptions) with no ΔΘ at all, and "
            "with ΔΘ written from the descriptions of 25 (hard5: 5) random ss0 *train* classes, median of 3 seeded "
            "draws; `language_gain` is top-1 minus the latter. A network written for the task from its own words "
            "should lose accuracy when another class set's words write it. `hard5`: each test class in a 5-way task "
            "with the 4 test classes whose descriptions are nearest to its own in MiniLM's sentence embedding; "
            "its per-class top-1 in that task, averaged over the 25 classes.\n",
            "\n".join(lines), "",
            f"Reading: of the {100 * (f['per_class_top1']['median'] - f['no_adaptation']):+.1f} points ΔΘ adds on the "
            f"paper protocol, {100 * shift:+.1f} come with ΔΘ written from any other bird descriptions and "
            f"{100 * gain:+.1f} from the test classes' own words. The adaptation is a generic shift, not a "
            "network written for the task: the gap this project's language work has to close (issue 14).\n"]


def _msd(xs: list[float], sign: str = "") -> str:
    """Mean ± sd of ``xs`` (one value as it is); ``sign="+"`` prints the mean's sign."""
    fmt = f"{sign}.1f"
    return ("—" if not xs else f"{statistics.mean(xs):{fmt}} ± {statistics.stdev(xs):.1f}" if len(xs) > 1
            else f"{xs[0]:{fmt}}")


def swap_note(rs: dict) -> str:
    """What the language control's gain is made of, for the reports ``rs`` (seed → report)."""
    if not rs:
        return ""
    sw = [100 * r["swapped_adaptation"] for r in rs.values()]
    plain = [100 * r["no_adaptation"] for r in rs.values()]
    top = [100 * r["per_class_top1"]["median"] for r in rs.values()]
    below = statistics.mean(sw) < statistics.mean(plain)
    return (f" With ΔΘ and the match written from other classes' descriptions the same classifiers score "
            f"{_msd(sw)}%, {'below' if below else 'above'} their rows alone ({_msd(plain)}%)"
            + (": part of `language_gain` is what sentences about other birds cost, so the plainer measure of what "
               f"the words add is top-1 against the rows alone, {statistics.mean(top) - statistics.mean(plain):+.1f} "
               "points." if below else "."))


@functools.cache
def test_split_reports(kappa: float) -> dict:
    """The test-split reports behind v4 (issue 14), by split: ``one`` single matches by seed, ``one5`` ss0's on hard5,
    ``mean3`` / ``mean3_5`` the mean of three (paper / hard5; ss0's is the shipped checkpoint), ``extra`` /
    ``extra5`` ss0's other means of three (seeds 3–5, 6–8), ``v3`` the v3 full models, ``fco`` / ``fco5`` the fc-only
    models (paper / hard5), ``base(split)`` PDCNN-FC on the same texts (a fraction, or None). Missing reports are None.
    Read once per run (three sections use them); callers do not modify them."""
    m, e = RES / "sentence_match", RES / "match_ensemble"
    ship = ROOT / "checkpoints" / "n3-effl0-minilm-ss0"      # the shipped mean of three, evaluated there
    fc_ship = ROOT / "checkpoints" / "n3-effl0-minilm-ss0-fconly"
    bl3 = (load(RES / "baselines-v3.json") or {"main": {}})["main"]
    v3 = {sp: load(RES / "n3" / f"{sp}-v3-full.json") for sp in SPLITS3}
    v3["ps"] = load(RES / "ps-v3-full-on-ps-test.json")
    return {
        "one": {sp: {s: r for s in range(3) if (r := load(m / f"{sp}-match-s{s}-k{kappa:g}.json")) is not None}
                for sp in ("ss0", "ss1", "ss2", "ps")},
        "one5": {s: r for s in range(3) if (r := load(m / f"ss0-match-s{s}-k{kappa:g}-hard5.json")) is not None},
        "mean3": {"ss0": load(ship / "eval-ss0-test.json"),
                  **{sp: load(e / f"{sp}-mean3-k{kappa:g}.json") for sp in ("ss1", "ss2", "ps")}},
        # hard5 on ss1, ss2 and ps: v4 and the fc-only model its full stage started from (v3 full, single matches not run)
        "mean3_5": {"ss0": load(ship / "eval-ss0-test-hard5.json"),
                    **{sp: load(e / f"{sp}-mean3-k{kappa:g}-hard5.json") for sp in ("ss1", "ss2", "ps")}},
        "extra": {f"{a}–{a + 2}": r for a in (3, 6)
                  if (r := load(e / f"ss0-mean3-s{a}-{a + 2}-k{kappa:g}.json")) is not None},
        "extra5": {f"{a}–{a + 2}": r for a in (3, 6)
                   if (r := load(e / f"ss0-mean3-s{a}-{a + 2}-k{kappa:g}-hard5.json")) is not None},
        "v3": v3,
        "fco": {"ss0": load(fc_ship / "eval-ss0-test.json"),
                **{sp: load(RES / "n3" / f"{sp}-v3-fconly.json") for sp in ("ss1", "ss2")},
                "ps": load(RES / "ps-v3-fconly-on-ps-test.json")},
        "fco5": {"ss0": load(fc_ship / "eval-ss0-test-hard5.json"),
                 **{sp: load(e / f"{sp}-v3-fconly-hard5.json") for sp in ("ss1", "ss2", "ps")}},
        "base": lambda sp: bl3.get(sp, {}).get("PDCNN-FC", {}).get("per_class_top1", {}).get("median"),
    }


def issue14_targets_section() -> list[str]:
    """Issue 14's targets against the reports behind this page: one row each, what was measured, whether it is met,
    and where the number comes from. The issue's own "now" column is its text's, not a report's."""
    kappa = shipped_kappa()
    if kappa is None:
        return []
    t = test_split_reports(kappa)
    mean3, fco, base, mean3_5, fco5 = t["mean3"], t["fco"], t["base"], t["mean3_5"], t["fco5"]
    if any(mean3.get(sp) is None or fco.get(sp) is None or base(sp) is None for sp in SPLITS3):
        return []
    top = lambda r: 100 * r["per_class_top1"]["median"]                  # noqa: E731
    ss0_all = [top(mean3["ss0"])] + [top(r) for r in t["extra"].values()]
    by = {sp: top(mean3[sp]) - top(fco[sp]) for sp in SPLITS3}
    gains = {sp: 100 * mean3[sp]["language_gain"] for sp in SPLITS3 + ["ps"] if mean3.get(sp) is not None}
    rows = [("language_gain (full)", "≈ 0.5 (ss0, one seed)",
             ", ".join(f"{sp} {g:+.1f}" for sp, g in gains.items()), "≥ 3 points", min(gains.values()) >= 3,
             "evaluate reports of v4 (the mean of 3 matches)")]
    mean_by = statistics.mean(by.values())
    rows.append(("full − fc-only, paper protocol, mean of ss0–2", "+0.1",
                 f"{mean_by:+.1f} (ss0 {by['ss0']:+.1f}, ss1 {by['ss1']:+.1f}, ss2 {by['ss2']:+.1f})", "≥ 3 points",
                 mean_by >= 3, "v4 against the v3 fc-only model of each split"))
    h5 = [sp for sp in SPLITS3 if mean3_5.get(sp) is not None and fco5.get(sp) is not None]
    if h5:
        d5 = {sp: top(mean3_5[sp]) - top(fco5[sp]) for sp in h5}
        mean5 = statistics.mean(d5.values())
        said = (f"{mean5:+.1f} (mean of {', '.join(h5)}: " if len(h5) > 1 else "") + \
            ", ".join(f"{sp} {d:+.1f}" for sp, d in d5.items()) + (")" if len(h5) > 1 else "")
        if t["extra5"]:
            a5 = [top(mean3_5["ss0"])] + [top(r) for r in t["extra5"].values()]
            said += f"; ss0 over its {len(a5)} means of three {statistics.mean(a5) - top(fco5['ss0']):+.2f}"
        rows.append(("full − fc-only, hard5", "+1.9 (ss0)", said, "≥ 5 points", mean5 >= 5,
                     "hard5 reports (`--protocol hard5`)"))
    v4m = statistics.mean(top(mean3[sp]) for sp in SPLITS3)
    pd = statistics.mean(100 * base(sp) for sp in SPLITS3)
    rows.append(("full vs PDCNN-FC on the same texts, mean of ss0–2", "34.8 vs 37.4",
                 f"{v4m:.1f} vs {pd:.1f} (ss2 {top(mean3['ss2']):.1f} vs {100 * base('ss2'):.1f})",
                 "above it; aim 45", True if v4m >= 45 else f"above by {v4m - pd:.1f}; aim 45 missed" if v4m > pd else False,
                 "`baselines-v3.json`"))
    rows.append(("shipped ss0 full model", "36.1",
                 f"{top(mean3['ss0']):.1f}" + (f" (the recipe's {len(ss0_all)} means of three: "
                                               f"{_msd(ss0_all)})" if len(ss0_all) > 1 else ""),
                 "≥ 40", top(mean3["ss0"]) >= 40, "`checkpoints/n3-effl0-minilm-ss0/eval-ss0-test.json`"))
    g = {name: load(RES / "n3" / f"{name}.json") for name in
         ("ss0-v3-gamma0.9-mu0.1", "ss0-v3-gamma0.999-mu0.001", "ss0-v3-keep-gamma0.9-mu0.1", "ss0-v3-keep-gamma1-mu0.001")}
    if all(g.values()):
        plain = top(g["ss0-v3-gamma0.999-mu0.001"]) - top(g["ss0-v3-gamma0.9-mu0.1"])
        keep = top(g["ss0-v3-keep-gamma1-mu0.001"]) - top(g["ss0-v3-keep-gamma0.9-mu0.1"])
        rows.append(("γ = 0.9 vs γ = 1", "chance vs 36",
                     f"shipped recipe: {top(g['ss0-v3-gamma0.9-mu0.1']):.1f} vs {top(g['ss0-v3-gamma0.999-mu0.001']):.1f} "
                     f"(γ 0.999); with keep_scale: {top(g['ss0-v3-keep-gamma0.9-mu0.1']):.1f} vs "
                     f"{top(g['ss0-v3-keep-gamma1-mu0.001']):.1f}", "within 3 points",
                     "only with keep_scale, which is not shipped" if keep <= 3 < plain else plain <= 3,
                     "the γ ablation below"))
    perf, ab, rt = load(PERF / "perf.json"), load(PERF / "one_edit_ab.json"), load(PERF / "recipe_time.json")
    if perf:
        r = perf["train_step_ratio_full_vs_plain"]
        rows.append(("full-adaptation train step ÷ plain fine-tuning step", "3.6×", f"{r:.2f}×", "≤ 1.5×", r <= 1.5,
                     "`benchmarks/perf.py`"))
    if perf and ab:
        one, med = perf["synthesis_ms"]["25"]["one_edit"], ab["median_of_rounds_ms"]["this"]
        rounds = [x["this"] for x in ab["rounds"]]
        rows.append(("one-edit re-synthesis, K = 25, this CPU", "167 ms",
                     f"median of alternating rounds {med:.0f} ms (rounds {min(rounds):.0f}–{max(rounds):.0f}); "
                     f"one `perf.py` run {one:.0f} ms", "≤ 100 ms",
                     "as a median, not in every run" if med <= 100 < max(rounds, default=0) or med <= 100 < one
                     else med <= 100, "`benchmarks/one_edit_ab.py`, `benchmarks/perf.py`"))
    if rt:
        rows.append(("shipped recipe from scratch on this 2-core CPU", "8.5 + 62 min",
                     f"{rt['total_min']:.1f} min, peak {rt['peak_rss_gb']:.2f} GB", "≤ 90 min, peak RSS ≤ 6 GB",
                     rt["total_min"] <= 90 and rt["peak_rss_gb"] <= 6, "`benchmarks/recipe_time.py`"))
    verdict = lambda v: "**met**" if v is True else "**missed**" if v is False else f"**{v}**"   # noqa: E731
    lines = ["| measure | when the issue was filed | now | target | met? | from |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} | {verdict(v)} | {w} |" for a, b, c, d, v, w in rows]
    return ["## Issue 14: where its targets stand\n",
            "Per-class top-1 through `python -m n3core evaluate`, paper protocol unless named; v4 is the shipped recipe "
            "(the v3 full model plus the mean of three sentence matches, κ = " f"{kappa:g}). Each number is taken from "
            "the report named in the last column and shown in full in the sections below.\n",
            "\n".join(lines), ""]


def sentence_match_section() -> list[str]:
    """Issue 14: the sentence match inside N3 (n3core/sentence_match.py): κ chosen on the dev split over
    the real dev full models, then the test splits with κ fixed (experiments/sentence_match_*.sh)."""
    kappa = shipped_kappa()
    d, ks, he = RES / "sentence_match_dev", RES / "keep_scale_dev", RES / "hard_episodes_dev"
    fc, fc5 = load(ks / "fconly.json"), load(he / "fconly-hard5.json")
    plain = {s: load(ks / f"plain-s{s}.json") for s in range(3)}
    plain5 = {s: load(he / f"plain-s{s}-hard5.json") for s in range(3)}
    kappas = sorted({float(p.stem.split("-k")[1]) for p in d.glob("match-s*-k*.json") if not p.stem.endswith("hard5")})
    if kappa is None or fc is None or None in plain.values() or not kappas:
        return []
    top = lambda r: 100 * r["per_class_top1"]["median"]
    gain = lambda r: 100 * r["language_gain"]
    grid = {k: {s: r for s in range(3) if (r := load(d / f"match-s{s}-k{k:g}.json")) is not None} for k in kappas}
    lines = ["| model (dev split, 25 held-out classes) | seeds | paper top-1 | − today's full, by seed | language_gain | "
             "no ΔΘ, no match |", "| --- | --- | --- | --- | --- | --- |",
             f"| fc-only (the shared start) | 1 | {top(fc):.1f} | | 0 | {top(fc):.1f} |",
             f"| today's full (v3 recipe) | 3 | {_msd([top(r) for r in plain.values()])} | | "
             f"{_msd([gain(r) for r in plain.values()])} | {_msd([100 * r['no_adaptation'] for r in plain.values()])} |"]
    paired = {}
    for k, rs in grid.items():
        paired[k] = [top(r) - top(plain[s]) for s, r in rs.items()]
        lines.append(f"| full + {k:g} × sentence match | {len(rs)} | {_msd([top(r) for r in rs.values()])} | "
                     f"{', '.join(f'{x:+.1f}' for x in paired[k])} | {_msd([gain(r) for r in rs.values()], '+')} | "
                     f"{_msd([100 * r['no_adaptation'] for r in rs.values()])} |")
    full3 = [k for k in kappas if len(grid[k]) == 3]
    best = max(full3, key=lambda k: statistics.mean(top(r) for r in grid[k].values())) if full3 else None
    h5 = {s: r for s in range(3) if (r := load(d / f"match-s{s}-k{kappa:g}-hard5.json")) is not None}
    hard_dev = ""
    if h5 and fc5 is not None:
        hard_dev = (f" On hard5 at κ = {kappa:g}: {_msd([top(r) for r in h5.values()])}% ({len(h5)} seeds; "
                    f"language_gain {_msd([gain(r) for r in h5.values()])}) against today's full "
                    f"{_msd([top(plain5[s]) for s in h5 if plain5.get(s)])}% and fc-only {top(fc5):.1f}%.")
    out = ["## Sentence match: descriptions that say where to look, inside N3 (issue 14)\n",
           "The probe's best candidate (*Sentences that say where to look*, below), built into N3: "
           "`n3core/sentence_match.py`, trained with `python -m n3core train-match` on a checkpoint's frozen backbone "
           "(1,500 episodes of K = 25 over feature maps of the split's train photos, the whole photo and one "
           "augmented crop, cached once; each class reads its main description half the time, otherwise a "
           "sentence-dropped copy or its text from another description set). Every description is split into "
           "sentences (at most 16), each embedded alone; shared maps turn each sentence into an attention query over "
           "the backbone's last feature map (7×7 for Lite0) and a target for what should be found there, plus how "
           "much it counts. A synthesized classifier adds κ × the weighted match to its classification layer's "
           "logits. The language control (`evaluate`) writes ΔΘ **and** the match from other classes' "
           "descriptions, rows kept; *no ΔΘ, no match* is the same rows alone on Θ.\n",
           "### κ, chosen on the development split\n",
           "`experiments/sentence_match_dev.sh`: one match per seed on each of the three dev full models "
           "(`runs/dev-v3-full-plain-s{0,1,2}`, today's full recipe), trained on the 50 dev train classes, scored on "
           "the 25 held-out classes; paired with the full model of the same seed (all three start from one fc-only "
           "model, so *no ΔΘ, no match* is the same 32.3%). κ = 0.25 was not run on seed 2 after it was the lowest on "
           "seeds 0 and 1; κ = 2 ran on seed 0 only, where it fell below κ = 1 (seed 1's run was stopped).\n",
           "\n".join(lines), "",
           (f"Reading: the best κ over three seeds on this split is {best:g}" if best is not None else
            "Reading: no κ has all three seeds yet")
           + (f", and κ = {kappa:g} ships (by seed against today's full: "
              f"{', '.join(f'{x:+.1f}' for x in paired.get(kappa, []))})." if kappa in paired else ".")
           + hard_dev + swap_note(grid.get(kappa, {})) + "\n"]
    out += ensemble_dev_section(plain) + match_classes_section(plain)
    t = test_split_reports(kappa)
    one, one5, mean3, mean3_5, extra, extra5 = t["one"], t["one5"], t["mean3"], t["mean3_5"], t["extra"], t["extra5"]
    v3, fco, fco5, base = t["v3"], t["fco"], t["fco5"], t["base"]
    if not one["ss0"]:
        return out
    rows = ["| split, protocol | fc-only (v3) | full (v3) | full + one match: by seed | mean ± sd | "
            "full + mean of 3 (v4) | language_gain v3 → one → v4 | v4 no ΔΘ, no match | PDCNN-FC, same texts |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def row(name, f, v, singles, ens, b, more=None):
        ens_top = "not run" if ens is None else f"{top(ens):.1f}"
        if more and ens is not None:
            ens_top = (f"{top(ens):.1f} (seeds 0–2, shipped); " + ", ".join(f"{top(r):.1f} ({k})" for k, r in more.items())
                       + f"; all: {_msd([top(ens)] + [top(r) for r in more.values()])}")
        ens_gain = "" if ens is None else f" → {gain(ens):+.1f}"
        ens_plain = "—" if ens is None else f"{100 * ens['no_adaptation']:.1f}"
        ones = ", ".join(f"{top(r):.1f}" for r in singles.values()) or "not run"
        gains = (f"{gain(v):+.1f}" if v is not None else "not run") + (
            f" → {_msd([gain(r) for r in singles.values()], '+')}" if singles else " → not run")
        return (f"| {name} | {top(f):.1f} | {'not run' if v is None else f'{top(v):.1f}'} | {ones} | "
                f"{_msd([top(r) for r in singles.values()])} | {ens_top} | {gains}{ens_gain} | "
                f"{ens_plain} | {b} |")

    for sp in ("ss0", "ss1", "ss2", "ps"):
        if not one[sp]:
            continue
        b = base(sp)
        rows.append(row(f"{sp}, paper", fco[sp], v3[sp], one[sp], mean3[sp], "—" if b is None else f"{100 * b:.1f}",
                        extra if sp == "ss0" else None))
        if sp == "ss0" and one5:
            rows.append(row("ss0, hard5", fco5["ss0"], load(RES / "n3" / "ss0-v3-full-hard5.json"), one5, mean3_5["ss0"],
                            "not run", extra5))
        elif sp != "ss0" and fco5.get(sp) is not None and mean3_5.get(sp) is not None:
            rows.append(row(f"{sp}, hard5", fco5[sp], None, {}, mean3_5[sp], "not run"))
    said = ""
    have = [sp for sp in SPLITS3 if mean3.get(sp) is not None]
    if len(have) == 3 and all(base(sp) is not None for sp in have):
        mean = lambda f: statistics.mean(f(sp) for sp in have)
        said = (f" Mean over ss0, ss1, ss2: v4 (mean of 3) {mean(lambda sp: top(mean3[sp])):.1f}; one match "
                f"{mean(lambda sp: statistics.mean(top(r) for r in one[sp].values())):.1f} (each split's seeds averaged); "
                f"v3 full {mean(lambda sp: top(v3[sp])):.1f}; fc-only {mean(lambda sp: top(fco[sp])):.1f}; PDCNN-FC on the "
                f"same texts {mean(lambda sp: 100 * base(sp)):.1f}. v4 − fc-only {mean(lambda sp: top(mean3[sp]) - top(fco[sp])):+.1f} "
                f"(by split {', '.join(f'{top(mean3[sp]) - top(fco[sp]):+.1f}' for sp in have)}), v4 − v3 full "
                f"{mean(lambda sp: top(mean3[sp]) - top(v3[sp])):+.1f}, language_gain {mean(lambda sp: gain(mean3[sp])):+.1f}.")
    if extra and mean3["ss0"] is not None:
        alls = [top(mean3["ss0"])] + [top(r) for r in extra.values()]
        singles = [top(r) for r in one["ss0"].values()]
        said += (f" On ss0, {len(alls)} means of three matches (seeds 0–2, the shipped one; "
                f"{', '.join(extra)}) score {', '.join(f'{x:.1f}' for x in alls)}% ({_msd(alls)}), single matches "
                f"{_msd(singles)} ({len(singles)} seeds): averaging three matches did not take the seed's effect out of "
                f"this test split's result, and the shipped triple is {'the best' if alls[0] == max(alls) else 'not the best'} "
                f"of them. What the recipe gives on ss0 is their mean, {statistics.mean(alls):.1f}% "
                f"({statistics.mean(alls) - top(v3['ss0']):+.1f} against the v3 full model, "
                f"{statistics.mean(alls) - top(fco['ss0']):+.1f} against fc-only), not the shipped checkpoint's "
                f"{alls[0]:.1f}%.")
        if len(have) == 3:
            rest = [top(mean3[sp]) for sp in have if sp != "ss0"]
            said += (f" With that mean for ss0, the 3-split mean of v4 is "
                     f"{statistics.mean([statistics.mean(alls)] + rest):.1f}% (PDCNN-FC "
                     f"{statistics.mean(100 * base(sp) for sp in have):.1f}%).")
    said += hard5_reading(fco5, mean3_5, extra5, extra)
    seeds = ", ".join(f"{sp} {len(rs)}" for sp, rs in one.items() if rs)
    out += ["### On the test splits, κ fixed\n",
            f"One match per seed: `experiments/sentence_match_runs.sh` (κ = {kappa:g}; seeds per split: {seeds}), each "
            "on the split's v3 full model. The mean of three (v4): the same three matches joined onto that model with "
            "`python -m n3core join-matches` (`experiments/match_ensemble_runs.sh`); ss0's is the shipped "
            "`checkpoints/n3-effl0-minilm-ss0`. The mean of three was chosen on the dev split (above) before any of its "
            "test numbers was read. The control's descriptions come from each split's train classes.\n",
            "\n".join(rows), "", "Reading:" + said + swap_note({0: r for r in [mean3["ss0"]] if r is not None}) + "\n"]
    return out


def hard5_reading(fco5: dict, mean3_5: dict, extra5: dict, extra: dict) -> str:
    """The hard5 target (v4 − fc-only ≥ 5 points) read over the splits that have both reports, and over
    ss0's three means of three."""
    top = lambda r: 100 * r["per_class_top1"]["median"]                  # noqa: E731
    gain = lambda r: 100 * r["language_gain"]                               # noqa: E731
    have = [sp for sp in SPLITS3 if fco5.get(sp) is not None and mean3_5.get(sp) is not None]
    if not have:
        return ""
    by = {sp: top(mean3_5[sp]) - top(fco5[sp]) for sp in have}
    said = (f" On hard5 (issue 14's target: v4 − fc-only ≥ 5 points), by split: "
            f"{', '.join(f'{sp} {by[sp]:+.1f} ({top(mean3_5[sp]):.1f} vs {top(fco5[sp]):.1f})' for sp in have)}")
    if len(have) > 1:
        said += f"; mean over {', '.join(have)} {statistics.mean(by.values()):+.1f}"
    if fco5.get("ps") is not None and mean3_5.get("ps") is not None:
        said += (f"; ps (apart from the mean, as everywhere here) {top(mean3_5['ps']) - top(fco5['ps']):+.1f} "
                 f"({top(mean3_5['ps']):.1f} vs {top(fco5['ps']):.1f})")
    said += "."
    if extra5 and "ss0" in have:
        alls = [top(mean3_5["ss0"])] + [top(r) for r in extra5.values()]
        missing = [k for k in extra if k not in extra5]
        said += (f" ss0's {len(alls)} means of three on hard5"
                 + (f" (seeds {', '.join(missing)} not run on hard5)" if missing else "")
                 + f": {', '.join(f'{x:.1f}' for x in alls)}% ({_msd(alls)}); "
                 f"their mean against fc-only {statistics.mean(alls) - top(fco5['ss0']):+.2f}, language_gain "
                 f"{_msd([gain(mean3_5['ss0'])] + [gain(r) for r in extra5.values()], '+')}.")
    return said


def ensemble_dev_section(plain: dict) -> list[str]:
    """The mean of the three dev matches against each one alone, on the three dev full models
    (experiments/match_ensemble.py; κ = 1)."""
    d, e = RES / "sentence_match_dev", RES / "match_ensemble"
    top = lambda r: 100 * r["per_class_top1"]["median"]
    pairs = {s: (load(d / f"match-s{s}-k1.json"), load(e / f"dev-full-s{s}-mean3-k1.json")) for s in range(3)}
    pairs = {s: p for s, p in pairs.items() if None not in p}
    if not pairs:
        return []
    rows = ["| dev full model (seed) | today's full | + its own match (same seed) | + the mean of the 3 matches | "
            "mean − one | language_gain one → mean |", "| --- | --- | --- | --- | --- | --- |"]
    for s, (one, ens) in pairs.items():
        rows.append(f"| {s} | {top(plain[s]):.1f} | {top(one):.1f} | {top(ens):.1f} | {top(ens) - top(one):+.1f} | "
                    f"{100 * one['language_gain']:+.1f} → {100 * ens['language_gain']:+.1f} |")
    ones, ens = [top(p[0]) for p in pairs.values()], [top(p[1]) for p in pairs.values()]
    return ["### One match or the mean of three, on the development split\n",
            "On ss0 test the three single matches of the first v4 scored 38.8, 37.0 and 34.7% on one full model: the "
            "match's seed moved accuracy more than most choices made on dev. Matches trained on one split see the same "
            "frozen feature maps (Θ; ΔΘ does not enter their training), so their mean is a drop-in replacement. "
            "`experiments/match_ensemble.py`: the three dev matches (seeds 0–2) averaged, on each dev full model, "
            "against the match of that model's own seed (κ = 1, paper protocol, 25 held-out classes).\n",
            "\n".join(rows), "",
            f"Reading: one match {_msd(ones)}, the mean of three {_msd(ens)}; against the model's own match the mean is "
            f"{'at least as good on every' if all(b >= a for a, b in zip(ones, ens)) else 'not better on every'} "
            f"full model ({', '.join(f'{b - a:+.1f}' for a, b in zip(ones, ens))}) and its spread is "
            f"{'smaller' if statistics.stdev(ens) < statistics.stdev(ones) else 'not smaller'}. "
            "The three full models share the same three matches, so this spread is ΔΘ's alone; the spread between "
            "independent means of three was measured on ss0 test (below). The mean of three ships (`train-match --members 3`, "
            "three times the match's training time).\n"]


def match_classes_section(plain: dict) -> list[str]:
    """The mean of three matches trained on 25, 40 or all 50 dev train classes, on the three dev full models
    (experiments/match_classes_dev.sh; κ = 1). ``plain``: the dev full models alone, by seed."""
    c, e = RES / "match_classes_dev", RES / "match_ensemble"
    top = lambda r: 100 * r["per_class_top1"]["median"]                  # noqa: E731
    runs = {50: {s: load(e / f"dev-full-s{s}-mean3-k1.json") for s in range(3)}}
    for n in (40, 25):
        runs[n] = {s: load(c / f"dev{n}-full-s{s}-mean3-k1.json") for s in range(3)}
    runs = {n: {s: r for s, r in rs.items() if r is not None} for n, rs in runs.items()}
    runs = {n: rs for n, rs in sorted(runs.items()) if rs}
    if len(runs) < 2 or 50 not in runs:
        return []
    rows = ["| training classes of the 3 matches | dev full models | + the mean of 3 matches, by full model (seed 0, 1, 2) "
            "| mean ± sd | − the 50-class mean, by full model | language_gain |", "| --- | --- | --- | --- | --- | --- |"]
    for n, rs in runs.items():
        diff = ", ".join(f"{top(r) - top(runs[50][s]):+.1f}" for s, r in rs.items() if s in runs[50]) if n != 50 else ""
        rows.append(f"| {n} | {len(rs)} | {', '.join(f'{top(r):.1f}' for r in rs.values())} | "
                    f"{_msd([top(r) for r in rs.values()])} | {diff} | "
                    f"{_msd([100 * r['language_gain'] for r in rs.values()], '+')} |")
    shipped = json.loads((ROOT / "checkpoints" / "n3-effl0-minilm-ss0" / "checkpoint.json").read_text())["sentence_match"]
    eps, k = shipped["train_config"]["label_smoothing"], shipped["train_config"]["k"]
    floor = -(1 - eps + eps / k) * math.log(1 - eps + eps / k) - (k - 1) * (eps / k) * math.log(eps / k)
    losses = ", ".join(f"{m['history'][-1]['loss']:.2f}" for m in shipped["members"])
    means = {n: statistics.mean(top(r) for r in rs.values()) for n, rs in runs.items()}
    t = test_split_reports(shipped_kappa())
    triples = [top(r) for r in [t["mean3"]["ss0"], *t["extra"].values()] if r is not None]
    spread = (f"the triple's own seed spread, {statistics.stdev(triples):.1f} points (sd) between means of three on ss0 "
              "test, is not in it" if len(triples) > 1 else "the triple's own seed spread is not in it")
    ns = sorted(means)
    steps = "; ".join(f"{a} → {b} classes {means[b] - means[a]:+.1f} points" for a, b in zip(ns, ns[1:]))
    return ["### More training classes for the match, on the development split\n",
            f"A match comes close to fitting its training classes completely: the shipped model's three end training at a loss of "
            f"{losses} (episodes of K = {k}), against the {floor:.2f} that label smoothing ({eps:g}) leaves when every "
            "photo is classified right with full confidence. So the number of classes it learns its sentence → region maps from may limit it on new "
            "ones. `experiments/match_classes_dev.sh`: the mean of three matches (seeds 0–2) trained on 25 "
            "(`experiments/splits/ss0-dev-A.json`) or 40 (`ss0-dev-40.json`, a seeded sample) of the 50 dev train classes, "
            "joined to each of the three dev full models, against the 50-class mean above (κ = 1, paper protocol, the 25 "
            f"held-out classes; the dev full models alone: {_msd([top(r) for r in plain.values()])}). The photos and "
            "texts per class, the steps and every other setting are the same.\n",
            "\n".join(rows), "",
            f"Reading: {steps} (means over the full models; each row shares one triple of matches, so the spread within "
            f"a row is ΔΘ's, and {spread})." + _classes_reading(means, {n: statistics.mean(100 * r["language_gain"] for r in rs.values())
                                                  for n, rs in runs.items()},
                                          statistics.mean(top(r) for r in plain.values()),
                                          statistics.stdev(triples) if len(triples) > 1 else None,
                                          shipped.get("train_classes"), _val_classes()) + "\n"]


def _val_classes() -> int | None:
    """How many val classes the shipped ss0 recipe has (recorded by benchmarks/recipe_time.py), or None."""
    rt = load(PERF / "recipe_time.json")
    return rt["against_shipped"]["fc-only"]["val_classes"] if rt else None


def _classes_reading(means: dict, gains: dict, alone: float, sd: float | None, train: int | None,
                     val: int | None) -> str:
    """What the class-count curve says (``means``/``gains`` by number of classes; ``alone`` the full models without a
    match; ``sd`` the spread between means of three on ss0 test; ``train``/``val`` ss0's train and val classes)."""
    ns = sorted(means)
    said = ""
    below = [n for n in ns if means[n] < alone]
    if below:
        said += (f" With {', '.join(map(str, below))} classes the match costs accuracy (below the full models alone, "
                 f"{alone:.1f}%) and its language_gain falls to {', '.join(f'{gains[n]:+.1f}' for n in below)}.")
    if len(ns) >= 3:
        steps = [(means[b] - means[a]) / (b - a) for a, b in zip(ns, ns[1:])]
        said += (f" Per added class the gain falls from {steps[0]:+.2f} to {steps[-1]:+.2f} points: the curve flattens, and "
                 f"its last step ({means[ns[-1]] - means[ns[-2]]:+.1f}) is "
                 f"{'within' if sd is not None and abs(means[ns[-1]] - means[ns[-2]]) < sd else 'not within'} the seed "
                 "spread of a mean of three.")
        if train and val:
            said += (f" At the last step's rate, training the match on ss0's train and val classes ({train} → "
                     f"{train + val}) would add about {val * steps[-1]:.1f} points; not run.")
    return said


def reading_delta_spread(ds: dict) -> str:
    """The reading under the delta-spread table, from the shipped full model's row."""
    r = ds["checkpoints"].get("checkpoints/n3-effl0-minilm-ss0")
    if r is None:
        return ""
    p, h = r["paper"], r["hard5"]
    return (f"Reading (shipped full model): ΔΘ is not one generic tensor: {100 * p['specific']:.0f}% of the test set's "
            f"change (hard5: {100 * h['specific']:.0f}%) is not shared with random train sets. The test set's ΔΘ differs "
            f"from a random train set's by {100 * p['true_vs_swapped']:.0f}% of its norm (hard5: "
            f"{100 * h['true_vs_swapped']:.0f}%), about as much as two random train sets differ from each other "
            f"({100 * p['swapped_vs_swapped']:.0f}%, {100 * h['swapped_vs_swapped']:.0f}%). So the words do move ΔΘ, "
            "as far as any other class set would; the language control measures what that move is worth: under a "
            "point. What the decoders change between class sets is not what the images reward.\n")


HARD_CANDIDATES = {"plain": "today's (K = 25 random classes)",
                   "mixed": "half neighbour episodes, K 2–25",
                   "near5": "neighbour episodes, K = 5"}


def hard_episodes_section() -> list[str]:
    """Issue 14: episodes of neighbouring classes and varied K in the full stage, dev split, both
    protocols; the paper-protocol reports of fc-only and today's full stage are keep_scale_dev's."""
    d, k = RES / "hard_episodes_dev", RES / "keep_scale_dev"
    fc = {"paper": load(k / "fconly.json"), "hard5": load(d / "fconly-hard5.json")}
    runs = {}                                # candidate → protocol → {seed: report}
    for c in HARD_CANDIDATES:
        paper_dir = k if c == "plain" else d
        by = {"paper": {s: load(paper_dir / f"{c}-s{s}.json") for s in range(3)},
              "hard5": {s: load(d / f"{c}-s{s}-hard5.json") for s in range(3)}}
        by = {proto: {s: r for s, r in rs.items() if r is not None} for proto, rs in by.items()}
        if by["paper"]:
            runs[c] = by
    if None in fc.values() or "plain" not in runs or len(runs) < 2:
        return []
    top = lambda r: 100 * r["per_class_top1"]["median"]
    msd = lambda xs: ("—" if not xs else f"{statistics.mean(xs):.1f} ± {statistics.stdev(xs):.1f}" if len(xs) > 1
                      else f"{xs[0]:.1f}")
    lines = ["| full stage | seeds (paper / hard5) | paper top-1 | paper language_gain | hard5 top-1 | "
             "hard5 language_gain | hard5 no ΔΘ | paper / hard5 top-1 by seed |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |",
             f"| fc-only (the shared start) | 1 / 1 | {top(fc['paper']):.1f} | 0 | {top(fc['hard5']):.1f} | 0 | "
             f"{top(fc['hard5']):.1f} | |"]
    for c, by in runs.items():
        p, h = by["paper"], by["hard5"]
        seeds = "; ".join(f"{top(p[s]):.1f} / " + (f"{top(h[s]):.1f}" if s in h else "not run") for s in p)
        lines.append(f"| {HARD_CANDIDATES[c]} | {len(p)} / {len(h)} | {msd([top(r) for r in p.values()])} | "
                     f"{msd([100 * r['language_gain'] for r in p.values()])} | {msd([top(r) for r in h.values()])} | "
                     f"{msd([100 * r['language_gain'] for r in h.values()])} | "
                     f"{msd([100 * r['no_adaptation'] for r in h.values()])} | {seeds} |")
    said = []
    for c, by in runs.items():
        if c == "plain":
            continue
        for proto in ("paper", "hard5"):
            rs, base = by[proto], runs["plain"][proto]
            paired = [round(top(r), 1) - round(top(base[s]), 1) for s, r in rs.items() if s in base]   # as shown
            if not paired:
                continue
            spread = max(statistics.stdev(xs) if len(xs) > 1 else 0.0
                         for xs in ([top(r) for r in rs.values()], [top(r) for r in base.values()]))
            gain = statistics.mean([100 * r["language_gain"] for r in rs.values()])
            base_gain = statistics.mean([100 * r["language_gain"] for r in base.values()])
            vs_fc = statistics.mean([top(r) for r in rs.values()]) - top(fc[proto])
            beyond = round(abs(statistics.mean(paired)), 1) > round(spread, 1)      # as shown
            said.append(f"{HARD_CANDIDATES[c]}, {proto}: {', '.join(f'{x:+.1f}' for x in paired)} against today's "
                        f"(mean {statistics.mean(paired):+.1f}, {'beyond' if beyond else 'within'} the seeds' spread of "
                        f"{spread:.1f}; {vs_fc:+.1f} against fc-only); language_gain {gain:+.1f} against {base_gain:+.1f}")
    return ["### Episodes that need task-specific features, on the development split\n",
            "`experiments/hard_episodes_dev.sh`: today's full stage trains on episodes of K = 25 random train classes, "
            "where one ΔΘ written for the set has to serve 25 unrelated birds at once. The candidates train on "
            "*neighbour episodes*: an anchor class and its K − 1 nearest train classes by the sentence embedding of "
            "their descriptions, the way evaluate's hard5 tasks are built (`neighbour_episodes` in the train "
            "config), and/or with K drawn from 2 to 25 (`k_min`). Everything else as in the keep_scale comparison "
            "above: the same fc-only start, 100 steps, seeds 0–2 (the table counts each row's runs), the final step evaluated on the 25 held-out classes "
            "with both protocols and the language control (hard5's swapped ΔΘ is written from 5 random dev-train "
            "classes).\n", "\n".join(lines), "",
            "Paired by seed: " + "; ".join(said) + ".\n"]


def control_table(reports: dict, names: dict, swapped: str, with_mu: bool = False) -> list[str]:
    """Table lines, one row per report (named by ``names``): top-1 and the language control's
    columns (``swapped`` heads the swapped-ΔΘ one), and μ of the full models with ``with_mu``."""
    mu = (" μ |", " --- |") if with_mu else ("", "")
    lines = [f"| model | top-1 | language_gain | no ΔΘ | {swapped} |{mu[0]}", f"| --- | --- | --- | --- | --- |{mu[1]}"]
    for n, r in reports.items():
        full = r["mode"] == "full"
        row = (f"| {names[n]} | {pct(r['per_class_top1']['median'])} | {100 * r['language_gain']:+.1f} | "
               f"{pct(r['no_adaptation'])} | {pct(r['swapped_adaptation']) if full else '—'} |")
        if with_mu:
            row += f" {r['mu']:.4f} |" if full else " — |"
        lines.append(row)
    return lines


def seen_classes_section() -> list[str]:
    """Issue 14 diagnostic: the language control on 25 of the dev models' own train classes."""
    d = RES / "seen_language_gain"
    names = {"dev-v3-fconly": "fc-only (the shared start)", "dev-v3-full-plain-s0": "today's full stage, seed 0",
             "dev-v3-full-near5-s0": "neighbour episodes, K = 5, seed 0"}
    rows = load_all(d, names)
    if rows is None:
        return []
    fc = 100 * rows["dev-v3-fconly"]["per_class_top1"]["median"]
    lines = control_table(rows, names, "ΔΘ from the other 25")
    gains = [100 * r["language_gain"] for n, r in rows.items() if r["mode"] == "full"]
    vs_fc = [100 * r["per_class_top1"]["median"] - fc for r in rows.values() if r["mode"] == "full"]
    return ["#### The same control on classes the full stage trained on\n",
            "`experiments/seen_language_gain.sh`: the dev models evaluated (paper protocol, language control) on 25 of "
            "their own 50 train classes, training photos included (`experiments/splits/ss0-dev-seen.json`); the "
            "swapped ΔΘ is written from the other 25 train classes' descriptions. If the words shaped ΔΘ in "
            "training but the mapping did not carry over to new classes, language_gain would be large here.\n",
            "\n".join(lines), "",
            f"Reading: on the classes it trained on, the fc-only model already scores {fc:.1f}% (training photos, "
            f"augmented in training); the full stages add {' and '.join(f'{v:+.1f}' for v in vs_fc)} points, with "
            f"language_gain {' and '.join(f'{g:+.1f}' for g in gains)}. A full stage trained on those classes, after the "
            "fc-only stage, has little error left for ΔΘ to remove on them (only what augmentation adds), so little "
            "in training asks the words to change the network; what it learns is a generic shift (the language "
            "control's finding on new classes). The next experiment trains the full stage on classes the fc-only "
            "stage never saw.\n"]


def unseen_full_stage_section() -> list[str]:
    """Issue 14: the full stage trained on classes the fc-only stage never saw, against the same
    full stage on the fc-only stage's own classes (one seed: a screen)."""
    d = RES / "unseen_full_stage"
    rows = {"fconly": "fc-only on A (the shared start)", "seen-s0": "full stage on A (the head's own classes)",
            "unseen-s0": "full stage on B (classes the head never saw)"}
    reps = load_all(d, rows)
    if reps is None:
        return []
    lines = control_table(reps, rows, "ΔΘ from other classes", with_mu=True)
    top = {n: 100 * r["per_class_top1"]["median"] for n, r in reps.items()}
    gain = {n: 100 * r["language_gain"] for n, r in reps.items()}
    return ["#### The full stage on classes the fc-only stage never saw (one seed)\n",
            "`experiments/unseen_full_stage.sh`: the fc-only recipe on A, 25 of the dev split's 50 train classes "
            "(K = 15); from it, the 100-step full stage (K = 10) on A itself or on B, the other 25, whose photos the "
            "head never saw, so its zero-shot rows leave errors that only a network written from the words could "
            "fix. Both evaluated on the dev split's 25 held-out classes.\n",
            "\n".join(lines), "",
            f"Reading: with 25 classes the fc-only stage overfits its text → row map ({top['fconly']:.1f}% held-out, "
            "against 32.3% from 50 classes above). Trained where the head is wrong, the full stage does get a training "
            f"signal (μ grew to {reps['unseen-s0']['mu']:.3f} against {reps['seen-s0']['mu']:.3f}), but on new classes "
            f"it scores {top['unseen-s0'] - top['fconly']:+.1f} points against its fc-only start with language_gain "
            f"{gain['unseen-s0']:+.1f} (on the head's own classes: {top['seen-s0'] - top['fconly']:+.1f}, "
            f"{gain['seen-s0']:+.1f}). " + ("What the decoders learn from 25 classes does not carry the words to new ones "
            "either.\n" if gain["unseen-s0"] < 1.5 else "The words now move the network on new classes: this arm "
            "earns seeds.\n")]


def full_stage_section() -> list[str]:
    """Issue 14 in the full recipe: keep_scale on the dev split (3 seeds), and how set-specific ΔΘ is."""
    out = []
    d = RES / "keep_scale_dev"
    fc = load(d / "fconly.json")
    runs = {c: [r for r in (load(d / f"{c}-s{s}.json") for s in range(3)) if r is not None] for c in ("plain", "keepzero")}
    if fc is not None and all(runs.values()):
        top = lambda r: 100 * r["per_class_top1"]["median"]
        msd = lambda xs: f"{statistics.mean(xs):.1f} ± {statistics.stdev(xs):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"
        lines = ["| full stage | seeds | top-1 | language_gain | no ΔΘ | top-1 by seed |", "| --- | --- | --- | --- | --- | --- |",
                 f"| fc-only (its start) | 1 | {top(fc):.1f} | 0 | {top(fc):.1f} | {top(fc):.1f} |"]
        names = {"plain": "today's (γ = 1, μ₀ = 0.001)", "keepzero": "keep_scale, ΔΘ from 0, γ = 1, μ₀ = 0.1"}
        for c, rs in runs.items():
            lines.append(f"| {names[c]} | {len(rs)} | {msd([top(r) for r in rs])} | "
                         f"{msd([100 * r['language_gain'] for r in rs])} | {msd([100 * r['no_adaptation'] for r in rs])} | "
                         f"{', '.join(f'{top(r):.1f}' for r in rs)} |")
        paired = [round(top(k), 1) - round(top(p), 1) for p, k in zip(runs["plain"], runs["keepzero"])]   # as shown
        spread = max(statistics.stdev([top(r) for r in rs]) if len(rs) > 1 else 0.0 for rs in runs.values())
        verdict = "within" if abs(statistics.mean(paired)) <= spread else "beyond"
        mean_top = {c: statistics.mean([top(r) for r in rs]) for c, rs in runs.items()}
        mean_gain = {c: statistics.mean([100 * r["language_gain"] for r in rs]) for c, rs in runs.items()}
        vs_fc = {c: round(v, 1) - round(top(fc), 1) for c, v in mean_top.items()}   # as shown
        out += ["## Making the words write the network: the full recipe (issue 14)\n",
                "### BatchNorm consistent with Θ': keep_scale, on the development split\n",
                "`experiments/keep_scale_dev.sh`: the shipped fc-only recipe trained on the 50 train classes of "
                "`experiments/splits/ss0-dev.json`; from it, the v3 full stage shortened to 100 steps for each seed "
                "and candidate; the final step (nothing picked on the held-out classes) evaluated on the 25 held-out "
                "classes with the language control (ΔΘ from 25 random dev-train classes). The seeds vary the "
                "decoders' initial weights and the episodes; the fc-only start is shared. The candidate: "
                "*keep_scale* (each adapted output channel of Θ' rescaled to its norm in Θ, so the frozen BatchNorm "
                "statistics still fit; see the γ ablation below) with the decoders' output maps starting at zero, "
                "so the full stage starts exactly at the fc-only model, and μ₀ = 0.1 (on ss0's 10 val classes, "
                "γ = 0.9 with keep_scale, which acts as μ/γ ≈ 0.11, led the val curve at step 50: 53.5% against "
                "47.9% at μ₀ = 0.001).\n", "\n".join(lines), "",
                f"Reading: the candidate against today's full stage, paired by seed: "
                f"{', '.join(f'{x:+.1f}' for x in paired)} (mean {statistics.mean(paired):+.1f}, {verdict} the seeds' "
                f"spread of {spread:.1f}); language_gain {mean_gain['keepzero']:+.1f} against {mean_gain['plain']:+.1f}. "
                f"Against the fc-only model both start from ({top(fc):.1f}): today's full stage {vs_fc['plain']:+.1f}, "
                f"the candidate {vs_fc['keepzero']:+.1f} (mean over seeds). On 25 classes "
                + ("no test split has seen, neither full stage beats the classifier-only model, as on ss1 and ss2. "
                   if max(mean_top.values()) <= top(fc) else
                   "no test split has seen, a full stage is above the classifier-only model. ")
                + ("The candidate is not shipped: it does not beat today's full stage beyond the seeds' spread.\n"
                   if verdict == "within" or statistics.mean(paired) <= 0 else
                   "The candidate beats today's full stage beyond the seeds' spread.\n")]
    out += hard_episodes_section() + seen_classes_section() + unseen_full_stage_section()
    ds = load(RES / "delta_spread.json")
    if ds:
        lines = ["| checkpoint | protocol | specific part of C(S) | ‖C(test) − C(swapped)‖ | ‖C(swapped) − C(swapped')‖ |",
                 "| --- | --- | --- | --- | --- |"]
        for ck, r in ds["checkpoints"].items():
            for proto in ("paper", "hard5"):
                x = r[proto]
                name = ("shipped ss0 full" if ck == "checkpoints/n3-effl0-minilm-ss0" else
                        "γ = 0.9, keep_scale (ablation below)" if "keep-gamma0.9" in ck else f"`{ck}`")
                lines.append(f"| {name} | {proto} | {100 * x['specific']:.0f}% | {100 * x['true_vs_swapped']:.0f}% | "
                             f"{100 * x['swapped_vs_swapped']:.0f}% |")
        out += ["### How much of ΔΘ is written for the class set? (`experiments/delta_spread.py`)\n",
                f"C(S) is the change a class set S writes into the network (μ·ΔΘ; with keep_scale Θ' − Θ), over every "
                f"adapted tensor. *Specific part*: ‖C(S) − G‖ / ‖C(S)‖, G the mean of C over {ds['draws']} random sets of "
                f"as many {ds['split']} train classes (for hard5: each test class's 5-class task against random 5-sets, "
                "median over the 25 tasks). The next two columns are relative to ‖C‖ too: the test set against a "
                "random train set (the language control, in weight space), and two random train sets against each "
                "other.\n", "\n".join(lines), "",
                reading_delta_spread(ds)]
    return out


PROBE_HEADER = ["| {0} | seeds | paper top-1 | paper language_gain | hard5 top-1 | hard5 language_gain | paper top-1 by seed |",
                "| --- | --- | --- | --- | --- | --- | --- |"]


def probe_row(name: str, results: list[dict]) -> str:
    """One table row from per-seed probe results (each ``{"paper": {...}, "hard5": {...}}``): top-1
    and language_gain, mean ± sd over the seeds, and each seed's paper top-1."""
    def ms(proto: str, key: str) -> str:
        xs = [r[proto][key] for r in results]
        sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
        return f"{100 * statistics.mean(xs):.1f} ± {100 * sd:.1f}"
    by_seed = ", ".join(f"{100 * r['paper']['top1']:.1f}" for r in results)
    return (f"| {name} | {len(results)} | {ms('paper', 'top1')} | {ms('paper', 'language_gain')} | "
            f"{ms('hard5', 'top1')} | {ms('hard5', 'language_gain')} | {by_seed} |")


def probe_table(report: dict) -> str:
    """Candidates × (paper, hard5): top-1 and language_gain, mean ± sd over the seeds, and each seed."""
    lines = [PROBE_HEADER[0].format("candidate"), PROBE_HEADER[1]]
    lines += [probe_row(name, r["seeds"]) for name, r in report["runs"].items()]
    return "\n".join(lines)


def _paired(base: list[dict], runs: list[dict]) -> list[float]:
    """Per-seed top-1 differences (points) where both runs have the seed: the same seed draws the
    same initial rows and episodes, so the pairs cancel most of the seed-to-seed spread."""
    by_seed = {x["seed"]: x["paper"]["top1"] for x in base}
    return [100 * (x["paper"]["top1"] - by_seed[x["seed"]]) for x in runs if x["seed"] in by_seed]


def probe_reading(*reports) -> str:
    """Each candidate against fc-only of the same report: the top-1 difference beside the seeds'
    spread, and the language gain; computed, so a rerun cannot leave it stale."""
    said, better, paired_all = [], [], []
    for rep in (r for r in reports if r):
        base = rep["runs"].get("fc-only", {}).get("summary")
        tag = "hard episodes" if rep.get("hard_episodes") else "random episodes"
        for name, r in rep["runs"].items():
            if name == "fc-only" or base is None:
                continue
            s = r["summary"]
            d = 100 * (s["paper_top1"]["mean"] - base["paper_top1"]["mean"])
            spread = 100 * max(s["paper_top1"]["sd"], base["paper_top1"]["sd"])
            verdict = ("beyond" if abs(d) > spread else "within") + f" the seeds' spread ({spread:.1f})"
            paired = _paired(rep["runs"]["fc-only"]["seeds"], r["seeds"])
            paired_all += paired
            if paired:
                verdict += f"; paired by seed {', '.join(f'{x:+.1f}' for x in paired)}"
            if d > spread and s["paper_language_gain"]["mean"] > 0:
                better.append(f"{name} ({tag})")
            said.append(f"{name} ({tag}): top-1 {d:+.1f} points against fc-only, {verdict}; language_gain "
                        f"{100 * s['paper_language_gain']['mean']:+.1f} ± {100 * s['paper_language_gain']['sd']:.1f} "
                        f"(hard5 {100 * s['hard5_language_gain']['mean']:+.1f} ± {100 * s['hard5_language_gain']['sd']:.1f})")
    ran = {n for rep in reports if rep for n in rep["runs"]}
    film = ("" if "film" in ran else
            " `film` was not completed: its first 1,500-step seed had not finished after 15 minutes on one thread "
            "(it conditions a `[64, 25, 1280, 7, 7]` tensor per step); the issue's own probe of per-class FiLM of "
            "the head BatchNorm measured 31.1 ± 0.6 against fc-only 34.0 ± 1.8, language_gain +4.4.")
    close = (f" Candidates above fc-only beyond the spread, with a positive language gain: {', '.join(better)}; "
             "confirm them with the full recipe before shipping." if better else
             " No candidate on its own beats the plain fc-only row writer beyond the seeds' spread"
             + (" (every candidate's every seed scored below fc-only's with the same seed)"
                if paired_all and max(paired_all) < 0 else "") + ": where a per-class "
             "conditioning makes the words matter (language_gain above zero) it has cost accuracy, so none is a "
             "candidate to ship.")
    return "Reading: " + "; ".join(said) + "." + film + close


def probe_section() -> list[str]:
    """Issue 14's candidate search on the late-conditioning proxy (experiments/late_conditioning.py)."""
    dev = load(RES / "late_conditioning-dev.json")
    if not dev:
        return []
    out = ["## Making the words write the network: candidates (issue 14)\n",
           "`experiments/late_conditioning.py`, a proxy fast enough for 3 seeds per candidate on this CPU: "
           "EfficientNet-Lite0's head map before its last activation (`[1280, 7, 7]`) is cached once per photo "
           "(the whole photo and one augmented crop); every candidate writes each class's classifier row from an "
           "MLP of its sentence embedding (the shipped model's row path, trained on the v3 text variants) and adds a "
           "*per-class*, zero-initialised conditioning of the last stage written from the same text: `film` (scale "
           "and shift of the head's BatchNorm output per class, then ReLU6 and pooling), `attend` (the text writes "
           "a query; attention over the 49 positions replaces average pooling, so the description says where to "
           "look) or `attend-mix` (half average pooling, half that attention, with a 4× narrower query MLP: less "
           "room to overfit the training texts). Each class is scored on its own conditioned features. The "
           "language control writes the "
           "conditioning from random *training* classes' descriptions while the rows stay the true ones. "
           f"Trained on the {dev['train_classes']} train classes of `experiments/splits/ss0-dev.json` "
           f"({dev['steps']} episodes of K = 25), scored on its {dev['eval_classes']} held-out classes "
           f"({dev['eval_photos']} photos); ss0's test classes are not read. {dev['machine']}.\n",
           "Episodes of 25 random training classes:\n", probe_table(dev), ""]
    more = {"late_conditioning-dev-hard.json": "Half the episodes *hard* (`--hard`: a class and its 24 nearest "
                                                "training classes by description), the other half random:\n",
            "late_conditioning-dev-csra.json":
                "`csra`, the class's own row as its attention query (class-specific residual attention, Zhu & Wu, "
                "ICCV 2021): logit_k = s·(cos(GAP(m), w_k) + λ Σ_p softmax_p(T·c_kp) c_kp) + b_k with c_kp = "
                "cos(m_p, w_k), the per-position cosine of the row with the map. Nothing new is written from the "
                "text (two scalars, λ from 0 and T from 10), so there is nothing extra to overfit; the control "
                "writes the attention queries, not the scored rows, from other classes' texts. Random episodes, "
                "fc-only rerun beside it (it reproduces the table above seed for seed):\n"}
    reports = [dev]
    for name, caption in more.items():
        r = load(RES / name)
        if r:
            out += [caption, probe_table(r), ""]
            reports.append(r)
    sentences = sentence_probe()
    if sentences:
        reports.append(sentences)
    out += [probe_reading(*reports), ""]
    if sentences:
        out += sentence_probe_section(sentences)
    test = load(RES / "late_conditioning-ss0-test.json")
    if test:
        out += [f"Confirmation on ss0 test (trained on ss0's {test['train_classes']} train classes, the candidates "
                "chosen above only):\n", probe_table(test), ""]
    return out


SENTENCE_REPORTS = ("late_conditioning-dev-sentences-fconly.json", "late_conditioning-dev-sentences.json",
                    "late_conditioning-dev-sentences-match.json", "late_conditioning-dev-sentences-alone.json")


def sentence_probe() -> dict | None:
    """The sentence-level candidates' reports (one run of the probe each, run side by side) as one
    report; None until all are in. They must share the split, steps and episode kind."""
    reps = [load(RES / n) for n in SENTENCE_REPORTS]
    if not all(reps):
        return None
    keys = ("split", "part", "steps", "hard_episodes", "train_classes", "eval_classes", "eval_photos")
    for r in reps[1:]:
        if any(r[k] != reps[0][k] for k in keys):
            raise SystemExit(f"sentence probe reports disagree on {[k for k in keys if r[k] != reps[0][k]]}")
    merged = {k: reps[0][k] for k in keys + ("machine",)}
    merged["runs"] = {name: run for r in reps for name, run in r["runs"].items()}
    return merged


def fusion_table(run: dict) -> str:
    """``sentences-alone`` with ``--mix``: the fc-only probe alone (the fused model with no words),
    the match score alone, and fc-only + κ × match for each κ; mean ± sd over the seeds."""
    seeds = run["seeds"]
    kappas = list(seeds[0]["mix"])
    rows = [("fc-only (the rows alone)", [{p: {"top1": x["mix"][kappas[0]][p]["no_adaptation"], "language_gain": 0.0}
                                          for p in ("paper", "hard5")} for x in seeds]),
            ("sentence match alone", seeds)]
    rows += [(f"fc-only + {k} × match", [x["mix"][k] for x in seeds]) for k in kappas]
    lines = [PROBE_HEADER[0].format("model"), PROBE_HEADER[1]]
    lines += [probe_row(name, rs) for name, rs in rows]
    return "\n".join(lines)


def fusion_gains(run: dict) -> dict[str, dict]:
    """Per κ: fused − fc-only paired by seed (points, paper and hard5) and the language gains."""
    out = {}
    for k in run["seeds"][0]["mix"]:
        per = lambda proto: [100 * (x["mix"][k][proto]["top1"] - x["mix"][k][proto]["no_adaptation"]) for x in run["seeds"]]
        gain = lambda proto: statistics.mean(100 * x["mix"][k][proto]["language_gain"] for x in run["seeds"])
        out[k] = {"paper": per("paper"), "hard5": per("hard5"), "gain": gain("paper"), "gain5": gain("hard5")}
    return out


def _fmt(xs: list[float]) -> str:
    return ", ".join(f"{x:+.1f}" for x in xs)


def sentence_probe_section(rep: dict) -> list[str]:
    """The sentence-level candidates: description sentences that steer the head's attention, trained
    with the rows or apart from them and fused late; κ chosen on the dev split, confirmed on ss0 test."""
    runs = rep["runs"]
    fc = {x["seed"]: x["paper"]["top1"] for x in runs["fc-only"]["seeds"]}
    first = {x["seed"]: x["paper"]["top1"] for x in load(RES / "late_conditioning-dev.json")["runs"]["fc-only"]["seeds"]}
    same = all(abs(fc[k] - first[k]) < 1e-9 for k in fc if k in first)
    alone = runs["sentences-alone"]
    rows_same = all(abs(x["mix"][k]["paper"]["no_adaptation"] - fc[x["seed"]]) < 1e-9
                    for x in alone["seeds"] for k in x["mix"])
    gains = fusion_gains(alone)
    chosen = max(gains, key=lambda k: statistics.mean(gains[k]["paper"]))
    g = gains[chosen]
    lam = {n: statistics.mean(x["lambda"] for x in runs[n]["seeds"]) for n in ("sentences", "sentences-match")}
    sm = runs["sentences-match"]["summary"]
    out = [
        "#### Sentences that say where to look\n",
        "The `attend` query came from an MLP of one class's whole-description embedding, which has 50 training "
        "examples to learn from. These candidates split every description into sentences (the descriptor lists into "
        "their phrases; at most 16), embed each sentence alone with MiniLM, and let one *shared* linear map turn "
        "each sentence into a query over the 49 positions of the head map; a shared weight decides how much each "
        "sentence counts. Where the head looks is then written per class, from that class's own sentences, by "
        "maps learned over every sentence of every training class. `sentences`: each class pools the map where "
        "its sentences point (λ of the way from average pooling, λ from 0) and scores that with its row. "
        "`sentences-match`: average pooling scored by the row, plus λ × how well the region each sentence points "
        "at matches that sentence (a DAZLE-style dense attention score, Huynh & Elhamifar, CVPR 2020, with "
        "free-text sentences for attributes). `sentences-alone`: that match score trained alone, without rows, "
        "as a classifier of its own. The control swaps the sentences for those of random training classes, rows "
        "kept. Same protocol, episodes and seeds as above; fc-only rerun beside them "
        + ("(it reproduces the first table seed for seed):\n" if same else
           "(it does **not** reproduce the first table: compare within this table only):\n"),
        probe_table(rep), "",
        "The match trained apart, fused late: the logits of the fc-only probe with the same seed plus κ × the "
        "match probe's (κ = 0 is fc-only itself"
        + (", which the fused model's rows reproduce seed for seed" if rows_same else "") + "). The language "
        "control swaps the match's sentences, the rows stay the true ones:\n",
        fusion_table(alone), "",
        f"Reading: trained jointly with the rows, both sentence candidates let the words decide much of the answer "
        f"(`sentences-match` language_gain {100 * sm['paper_language_gain']['mean']:+.1f}: with another class "
        f"set's sentences it falls to {100 * (sm['paper_top1']['mean'] - sm['paper_language_gain']['mean']):.1f}%), "
        f"but they cost top-1 on new classes: the attention and match maps fit the 50 training classes with the "
        f"rows (`sentences` learned λ ≈ {lam['sentences']:+.2f}, pooling *away* from where its sentences point; "
        f"`sentences-match` λ ≈ {lam['sentences-match']:+.2f}, and its rows alone fell to "
        f"{100 * sm['paper_no_adaptation']['mean']:.1f}%). Trained apart, the match alone reaches "
        f"{100 * alone['summary']['paper_top1']['mean']:.1f}% on the held-out classes, and added to fc-only it "
        f"helps: κ = {chosen} (the best of the κ grid on this split) against fc-only, paired by seed, "
        f"{_fmt(g['paper'])} (mean {statistics.mean(g['paper']):+.1f}; hard5 {_fmt(g['hard5'])}), language_gain "
        f"{g['gain']:+.1f} (hard5 {g['gain5']:+.1f}). κ = {chosen} is the setting taken to the test confirmation "
        f"below.\n",
    ]
    test = load(RES / "late_conditioning-ss0-test-sentences.json")
    if test and chosen in test["runs"]["sentences-alone"]["seeds"][0]["mix"]:
        t = test["runs"]["sentences-alone"]
        tg = fusion_gains(t)[chosen]
        out += [f"Confirmation on ss0 test: trained on ss0's {test['train_classes']} train classes, scored on its "
                f"{test['eval_classes']} test classes ({test['eval_photos']} photos), the control's sentences from "
                f"ss0 train classes; κ = {chosen} was fixed on the dev split above (other κ values, if shown, were "
                "scored but not chosen here):\n", fusion_table(t), "",
                f"Reading: on ss0 test, fc-only + {chosen} × match against fc-only, paired by seed: "
                f"{_fmt(tg['paper'])} (mean {statistics.mean(tg['paper']):+.1f}; hard5 {_fmt(tg['hard5'])}, mean "
                f"{statistics.mean(tg['hard5']):+.1f}), language_gain {tg['gain']:+.1f} (hard5 {tg['gain5']:+.1f}). "
                "This is a probe on frozen features, not the shipped N3 model: the shipped models do not have the "
                "sentence match yet.\n"]
    return out


def dev_table(dev: dict, names, steps_note: str = "") -> str:
    """Markdown table of the dev-split runs in ``names`` (in the report's order): mean of the last 3
    evaluations and the whole curve."""
    lines = [f"| fc-only variant | held-out top-1, mean of the last 3 evaluations{steps_note} | curve (every 100 steps) |",
             "| --- | --- | --- |"]
    for name, r in dev["runs"].items():
        if name in names:
            lines.append(f"| {name} | {pct(r['mean_last_3'])} | {' '.join(pct(v) for _, v in r['curve'])} |")
    return "\n".join(lines)


def v2_sections() -> list[str]:
    out = ["## How v2 was chosen (no test class involved)\n"]
    probe = load(RES / "recipe_probe.json")
    if probe:
        texts = list(dict.fromkeys(r["text"] for r in probe["results"]))
        sizes = sorted({r["image_size"] for r in probe["results"]})
        lines = ["| description vector | " + " | ".join(f"ESZSL {z} px | PDCNN-FC {z} px" for z in sizes) + " |",
                 "| --- |" + " --- | --- |" * len(sizes)]
        for t in texts:
            cells = []
            for z in sizes:
                for m in ("ESZSL", "PDCNN-FC"):
                    r = next((r for r in probe["results"] if r["text"] == t and r["image_size"] == z and r["method"] == m), None)
                    cells.append(pct(r["cv_top1"]) if r else "—")
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
        out += ["### Inputs: image size and description vector (`experiments/recipe_probe.py`)\n",
                f"{probe['protocol']}; the two cheap learners stand in for the meta-model. Per-class top-1 (%), 15-way.\n",
                "\n".join(lines), "",
                "The mean of the token states (MiniLM's own sentence embedding) beats the max-pooled states the v1 "
                "baselines used by about 10 points for PDCNN-FC; 224 px helps a little. N3 v1's label embedding came "
                "from a transformer over the token states alone.\n"]
    dev = load(RES / "dev_split.json")
    if dev:
        out += ["### Where the sentence embedding enters (`experiments/dev_split_runs.sh`)\n",
                f"fc-only N3 on a development split: {dev['split']}; {dev['metric']}.\n",
                dev_table(dev, V2_DEV_RUNS, " (steps 800–1000)"), "",
                "*label*: the sentence-embedding MLP adds to the label embedding, before Labels2Adaptation. "
                "*classifier*: it adds to each class's classifier row, so the transformers write a correction to a "
                "row the sentence embedding already predicts (chosen). *classifier-extra*: the same with the "
                "Wikipedia, GPT-3 and GPT-4 description sets as extra training variants; a small further gain "
                "found after the shipped models were trained, not adopted. The curves also set the fc-only step "
                "budget: *classifier* plateaus from step 700 to 1,000 with no late drop, while ss0's 10 val classes (a "
                "noisier signal) peaked at step 200, so the shipped fc-only model is its final step; the full stage is "
                "val-selected.\n"]
    return out


def v3_sections() -> list[str]:
    out = ["## How v3 was chosen (no test class involved)\n",
           "v3 keeps v2's model and changes what each training class reads: besides its All About Birds paragraph "
           "(the main description, and the only one read at evaluation), the class's Wikipedia lead (38 of ss0's 75 "
           "train+val classes have one), GPT-3 descriptors and GPT-4 part descriptors, as joined paragraphs. "
           "`main_text_prob` is the chance that a class reads its main text in a training step; otherwise it reads "
           "one of its other variants (sentence-dropped copies of the main text, the other sets).\n"]
    probe = load(RES / "text_sets_probe.json")
    if probe:
        lines = ["| training text | CV top-1 (15-way, mean of 10) | dev split top-1 (25-way) |", "| --- | --- | --- |"]
        for name, r in probe["results"].items():
            lines.append(f"| {name} | {pct(r['cv_top1'])} | {pct(r['dev_top1'])} |")
        out += ["### On frozen features (`experiments/text_sets_probe.py`)\n",
                f"Learner: {probe['learner']}. {probe['protocols']['cv']}; {probe['protocols']['dev']}. "
                f"Per-class top-1 (%); {probe['machine']}.\n", "\n".join(lines), "",
                "Reading the other description sets for half of the steps is the largest single gain found in this "
                "project; main 0.5 and 0.7 are level (v3 uses 0.5, the value an earlier scratch run of this probe "
                "favoured); reading only the other sets (main 0) is worse than not using them; sentence-dropped copies "
                "add little alone and cost about 3 CV points beside the sets for this learner (N3 needs them, below).\n"]
    dev = load(RES / "dev_split.json")
    if dev:
        v3_runs = [n for n in dev["runs"] if n != "label"]          # v2's chosen runs, then the v3 candidates
        out += ["### In N3 itself (`experiments/dev_split_runs.sh`)\n",
                f"fc-only N3 on the development split ({dev['metric']}); all but *classifier* read the three other "
                "sets.\n", dev_table(dev, v3_runs), "",
                "*classifier*: v2. *classifier-extra*: v2 plus the other sets, uniform over all 20 variants of a class "
                "(the main text 1 time in 20). *classifier-sets*: the main text half the time, the other sets "
                "otherwise, no sentence-dropped copies: best at step 100, then it falls, as if the transformer path "
                "memorised the four texts per class (*sets-slow*: the same at a third of the learning rates, same "
                "fall). *sets-drop* (**v3**): as *classifier-sets* plus 7 sentence-dropped copies of the main text "
                "among the alternatives (`text_variants` 8); no fall. *sets-drop-p30*: main text with probability 0.3; "
                "*sets-drop-uniform16*: `text_variants` 16 and a uniform pick over all variants. One run (one seed) "
                "each; seed-to-seed spread was not measured, so gaps of a few points are weak evidence. The full stage "
                "reads the same texts.\n"]
    return out


def main() -> None:
    bl = load(RES / "baselines.json") or {"main": {}, "ablations": {}}
    rows = {}
    for name in ("PDCNN-FC", "PDCNN-FC+Conv", "ESZSL"):
        rows[name + " (v1 inputs)"] = {s: bl["main"].get(s, {}).get(name) for s in SPLITS3 + ["ps"]}
    bl2 = load(RES / "baselines-v2.json") or {"main": {}}
    for name in ("PDCNN-FC", "ESZSL"):
        rows[name + " (v2 inputs)"] = {s: bl2["main"].get(s, {}).get(name) for s in SPLITS3 + ["ps"]}
    bl3 = load(RES / "baselines-v3.json") or {"main": {}}
    rows["PDCNN-FC (v3 inputs)"] = {s: bl3["main"].get(s, {}).get("PDCNN-FC") for s in SPLITS3 + ["ps"]}
    rows.update(n3_results())
    parts = ["# Results\n",
             "Generated by `docs/writers/write_results.py` from the JSON reports of the scripts named below; "
             "do not edit by hand. Numbers are **per-class averaged accuracy on the test classes of each split "
             "(unseen in training), top-1 / top-5 in %, median over 10 class orders**, the protocol of "
             "`python -m n3core evaluate`. Chance is 4% (25 classes).\n",
             "Machine: this project's dev machine, 2-core x86_64 CPU, 24 GB RAM, no GPU (every run below).\n",
             "## Main table\n", main_table(rows), "", split_reading(rows),
             "* **Preprocessing.** Since issue 13 every photo goes through one pipeline (`n3core.preprocess`): the "
             "whole photo, bicubic, cached at the model's image size. Every number here without † is on it: the "
             "shipped ss0 models; the N3 v3 rows of ss1, ss2 and ps and the v3 γ/μ₀ ablation, retrained with "
             "`experiments/n3_runs.sh` and `experiments/ps_runs.sh` (same recipe, same seeds) and evaluated once; "
             "every baseline (the v1-input ones re-run with `experiments/baselines.py`; the v2/v3-input ones were "
             "cached at 224 px already). In the ss1 and ss2 retrainings the fc-only stage repeats the first runs' "
             "validation curve to the last digit (ps's first curves were not kept); the full stage, which augments every step, now crops at the one pipeline's "
             "scale 0.4–1 (0.35–1 before, as for the shipped ss0 model), so it is a new run. † marks the N3 v1 and "
             "v2 rows and the v1 γ/μ₀ ablation, kept for history: they were evaluated on the old path (photos "
             "cached at 192 px, upsampled to 224), which scored the shipped models 36.1% (full) and 33.3% "
             "(fc-only) on ss0 against 36.8% and 34.8% now; their models are not kept, so they stand until "
             "retrained.",
             "* v1 inputs: frozen EfficientNet-Lite0 features at 160 px, description vectors = max-pooled MiniLM "
             "token states (the first recipe). v2 inputs: 224 px (the photos are 227 px) and the normalised mean of "
             "the token states, MiniLM's own sentence embedding (`.venv/bin/python experiments/baselines.py --splits ss0 "
             "--methods PDCNN-FC ESZSL --no-ablations --image-size 224 --text mean --out experiments/results/baselines-v2.json`); "
             "N3 v2 was run on ss0 and ps only: its ss1/ss2 are \"not run\", not zero; the v2 baselines on ss1/ss2 were added "
             "later with `--splits ss1 ss2` (same command otherwise).",
             "* Baselines (`experiments/baselines.py`): hyperparameters chosen on each split's val classes from "
             f"{bl.get('search_budget', 8)} settings per method (the same budget for each), then one test evaluation. "
             "ESZSL runs on L2-normalised features and embeddings (a first run on raw features reached only 25% "
             "val on ss0 and was replaced on that val evidence).",
             "* mean ± sd: over the three standard splits; ps (no test species among ImageNet's classes) is separate.",
             "* N3 v1: the first two-stage recipe (`checkpoints/recipe-fconly-v1.json`, `recipe-full-v1.json`; 160 px, "
             "label embedding from the transformer alone), shipped until v2; ss1 and ss2 with the full stage shortened "
             "to 300 steps (`V1=1 experiments/n3_runs.sh`); ps with the earlier full recipe, 600 steps.",
             "* N3 v2: `checkpoints/recipe-fconly-v2.json` then `recipe-full-v2.json` (224 px; the sentence-embedding "
             "MLP adds to each classifier row; view 0 of the cached fc-only features is the whole photo); see "
             "*How v2 was chosen* below. ps: the same recipe trained on ps's train classes (`experiments/ps_runs.sh`).",
             "* N3 v3 (shipped): `checkpoints/recipe-fconly.json` then `recipe-full.json`: v2 trained on more than one "
             "description per class (the main text half the time, else a sentence-dropped copy or the class's "
             "Wikipedia / GPT-3 / GPT-4 description); evaluation reads All About Birds only, like every other row. "
             "See *How v3 was chosen*. The PDCNN-FC row with v3 inputs trains on the same extra descriptions "
             "(`experiments/baselines.py --splits ss0 ss1 ss2 --methods PDCNN-FC --no-ablations --image-size 224 --text mean "
             "--extra-sets wikipedia_lead gpt3_descriptors gpt4_part_descriptors --out experiments/results/baselines-v3.json`). "
             "N3 v3 on ss1 and ss2: the shipped recipe unchanged, trained on each split's train classes, the full stage "
             "val-selected (`experiments/n3_runs.sh`).",
             ""]
    parts += issue14_targets_section() + sentence_match_section() + language_section() + probe_section() + full_stage_section() + v3_sections() + v2_sections()

    # baselines' chosen settings
    lines = ["| split | method | val top-1 (chosen) | chosen setting |", "| --- | --- | --- | --- |"]
    for s, methods in bl["main"].items():
        for name, r in methods.items():
            lines.append(f"| {s} | {name} | {pct(r['val_per_class_top1'])} | `{json.dumps(r['chosen'])}` |")
    parts += ["### Baselines' validation search\n", "\n".join(lines), ""]

    parts += gamma_section()

    da = load(RES / "description_ablations.json")
    if da:
        lines = ["| description source at test time | classes | N3 fc-only | N3 full |", "| --- | --- | --- | --- |"]
        for name, r in da["results"].items():
            fc, full = r.get("fc-only"), r.get("full")
            k = (fc or full)["classes"]
            lines.append(f"| {name} | {k} | {pct(cell(fc)[0])} / {pct(cell(fc)[1])} | {pct(cell(full)[0])} / {pct(cell(full)[1])} |")
        parts += ["### Description source (the paper's table 4, and what it left open), ss0 test\n",
                  "The shipped (v3) ss0 models with other texts swapped in at test time (v3 trained on All About Birds half the time and otherwise on sentence-dropped copies of it or the other three sets' texts of its train classes, so those sets are no longer foreign to it); "
                  f"`experiments/description_ablations.py`. *shuffled*: every class gets another test class's text. "
                  f"*name_masked*: the class's own name replaced by \"this bird\" ({da['name_masked_changed']} changed). "
                  "Wikipedia covers only some test classes, so All About Birds on the same classes is given beside it.\n",
                  "\n".join(lines), ""]
    ab = bl.get("ablations", {})
    if ab:
        lines = ["| ablation | method | top-1 | top-5 | reference (MiniLM, pretrained) top-1 |", "| --- | --- | --- | --- | --- |"]
        for key, label in (("text_encoder", "TF-IDF bag of words instead of MiniLM"),
                           ("random_backbone", "Lite0 with random weights instead of ImageNet-pretrained")):
            for name, r in ab.get(key, {}).items():
                if not isinstance(r, dict):
                    continue
                ref = bl["main"].get("ss0", {}).get(name)
                lines.append(f"| {label} | {name} | {pct(cell(r)[0])} | {pct(cell(r)[1])} | {pct(cell(ref)[0])} |")
        parts += ["### Text encoder and backbone, ss0 test (baseline level)\n",
                  "Run with the baselines (same search, same protocol; `experiments/baselines.py`). "
                  f"{ab.get('text_encoder', {}).get('note', '')}. These ablations are at the baseline level: N3 reads "
                  "token states, which a bag of words does not give, and training N3 on a random backbone was not run.\n",
                  "\n".join(lines), ""]

    perf = load(PERF / "perf.json")
    if perf:
        s = perf["synthesis_ms"]
        lines = ["| measure | value | target |", "| --- | --- | --- |"]
        for k in s:
            lines.append(f"| synthesis, K = {k}: cold / one edit | {s[k]['cold']:.0f} ms / {s[k]['one_edit']:.0f} ms | "
                         + ("≤ 100 ms one edit (issue 14)" if k == "25" else "") + " |")
        inf = perf["inference"]
        lines.append(f"| inference, synthesized vs plain backbone + linear (batch {inf['batch']}, {inf['image_size']} px) | "
                     f"{inf['images_per_s']['synthesized']:.0f} vs {inf['images_per_s']['plain']:.0f} images/s, ratio "
                     f"{perf['inference_ratio']:.3f} | ≥ 0.95 |")
        st = perf["train_step"]["step_ms"]
        lines.append(f"| train step, batch 32, K = 25: N3 full / N3 fc-only / plain fine-tuning | {st['n3_full']:.0f} / "
                     f"{st['n3_fc_only']:.0f} / {st['plain_finetune']:.0f} ms; full ÷ plain = "
                     f"{perf['train_step_ratio_full_vs_plain']:.2f} | ≤ 1.5 |")
        if "n3_full_2_parts" in st:
            lines.append(f"| train step as the shipped full recipe runs it (the batch through the backbone in 2 parts, "
                         f"`micro_batches`) | {st['n3_full_2_parts']:.0f} ms; ÷ plain = "
                         f"{perf['train_step']['train_step_ratio_full_2_parts_vs_plain']:.2f} | ≤ 1.5 |")
        lines.append(f"| peak resident memory of a training run ({perf['train_run']['command']}) | "
                     f"{perf['train_peak_rss_gb']:.2f} GB | ≤ 6 GB |")
        g = perf.get("growth_with_k", {})
        glines = ["| K | one-edit synthesis (ms) | peak memory increase (MB) |", "| --- | --- | --- |"]
        for k, v in g.items():
            glines.append(f"| {k} | {v['one_edit_ms']:.0f} | {v['peak_rss_increase_mb']:.0f} |")
        missed = []
        if perf["train_step_ratio_full_vs_plain"] > 1.5:
            st_ = perf["train_step"]["step_ms"]
            missed.append(
                f"**Missed: the full-adaptation training step is {perf['train_step_ratio_full_vs_plain']:.1f}× a plain "
                f"fine-tuning step (target ≤ 1.5×).** The backbone part of the two steps is the same work (forward and "
                f"backward through every layer; the fc-only step, {st_['n3_fc_only']:.0f} ms, is the meta-model alone on "
                "cached features). The rest is the meta-model writing and back-propagating a ΔΘ the size of the "
                "backbone (3.37 M values from 147 per-tensor decoders) plus `functional_call` re-binding every tensor "
                "each step. Ideas not yet tried: low-rank or shared decoders, adapting fewer tensors.")
        if perf["train_step"].get("plain_trains_backbone"):
            missed.append("The plain fine-tuning step trains every backbone weight. Before 2026-11-28 it did not: "
                          "`create_backbone` freezes the backbone, so that step trained the linear head alone and "
                          "the 3.9× published then compared N3's backward through every layer with no backward at "
                          "all. `benchmarks/perf.py` now refuses to report unless every backbone tensor gets a "
                          "gradient.")
        if perf["inference_ratio"] < 0.95:
            missed.append(f"**Missed: inference ratio {perf['inference_ratio']:.3f} (target ≥ 0.95).**")
        shipped = json.loads((ROOT / "checkpoints" / "n3-effl0-minilm-ss0" / "checkpoint.json").read_text())["config"]
        stale = (f" **Measured on the v1 models at {perf['inference']['image_size']} px, before the v2 checkpoints "
                 f"({shipped['image_size']} px) shipped; not rerun since.**"
                 if perf["inference"]["image_size"] != shipped["image_size"] else "")
        parts += ["## Performance\n", f"`benchmarks/perf.py` on {perf['machine']}.{stale}\n", "\n".join(lines), "",
                  *(m + "\n" for m in missed),
                  "Growth with the number of classes (each K in a fresh process; memory = rise of the peak resident "
                  "set over a 2-class synthesis in the same process):\n", "\n".join(glines), "",
                  *(["No K up to 100 raised the peak: ΔΘ has the backbone's size whatever K is, and the K-dependent "
                     "parts (label embeddings, the K×1280 classifier) are small beside it.\n"]
                    if g and all(v["peak_rss_increase_mb"] < 1 for v in g.values()) else [])]
        ab = load(PERF / "one_edit_ab.json")
        if ab:
            rounds = ", ".join(f"{r['base']:.0f} / {r['this']:.0f}" for r in ab["rounds"])
            m = ab["median_of_rounds_ms"]
            parts.append(f"One-edit synthesis at K = {ab['k']}, this tree ({ab['this_tree']}) against {ab['base']} (before "
                         f"the direct backbone copy and the per-sentence embedding cache), in alternating fresh processes "
                         f"(`benchmarks/one_edit_ab.py`; this machine's speed drifts over minutes, so one run of "
                         f"`perf.py` is one draw): by round, base / this, {rounds} ms; medians of the rounds "
                         f"**{m['base']:.0f} / {m['this']:.0f} ms** (target ≤ 100).\n")
        app = load(PERF / "app_latency.json")
        if app:
            parts += [f"App, edit → updated predictions (both classifiers re-synthesized, 10 photos classified; "
                      f"`benchmarks/app_latency.py`, {app.get('machine', 'this machine')}): K = 5: {app['5']['predictions_ms']:.0f} ms, K = 25: "
                      f"{app['25']['predictions_ms']:.0f} ms; whole page rerun {app['5']['page_rerun_ms']:.0f} / "
                      f"{app['25']['page_rerun_ms']:.0f} ms.\n"]

    rt = load(PERF / "recipe_time.json")
    if rt:
        parts += recipe_time_section(rt)

    parts += ["## Reproduce\n", "```bash",
              ".venv/bin/python -m n3core evaluate --checkpoint checkpoints/n3-effl0-minilm-ss0 --split ss0 --out checkpoints/n3-effl0-minilm-ss0/eval-ss0-test.json",
              ".venv/bin/python -m n3core evaluate --checkpoint checkpoints/n3-effl0-minilm-ss0-fconly --split ss0 --out checkpoints/n3-effl0-minilm-ss0-fconly/eval-ss0-test.json",
              "# hard5: the same two commands with --protocol hard5 --out checkpoints/NAME/eval-ss0-test-hard5.json",
              "bash experiments/n3_runs.sh            # ss1, ss2 and the gamma/mu0 ablation",
              "bash experiments/ps_runs.sh            # ps",
              ".venv/bin/python experiments/baselines.py",
              ".venv/bin/python experiments/description_ablations.py",
              ".venv/bin/python benchmarks/perf.py",
              ".venv/bin/python benchmarks/recipe_time.py   # the shipped recipe from scratch, timed",
              ".venv/bin/python docs/writers/write_results.py", "```", ""]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    emit(OUT, "\n".join(parts))


def recipe_time_section(rt: dict) -> list[str]:
    """The shipped ss0 recipe run from scratch (`benchmarks/recipe_time.py`): each stage's wall
    time and peak memory, against the issue-14 targets, and how close it came to the shipped model."""
    lines = ["| stage | command | wall time | peak resident memory | load average at its end (1/5/15 min) |",
             "| --- | --- | --- | --- | --- |"]
    for name, st in rt["stages"].items():
        cmd = st["command"]
        load_ = " / ".join(f"{x:.1f}" for x in st["load_avg_after"])
        note = f" ({st['note']})" if st.get("note") else ""
        lines.append(f"| {name} | `{cmd}`{note} | {st['wall_min']:.1f} min | {st['peak_rss_gb']:.2f} GB | {load_} |")
    lines.append(f"| **total** | {rt.get('total_is', 'one run of the three stages in order')} | "
                 f"**{rt['total_min']:.1f} min** (target ≤ 90) | **{rt['peak_rss_gb']:.2f} GB** (target ≤ 6) | |")
    fs = rt["full_stage"]
    curve = ", ".join(f"{100 * v:.1f}" for v in fs["val_top1_by_step"].values())
    out = ["## The shipped recipe from scratch\n",
           f"`benchmarks/recipe_time.py` on {rt['machine']}, `--threads {rt['threads']}`, every stage in a child "
           "process with an empty `N3_CACHE` (every photo decoded and every feature map computed inside the timed "
           f"stages; {rt['cache_gb']:.1f} GB cached by the end). A load average above {rt['threads']} means other "
           "work shared the cores.\n",
           "\n".join(lines), "",
           f"The full stage ran {fs['steps_run']} of its 600 steps: the recipe's `patience` (2 validations without a new "
           f"best) stopped it{' early' if fs['stopped_early'] else ''}; val per-class top-1 by 100 steps: {curve}. "
           "Its `best/` is the step val picks, as in a run of all 600 steps. "
           + (f"It ran each batch of 32 through the backbone in {fs['micro_batches']} parts (`micro_batches`; the "
              "meta-model still runs once per step), which keeps the step's activations, the peak of the whole "
              "recipe, to one part's.\n" if fs.get("micro_batches", 1) > 1 else "\n")]
    one = load(PERF / "recipe_time-one-part.json")
    if one and fs.get("micro_batches", 1) > 1:
        st = one["stages"]["full"]
        out.append(f"The first run of the script (`benchmarks/results/recipe_time-one-part.json`) ran the full stage with "
                   f"the batch in one part: {st['wall_min']:.1f} min and a peak of {st['peak_rss_gb']:.2f} GB, over the "
                   f"6 GB target (its three stages in order: {one['total_min']:.1f} min). That is why the recipe now "
                   "sets `micro_batches` = 2; the full stage was then re-run on its own.\n")
    cmp_ = rt.get("against_shipped")
    if cmp_:
        rows = ["| model | val per-class top-1, re-run / shipped | same top class | largest logit difference "
                "(÷ largest logit) |", "| --- | --- | --- | --- |"]
        for name, c in cmp_.items():
            rows.append(f"| {name} | {pct(c['val_top1'][0])} / {pct(c['val_top1'][1])} | "
                        f"{100 * c['same_top_class']:.1f}% of {c['val_photos']} | {c['max_logit_difference_relative']:.3f} |")
        out += ["Against the shipped checkpoints, each synthesized from the 10 val classes' descriptions and run on "
                "their photos (the classes that chose the checkpoints; no test class read):\n", "\n".join(rows), "",
                "The fc-only stage repeats the shipped run (its val curve to the last digit; the shipped weights are "
                "fp16). The full stage does not: the shipped one cropped its augmentations at scale 0.35–1, before "
                "issue 13's one pipeline (0.4–1 now), and ran the batch in one part; the shipped matches were trained "
                "one at a time with one thread. So the re-run is the recipe's next sample, not a copy.\n"]
    ev = load(PERF / "recipe_time-v4-ss0-test.json")
    if ev:
        shipped = json.loads((ROOT / "checkpoints" / "n3-effl0-minilm-ss0" / "eval-ss0-test.json").read_text())
        out.append(f"The re-run's full model with its three matches on ss0 test (`python -m n3core evaluate`, paper "
                   f"protocol; `benchmarks/results/recipe_time-v4-ss0-test.json`; read after the runs, choosing "
                   f"nothing): {pct(ev['per_class_top1']['median'])}% top-1, `language_gain` "
                   f"{100 * ev['language_gain']:+.1f}, against {pct(shipped['per_class_top1']['median'])}% and "
                   f"{100 * shipped['language_gain']:+.1f} for the shipped model.\n")
    return out


if __name__ == "__main__":
    main()
