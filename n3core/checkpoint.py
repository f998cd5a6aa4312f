"""Checkpoints as safetensors + JSON, written atomically and checked on load.

A checkpoint is a folder::

    model.safetensors      meta-model weights (no pickles: loading runs no code)
    checkpoint.json        format, config, backbone signature, step, metrics, split,
                           SHA-256 of every weight file
    optimizer.safetensors  (training checkpoints) optimiser and scheduler tensors; their
                           non-tensor state is in checkpoint.json

It is written into a hidden temporary folder beside its destination and renamed into place,
so a killed process leaves either the old checkpoint or the new one, never half of one; the
checksums catch a file damaged afterwards.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from .data import read_json
from .meta import N3Config, N3Model
from .sentence_match import WEIGHT_PREFIX, MatchEnsemble

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "read_checkpoint_info", "fc_only_sibling",
           "latest_checkpoint", "package_checkpoint", "carried_info", "model_config", "check_backbone", "load_model",
           "save_with_match", "join_matches", "FORMAT"]

FORMAT = "n3-checkpoint"
VERSION = 1
MODEL_FILE, OPTIM_FILE, INFO_FILE = "model.safetensors", "optimizer.safetensors", "checkpoint.json"


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged, of another format, or for another backbone."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], Any]:
    """Split an optimiser/scheduler state dict into tensors and JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(obj, prefix):
        if isinstance(obj, torch.Tensor):
            key = prefix or "_"
            tensors[key] = obj.detach().cpu().contiguous()
            return {"__tensor__": key}
        if isinstance(obj, dict):
            return {"__dict__": [[walk(k, f"{prefix}k{i}"), walk(v, f"{prefix}.{i}")]
                                 for i, (k, v) in enumerate(obj.items())]}
        if isinstance(obj, (list, tuple)):
            return {"__list__": [walk(v, f"{prefix}[{i}]") for i, v in enumerate(obj)],
                    "tuple": isinstance(obj, tuple)}
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        raise CheckpointError(f"cannot store optimiser state of type {type(obj).__name__}")

    return tensors, walk(state, "")


def _unflatten_optimizer(tree, tensors: dict[str, torch.Tensor]):
    if isinstance(tree, dict):
        if "__tensor__" in tree:
            return tensors[tree["__tensor__"]]
        if "__dict__" in tree:
            return {_unflatten_optimizer(k, tensors): _unflatten_optimizer(v, tensors) for k, v in tree["__dict__"]}
        if "__list__" in tree:
            items = [_unflatten_optimizer(v, tensors) for v in tree["__list__"]]
            return tuple(items) if tree.get("tuple") else items
    return tree


def save_checkpoint(directory: str | Path, weights: dict[str, torch.Tensor], info: dict, *,
                    optimizer_state: dict | None = None, half: bool = False) -> Path:
    """Write a checkpoint folder atomically. ``info`` must be JSON-able (config, step, ...).

    ``half=True`` stores floating weights as fp16 (shipped models); loading casts back.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{directory.name}-", dir=directory.parent))
    try:
        w = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu().contiguous()
             for k, v in weights.items()}
        save_file(w, str(tmp / MODEL_FILE), metadata={"format": FORMAT})
        files = {MODEL_FILE: _sha256(tmp / MODEL_FILE)}
        record = dict(info)
        if optimizer_state is not None:
            tensors, tree = _flatten_optimizer(optimizer_state)
            save_file(tensors, str(tmp / OPTIM_FILE), metadata={"format": FORMAT})
            files[OPTIM_FILE] = _sha256(tmp / OPTIM_FILE)
            record["optimizer_tree"] = tree
        record.update({"format": FORMAT, "version": VERSION, "files": files, "saved_at": time.time(),
                       "dtype": "float16" if half else "float32"})
        with open(tmp / INFO_FILE, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        for p in tmp.iterdir():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        if directory.exists():
            old = directory.parent / f".old-{directory.name}-{os.getpid()}-{time.time_ns()}"
            os.rename(directory, old)
            os.rename(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, directory)
        _fsync_dir(directory.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fc_only_sibling(checkpoint: str | Path) -> Path:
    """Where a full-adaptation checkpoint's fc-only counterpart lives: ``<checkpoint>-fconly``
    beside it (how the shipped pair is named)."""
    p = Path(checkpoint)
    return p.with_name(p.name + "-fconly")


def read_checkpoint_info(directory: str | Path) -> dict:
    """The checked ``checkpoint.json`` of a checkpoint folder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {directory}")
    p = directory / INFO_FILE
    info = read_json(p, f"{directory} is not an N3 checkpoint: {INFO_FILE}", CheckpointError)
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not an N3 checkpoint (format {info.get('format') if isinstance(info, dict) else None!r})")
    if info.get("version", 0) > VERSION:
        raise CheckpointError(f"{p} has format version {info['version']}; this n3core reads up to {VERSION}")
    if not isinstance(info.get("files"), dict) or MODEL_FILE not in info["files"]:
        raise CheckpointError(f"{p} lists no weight files")
    return info


def load_checkpoint(directory: str | Path, *, with_optimizer: bool = False
                    ) -> tuple[dict[str, torch.Tensor], dict, dict | None]:
    """Load ``(weights, info, optimizer_state)`` from a checkpoint folder.

    Checks the format, the SHA-256 of every weight file and that the weights
    parse as safetensors. Floating weights come back as fp32.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    info = read_checkpoint_info(directory)
    names = [MODEL_FILE] + ([OPTIM_FILE] if with_optimizer and OPTIM_FILE in info["files"] else [])
    loaded = {}
    for name in names:
        p = directory / name
        if not p.is_file():
            raise CheckpointError(f"{p} is missing")
        if _sha256(p) != info["files"][name]:
            raise CheckpointError(f"{p} is damaged: its SHA-256 does not match {INFO_FILE}")
        try:
            loaded[name] = load_file(str(p))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{p} is not a readable safetensors file ({e})") from e
    weights = {k: v.float() if v.is_floating_point() else v for k, v in loaded[MODEL_FILE].items()}
    optim = None
    if with_optimizer and OPTIM_FILE in loaded:
        optim = _unflatten_optimizer(info.get("optimizer_tree"), loaded[OPTIM_FILE])
    return weights, info, optim


def recover_run_dir(run_dir: str | Path) -> list[str]:
    """Clean up after a process killed inside :func:`save_checkpoint`: remove ``.tmp-*``
    folders (never complete), and put back an ``.old-NAME-*`` folder whose replacement
    ``NAME`` never arrived (killed between the two renames); otherwise delete it. Returns
    what was done, one line per folder."""
    run_dir = Path(run_dir)
    done: list[str] = []
    if not run_dir.is_dir():
        return done
    for p in sorted(run_dir.iterdir()):
        if not p.is_dir():
            continue
        if p.name.startswith(".tmp-"):
            shutil.rmtree(p, ignore_errors=True)
            done.append(f"removed unfinished {p.name}")
        elif p.name.startswith(".old-"):
            name = p.name[len(".old-"):].rsplit("-", 2)[0]
            target = run_dir / name
            if not target.exists():
                os.rename(p, target)
                done.append(f"restored {name} from {p.name}")
            else:
                shutil.rmtree(p, ignore_errors=True)
                done.append(f"removed replaced {p.name}")
    return done


def latest_checkpoint(run_dir: str | Path, prefix: str = "step-") -> Path | None:
    """The newest valid ``<prefix>NNNNNNNN`` checkpoint in a run folder (damaged ones skipped)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    cands = sorted((p for p in run_dir.iterdir() if p.is_dir() and p.name.startswith(prefix)
                    and p.name[len(prefix):].isdigit()), key=lambda p: int(p.name[len(prefix):]), reverse=True)
    for c in cands:
        try:
            info = read_checkpoint_info(c)
            for name, digest in info["files"].items():
                if _sha256(c / name) != digest:
                    raise CheckpointError("checksum")
            return c
        except (CheckpointError, OSError):
            continue
    return None


def carried_info(info: dict) -> dict:
    """A loaded checkpoint's record without what :func:`save_checkpoint` writes itself (file
    list, format, version, time, dtype, optimiser layout): what a checkpoint made from it keeps."""
    return {k: v for k, v in info.items()
            if k not in ("optimizer_tree", "files", "format", "version", "saved_at", "dtype")}


def package_checkpoint(src: str | Path, dst: str | Path, *, half: bool = True, provenance: dict | None = None,
                       kappa: float | None = None) -> Path:
    """Copy a training checkpoint as a shippable one: weights only (no optimiser), fp16 by
    default, training metadata kept, plus ``mu`` and any ``provenance`` notes (added to those the
    source has). ``kappa``: the
    sentence match's weight to ship (one chosen on a dev split after training)."""
    weights, info, _ = load_checkpoint(src)
    if kappa is not None:
        if "sentence_match" not in info:
            raise CheckpointError(f"{src} has no sentence match to set kappa for")
        info["sentence_match"]["config"]["kappa"] = float(kappa)
    keep = carried_info(info)
    keep["train_state"] = {"history": info.get("train_state", {}).get("history", [])}
    if "mu" in weights:
        keep["mu"] = float(weights["mu"])
    keep["packaged_from"] = str(src)
    if provenance:       # notes accumulate: a re-packaged checkpoint keeps how it was made
        keep["provenance"] = {**info.get("provenance", {}), **provenance}
    return save_checkpoint(dst, weights, keep, half=half)


# ----------------------------------------------------------------------------- what a model checkpoint holds
def model_config(directory, info: dict) -> N3Config:
    """The meta-model's config a checkpoint's record holds."""
    try:
        return N3Config.from_dict(info["config"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{directory}: bad config in checkpoint.json ({e})") from e


def check_backbone(directory, info: dict, backbone) -> None:
    """Refuse a checkpoint written for another backbone than ``backbone`` (its name, or the
    names and shapes of its adaptable tensors)."""
    sig = info.get("backbone")
    if sig and sig != backbone.signature():
        raise CheckpointError(f"{directory} was trained on backbone {sig.get('name')!r} with other tensors; "
                              f"it cannot be used with {backbone.name!r}")
    name = model_config(directory, info).backbone
    if backbone.name != name:
        raise CheckpointError(f"{directory} is for backbone {name!r}, not {backbone.name!r}")


def load_model(directory: str | Path, backbone, text_dim: int):
    """A model checkpoint, checked against the ``backbone`` and text encoder (``text_dim``) it
    will run with → ``(N3Model, MatchEnsemble or None, info)``, on the CPU."""
    weights, info, _ = load_checkpoint(directory)
    cfg = model_config(directory, info)
    check_backbone(directory, info, backbone)
    if text_dim != cfg.text_dim:
        raise CheckpointError(f"{directory} expects {cfg.text_dim}-d token states; the text encoder gives {text_dim}")
    model = N3Model(cfg, backbone)
    try:
        model.meta.load_state_dict({k: v for k, v in weights.items() if not k.startswith(WEIGHT_PREFIX)}, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{directory}: weights do not fit the saved config ({e})") from e
    match_weights = {k: v for k, v in weights.items() if k.startswith(WEIGHT_PREFIX)}
    match = None
    if match_weights or "sentence_match" in info:
        try:
            match = MatchEnsemble.from_checkpoint(match_weights, info["sentence_match"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{directory}: its sentence match does not fit its config ({e})") from e
        if match.cfg.text_dim != text_dim:
            raise CheckpointError(f"{directory}'s sentence match expects {match.cfg.text_dim}-d sentence "
                                  f"embeddings; the text encoder gives {text_dim}")
    return model, match, info


def save_with_match(weights: dict, info: dict, out, ensemble, record: dict) -> None:
    """A loaded checkpoint's meta-model (``weights``, ``info``) with ``ensemble`` as its sentence
    match (any match it had is dropped), to ``out``."""
    weights = {k: v for k, v in weights.items() if not k.startswith(WEIGHT_PREFIX)}
    keep = carried_info(info) | {"sentence_match": record}
    weights.update(ensemble.tensors())
    save_checkpoint(out, weights, keep, half=info.get("dtype") == "float16")


def join_matches(checkpoint: str | Path, sources: list[str | Path], out: str | Path) -> dict:
    """``checkpoint``'s meta-model with the mean of the sentence matches of ``sources`` (each
    trained with ``train-match`` on the same split, match shape and training settings, seeds
    aside), written to ``out``; the matches' records are kept, member by member. The
    classifier's ``kappa`` is the first source's. Returns the new record."""
    if not sources:
        raise ValueError("name at least one checkpoint whose sentence match to join")
    weights, info, _ = load_checkpoint(checkpoint)
    members, runs, first = [], [], None
    for src in sources:
        w, i, _ = load_checkpoint(src)
        rec = i.get("sentence_match")
        if rec is None:
            raise CheckpointError(f"{src} has no sentence match (train one: python -m n3core train-match)")
        if i.get("backbone") != info.get("backbone"):
            raise CheckpointError(f"{src}'s match was trained on another backbone than {checkpoint}'s")
        settings = {k: v for k, v in rec["train_config"].items() if k not in ("seed", "threads")}
        if first is None:
            first = rec, settings
        else:
            shape = {k: v for k, v in rec["config"].items() if k != "kappa"}
            if shape != {k: v for k, v in first[0]["config"].items() if k != "kappa"} or settings != first[1]:
                raise CheckpointError(f"{src}'s match differs from {sources[0]}'s in shape or training settings "
                                      "(only matches trained alike, seeds aside, are averaged)")
        try:
            members += list(MatchEnsemble.from_checkpoint(w, rec).members)
            runs += rec["members"]
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{src}: its sentence match does not fit its record ({e})") from e
    seeds = [r["seed"] for r in runs]
    if len(set(seeds)) != len(seeds):
        raise CheckpointError(f"the same seed twice among the matches to join ({seeds}): they would be one match")
    rec0 = first[0]
    record = {"config": rec0["config"], "train_config": rec0["train_config"], "members": runs,
              "train_classes": rec0.get("train_classes"), "train_photos": rec0.get("train_photos"),
              "train_s": round(sum(r["train_s"] or 0 for r in runs), 1), "source_checkpoint": str(checkpoint),
              "joined_from": [str(s) for s in sources]}
    save_with_match(weights, info, out, MatchEnsemble(members), record)
    return record
