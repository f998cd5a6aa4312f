"""The shipped recipe as one command: ``python -m n3core recipe --split ss0 --out runs/ss0``.

A :class:`Recipe` (one JSON file, ``checkpoints/recipe.json`` for the shipped models) names
every stage a shipped pair of checkpoints needs; :func:`run_recipe` runs them in order into a
work folder:

1. ``fconly/`` — meta-training of the classification-layer writer alone (``train``);
2. ``full/`` — meta-training of the full adaptation, started from ``fconly/final``; ``full/best``
   (chosen on the val classes) goes on;
3. ``match-s<seed>/`` — one sentence match per seed on ``full/best``'s frozen backbone
   (``train-match --members 1``);
4. ``joined/`` — ``full/best`` with the mean of those matches (``join-matches``);
5. ``<name>-<split>/`` and ``<name>-<split>-fconly/`` — both packaged for shipping (fp16,
   weights only), each recording the recipe and the command that wrote it;
6. their evaluation reports on the split's test classes, written into the packaged folders:
   ``eval-<split>-test.json`` (the paper's protocol, with the three-way language control),
   for the full model ``eval-<split>-test-delta-only.json`` (the same model with the sentence
   match off, κ = 0: what ΔΘ alone does; it reuses the first report's backbone passes), and
   ``eval-<split>-test-hard5.json``.

Resumable at any point: a stage whose output exists is never redone; a training stage that
was cut short continues from its newest checkpoint (``train --resume``), a match or an
evaluation that was cut short starts again (each writes its output atomically, so a killed one
leaves nothing that looks finished). The work folder keeps ``recipe.json`` (what it was
started with: another recipe, split or data folder is refused) and ``stages.jsonl`` (each
stage's wall time and the process's peak memory when it ended).

Shipping is copying the two packaged folders into ``checkpoints/``: a shipped checkpoint is
exactly what this command writes.
"""
from __future__ import annotations

import dataclasses
import json
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from .data import read_json

__all__ = ["Recipe", "RecipeError", "load_recipe", "recipe_stages", "run_recipe", "split_label"]


class RecipeError(ValueError):
    """A recipe file that does not parse, or a work folder started with another recipe."""


@dataclass
class Recipe:
    """What the shipped checkpoints are made of. ``fc_only`` and ``full``:
    ``{"model": {N3Config fields}, "train": {TrainConfig fields}}`` (split, data and threads
    come from the command); ``match``: ``{"members": M, "kappa": κ, "seed": first seed,
    "train": {MatchTrainConfig fields}}``; ``evaluate``: ``{"permutations": 10,
    "control_draws": 3}``."""

    name: str
    fc_only: dict
    full: dict
    match: dict = field(default_factory=lambda: {"members": 3, "kappa": 1.0, "seed": 0, "train": {}})
    evaluate: dict = field(default_factory=lambda: {"permutations": 10, "control_draws": 3})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "recipe") -> "Recipe":
        known = {f.name for f in dataclasses.fields(cls)}
        extra = set(d) - known
        if extra:
            raise RecipeError(f"{where}: unknown keys {sorted(extra)}; expected {sorted(known)}")
        missing = {"name", "fc_only", "full"} - set(d)
        if missing:
            raise RecipeError(f"{where}: missing {sorted(missing)}")
        r = cls(**d)
        for stage in ("fc_only", "full"):
            bad = set(getattr(r, stage)) - {"model", "train"}
            if bad:
                raise RecipeError(f"{where}: {stage} has unknown sections {sorted(bad)}; expected 'model' and 'train'")
        bad = set(r.match) - {"members", "kappa", "seed", "train"}
        if bad:
            raise RecipeError(f"{where}: match has unknown keys {sorted(bad)}")
        if int(r.match.get("members", 3)) < 1:
            raise RecipeError(f"{where}: match.members must be at least 1")
        bad = set(r.evaluate) - {"permutations", "control_draws"}
        if bad:
            raise RecipeError(f"{where}: evaluate has unknown keys {sorted(bad)}")
        # every config is checked now, not an hour into the run
        from .meta import N3Config
        from .train import MatchTrainConfig
        from .train import TrainConfig

        for stage in ("fc_only", "full"):
            N3Config.from_dict(getattr(r, stage).get("model", {}))
            TrainConfig.from_dict(getattr(r, stage).get("train", {}))
        MatchTrainConfig.from_dict(r.match.get("train", {}))
        return r


def load_recipe(path: str | Path) -> Recipe:
    p = Path(path)
    d = read_json(p, "recipe", RecipeError)
    if not isinstance(d, dict):
        raise RecipeError(f"{p}: a recipe is a JSON object")
    return Recipe.from_dict(d, str(p))


@dataclass
class Stage:
    name: str
    output: Path                     # exists ⇔ the stage is done
    run: Callable[[], None]


def recipe_stages(recipe: Recipe, split: str, out: Path, *, data: str | None = None, threads: int = 0,
                  progress: bool = True, command: str | None = None, backbone=None, text_encoder=None
                  ) -> list[Stage]:
    """The stages of ``recipe`` on ``split`` into the work folder ``out``, in order."""
    from .checkpoint import package_checkpoint
    from .meta import N3Config
    from .checkpoint import join_matches
    from .sentence_match import MatchConfig
    from .train import MatchTrainConfig, train_sentence_match
    from .train import TrainConfig, train

    common = {"split": split, "data": data, "threads": threads}

    def train_stage(part: dict, folder: Path, init_from: Path | None) -> Callable[[], None]:
        t = {**part.get("train", {}), **common, **({"init_from": str(init_from)} if init_from else {})}
        return lambda: train(N3Config.from_dict(part.get("model", {})), TrainConfig.from_dict(t), folder,
                             resume=folder.exists(), progress=progress, backbone=backbone, text_encoder=text_encoder)

    m = recipe.match
    seeds = [int(m.get("seed", 0)) + i for i in range(int(m.get("members", 3)))]
    full_best = out / "full" / "best"

    def match_stage(seed: int) -> Callable[[], None]:
        def go():
            cfg = MatchTrainConfig.from_dict({**m.get("train", {}), **common, "seed": seed})
            train_sentence_match(full_best, out / f"match-s{seed}", cfg, MatchConfig(kappa=float(m.get("kappa", 1.0))),
                                 members=1, progress=progress, backbone=backbone, text_encoder=text_encoder)
        return go

    label = split_label(split)
    shipped = {"full": out / f"{recipe.name}-{label}", "fc-only": out / f"{recipe.name}-{label}-fconly"}
    note = {"command": command or f"python -m n3core recipe --split {split} --out {out}",
            "recipe": recipe.to_dict(), "split": split}

    def package(src: Path, dst: Path) -> Callable[[], None]:
        return lambda: package_checkpoint(src, dst, provenance=note)

    def evaluation(which: str, protocol: str, reports: list[tuple[float | None, str]]) -> Stage:
        """One stage: reports of one checkpoint and protocol, for each (κ, file suffix); the
        second κ reuses every backbone pass of the first. Done when the last report exists."""
        paths = [(kappa, shipped[which] / f"eval-{label}-test{suffix}.json") for kappa, suffix in reports]

        def go():
            _evaluate(shipped[which], split, data, protocol, paths, recipe.evaluate, progress, backbone, text_encoder)
        kappas = " and κ = 0 (ΔΘ only)" if len(paths) > 1 else ""
        return Stage(f"evaluate {which}, {protocol}{kappas}", paths[-1][1], go)

    stages = [Stage("fc-only training", out / "fconly" / "final", train_stage(recipe.fc_only, out / "fconly", None)),
              Stage("full training", out / "full" / "final",
                    train_stage(recipe.full, out / "full", out / "fconly" / "final"))]
    stages += [Stage(f"sentence match, seed {s}", out / f"match-s{s}", match_stage(s)) for s in seeds]
    stages.append(Stage("join the matches", out / "joined",
                        lambda: join_matches(full_best, [out / f"match-s{s}" for s in seeds], out / "joined")))
    stages.append(Stage("package full", shipped["full"], package(out / "joined", shipped["full"])))
    stages.append(Stage("package fc-only", shipped["fc-only"], package(out / "fconly" / "final", shipped["fc-only"])))
    stages += [evaluation("full", "paper", [(None, ""), (0.0, "-delta-only")]),
               evaluation("full", "hard5", [(None, "-hard5")]),
               evaluation("fc-only", "paper", [(None, "")]), evaluation("fc-only", "hard5", [(None, "-hard5")])]
    return stages


def _evaluate(checkpoint: Path, split: str, data, protocol: str, paths: list, settings: dict, progress: bool,
              backbone, text_encoder) -> None:
    from .data import resolve_data_root
    from .evaluate import FeatureMemo, evaluate_protocol, split_inputs, write_report
    from .imagecache import ImageCache
    from .synthesize import Synthesizer

    synth = Synthesizer.from_checkpoint(checkpoint, backbone=backbone, text_encoder=text_encoder)
    descriptions, images, control = split_inputs(resolve_data_root(data), split, "test")
    features = FeatureMemo(ImageCache(images.records, synth.preprocess, progress=progress))
    for kappa, path in paths:
        report = evaluate_protocol(synth, descriptions, images, protocol=protocol,
                                   permutations=int(settings.get("permutations", 10)), control_descriptions=control,
                                   control_draws=int(settings.get("control_draws", 3)), progress=progress,
                                   kappa=kappa, features=features)
        report.update({"checkpoint": checkpoint.name, "split": split, "part": "test",
                       "descriptions_set": "allaboutbirds"})
        write_report(report, path)


def run_recipe(recipe: Recipe, split: str, out: str | Path, *, data: str | None = None, threads: int = 0,
               progress: bool = True, command: str | None = None, backbone=None, text_encoder=None,
               isolate: bool = True) -> dict:
    """Run (or continue) every stage of ``recipe`` on ``split`` into ``out``. Returns
    ``{"checkpoints": {"full": path, "fc-only": path}, "stages": [...]}`` where each stage says
    whether it ran now or was already done. ``backbone`` / ``text_encoder``: tests pass tiny
    ones; by default the real ones. ``isolate``: each stage runs in a fresh child process
    (spawned, killed with this one), so no stage inherits the memory the ones before it held
    and each stage's peak is its own."""
    out = Path(out)
    if threads:
        import torch

        torch.set_num_threads(threads)
    started = {"recipe": recipe.to_dict(), "split": split, "data": data}
    marker = out / "recipe.json"
    if marker.exists():
        before = json.loads(marker.read_text(encoding="utf-8"))
        if before != started:
            diff = [k for k in started if before.get(k) != started[k]]
            raise RecipeError(f"{out} was started with another {' and '.join(diff)}; continue it with the same "
                              "recipe, split and data folder, or choose another --out")
    else:
        out.mkdir(parents=True, exist_ok=True)
        _write_atomic(marker, json.dumps(started, indent=1))
    args = (recipe, split, out, data, threads, progress, command, backbone, text_encoder)
    stages = recipe_stages(*args[:2], out, data=data, threads=threads, progress=progress, command=command,
                           backbone=backbone, text_encoder=text_encoder)
    done_before = [s.output.exists() for s in stages]
    summary = []
    with tqdm(total=len(stages), initial=sum(done_before), desc=f"recipe {recipe.name} on {split}", unit="stage",
              disable=not progress, position=0, dynamic_ncols=True) as bar:
        for i, (stage, was_done) in enumerate(zip(stages, done_before)):
            if was_done:
                summary.append({"stage": stage.name, "ran": False})
                continue
            tqdm.write(f"[n3] recipe: {stage.name} → {_rel(stage.output, out)}", file=sys.stdout)
            t0 = time.time()
            peak = _run_isolated(args, i) if isolate else _run_here(stage)
            if not stage.output.exists():
                raise RecipeError(f"stage {stage.name!r} ended without writing {stage.output}")
            rec = {"stage": stage.name, "ran": True, "output": _rel(stage.output, out),
                   "wall_min": round((time.time() - t0) / 60, 2), "peak_rss_gb": peak,
                   "isolated": isolate, "finished_at": time.strftime("%Y-%m-%d %H:%M:%S")}
            with open(out / "stages.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
            summary.append(rec)
            bar.update(1)
    label = split_label(split)
    return {"checkpoints": {"full": str(out / f"{recipe.name}-{label}"),
                            "fc-only": str(out / f"{recipe.name}-{label}-fconly")}, "stages": summary}


def split_label(split: str) -> str:
    """How a split names its checkpoints and reports: ``ss0``, or a split file's stem."""
    return Path(split).stem if split.endswith(".json") else split.replace(":", "-")


def _run_here(stage: Stage) -> float:
    """Run in this process; the peak is this process's so far (GB)."""
    stage.run()
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


def _run_isolated(args: tuple, index: int) -> float:
    """Run stage ``index`` in a spawned child; its own peak resident memory (GB)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    args = args[:-1] + (None,)      # a text encoder holds locks: the child loads its own (the default one)
    child = ctx.Process(target=_stage_child, args=(args, index, queue), name=f"n3-recipe-stage-{index}")
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RecipeError(f"stage {index + 1} failed in its process (exit code {child.exitcode}); "
                          "the message above says why. Re-run the same command to continue.")
    return queue.get(timeout=10)


def _stage_child(args: tuple, index: int, queue) -> None:
    try:                                 # die with the recipe process, even when it is SIGKILLed
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)      # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    from .runtime import setup

    setup()
    recipe, split, out, data, threads, progress, command, backbone, text_encoder = args
    if threads:
        import torch

        torch.set_num_threads(threads)
    stage = recipe_stages(recipe, split, out, data=data, threads=threads, progress=progress, command=command,
                          backbone=backbone, text_encoder=text_encoder)[index]
    stage.run()
    queue.put(round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2))


def _rel(p: Path, base: Path) -> str:
    try:
        return str(p.relative_to(base))
    except ValueError:
        return str(p)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
