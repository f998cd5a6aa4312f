"""Episodic meta-training of N3 (``python -m n3core train``).

Each step: draw K of the split's train classes (an *episode*), a mini-batch of B of their
photos, synthesize a fresh adaptation from the K descriptions, classify, cross-entropy. The
Tokens2Label part and the rest have separate learning rates. Validation per-class accuracy
on the split's val classes picks the best checkpoint; test classes are never read.

Fast on a CPU: the text encoder is frozen and every description's token states are computed
once; photos are decoded once into memory (:mod:`n3core.imagecache`) and augmented as
tensors; in fc-only mode the frozen backbone's features of ``feature_views`` augmented views
per photo are computed once, so a step costs only the meta-model.

Robust: checkpoints are written atomically; ``resume=True`` continues from the newest valid
one and, because every random draw is derived from (seed, step), ends where an
uninterrupted run would.

Distributed: under ``torchrun --nproc_per_node N -m n3core train ...`` the meta-model is
wrapped in DistributedDataParallel (gloo on CPU, nccl on GPU). Every rank draws the same K
classes and the same global batch (same seeds), augments it identically and takes its own
contiguous shard of ``batch_size / N`` photos; DDP averages the gradients, so a step equals the
single-process step on the whole batch up to float summation order. Only rank 0 validates,
logs and writes checkpoints.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .backbones import create_backbone
from .checkpoint import latest_checkpoint, load_checkpoint, recover_run_dir, save_checkpoint
from .data import DataError, EpisodeSampler, description_file, load_descriptions, resolve_data_root
from .datasets import read_images, resolve_split
from .imagecache import ImageCache, augment_batch, cache_dir, eval_batch, save_array
from .meta import Adaptation, N3Config, N3Model, config_from_dict
from .text import TextEncoder, split_sentences

log = logging.getLogger("n3core.train")

__all__ = ["TrainConfig", "train", "load_config_file", "pick_device"]


@dataclass
class TrainConfig:
    split: str = "ss0"
    data: str | None = None
    descriptions: str = "allaboutbirds"
    k: int = 25
    batch_size: int = 32
    max_steps: int = 2000
    lr_label: float = 3e-4           # Tokens2Label
    lr_adapt: float = 1e-3           # Labels2Adaptation, decoders, classifier writer, μ
    lr_mu: float = 1e-3              # μ: one scalar, starts at 1e-3
    lr_decoder: float | None = None  # the per-tensor decoders (default: lr_adapt)
    weight_decay: float = 0.05
    warmup_steps: int = 100
    label_smoothing: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 100
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    feature_views: int = 8           # fc-only: views per photo featurised once: the whole photo + augmented crops
    text_variants: int = 8           # per class: the full text + sentence-dropped copies
    sentence_keep: float = 0.7       # keep probability of each sentence in a variant
    extra_descriptions: list = field(default_factory=list)  # more description sets used as training variants
    main_text_prob: float | None = None  # P(a class reads its main description unchanged) per step;
                                         # else a uniform pick among its other variants. None: uniform over all
    cache_side: int = 192            # photos are kept in memory at max(cache_side, image_size) px
    seed: int = 0
    init_from: str | None = None     # a checkpoint whose matching weights start this run
    device: str = "auto"
    threads: int = 0                 # torch threads on CPU (0: torch's default)

    def __post_init__(self):
        if self.main_text_prob is not None and not 0.0 <= self.main_text_prob <= 1.0:
            raise ValueError(f"main_text_prob must lie in [0, 1] (or be null), got {self.main_text_prob}")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return config_from_dict(cls, d, "train config")


def load_config_file(path: str | Path) -> tuple[dict, dict]:
    """A JSON file ``{"model": {...N3Config}, "train": {...TrainConfig}}`` (both optional)."""
    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read config file {p}: {e}") from e
    extra = set(d) - {"model", "train"}
    if extra:
        raise ValueError(f"{p}: unknown sections {sorted(extra)}; expected 'model' and 'train'")
    return d.get("model", {}), d.get("train", {})


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda" and dev.index is None and _world()[1] > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return dev


def _world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) for a plain process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _init_distributed(device: torch.device) -> bool:
    """Join the process group torchrun set up; True when this call created it."""
    import torch.distributed as dist

    rank, world = _world()
    if world == 1 or dist.is_initialized():
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def text_variants(text: str, n: int, keep: float, rng) -> list[str]:
    """``text`` plus ``n - 1`` copies with each sentence dropped with probability ``1 - keep``
    (at least one sentence kept, order preserved): text augmentation for training."""
    sents = split_sentences(text)
    out = [text]
    for _ in range(n - 1):
        kept = [x for x in sents if rng.random() < keep] or [rng.choice(sents)]
        out.append(" ".join(kept))
    return out


class _TextBank:
    """Token states of every class description (and its training variants), computed once.

    ``get(classes)`` → padded ``[K, L, D]`` states and mask of variant 0 (the full text);
    ``get(classes, rng)`` picks a random variant per class (training): variant 0 with probability
    ``main_prob`` and otherwise one of the others, or uniformly over all when ``main_prob`` is None."""

    def __init__(self, encoder: TextEncoder, variants: dict[str, list[str]], classes: list[str],
                 main_prob: float | None = None):
        self.main_prob = main_prob
        flat = [(c, t) for c in classes for t in variants[c]]
        self.rows: dict[str, list[int]] = {c: [] for c in classes}
        for j, (c, _) in enumerate(flat):
            self.rows[c].append(j)
        tokens, self.truncated = [], []                  # tokens[j]: [n_j, D] real-token states of text j
        for i in range(0, len(flat), 64):                # chunks bound the encoder's padded batch
            enc = encoder.encode([t for _, t in flat[i:i + 64]])
            tokens += [st[m] for st, m in zip(enc.states, enc.mask)]
            self.truncated += [flat[i + t.index][0] for t in enc.truncated]
        L = max(len(t) for t in tokens)
        self.states = torch.zeros(len(tokens), L, tokens[0].shape[-1])
        self.mask = torch.zeros(len(tokens), L, dtype=torch.bool)
        for j, t in enumerate(tokens):
            self.states[j, :len(t)] = t
            self.mask[j, :len(t)] = True

    def pick(self, classes: list[str], rng=None) -> list[int]:
        """Row of the text each class reads: variant 0 without ``rng``, else a random variant."""
        if rng is None:
            return [self.rows[c][0] for c in classes]
        if self.main_prob is None:
            return [self.rows[c][int(torch.randint(len(self.rows[c]), (1,), generator=rng))] for c in classes]
        idx = []
        for c in classes:
            rows = self.rows[c]
            main = len(rows) == 1 or float(torch.rand(1, generator=rng)) < self.main_prob
            idx.append(rows[0] if main else rows[1 + int(torch.randint(len(rows) - 1, (1,), generator=rng))])
        return idx

    def get(self, classes: list[str], device, rng=None) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.tensor(self.pick(classes, rng))
        mask = self.mask[idx]
        L = int(mask.sum(1).max())
        return self.states[idx, :L].to(device), mask[:, :L].to(device)


def build_optimizer(model: N3Model, cfg: TrainConfig) -> torch.optim.Optimizer:
    meta = model.meta
    label = meta.label_parameters()
    decoders = list(meta.decoders.parameters()) if meta.decoders is not None else []
    dec_ids = {id(p) for p in decoders}
    rest = [p for p in meta.adaptation_parameters() if p is not meta.mu and id(p) not in dec_ids]

    def split_decay(ps):
        return [p for p in ps if p.dim() >= 2], [p for p in ps if p.dim() < 2]

    groups = []
    lr_dec = cfg.lr_decoder if cfg.lr_decoder is not None else cfg.lr_adapt
    for ps, lr, name in ((label, cfg.lr_label, "tokens2label"), (rest, cfg.lr_adapt, "adaptation"),
                         (decoders, lr_dec, "decoders")):
        dec, nodec = split_decay(ps)
        groups.append({"params": dec, "lr": lr, "base_lr": lr, "weight_decay": cfg.weight_decay, "name": name})
        groups.append({"params": nodec, "lr": lr, "base_lr": lr, "weight_decay": 0.0, "name": name + "-nodecay"})
    groups.append({"params": [meta.mu], "lr": cfg.lr_mu, "base_lr": cfg.lr_mu, "weight_decay": 0.0, "name": "mu"})
    return torch.optim.AdamW(groups, betas=(0.9, 0.999))


@torch.no_grad()
def evaluate_classes(model: N3Model, bank: _TextBank, cache: ImageCache, classes: list[str],
                     device, batch: int = 64, features: torch.Tensor | None = None) -> dict:
    """Per-class averaged top-1/top-5 of one K-way classifier over ``classes`` (their order)."""
    model.eval()
    states, mask = bank.get(classes, device)
    a = model.meta(states, mask)
    pre = model.backbone.preprocess
    cls_idx = {c: i for i, c in enumerate(classes)}
    labels = torch.tensor([cls_idx[r.label] for r in cache.records])
    logits = []
    for s in range(0, len(cache), batch):
        if features is not None:
            f = features[s:s + batch].to(device)
            if a.delta:
                raise ValueError("cached features cannot be used with a full adaptation")
        else:
            x = eval_batch(cache.images[s:s + batch], model.cfg.image_size, pre.mean, pre.std).to(device)
            f = model.features(x, a)
        logits.append(a.classify(f).float().cpu())
    logits = torch.cat(logits)
    from .evaluate import per_class_accuracy

    return per_class_accuracy(logits, labels, len(classes))


def train(model_cfg: N3Config, cfg: TrainConfig, out: str | Path, *, resume: bool = False,
          progress: bool = True, backbone=None, text_encoder: TextEncoder | None = None,
          _stop_after: int | None = None) -> dict:
    """Train and write checkpoints to ``out`` (``step-N/``, ``best/``, ``final/``, ``log.jsonl``).

    Returns a summary dict (steps, best val accuracy, wall time). ``backbone`` and
    ``text_encoder`` may be passed in (tests use tiny ones); by default the real ones.
    ``_stop_after`` (tests) ends the process's work after that step as a kill would: no final
    checkpoint.
    """
    out = Path(out)
    device = pick_device(cfg.device)
    rank, world = _world()
    own_group = _init_distributed(device)
    try:
        return _train(model_cfg, cfg, out, device, rank, world, resume, progress, backbone, text_encoder, _stop_after)
    finally:
        if own_group:
            import torch.distributed as dist

            dist.destroy_process_group()


class _DictOutput(torch.nn.Module):
    """The meta-model with its :class:`Adaptation` returned as a dict. DDP synchronises the
    gradients of the tensors it finds in a module's output and does not look inside
    dataclasses (checked: with a dataclass output the ranks' gradients are never averaged)."""

    def __init__(self, meta: torch.nn.Module):
        super().__init__()
        self.meta = meta

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> dict:
        a = self.meta(states, mask)
        return {f.name: getattr(a, f.name) for f in fields(a)}


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _train(model_cfg, cfg, out: Path, device, rank: int, world: int, resume, progress, backbone, text_encoder,
           _stop_after) -> dict:
    lead = rank == 0
    progress = progress and lead
    say = print if lead else (lambda *a, **k: None)
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the {world} processes")
    if lead:
        out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t_start = time.time()

    # ---------------------------------------------------------------- resume
    if lead:
        for line in recover_run_dir(out):        # a process killed while writing a checkpoint
            say(f"[n3] {out}: {line}", flush=True)
    _barrier(world)
    start_step, state, optim_state = 0, {}, None
    ckpt = latest_checkpoint(out) if resume else None
    if resume and ckpt is not None:
        weights, info, optim_state = load_checkpoint(ckpt, with_optimizer=True)
        saved_model = N3Config.from_dict(info["config"])
        if saved_model != model_cfg:
            log.warning("resuming with the configuration saved in %s (it differs from the one given)", ckpt)
        model_cfg = saved_model
        cfg = TrainConfig.from_dict({**info["train_config"], "max_steps": cfg.max_steps, "device": cfg.device,
                                     "threads": cfg.threads})
        start_step, state = info["step"], dict(info.get("train_state", {}))
        state["wall_s"] = info.get("wall_s", 0.0)
        log.info("resuming from %s at step %d of %d", ckpt, start_step, cfg.max_steps)
        say(f"[n3] resuming from {ckpt} (step {start_step} of {cfg.max_steps})", flush=True)
    elif resume:
        log.info("--resume given but no checkpoint in %s: starting fresh", out)
        say(f"[n3] --resume: no checkpoint in {out}, starting from step 0", flush=True)
    elif latest_checkpoint(out) is not None:
        raise FileExistsError(f"{out} already holds checkpoints; pass --resume to continue or choose another --out")

    # ---------------------------------------------------------------- data
    root = resolve_data_root(cfg.data)
    images = read_images(root)
    split = resolve_split(root, cfg.split, images)
    descriptions = load_descriptions(description_file(root, cfg.descriptions), split["train"] + split["val"])
    vrng = random.Random(cfg.seed)
    variants = {c: text_variants(descriptions[c], cfg.text_variants if c in split["train"] else 1,
                                 cfg.sentence_keep, vrng) for c in split["train"] + split["val"]}
    for extra in cfg.extra_descriptions:
        more = load_descriptions(description_file(root, extra))
        for c in split["train"]:
            if c in more:
                variants[c] += text_variants(more[c], max(1, cfg.text_variants // 2), cfg.sentence_keep, vrng)
    train_set = images.subset(split["train"])
    val_set = images.subset(split["val"])
    if len(split["train"]) < cfg.k:
        raise DataError(f"K={cfg.k} but split {cfg.split} has only {len(split['train'])} train classes")

    torch.manual_seed(cfg.seed)
    backbone = backbone or create_backbone(model_cfg.backbone)
    if backbone.feature_dim != model_cfg.feature_dim:
        model_cfg.feature_dim = backbone.feature_dim
    text_encoder = text_encoder or TextEncoder(max_length=model_cfg.text_max_length)
    model_cfg.text_dim = text_encoder.dim
    model = N3Model(model_cfg, backbone).to(device)
    backbone.module.to(device)

    if cfg.init_from and ckpt is None:
        w, info, _ = load_checkpoint(cfg.init_from)
        own = model.meta.state_dict()
        # μ starts at this run's mu_init (the γ/μ₀ ablation), not at the source's value
        matched = {k: v for k, v in w.items() if k in own and own[k].shape == v.shape and k != "mu"}
        model.meta.load_state_dict(matched, strict=False)
        say(f"[n3] initialised {len(matched)}/{len(own)} tensors from {cfg.init_from}", flush=True)

    bank = _TextBank(text_encoder, variants, split["train"] + split["val"], cfg.main_text_prob)
    if bank.truncated:
        say(f"[n3] {len(bank.truncated)} descriptions truncated to {model_cfg.text_max_length} tokens", flush=True)
    side = max(cfg.cache_side, model_cfg.image_size)
    train_cache = ImageCache(train_set.records, side, progress=progress)
    val_cache = ImageCache(val_set.records, side, progress=progress)
    sampler = EpisodeSampler(train_set, split["train"], cfg.k, cfg.batch_size, 1, seed=cfg.seed)
    pre = backbone.preprocess

    fc_only = model_cfg.mode == "fc-only"
    train_feats = val_feats = None
    if fc_only:
        train_feats, val_feats = _featurise(model, train_cache, val_cache, cfg, device, progress)

    meta = model.meta                       # what the steps call: DDP-wrapped when distributed
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        meta = DDP(_DictOutput(model.meta), device_ids=[device.index] if device.type == "cuda" else None,
                   static_graph=True)   # the same parameters take part in every step
    shard = slice(rank * cfg.batch_size // world, (rank + 1) * cfg.batch_size // world)
    optim = build_optimizer(model, cfg)
    if optim_state is not None:
        model.meta.load_state_dict(weights)
        optim.load_state_dict(optim_state)

    best = state.get("best_val", -1.0)
    history = state.get("history", [])
    log_path = out / "log.jsonl"
    meta_info = {"config": model_cfg.to_dict(), "train_config": asdict(cfg),
                 "backbone": backbone.signature(), "backbone_weights": backbone.weights_source,
                 "split": {"name": cfg.split, **split}, "descriptions": cfg.descriptions,
                 "text_encoder": text_encoder.name}

    def save(name: str, step: int, metrics: dict, with_optim: bool):
        st = {"best_val": best, "history": history[-200:]}
        info = {**meta_info, "step": step, "metrics": metrics, "train_state": st,
                "wall_s": state.get("wall_s", 0.0) + time.time() - t_start}
        return save_checkpoint(out / name, model.meta.state_dict(), info,
                               optimizer_state=optim.state_dict() if with_optim else None)

    def validate(step: int) -> float:
        res = evaluate_classes(model, bank, val_cache, split["val"], device, features=val_feats)
        model.train()
        return res["top1"]

    model.train()
    pbar = tqdm(total=cfg.max_steps, initial=start_step, desc=f"train {model_cfg.mode}", disable=not progress,
                mininterval=5, dynamic_ncols=True)
    running, n_run, step = 0.0, 0, start_step
    val = state.get("last_val", float("nan"))
    for step in range(start_step, cfg.max_steps):
        torch.manual_seed(cfg.seed * 1_000_003 + step)
        gen = torch.Generator().manual_seed(cfg.seed * 7919 + step)
        classes, batches = sampler.episode(step)
        idx = batches[0]                    # the global batch; this rank uses rows `shard` of it
        cmap = {c: i for i, c in enumerate(classes)}
        y = torch.tensor([cmap[train_set.records[i].label] for i in idx], device=device)[shard]
        states, mask = bank.get(classes, device, gen)
        for g in optim.param_groups:
            g["lr"] = g["base_lr"] * _lr_factor(step, cfg)
        a = meta(states, mask)
        if isinstance(a, dict):
            a = Adaptation(**a)
        if fc_only:
            views = torch.randint(cfg.feature_views, (len(idx),), generator=gen)
            f = train_feats[torch.tensor(idx), views][shard].to(device)
        else:
            x = augment_batch(train_cache.images[torch.tensor(idx)], model_cfg.image_size, pre.mean, pre.std, gen)
            f = model.features(x[shard].to(device), a)
        logits = a.classify(f)
        loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.meta.parameters(), cfg.grad_clip)
        optim.step()
        if world > 1:                       # the logged loss is the global batch's
            import torch.distributed as dist

            lv = loss.detach().clone()
            dist.all_reduce(lv)
            running += lv.item() / world
        else:
            running += loss.item()
        n_run += 1
        pbar.update(1)
        done = step + 1
        if (done % cfg.eval_every == 0 or done == cfg.max_steps) and lead:
            val = validate(done)
            rec = {"step": done, "train_loss": running / max(1, n_run), "val_top1": val,
                   "mu": float(model.meta.mu.detach()), "time_s": round(time.time() - t_start, 1)}
            history.append(rec)
            running, n_run = 0.0, 0
            with open(log_path, "a", encoding="utf-8") as f_:
                f_.write(json.dumps(rec) + "\n")
            msg = (f"[n3] step {done}/{cfg.max_steps}  train loss {rec['train_loss']:.3f}  "
                   f"val per-class top-1 {val:.3f}  mu {rec['mu']:.4f}")
            pbar.write(msg) if progress else print(msg, flush=True)
            if val > best:
                best = val
                save("best", done, {"val_top1": val}, with_optim=False)
            state["last_val"] = val
        if done % cfg.checkpoint_every == 0 and done != cfg.max_steps and lead:
            save(f"step-{done:08d}", done, {"val_top1": val}, with_optim=True)
            _prune(out, cfg.keep_checkpoints)
        if world > 1 and (done % cfg.eval_every == 0 or done % cfg.checkpoint_every == 0):
            _barrier(world)                 # the others wait while rank 0 validates and saves
        if _stop_after is not None and done >= _stop_after:
            pbar.close()
            return {"steps": done, "stopped": True}
    pbar.close()
    final_step = max(step + 1, start_step) if cfg.max_steps > start_step else start_step
    wall = time.time() - t_start + state.get("wall_s", 0.0)
    summary = {"steps": final_step, "best_val_top1": best, "last_val_top1": val, "wall_s": round(wall, 1),
               "device": str(device), "out": str(out), "processes": world,
               # the same on every rank when they stayed in sync
               "param_checksum": float(sum(p.detach().double().sum() for p in model.meta.parameters()))}
    if lead:
        save(f"step-{final_step:08d}", final_step, {"val_top1": val}, with_optim=True)
        save("final", final_step, {"val_top1": val}, with_optim=False)
        _prune(out, cfg.keep_checkpoints)
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    _barrier(world)
    say(f"[n3] done: {final_step} steps, best val per-class top-1 {best:.3f}, {wall / 60:.1f} min on {device}", flush=True)
    return summary


def _prune(out: Path, keep: int) -> None:
    import shutil

    steps = sorted((p for p in out.iterdir() if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdigit()),
                   key=lambda p: int(p.name[5:]))
    for p in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(p, ignore_errors=True)


@torch.no_grad()
def _featurise(model: N3Model, train_cache: ImageCache, val_cache: ImageCache, cfg: TrainConfig, device,
               progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """fc-only: frozen-backbone features of ``feature_views`` views per train photo ``[N, V, F]``
    (view 0 the whole photo as evaluation sees it, the others augmented crops) and of each val
    photo ``[N_val, F]``."""
    pre, size = model.backbone.preprocess, model.cfg.image_size
    m = model.backbone_module
    key = hashlib.sha256(json.dumps(["view0-clean", model.backbone.name, model.backbone.weights_source, size, cfg.feature_views,
                                     cfg.seed, train_cache.side, [str(r.path) for r in train_cache.records],
                                     [str(r.path) for r in val_cache.records]]).encode()).hexdigest()[:16]
    paths = [cache_dir() / f"features-{key}-{part}.npy" for part in ("train", "val")]
    if model.backbone.pretrained and all(p.exists() for p in paths):
        try:
            return tuple(torch.from_numpy(np.load(p, allow_pickle=False)) for p in paths)
        except (OSError, ValueError):
            pass
    gen = torch.Generator().manual_seed(cfg.seed + 12345)
    bs = 64
    tf = torch.empty(len(train_cache), cfg.feature_views, model.cfg.feature_dim)
    total = cfg.feature_views * math.ceil(len(train_cache) / bs) + math.ceil(len(val_cache) / bs)
    with tqdm(total=total, desc="featurising (fc-only)", disable=not progress, mininterval=5) as pb:
        for v in range(cfg.feature_views):
            for s in range(0, len(train_cache), bs):
                x = (eval_batch(train_cache.images[s:s + bs], size, pre.mean, pre.std) if v == 0 else
                     augment_batch(train_cache.images[s:s + bs], size, pre.mean, pre.std, gen)).to(device)
                tf[s:s + bs, v] = m(x).float().cpu()
                pb.update(1)
        vf = []
        for s in range(0, len(val_cache), bs):
            vf.append(m(eval_batch(val_cache.images[s:s + bs], size, pre.mean, pre.std).to(device)).float().cpu())
            pb.update(1)
    vf = torch.cat(vf)
    if model.backbone.pretrained:
        for p, arr in zip(paths, (tf, vf)):
            save_array(p, arr.numpy())
    return tf, vf
