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

import dataclasses
import functools
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .backbones import create_backbone
from .checkpoint import (check_backbone, latest_checkpoint, load_checkpoint, model_config, recover_run_dir,
                         save_checkpoint, save_with_match)
from .data import DataError, EpisodeSampler, read_json, resolve_data_root
from .datasets import read_images, resolve_split
from .features import frozen_features
from .imagecache import ImageCache
from .evaluate import adaptation_accuracy
from .meta import Adaptation, N3Config, N3Model, config_from_dict
from .preprocess import PreprocessSpec
from .sentence_match import MatchConfig, MatchEnsemble, SentenceMatch, sentence_bank
from .runtime import pick_device
from .runtime import world as world_size
from .text import TextEncoder
from .textbank import TextBank, class_texts

__all__ = ["StageConfig", "TrainConfig", "MatchTrainConfig", "Run", "train", "prepare_run", "train_step", "end_of_step",
           "finish", "load_config_file", "train_sentence_match", "fit_match"]


@dataclass
class StageConfig:
    """What every training stage shares: the split and its texts, the episodes, the optimiser's
    common settings (saved beside the stage's weights)."""
    split: str = "ss0"
    data: str | None = None
    descriptions: str = "allaboutbirds"
    extra_descriptions: list = field(default_factory=list)  # more description sets used as training variants
    text_variants: int = 8           # per class: the full text + sentence-dropped copies
    sentence_keep: float = 0.7       # keep probability of each sentence in a variant
    main_text_prob: float | None = None  # P(a class reads its main description unchanged) per step;
                                         # else a uniform pick among its other variants. None: uniform over all
    k: int = 25                      # classes per episode
    batch_size: int = 32
    weight_decay: float = 0.05
    warmup_steps: int = 100
    label_smoothing: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 0                 # torch threads on CPU (0: torch's default)

    _what = "train config"

    def __post_init__(self):
        if self.main_text_prob is not None and not 0.0 <= self.main_text_prob <= 1.0:
            raise ValueError(f"main_text_prob must lie in [0, 1] (or be null), got {self.main_text_prob}")
        if self.k < 2:
            raise ValueError(f"k must be at least 2, got {self.k}")

    @classmethod
    def from_dict(cls, d: dict):
        return config_from_dict(cls, d, cls._what)


@dataclass
class TrainConfig(StageConfig):
    """The meta-model's stage (fc-only or full, as the model config's ``mode`` says)."""
    micro_batches: int = 1           # full mode: the batch's backbone passes in this many parts (less memory;
                                     # the meta-model still runs and back-propagates once per step)
    max_steps: int = 2000
    lr_label: float = 3e-4           # Tokens2Label
    lr_adapt: float = 1e-3           # Labels2Adaptation, decoders, classifier writer, μ
    lr_mu: float = 1e-3              # μ: one scalar, starts at 1e-3
    lr_decoder: float | None = None  # the per-tensor decoders (default: lr_adapt)
    eval_every: int = 100
    patience: int | None = None      # stop once this many validations in a row bring no new best
                                     # (None: run all max_steps); best/ is the same model either way
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    feature_views: int = 8           # fc-only: views per photo featurised once: the whole photo + augmented crops
    init_from: str | None = None     # a checkpoint whose matching weights start this run
    device: str = "auto"

    def __post_init__(self):
        super().__post_init__()
        if not 1 <= self.micro_batches <= self.batch_size:
            raise ValueError(f"micro_batches must lie in 1..batch_size={self.batch_size}, got {self.micro_batches}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be at least 1 validation (or null), got {self.patience}")


@dataclass
class MatchTrainConfig(StageConfig):
    """The sentence match's stage, over cached feature maps of the frozen backbone."""
    extra_descriptions: list = field(default_factory=lambda: ["wikipedia_lead", "gpt3_descriptors",
                                                              "gpt4_part_descriptors"])
    main_text_prob: float | None = 0.5
    batch_size: int = 64
    warmup_steps: int = 50
    steps: int = 1500
    lr: float = 1e-3
    views: int = 2                    # feature maps cached per photo: the whole photo + augmented crops

    _what = "sentence-match train config"

    def __post_init__(self):
        super().__post_init__()
        if self.steps < 1 or self.batch_size < 1 or self.views < 1:
            raise ValueError("steps, batch_size and views must be positive")


def load_config_file(path: str | Path) -> tuple[dict, dict]:
    """A JSON file ``{"model": {...N3Config}, "train": {...TrainConfig}}`` (both optional)."""
    p = Path(path)
    d = read_json(p, "config file", ValueError)
    extra = set(d) - {"model", "train"}
    if extra:
        raise ValueError(f"{p}: unknown sections {sorted(extra)}; expected 'model' and 'train'")
    return d.get("model", {}), d.get("train", {})


def _init_distributed(device: torch.device) -> bool:
    """Join the process group torchrun set up; True when this call created it."""
    import torch.distributed as dist

    rank, world = world_size()
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


def _say(rank: int, msg: str) -> None:
    """A training run's one output path: rank 0 only, above any progress bar."""
    if rank == 0:
        tqdm.write(f"[n3] {msg}", file=sys.stdout)
        sys.stdout.flush()


@dataclass
class Run:
    """Everything one training run needs, prepared once by :func:`prepare_run`."""

    model_cfg: N3Config
    cfg: TrainConfig
    out: Path
    device: torch.device
    rank: int
    world: int
    model: N3Model
    meta: torch.nn.Module                  # what a step calls: ``model.meta``, DDP-wrapped when distributed
    optim: torch.optim.Optimizer
    bank: TextBank
    split: dict
    train_set: object
    train_cache: ImageCache
    val_cache: ImageCache
    sampler: EpisodeSampler
    shard: slice                           # this rank's rows of the global batch
    train_feats: torch.Tensor | None       # fc-only: frozen features [N, V, F] of V views per photo
    val_feats: torch.Tensor | None
    start_step: int
    state: dict                            # best_val, history, last_val, wall_s: carried across resumes
    meta_info: dict                        # what every checkpoint records beside the weights
    t_start: float
    pbar: tqdm                             # disabled (but present) off rank 0 or without progress
    stopped_at: int | None = None          # the step at which ``patience`` ended the run early

    @property
    def lead(self) -> bool:
        return self.rank == 0

    def say(self, msg: str) -> None:
        _say(self.rank, msg)

    def save(self, name: str, step: int, with_optim: bool) -> Path:
        st = {"best_val": self.state["best_val"], "history": self.state["history"][-200:],
              "last_val": self.state["last_val"]}
        info = {**self.meta_info, "step": step, "metrics": {"val_top1": self.state["last_val"]}, "train_state": st,
                "wall_s": self.state["wall_s"] + time.time() - self.t_start}
        return save_checkpoint(self.out / name, self.model.meta.state_dict(), info,
                               optimizer_state=self.optim.state_dict() if with_optim else None)


def train(model_cfg: N3Config, cfg: TrainConfig, out: str | Path, *, resume: bool = False,
          progress: bool = True, backbone=None, text_encoder: TextEncoder | None = None) -> dict:
    """Train and write checkpoints to ``out`` (``step-N/``, ``best/``, ``final/``, ``log.jsonl``).

    Returns a summary dict (steps, best val accuracy, wall time). ``backbone`` and
    ``text_encoder`` may be passed in (tests use tiny ones); by default the real ones.
    """
    device = pick_device(cfg.device)
    own_group = _init_distributed(device)
    try:
        run = prepare_run(model_cfg, cfg, Path(out), device, resume=resume, progress=progress,
                          backbone=backbone, text_encoder=text_encoder)
        running, n_run = 0.0, 0
        if _out_of_patience(run.cfg, run.state["history"]):    # resumed after an early stop
            run.stopped_at = run.start_step
        for step in range(run.start_step, run.cfg.max_steps):
            if run.stopped_at is not None:
                break
            running += train_step(run, step)
            n_run += 1
            run.pbar.update(1)
            if end_of_step(run, step + 1, running / n_run):
                running, n_run = 0.0, 0
        return finish(run)
    finally:
        if own_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def prepare_run(model_cfg: N3Config, cfg: TrainConfig, out: Path, device: torch.device, *, resume: bool,
                progress: bool, backbone=None, text_encoder: TextEncoder | None = None) -> Run:
    """Resume state, data, texts, model, feature caches, DDP and the optimizer → a :class:`Run`."""
    t_start = time.time()
    rank, world = world_size()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the {world} processes")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    say = functools.partial(_say, rank)
    model_cfg, cfg, start_step, state, resumed = _resume_state(model_cfg, cfg, out, resume, rank, world, say)

    root = resolve_data_root(cfg.data)
    images = read_images(root)
    split = resolve_split(root, cfg.split, images)
    if len(split["train"]) < cfg.k:
        raise DataError(f"K={cfg.k} but split {cfg.split} has only {len(split['train'])} train classes")
    train_set, val_set = images.subset(split["train"]), images.subset(split["val"])

    torch.manual_seed(cfg.seed)
    backbone = backbone or create_backbone(model_cfg.backbone)
    model_cfg.feature_dim = backbone.feature_dim
    own_encoder = text_encoder is None
    text_encoder = text_encoder or TextEncoder(max_length=model_cfg.text_max_length)
    model_cfg.text_dim = text_encoder.dim
    model = N3Model(model_cfg, backbone).to(device)
    if cfg.init_from and resumed is None:
        _init_from(model, cfg.init_from, say)

    bank = TextBank(text_encoder, class_texts(root, cfg, split["train"], split["val"]), split["train"] + split["val"],
                    cfg.main_text_prob)
    if own_encoder:
        text_encoder.clear_cache()      # the bank holds every state training reads: no second copy
    if bank.truncated:
        say(f"{len(bank.truncated)} descriptions truncated to {model_cfg.text_max_length} tokens")
    progress = progress and rank == 0
    train_cache = ImageCache(train_set.records, model.preprocess, progress=progress)
    val_cache = ImageCache(val_set.records, model.preprocess, progress=progress)
    train_feats, val_feats = _fc_only_features(model, train_cache, val_cache, cfg, device, progress)

    meta = _distributed(model, device) if world > 1 else model.meta
    optim = build_optimizer(model, cfg)
    if resumed is not None:
        model.meta.load_state_dict(resumed[0])
        if resumed[1] is not None:
            optim.load_state_dict(resumed[1])
    meta_info = {"config": model_cfg.to_dict(), "train_config": asdict(cfg),
                 "backbone": backbone.signature(), "backbone_weights": backbone.weights_source,
                 "split": {"name": cfg.split, **split}, "descriptions": cfg.descriptions,
                 "text_encoder": text_encoder.name}
    model.train()
    pbar = tqdm(total=cfg.max_steps, initial=start_step, desc=f"train {model_cfg.mode}", disable=not progress,
                mininterval=5, dynamic_ncols=True)
    return Run(model_cfg, cfg, out, device, rank, world, model, meta, optim, bank, split, train_set, train_cache,
               val_cache, EpisodeSampler(train_set, split["train"], cfg.k, cfg.batch_size, seed=cfg.seed),
               slice(rank * cfg.batch_size // world, (rank + 1) * cfg.batch_size // world), train_feats, val_feats,
               start_step, state, meta_info, t_start, pbar)


def _fc_only_features(model: N3Model, train_cache: ImageCache, val_cache: ImageCache, cfg: TrainConfig, device,
                      progress: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """fc-only: the frozen backbone's features of ``feature_views`` views per train photo
    ``[N, V, F]`` (view 0 the whole photo as evaluation sees it, the others augmented crops)
    and of each val photo ``[N_val, F]``; (None, None) in full mode."""
    if model.cfg.mode != "fc-only":
        return None, None
    train_feats, _ = frozen_features(model.backbone, train_cache, views=cfg.feature_views, seed=cfg.seed + 12345,
                                     device=device, progress=progress)
    return train_feats, frozen_features(model.backbone, val_cache, device=device, progress=progress)[0][:, 0]


def _init_from(model: N3Model, checkpoint: str, say) -> None:
    """Start from the tensors of ``checkpoint`` that fit (the full stage from the fc-only one)."""
    w, _, _ = load_checkpoint(checkpoint)
    own = model.meta.state_dict()
    # μ starts at this run's mu_init (the γ/μ₀ ablation), not at the source's value
    matched = {k: v for k, v in w.items() if k in own and own[k].shape == v.shape and k != "mu"}
    model.meta.load_state_dict(matched, strict=False)
    say(f"initialised {len(matched)}/{len(own)} tensors from {checkpoint}")


def _distributed(model: N3Model, device: torch.device):
    """The meta-model wrapped for DistributedDataParallel."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(_DictOutput(model.meta), device_ids=[device.index] if device.type == "cuda" else None,
               static_graph=True)   # the same parameters take part in every step


def _resume_state(model_cfg, cfg, out: Path, resume: bool, rank: int, world: int, say):
    """The configs, start step and carried state of a fresh or resumed run; ``resumed`` holds
    the checkpoint's (weights, optimizer state) when resuming, else None."""
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        for line in recover_run_dir(out):        # a process killed while writing a checkpoint
            say(f"{out}: {line}")
    _barrier(world)
    state = {"best_val": -1.0, "history": [], "last_val": float("nan"), "wall_s": 0.0}
    ckpt = latest_checkpoint(out) if resume else None
    if ckpt is None:
        if resume:
            say(f"--resume: no checkpoint in {out}, starting from step 0")
        elif latest_checkpoint(out) is not None:
            raise FileExistsError(f"{out} already holds checkpoints; pass --resume to continue or choose another --out")
        return model_cfg, cfg, 0, state, None
    weights, info, optim_state = load_checkpoint(ckpt, with_optimizer=True)
    saved = N3Config.from_dict(info["config"])
    if saved != model_cfg:
        say(f"resuming with the configuration saved in {ckpt} (it differs from the one given)")
    cfg = TrainConfig.from_dict({**info["train_config"], "max_steps": cfg.max_steps, "device": cfg.device,
                                 "threads": cfg.threads})
    state.update(info.get("train_state", {}), wall_s=info.get("wall_s", 0.0))
    say(f"resuming from {ckpt} (step {info['step']} of {cfg.max_steps})")
    return saved, cfg, info["step"], state, (weights, optim_state)


def train_step(run: Run, step: int) -> float:
    """One episode: K classes, a batch of their photos, a fresh adaptation, cross-entropy, an
    optimizer step. Every draw derives from (seed, step). Returns the global batch's loss."""
    cfg = run.cfg
    torch.manual_seed(cfg.seed * 1_000_003 + step)
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + step)
    classes, idx = run.sampler.episode(step)    # the global batch; this rank uses rows `shard` of it
    cmap = {c: i for i, c in enumerate(classes)}
    y = torch.tensor([cmap[run.train_set.records[i].label] for i in idx], device=run.device)[run.shard]
    states, mask = run.bank.get(classes, run.device, gen)
    for g in run.optim.param_groups:
        g["lr"] = g["base_lr"] * _lr_factor(step, cfg)
    a = run.meta(states, mask)
    if isinstance(a, dict):
        a = Adaptation(**a)
    run.optim.zero_grad(set_to_none=True)
    if run.train_feats is not None:
        views = torch.randint(cfg.feature_views, (len(idx),), generator=gen)
        f = run.train_feats[torch.tensor(idx), views][run.shard].to(run.device)
        loss = F.cross_entropy(a.classify(f), y, label_smoothing=cfg.label_smoothing)
        loss.backward()
    else:
        x = run.train_cache.spec.augment(run.train_cache.images[torch.tensor(idx)], gen)[run.shard].to(run.device)
        if cfg.micro_batches == 1:
            loss = F.cross_entropy(a.classify(run.model.features(x, a)), y, label_smoothing=cfg.label_smoothing)
            loss.backward()
        else:
            loss = backward_in_parts(run.model, a, x, y, cfg.micro_batches, cfg.label_smoothing)
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(run.model.meta.parameters(), cfg.grad_clip)
    run.optim.step()
    lv = loss.detach().clone()
    if run.world > 1:                       # the logged loss is the global batch's
        import torch.distributed as dist

        dist.all_reduce(lv)
    return lv.item() / run.world


def backward_in_parts(model: N3Model, a: Adaptation, x: torch.Tensor, y: torch.Tensor, parts: int,
                      label_smoothing: float = 0.0) -> torch.Tensor:
    """The step's gradient with the backbone run on ``parts`` parts of the batch
    ``x`` ``[B, 3, S, S]`` in turn, so only one part's activations are alive at a time. The
    adaptation's tensors are cut from the meta-model's graph; each part's loss (its share of
    the batch mean) back-propagates into them, and their summed gradients go through the
    meta-model once (one backward of the DDP-wrapped forward). Returns the batch's mean loss."""
    cut = []

    def leaf(t):
        if not (isinstance(t, torch.Tensor) and t.requires_grad):
            return t
        cut.append((t, t.detach().requires_grad_()))
        return cut[-1][1]

    b = dataclasses.replace(a, delta={n: leaf(d) for n, d in a.delta.items()}, fc_weight=leaf(a.fc_weight),
                            fc_bias=leaf(a.fc_bias), mu=leaf(a.mu), logit_scale=leaf(a.logit_scale))
    total = x.new_zeros(())
    for part in torch.arange(len(y)).chunk(parts):
        logits = b.classify(model.features(x[part], b))
        loss = F.cross_entropy(logits, y[part], label_smoothing=label_smoothing, reduction="sum") / len(y)
        loss.backward()
        total += loss.detach()
    pairs = [(t, c.grad) for t, c in cut if c.grad is not None]
    torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs])
    return total


def end_of_step(run: Run, done: int, train_loss: float) -> bool:
    """Validate, checkpoint and log after step ``done`` when due. True when it validated (the
    running loss then starts anew)."""
    cfg = run.cfg
    validate = done % cfg.eval_every == 0 or done == cfg.max_steps
    if validate and run.lead:
        res = adaptation_accuracy(run.model, _val_adaptation(run), run.val_cache, run.split["val"],
                                  features=run.val_feats)
        run.model.train()
        val = run.state["last_val"] = res["top1"]
        rec = {"step": done, "train_loss": train_loss, "val_top1": val,
               "mu": float(run.model.meta.mu.detach()), "time_s": round(time.time() - run.t_start, 1)}
        run.state["history"].append(rec)
        with open(run.out / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        run.say(f"step {done}/{cfg.max_steps}  train loss {train_loss:.3f}  val per-class top-1 {val:.3f}  "
                f"mu {rec['mu']:.4f}")
        if val > run.state["best_val"]:
            run.state["best_val"] = val
            run.save("best", done, with_optim=False)
    if validate and cfg.patience is not None and done != cfg.max_steps:
        stop = torch.tensor([_out_of_patience(cfg, run.state["history"]) if run.lead else False])
        if run.world > 1:                   # rank 0 alone validated: every rank follows its decision
            import torch.distributed as dist

            dist.broadcast(stop, 0)
        if bool(stop):
            run.stopped_at = done
            run.say(f"step {done}: {cfg.patience} validations without a new best (best "
                    f"{run.state['best_val']:.3f}); stopping early")
            return validate
    if done % cfg.checkpoint_every == 0 and done != cfg.max_steps and run.lead:
        run.save(f"step-{done:08d}", done, with_optim=True)
        _prune(run.out, cfg.keep_checkpoints)
    if run.world > 1 and (done % cfg.eval_every == 0 or done % cfg.checkpoint_every == 0):
        _barrier(run.world)                 # the others wait while rank 0 validates and saves
    return validate


def _out_of_patience(cfg: TrainConfig, history: list[dict]) -> bool:
    """True once the last ``cfg.patience`` validations in ``history`` all came after the best one."""
    if cfg.patience is None or not history:
        return False
    vals = [h["val_top1"] for h in history]
    best = max(range(len(vals)), key=lambda i: (vals[i], -i))     # the first step reaching the best
    return len(vals) - 1 - best >= cfg.patience


@torch.no_grad()
def _val_adaptation(run: Run) -> Adaptation:
    run.model.eval()
    return run.model.meta(*run.bank.get(run.split["val"], run.device))


def finish(run: Run) -> dict:
    """The final checkpoint and the run's summary (the same on every rank when they stayed in sync)."""
    run.pbar.close()
    cfg = run.cfg
    steps = run.stopped_at if run.stopped_at is not None else max(cfg.max_steps, run.start_step)
    wall = time.time() - run.t_start + run.state["wall_s"]
    summary = {"steps": steps, "stopped_early": run.stopped_at is not None,
               "best_val_top1": run.state["best_val"], "last_val_top1": run.state["last_val"],
               "wall_s": round(wall, 1), "device": str(run.device), "out": str(run.out), "processes": run.world,
               "param_checksum": float(sum(p.detach().double().sum() for p in run.model.meta.parameters()))}
    if run.lead:
        run.save(f"step-{steps:08d}", steps, with_optim=True)
        run.save("final", steps, with_optim=False)
        _prune(run.out, cfg.keep_checkpoints)
        (run.out / "summary.json").write_text(json.dumps(summary, indent=1))
    _barrier(run.world)
    run.say(f"done: {steps} steps, best val per-class top-1 {run.state['best_val']:.3f}, {wall / 60:.1f} min "
            f"on {run.device}")
    return summary


def _prune(out: Path, keep: int) -> None:
    import shutil

    steps = sorted((p for p in out.iterdir() if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdigit()),
                   key=lambda p: int(p.name[5:]))
    for p in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(p, ignore_errors=True)


# ----------------------------------------------------------------------------- the sentence-match stage
def fit_match(match: SentenceMatch, maps: torch.Tensor, labels: torch.Tensor, bank: dict, classes: list[str],
              cfg: MatchTrainConfig, progress: bool = True) -> list[dict]:
    """Train ``match`` in place. ``maps`` ``[N, V, C, h, w]`` of the train photos, ``labels``
    ``[N]`` (indices into ``classes``), ``bank[c]`` = (embeddings ``[T, S, D]``, mask ``[T, S]``)
    of class c's texts, main text first. Each episode: ``k`` classes, ``batch_size`` photos
    (a random view, the batch flipped half the time), each class reading its main text with
    ``main_text_prob`` and otherwise a variant. Returns the loss history (every 50 steps)."""
    if len(classes) < cfg.k:
        raise ValueError(f"episodes of k={cfg.k} classes need at least {cfg.k} train classes, got {len(classes)}")
    torch.manual_seed(cfg.seed)
    opt = torch.optim.AdamW(match.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    by_class = [(labels == i).nonzero().flatten().tolist() for i in range(len(classes))]
    empty = [c for c, rows in zip(classes, by_class) if not rows]
    if empty:
        raise ValueError(f"train classes without photos: {empty[:3]}")
    rng = random.Random(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    history, running = [], []
    match.train()
    bar = tqdm(range(cfg.steps), desc="sentence match", disable=not progress, mininterval=5)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        cls = rng.sample(range(len(classes)), cfg.k)
        idx = torch.tensor([rng.choice(by_class[cls[i % cfg.k]]) for i in range(cfg.batch_size)])
        y = torch.arange(cfg.batch_size) % cfg.k
        views = torch.randint(maps.shape[1], (cfg.batch_size,), generator=gen)
        fmap = maps[idx, views].float()
        if rng.random() < 0.5:
            fmap = fmap.flip(-1)
        sents, masks = [], []
        for c in cls:
            vec, mask = bank[classes[c]]
            main = len(vec) == 1 or float(torch.rand(1, generator=gen)) < cfg.main_text_prob
            t = 0 if main else 1 + int(torch.randint(len(vec) - 1, (1,), generator=gen))
            sents.append(vec[t])
            masks.append(mask[t])
        mask = torch.stack(masks)
        n = int(mask.sum(1).max())
        logits = match(fmap, torch.stack(sents)[:, :n], mask[:, :n])
        loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(match.parameters(), cfg.grad_clip)
        opt.step()
        running.append(loss.item())
        if (step + 1) % 50 == 0 or step + 1 == cfg.steps:
            history.append({"step": step + 1, "loss": sum(running) / len(running)})
            bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
            running = []
    match.eval()
    return history


def train_sentence_match(checkpoint: str | Path, out: str | Path, cfg: MatchTrainConfig,
                         match_cfg: MatchConfig | None = None, *, members: int = 1, progress: bool = True,
                         backbone=None, text_encoder=None) -> dict:
    """Train ``members`` sentence matches (seeds ``cfg.seed``, ``cfg.seed + 1``, …) on
    ``cfg.split``'s train classes over the frozen backbone of ``checkpoint`` and write ``out``:
    a checkpoint with the same meta-model weights plus the matches (``sentence_match.<i>.*``
    tensors, averaged by every classifier; the config, training config and each member's
    history in ``checkpoint.json``'s ``sentence_match``). Returns that record. ``backbone`` and
    ``text_encoder`` may be passed in (tests use tiny ones); by default the checkpoint's."""
    if members < 1:
        raise ValueError(f"members must be at least 1, got {members}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    weights, info, _ = load_checkpoint(checkpoint)
    n3cfg = model_config(checkpoint, info)
    backbone = backbone or create_backbone(n3cfg.backbone)
    check_backbone(checkpoint, info, backbone)
    spec = PreprocessSpec.for_backbone(backbone, n3cfg.image_size)
    te = text_encoder or TextEncoder(max_length=n3cfg.text_max_length)
    match_cfg = match_cfg or MatchConfig()
    root = resolve_data_root(cfg.data)
    images = read_images(root)
    split = resolve_split(root, cfg.split, images)
    classes = list(split["train"])
    t0 = time.time()
    bank = _class_bank(te, class_texts(root, cfg, classes), classes, match_cfg.max_sentences)
    records = images.subset(classes).records
    maps = frozen_features(backbone, ImageCache(records, spec, progress=progress), views=cfg.views, maps=True,
                           progress=progress)[1]
    match_cfg = dataclasses.replace(match_cfg, text_dim=te.dim, channels=maps.shape[2])   # what the models give
    idx = {c: j for j, c in enumerate(classes)}
    labels = torch.tensor([idx[r.label] for r in records])
    trained, runs = [], []
    for j in range(members):
        t1 = time.time()
        member_cfg = dataclasses.replace(cfg, seed=cfg.seed + j)
        torch.manual_seed(member_cfg.seed)
        match = SentenceMatch(match_cfg)
        history = fit_match(match, maps, labels, bank, classes, member_cfg, progress=progress)
        trained.append(match)
        runs.append({"seed": member_cfg.seed, "history": history, "train_s": round(time.time() - t1, 1),
                     "source_checkpoint": str(checkpoint)})
    record = {"config": match_cfg.to_dict(), "train_config": dataclasses.asdict(cfg), "members": runs,
              "train_classes": len(classes), "train_photos": len(records), "train_s": round(time.time() - t0, 1),
              "source_checkpoint": str(checkpoint)}
    save_with_match(weights, info, out, MatchEnsemble(trained), record)
    return record


def _class_bank(te, texts: dict[str, list[str]], classes: list[str], max_sentences: int) -> dict:
    """Each class's texts as sentence embeddings: class → (``[T, S, D]``, mask ``[T, S]``),
    one width ``S`` for all (one batch of sentences through the encoder)."""
    flat = [t for c in classes for t in texts[c]]
    vec, mask, _ = sentence_bank(te, flat, max_sentences)
    bank, i = {}, 0
    for c in classes:
        n = len(texts[c])
        bank[c] = (vec[i:i + n], mask[i:i + n])
        i += n
    return bank
