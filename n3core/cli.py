"""``python -m n3core train|evaluate|synthesize ...`` — the command line."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .data import DESCRIPTION_SETS
from .datasets import PRESETS
from .evaluate import PROTOCOLS
from .explain import SALIENCY_METHODS
from .meta import MODES

__all__ = ["main"]

DEFAULT_RECIPE = "checkpoints/recipe.json"


def _train(args) -> int:
    from .meta import N3Config
    from .train import TrainConfig, load_config_file, train

    model_d, train_d = load_config_file(args.config) if args.config else ({}, {})
    if args.mode:
        model_d["mode"] = args.mode
    for key in ("split", "data", "descriptions", "max_steps", "checkpoint_every", "eval_every", "patience", "k",
                "batch_size", "micro_batches", "seed", "init_from", "device", "threads"):
        v = getattr(args, key, None)
        if v is not None:
            train_d[key] = v
    if args.image_size:
        model_d["image_size"] = args.image_size
    summary = train(N3Config.from_dict(model_d), TrainConfig.from_dict(train_d), args.out, resume=args.resume,
                    progress=not args.no_progress)
    print(json.dumps(summary, indent=1))
    return 0


def _evaluate(args) -> int:
    from .data import load_descriptions, read_image_folder, resolve_data_root
    from .evaluate import evaluate_protocol, format_summary, split_inputs, write_report
    from .synthesize import Synthesizer

    synth = Synthesizer.from_checkpoint(args.checkpoint, device=args.device)
    control = None
    if args.split:
        descriptions, images, control = split_inputs(resolve_data_root(args.data), args.split, args.part,
                                                     args.descriptions_set)
    else:
        if not (args.images and args.descriptions):
            print("error: give --split, or --images FOLDER with --descriptions FILE.json", file=sys.stderr)
            return 2
        images = read_image_folder(args.images)
        descriptions = load_descriptions(args.descriptions, images.classes)
        descriptions = {c: descriptions[c] for c in images.classes}
        if args.control_descriptions:
            control = load_descriptions(args.control_descriptions)
            control = {c: t for c, t in control.items() if c not in descriptions}
    report = evaluate_protocol(synth, descriptions, images, protocol=args.protocol, permutations=args.permutations,
                               control_descriptions=control, control_draws=args.control_draws,
                               progress=not args.no_progress, kappa=args.kappa)
    report.update({"checkpoint": str(args.checkpoint), "split": args.split, "part": args.part,
                   "descriptions_set": args.descriptions_set if args.split else str(args.descriptions)})
    print(format_summary(report))
    if args.out:
        write_report(report, args.out)
        print(f"[n3] report written to {args.out}")
    return 0


def _refuse_existing(out) -> None:
    if Path(out).exists():
        raise FileExistsError(f"{out} exists; choose a new --out (a checkpoint is never overwritten)")


def _train_match(args) -> int:
    from .sentence_match import MatchConfig
    from .train import MatchTrainConfig, train_sentence_match

    overrides = {k: v for k, v in (("split", args.split), ("data", args.data), ("steps", args.steps),
                                   ("k", args.k), ("seed", args.seed), ("threads", args.threads)) if v is not None}
    _refuse_existing(args.out)
    record = train_sentence_match(args.checkpoint, args.out, MatchTrainConfig.from_dict(overrides),
                                  MatchConfig(kappa=args.kappa), members=args.members, progress=not args.no_progress)
    _print_match(record)
    print(f"[n3] checkpoint with a sentence match ({len(record['members'])} averaged) written to {args.out}")
    return 0


def _print_match(record: dict) -> None:
    members = [{"seed": m["seed"], "train_s": m["train_s"], "final_loss": m["history"][-1]["loss"] if m["history"] else None}
               for m in record["members"]]
    print(json.dumps({k: v for k, v in record.items() if k != "members"} | {"members": members}, indent=1))


def _join_matches(args) -> int:
    from .checkpoint import join_matches

    _refuse_existing(args.out)
    record = join_matches(args.checkpoint, args.matches, args.out)
    _print_match(record)
    print(f"[n3] checkpoint with the mean of {len(record['members'])} sentence matches written to {args.out}")
    return 0


def _recipe(args) -> int:
    from .recipe import load_recipe, run_recipe

    recipe = load_recipe(args.recipe)
    command = " ".join(["python -m n3core recipe", "--split", args.split, "--out", args.out]
                       + (["--recipe", args.recipe] if args.recipe != DEFAULT_RECIPE else []))
    res = run_recipe(recipe, args.split, args.out, data=args.data, threads=args.threads or 0,
                     progress=not args.no_progress, command=command)
    ran = [s["stage"] for s in res["stages"] if s["ran"]]
    print(f"[n3] recipe {recipe.name} on {args.split}: {len(ran)} stage(s) run now, "
          f"{len(res['stages']) - len(ran)} already done")
    for which, path in res["checkpoints"].items():
        print(f"[n3] {which}: {path} (with its eval-*.json reports)")
    return 0


def _synthesize(args) -> int:
    from .data import load_descriptions
    from .synthesize import Synthesizer

    synth = Synthesizer.from_checkpoint(args.checkpoint, device="cpu")
    clf = synth.synthesize(load_descriptions(args.descriptions))
    path = clf.export(args.out)
    print(f"[n3] {len(clf.class_names)}-way classifier written to {path} (runs with torch alone: torch.export.load(path).module())")
    return 0


def _explain(args) -> int:
    from .data import load_descriptions, load_image
    from .checkpoint import fc_only_sibling
    from .explain import adaptation_norms, saliency_overlays, sentence_ablation, token_evidence
    from .figures import norms_figure
    from .synthesize import Synthesizer

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    descriptions = load_descriptions(args.descriptions)
    image = load_image(args.image)
    full = Synthesizer.from_checkpoint(args.checkpoint, device=args.device)
    fc_dir = Path(args.fc_only_checkpoint) if args.fc_only_checkpoint else fc_only_sibling(args.checkpoint)
    fc = Synthesizer.from_checkpoint(fc_dir, device=args.device, backbone=full.backbone,
                                     text_encoder=full.text_encoder) if fc_dir.exists() else None
    ev = token_evidence(full, descriptions, image, label=args.label)
    clf = full.synthesize(descriptions)
    target = list(descriptions).index(ev.label)
    classifiers = {"full": clf}
    fc_clf = fc.synthesize(descriptions, layer_only=True) if fc is not None else None
    if fc_clf is not None:
        classifiers["fc-only"] = fc_clf
    overlays = saliency_overlays(classifiers, image, target, method=args.saliency)
    for name, overlay in overlays.items():
        overlay.save(out / f"saliency-{name}.png")
    rows = adaptation_norms(full, descriptions)
    if rows:
        norms_figure(rows).write_html(out / "adaptation-norms.html", include_plotlyjs=True)
    report = {
        "image": str(args.image), "label": ev.label, "predicted": ev.predicted, "probabilities": ev.probabilities,
        "fc_only_predicted": (fc_clf.class_names[int(fc_clf.predict(image).argmax())]
                              if fc_clf is not None else None),
        "positive_evidence": [w.__dict__ for w in ev.positive],
        "negative_evidence": [w.__dict__ for w in ev.negative],
        "negative_classes": ev.negative_classes,
        "sentence_ablation": sentence_ablation(full, descriptions, image, ev.label),
        "adaptation_norms": rows, "saliency_method": args.saliency,
        "saliency_maps": [f"saliency-{n}.png" for n in overlays],
    }
    (out / "explanation.json").write_text(json.dumps(report, indent=1))
    pos = ", ".join(w.text for w in ev.positive[:5])
    neg = ", ".join(f"{w.text} ({w.cls})" for w in ev.negative[:5])
    print(f"predicted {ev.predicted}; explaining {ev.label}\n  is a {ev.label} because: {pos}\n"
          f"  is not another class because: {neg}\n[n3] written to {out}")
    return 0


def _package(args) -> int:
    from .checkpoint import package_checkpoint

    prov = dict(kv.split("=", 1) for kv in args.note) if args.note else None
    path = package_checkpoint(args.checkpoint, args.out, half=not args.fp32, provenance=prov, kappa=args.kappa)
    size = sum(p.stat().st_size for p in Path(path).iterdir()) / 1e6
    print(f"[n3] packaged {args.checkpoint} → {path} ({size:.1f} MB)")
    return 0


def _long_running(p, fn, threads: bool = True) -> None:
    """What every long command takes: torch threads, a switch for its progress bars, its function."""
    if threads:
        p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(fn=fn)


def _data_options(p, split_help: str) -> None:
    """Where a command's classes and photos come from: ``--split``, ``--preset``, ``--data``."""
    p.add_argument("--split", default=None, help=split_help)
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="a data set preset (same as --split preset:NAME); see README 'Data'")
    p.add_argument("--data", default=None, help="data folder (default $N3_DATA or ../shared/data/cub)")


def _add_train(sub) -> None:
    t = sub.add_parser("train", help="episodic meta-training on a split's train classes")
    _data_options(t, "ss0, ss1, ss2, ps, a split .json, or preset:NAME (default ss0)")
    t.add_argument("--out", required=True, help="run folder for checkpoints and the log")
    t.add_argument("--mode", choices=list(MODES), default=None)
    t.add_argument("--max-steps", type=int, default=None)
    t.add_argument("--checkpoint-every", type=int, default=None)
    t.add_argument("--eval-every", type=int, default=None)
    t.add_argument("--patience", type=int, default=None,
                   help="stop once this many validations in a row bring no new best val accuracy (best/ is unchanged)")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    t.add_argument("--config", default=None, help='JSON {"model": {...}, "train": {...}}')
    t.add_argument("--descriptions", default=None, help="description set name or .json")
    t.add_argument("--init-from", default=None, help="start from the matching weights of this checkpoint")
    t.add_argument("--k", type=int, default=None)
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--micro-batches", type=int, default=None,
                   help="full mode: run the batch through the backbone in this many parts (less memory, same step)")
    t.add_argument("--image-size", type=int, default=None)
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--device", default=None)
    _long_running(t, _train)


def _add_evaluate(sub) -> None:
    e = sub.add_parser("evaluate", help="the paper's protocol on unseen classes")
    e.add_argument("--checkpoint", required=True)
    _data_options(e, "ss0, ss1, ss2, ps, a split .json, or preset:NAME")
    e.add_argument("--part", default="test", choices=["train", "val", "test"])
    e.add_argument("--images", default=None, help="image folder: one sub-folder per class")
    e.add_argument("--descriptions", default=None, help="descriptions .json for --images")
    e.add_argument("--descriptions-set", default="allaboutbirds",
                   choices=list(DESCRIPTION_SETS))
    e.add_argument("--permutations", type=int, default=10)
    e.add_argument("--protocol", default="paper", choices=list(PROTOCOLS),
                   help="paper: one K-way classifier over all classes (default); hard5: each class in a 5-way task "
                        "with its 4 nearest classes by description")
    e.add_argument("--control-draws", type=int, default=3,
                   help="language control: draws of other classes' descriptions that ΔΘ is written from")
    e.add_argument("--control-descriptions", default=None,
                   help="with --images: descriptions .json of other classes for the language control")
    e.add_argument("--kappa", type=float, default=None,
                   help="weight of the checkpoint's sentence match in the logits (default: the checkpoint's)")
    e.add_argument("--out", default=None, help="write the JSON report here")
    e.add_argument("--device", default="auto")
    _long_running(e, _evaluate, threads=False)


def _add_train_match(sub) -> None:
    m = sub.add_parser("train-match", help="train a sentence match on a checkpoint's frozen backbone "
                                           "(writes a copy of the checkpoint with it)")
    m.add_argument("--checkpoint", required=True, help="the N3 checkpoint whose classifiers the match joins")
    m.add_argument("--out", required=True, help="the new checkpoint folder")
    _data_options(m, "its train classes are the training classes (default ss0)")
    m.add_argument("--steps", type=int, default=None, help="episodes (default 1500)")
    m.add_argument("--k", type=int, default=None, help="classes per episode (default 25)")
    m.add_argument("--kappa", type=float, default=1.0,
                   help="its weight in the logits (1: chosen on a dev split, see experiments/README.md)")
    m.add_argument("--seed", type=int, default=None, help="the first match's seed; the others take the next ones")
    m.add_argument("--members", type=int, default=3,
                   help="matches trained with successive seeds and averaged (3: chosen on a dev split, "
                        "see experiments/README.md)")
    _long_running(m, _train_match)


def _add_join_matches(sub) -> None:
    j = sub.add_parser("join-matches", help="a checkpoint with the mean of sentence matches already trained "
                                            "(same split and settings, other seeds)")
    j.add_argument("--checkpoint", required=True, help="the N3 checkpoint whose classifiers the matches join")
    j.add_argument("--matches", nargs="+", required=True, help="checkpoints from train-match whose matches are averaged")
    j.add_argument("--out", required=True, help="the new checkpoint folder")
    j.set_defaults(fn=_join_matches)


def _add_recipe(sub) -> None:
    r = sub.add_parser("recipe", help="every stage of a shipped model, resumable: fc-only, full, sentence matches, "
                                      "join, packaging, evaluation reports")
    r.add_argument("--split", default="ss0", help="ss0, ss1, ss2, ps or a split .json (default ss0)")
    r.add_argument("--out", required=True, help="work folder; re-running the same command continues it")
    r.add_argument("--recipe", default=DEFAULT_RECIPE, help=f"recipe JSON (default {DEFAULT_RECIPE})")
    r.add_argument("--data", default=None, help="data folder (default $N3_DATA or ../shared/data/cub)")
    _long_running(r, _recipe)


def _add_synthesize(sub) -> None:
    s = sub.add_parser("synthesize", help="descriptions → a standalone classifier file")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--descriptions", required=True, help="JSON {class: description}")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=_synthesize)


def _add_package(sub) -> None:
    k = sub.add_parser("package", help="a training checkpoint → a shippable one (weights only, fp16)")
    k.add_argument("--checkpoint", required=True)
    k.add_argument("--out", required=True)
    k.add_argument("--fp32", action="store_true")
    k.add_argument("--note", action="append", help="KEY=VALUE recorded under provenance (repeatable)")
    k.add_argument("--kappa", type=float, default=None, help="set the sentence match's weight (chosen on a dev split)")
    k.set_defaults(fn=_package)


def _add_explain(sub) -> None:
    x = sub.add_parser("explain", help="token evidence, saliency (full vs fc-only), adaptation norms")
    x.add_argument("--checkpoint", required=True)
    x.add_argument("--descriptions", required=True)
    x.add_argument("--image", required=True)
    x.add_argument("--label", default=None, help="class to explain (default: the prediction)")
    x.add_argument("--fc-only-checkpoint", default=None, help="default: <checkpoint>-fconly beside it")
    x.add_argument("--saliency", default="saliency", choices=list(SALIENCY_METHODS))
    x.add_argument("--out", required=True)
    x.add_argument("--device", default="auto")
    x.set_defaults(fn=_explain)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m n3core", description="N3: classifiers from class descriptions")
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_add_train, _add_evaluate, _add_train_match, _add_join_matches, _add_recipe, _add_synthesize,
                _add_package, _add_explain):
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from .runtime import setup

    setup()
    args = build_parser().parse_args(argv)
    if getattr(args, "preset", None):
        args.split = f"preset:{args.preset}"
    from .checkpoint import CheckpointError
    from .data import DataError
    from .recipe import RecipeError
    from .meta import SynthesisError
    from .text import TextEncoderError

    try:
        return args.fn(args)
    except (DataError, CheckpointError, RecipeError, SynthesisError, TextEncoderError, FileExistsError,
            ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
