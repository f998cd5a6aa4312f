"""Evaluation protocols on unseen classes (``python -m n3core evaluate``), with a language control.

``protocol="paper"`` (the N3 paper's): one K-way classifier over all test classes, evaluated on
every photo of those classes; per-class averaged accuracy (mean over classes of correct/images
in that class), top-1 and top-5; the classifier is synthesized for 10 random permutations of
the class order and the median is reported.

``protocol="hard5"``: for each test class c one 5-way task, c and the 4 test classes whose
descriptions lie nearest to c's in the text encoder's sentence embedding; c's per-class top-1
in its own task, averaged over the test classes. This is how people use the app (a handful of
similar birds), and where a network written for the task should pay off most.

The language control (full adaptation, and any checkpoint with a sentence match; both
protocols), as fractions beside ``per_class_top1``:

* ``no_adaptation`` — the same classifier rows on the unadapted backbone Θ, without the
  sentence match;
* ``swapped_adaptation`` — the same classifier rows, with ΔΘ and the sentence match written
  from the descriptions of K other classes (``control_descriptions``, the split's train
  classes), median of ``control_draws`` seeded draws;
* ``swapped_delta`` — the same draws, ΔΘ alone written from them (the match reads the true
  descriptions); ``swapped_match`` — the same draws, the match alone written from them (ΔΘ
  from the true descriptions). Without a sentence match, ``swapped_delta`` is
  ``swapped_adaptation`` and ``swapped_match`` is ``per_class_top1``;
* ``language_gain`` — ``per_class_top1`` minus ``swapped_adaptation``: what the task's own words
  add through ΔΘ and the match beyond what any description set does; ``language_gain_delta``
  and ``language_gain_match`` — the same for ΔΘ alone and for the match alone. All 0 by
  construction for fc-only.

Every photo goes through the model's one preprocessing spec (:mod:`n3core.preprocess`), the
same as training, validation and ``SynthesizedClassifier.predict``.
"""
from __future__ import annotations

import json
import random
import statistics
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

__all__ = ["PROTOCOLS", "FeatureMemo", "split_inputs", "per_class_accuracy", "class_orders", "over_orders", "batched_features",
           "adaptation_accuracy", "evaluate_protocol", "nearest_tasks", "nearest_by_embedding", "control_sets", "control_arms",
           "format_summary", "write_report"]

PROTOCOLS = ("paper", "hard5")
HARD_K = 5


def split_inputs(root, split: str, part: str = "test", descriptions_set: str = "allaboutbirds"
                 ) -> tuple[dict[str, str], object, dict[str, str] | None]:
    """What ``evaluate`` reads for a split of a data folder: the descriptions of ``part``'s
    classes (``{class: text}``, in the split's order), their photos (an ImageSet) and the
    language control's descriptions (the split's train classes; None when ``part`` is
    ``train``). A description set that covers only some classes (Wikipedia, CuPL) is evaluated
    on the classes it covers, and says so; the main set must cover them all."""
    from .data import description_file, load_descriptions
    from .datasets import read_images, resolve_split

    all_images = read_images(root)
    s = resolve_split(root, split, all_images)
    classes = s[part]
    desc_all = load_descriptions(description_file(root, descriptions_set))
    missing = [c for c in classes if c not in desc_all]
    if missing and descriptions_set != "allaboutbirds":
        print(f"[n3] {descriptions_set} has no description for {len(missing)} of the {len(classes)} classes; "
              "evaluating on the classes it covers", flush=True)
        classes = [c for c in classes if c in desc_all]
    elif missing:
        load_descriptions(description_file(root, descriptions_set), classes)  # raises, naming them
    control = {c: desc_all[c] for c in s["train"] if c in desc_all} if part != "train" else None
    return {c: desc_all[c] for c in classes}, all_images.subset(classes), control


def per_class_accuracy(logits: torch.Tensor, labels: torch.Tensor, n_classes: int) -> dict:
    """``logits`` ``[N, K]``, ``labels`` ``[N]`` → per-class averaged top-1 and top-5 (fractions),
    and the per-class top-1 list. Classes with no images are left out of the mean."""
    k5 = min(5, logits.shape[1])
    top = logits.topk(k5, dim=1).indices
    hit1 = top[:, 0] == labels
    hit5 = (top == labels[:, None]).any(1)
    per1, per5 = [], []
    for c in range(n_classes):
        m = labels == c
        if m.any():
            per1.append(hit1[m].float().mean().item())
            per5.append(hit5[m].float().mean().item())
        else:
            per1.append(float("nan"))
            per5.append(float("nan"))
    valid1 = [v for v in per1 if v == v]
    valid5 = [v for v in per5 if v == v]
    return {"top1": sum(valid1) / len(valid1), "top5": sum(valid5) / len(valid5), "per_class_top1": per1}


def class_orders(items: list, permutations: int, seed: int = 0) -> list[list]:
    """The paper's class orders: ``items`` as given, then ``permutations - 1`` seeded shuffles."""
    rng = random.Random(seed)
    return [list(items)] + [rng.sample(list(items), len(items)) for _ in range(permutations - 1)]


def over_orders(top1: list[float], top5: list[float] | None = None) -> dict:
    """Per-order results → the report's ``per_class_top1`` / ``per_class_top5``: median and all."""
    out = {"per_class_top1": {"median": statistics.median(top1), "all": top1}}
    if top5 is not None:
        out["per_class_top5"] = {"median": statistics.median(top5), "all": top5}
    return out


class FeatureMemo:
    """What a classifier's :meth:`~n3core.synthesize.SynthesizedClassifier.head` reads of the
    cached photos under its (adapted) backbone: pooled features ``[N, F]``, or feature maps
    ``[N, C, h, w]`` for a classifier with a sentence match.

    Memoised by the backbone's values, that kind and the photos asked for: a classifier whose
    backbone equals one already run to float precision (every fc-only classifier; the same ΔΘ
    under another class order; the language control's arms that share a ΔΘ) reuses those
    features instead of a new backbone pass. Pooled features of a backbone whose maps are
    memoised are their spatial mean (what the backbone's pooling computes). Passes over all
    photos are kept for the whole run; passes over a subset (one hard5 task) only while that
    task is evaluated (the last ``keep_subsets``)."""

    def __init__(self, cache, batch_size: int = 64, keep_subsets: int = 6):
        self.cache, self.batch_size, self.keep_subsets = cache, batch_size, keep_subsets
        self.memo: list[tuple[dict, bool, tuple | None, torch.Tensor]] = []   # (backbone values, maps?, rows, feats)
        self.passes = self.reused = 0

    def _find(self, bb: dict, maps: bool, key: tuple | None) -> torch.Tensor | None:
        for state, kind, rows, feats in self.memo:
            if rows not in (None, key) or (maps and not kind):
                continue
            if all(torch.allclose(bb[n].float(), v.float(), rtol=1e-5, atol=1e-7) for n, v in state.items()):
                if rows is None and key is not None:
                    feats = feats[torch.tensor(key)]
                return feats if kind == maps else feats.float().mean((2, 3))
        return None

    @torch.no_grad()
    def __call__(self, clf, rows: list[int] | None = None) -> torch.Tensor:
        bb = dict(clf.backbone.state_dict())
        maps = clf.words is not None
        key = tuple(rows) if rows is not None else None
        found = self._find(bb, maps, key)
        if found is not None:
            self.reused += 1
            return found
        # an unadapted backbone serves every task: run it on all photos once, and keep it
        whole = rows is None or not clf.info["adapted_backbone"]
        images = self.cache.images if whole else self.cache.images[torch.tensor(rows)]
        feats = batched_features(clf.features, images, self.cache.spec, self.batch_size, clf.device,
                                 dtype=torch.float16 if maps else torch.float32)
        self.passes += 1
        self.memo.append((bb, maps, None if whole else key, feats))
        subsets = [i for i, m in enumerate(self.memo) if m[2] is not None]
        for i in reversed(subsets[:-self.keep_subsets]):
            del self.memo[i]
        return feats[torch.tensor(rows)] if whole and rows is not None else feats


def batched_features(fn, images: torch.Tensor, spec, batch_size: int = 64, device="cpu",
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``fn`` (normalised images → pooled features) over uint8 ``images`` ``[N, 3, S, S]`` in
    batches, normalised by ``spec`` → ``[N, F]`` on the CPU, as ``dtype`` (feature maps are kept
    in float16: 50 classes' photos are 0.4 GB a map set so, as the sentence match trains on them)."""
    return torch.cat([fn(spec.normalize(images[s:s + batch_size]).to(device)).to(dtype).cpu()
                      for s in range(0, len(images), batch_size)])


@torch.no_grad()
def adaptation_accuracy(model, adaptation, cache, classes: list[str], *, features: torch.Tensor | None = None,
                        batch_size: int = 64) -> dict:
    """Per-class accuracy of one :class:`~n3core.meta.Adaptation` (the meta-model's output, run
    through ``functional_call``) over the cached photos of ``classes`` (their order): what
    training validates with. ``features`` ``[N, F]``: the frozen backbone's, precomputed
    (fc-only training), else the (adapted) backbone runs on the photos."""
    if features is None:
        dev = next(model.meta.parameters()).device
        features = batched_features(lambda x: model.features(x, adaptation), cache.images, cache.spec,
                                    batch_size, dev)
    elif adaptation.delta:
        raise ValueError("cached features cannot be used with a full adaptation")
    idx = {c: i for i, c in enumerate(classes)}
    labels = torch.tensor([idx[r.label] for r in cache.records])
    logits = adaptation.classify(features.to(adaptation.fc_weight.device)).float().cpu()
    return per_class_accuracy(logits, labels, len(classes))


def _accuracy(clf, feats: torch.Tensor, labels: torch.Tensor, k: int, chunk: int = 128) -> dict:
    """Per-class accuracy of ``clf``'s head on ``feats``, ``chunk`` photos at a time (the sentence
    match's attention over K classes' sentences is [photos, matches, K, sentences, positions])."""
    with torch.no_grad():
        logits = torch.cat([clf.head(feats[s:s + chunk].to(clf.device).float()).float().cpu()
                            for s in range(0, len(feats), chunk)])
    return per_class_accuracy(logits, labels, k)


def control_sets(control: dict[str, str] | None, k: int, draws: int, seed: int) -> list[dict[str, str]]:
    """The language control's draws: ``draws`` seeded samples of ``k`` (at most all) of the
    control descriptions (other classes'). ``evaluate`` and the app's control both draw here."""
    if not control:
        return []
    rng = random.Random(f"control-{seed}")
    names = sorted(control)
    return [{c: control[c] for c in rng.sample(names, min(k, len(names)))} for _ in range(draws)]


def nearest_tasks(synthesizer, descriptions: dict[str, str], size: int = HARD_K) -> dict[str, list[str]]:
    """For each class c: ``[c]`` plus the ``size - 1`` classes whose descriptions are nearest to
    c's by cosine of the text encoder's sentence embedding (normalised mean of its word states)."""
    names = list(descriptions)
    if len(names) < size:
        raise ValueError(f"the hard{size} protocol needs at least {size} classes, got {len(names)}")
    return nearest_by_embedding(names, synthesizer.text_encoder.embed([descriptions[c] for c in names]), size)


def nearest_by_embedding(names: list[str], emb: torch.Tensor, size: int = HARD_K) -> dict[str, list[str]]:
    """``names`` with their L2-normalised embeddings ``[K, D]`` → for each name, ``[name]`` plus
    the ``size - 1`` others of highest cosine."""
    sim = emb @ emb.T
    sim.fill_diagonal_(-2.0)
    return {c: [c] + [names[j] for j in sim[i].topk(size - 1).indices.tolist()] for i, c in enumerate(names)}


def evaluate_protocol(synthesizer, descriptions: dict[str, str], images, *, protocol: str = "paper",
                      permutations: int = 10, seed: int = 0, control_descriptions: dict[str, str] | None = None,
                      control_draws: int = 3, batch_size: int = 64, progress: bool = True,
                      kappa: float | None = None, features: "FeatureMemo | None" = None) -> dict:
    """Run ``protocol`` for ``descriptions`` (class → text) over ``images`` (an ImageSet of
    exactly those classes). ``control_descriptions``: descriptions of other classes (the
    split's train classes) that the language control writes ΔΘ (and the sentence match) from.
    ``kappa``: the sentence match's weight, instead of the checkpoint's (choosing it on a dev
    split). ``features``: a :class:`FeatureMemo` of these photos kept from an earlier call (the
    same model under another κ reuses every backbone pass). Returns the JSON-able report."""
    from .imagecache import ImageCache

    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if control_descriptions is not None:
        overlap = set(control_descriptions) & set(descriptions)
        if overlap:
            raise ValueError(f"control descriptions must come from other classes; shared: {sorted(overlap)[:3]}")
        if len(control_descriptions) < 2:
            raise ValueError("the language control needs descriptions of at least 2 other classes, "
                             f"got {len(control_descriptions)}")
    t0 = time.time()
    if features is None:
        features = FeatureMemo(ImageCache(images.records, synthesizer.preprocess, progress=progress), batch_size)
    elif [r.path for r in features.cache.records] != [r.path for r in images.records] \
            or features.cache.spec != synthesizer.preprocess:
        raise ValueError("features: a FeatureMemo of other photos or another preprocessing")
    cache = features.cache
    passes0, reused0 = features.passes, features.reused
    full = synthesizer.config.mode == "full" or synthesizer.match is not None    # language-written network parts
    run = _paper if protocol == "paper" else _hard5
    report = run(synthesizer, descriptions, cache, features, full=full, permutations=permutations, seed=seed,
                 control=control_descriptions if full else None, draws=control_draws, progress=progress, kappa=kappa)
    top1 = report["per_class_top1"]["median"]
    if not full:        # no ΔΘ, no sentence match: nothing for the words to shape beyond the classifier rows
        report.update(no_adaptation=top1, swapped_adaptation=top1, swapped_delta=top1, swapped_match=top1)
    elif report.get("swapped_adaptation") is not None:
        report.setdefault("swapped_match", top1)
    for key, gain in (("swapped_adaptation", "language_gain"), ("swapped_delta", "language_gain_delta"),
                      ("swapped_match", "language_gain_match")):
        report[gain] = top1 - report[key] if report.get(key) is not None else None
    report.update({"protocol": protocol, "classes": len(descriptions), "images": len(images),
                   "mode": synthesizer.config.mode, "wall_s": round(time.time() - t0, 1),
                   "backbone_passes": features.passes - passes0, "backbone_passes_reused": features.reused - reused0,
                   "control_draws": control_draws if full and control_descriptions else 0,
                   "preprocess": synthesizer.preprocess.to_dict(),
                   "mu": float(synthesizer.model.meta.mu.detach()), "gamma": float(synthesizer.config.gamma),
                   "sentence_match_kappa": (synthesizer.match.cfg.kappa if kappa is None else kappa)
                   if synthesizer.match is not None else None})
    return report


def _paper(synth, descriptions, cache, features, *, full, permutations, seed, control, draws, progress, kappa) -> dict:
    classes = list(descriptions)
    orders = class_orders(classes, permutations, seed)
    top1, top5, plain, per_class_runs = [], [], [], []
    # the unadapted backbone's features (the no-ΔΘ control): one pass, whatever the order
    plain_feats = features(synth.synthesize(descriptions, layer_only=True)) if full else None
    for order in tqdm(orders, desc="class-order permutations", disable=not progress):
        clf = synth.synthesize({c: descriptions[c] for c in order}, kappa=kappa)
        idx = {c: i for i, c in enumerate(order)}
        labels = torch.tensor([idx[r.label] for r in cache.records])
        res = _accuracy(clf, features(clf), labels, len(order))
        top1.append(res["top1"])
        top5.append(res["top5"])
        per_class_runs.append({c: res["per_class_top1"][idx[c]] for c in classes})
        if full:
            plain.append(_accuracy(clf, plain_feats, labels, len(order))["top1"])
    med_run = sorted(range(len(top1)), key=lambda i: top1[i])[len(top1) // 2]
    report = {**over_orders(top1, top5), "permutations": len(orders), "per_class_top1_of_median_run": per_class_runs[med_run]}
    if full:
        report["no_adaptation"] = statistics.median(plain)
        labels = torch.tensor([classes.index(r.label) for r in cache.records])
        swapped = {s: [] for s in control_arms(synth)}
        for other in tqdm(control_sets(control, len(classes), draws, seed), desc="language control",
                          disable=not progress):
            for swap, accs in swapped.items():
                clf = synth.synthesize(descriptions, delta_from=other, swap=swap, kappa=kappa)
                accs.append(_accuracy(clf, features(clf), labels, len(classes))["top1"])
        report.update(_swapped_keys(swapped))
    return report


def control_arms(synth) -> tuple[str, ...]:
    """The control's arms, each a ``swap`` of :meth:`Synthesizer.synthesize`: both parts written
    from the other texts, and, with a sentence match, ΔΘ alone and the match alone."""
    return ("both", "delta", "match") if synth.match is not None else ("both",)


_SWAP_KEYS = {"both": "swapped_adaptation", "delta": "swapped_delta", "match": "swapped_match"}


def _swapped_keys(by_swap: dict[str, list[float]]) -> dict:
    """Per-draw accuracies of each control arm → the report's ``swapped_*`` keys (medians over
    the draws) and their ``*_all`` lists. A model without a match has the ``"both"`` arm only:
    ΔΘ alone is then both parts, and its match arm is left for the caller (the true score)."""
    out = {}
    for swap, accs in by_swap.items():
        key = _SWAP_KEYS[swap]
        out[key] = statistics.median(accs) if accs else None
        out[key + "_all"] = accs
    if "delta" not in by_swap:
        out["swapped_delta"], out["swapped_delta_all"] = out["swapped_adaptation"], out["swapped_adaptation_all"]
    return out


def _hard5(synth, descriptions, cache, features, *, full, permutations, seed, control, draws, progress, kappa) -> dict:
    tasks = nearest_tasks(synth, descriptions)
    rows_of: dict[str, list[int]] = {}
    for i, r in enumerate(cache.records):
        rows_of.setdefault(r.label, []).append(i)
    others = control_sets(control, HARD_K, draws, seed)
    swaps = control_arms(synth)
    per_class, plain, swapped = {}, {}, {(s, c): [] for s in swaps for c in tasks}
    for c, task in tqdm(tasks.items(), desc=f"hard{HARD_K} tasks", disable=not progress):
        rows = rows_of[c]           # c's score reads only c's photos: the others' would be classified for nothing
        labels = torch.zeros(len(rows), dtype=torch.long)
        sub = {t: descriptions[t] for t in task}
        clf = synth.synthesize(sub, kappa=kappa)
        per_class[c] = _accuracy(clf, features(clf, rows), labels, HARD_K)["per_class_top1"][0]
        if full:
            base = synth.synthesize(sub, layer_only=True)
            plain[c] = _accuracy(clf, features(base, rows), labels, HARD_K)["per_class_top1"][0]
            for other in others:
                for swap in swaps:
                    sw = synth.synthesize(sub, delta_from=other, swap=swap, kappa=kappa)
                    swapped[swap, c].append(_accuracy(sw, features(sw, rows), labels, HARD_K)["per_class_top1"][0])
    mean = sum(per_class.values()) / len(per_class)
    report = {**over_orders([mean]), "permutations": 1,
              "per_class_top1_of_median_run": per_class, "tasks": tasks}
    if full:
        report["no_adaptation"] = sum(plain.values()) / len(plain)
        report.update(_swapped_keys({s: [sum(swapped[s, c][r] for c in tasks) / len(tasks) for r in range(len(others))]
                                     for s in swaps}))
    return report


def format_summary(report: dict) -> str:
    proto = report.get("protocol", "paper")
    line = (f"{report.get('mode', '')} N3, {proto} protocol, {report['classes']} classes, {report['images']} images: "
            f"per-class top-1 {report['per_class_top1']['median'] * 100:.1f}%")
    if "per_class_top5" in report:
        line += f"  top-5 {report['per_class_top5']['median'] * 100:.1f}%"
    line += (f"  (median of {report['permutations']} class orders; chance {100 / report['classes']:.1f}%)"
             if proto == "paper" else f"  (each class in a {HARD_K}-way task of its nearest classes; chance {100 / HARD_K:.0f}%)")
    gain = report.get("language_gain")
    if report.get("mode") == "full" or report.get("sentence_match_kappa") is not None:
        if gain is None:
            line += "\n  language control: not run (no control descriptions: give a split, or --control-descriptions)"
        else:
            what = "ΔΘ and sentence match" if report.get("sentence_match_kappa") is not None else "ΔΘ"
            line += (f"\n  language control: no {what} {report['no_adaptation'] * 100:.1f}%, {what} from other "
                     f"classes' descriptions {report['swapped_adaptation'] * 100:.1f}%, "
                     f"language_gain {gain * 100:+.1f} points")
            if report.get("sentence_match_kappa") is not None and report.get("language_gain_delta") is not None:
                line += (f"\n    of which: ΔΘ alone from other descriptions {report['swapped_delta'] * 100:.1f}% "
                         f"(language_gain_delta {report['language_gain_delta'] * 100:+.1f}), the match alone "
                         f"{report['swapped_match'] * 100:.1f}% (language_gain_match "
                         f"{report['language_gain_match'] * 100:+.1f})")
    elif gain is not None:
        line += "\n  language control: fc-only, language_gain 0 by construction"
    return line


def write_report(report: dict, path: str | Path) -> None:
    """Write a result as JSON, with what produced it (command line and commit) unless it says."""
    import os

    from .runtime import provenance

    report = {**report, "provenance": report.get("provenance") or provenance()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")     # a killed run leaves no half report
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, path)
