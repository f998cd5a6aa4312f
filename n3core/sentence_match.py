"""Sentence match: each sentence of a description says *where* to look and *what* should be there.

The meta-model's ΔΘ carries little of the task's own words (``language_gain`` ≈ 0.5 points on
ss0). This module is the per-class late conditioning that does carry them: every class's
description is split into sentences (:func:`~n3core.text.split_sentences`, at most
``max_sentences``), each embedded alone (the text encoder's normalised mean of word states).
Shared maps, trained once on the seen classes, turn each sentence into

* a query over the positions of the backbone's last feature map (where it looks),
* a target for what the attended region should look like (what it says is there),
* a weight: how much this sentence counts for its class (shape and colour over habitat).

A class's score is the weighted cosine between each sentence's target and what its attention
found (dense attention in the manner of DAZLE, Huynh & Elhamifar, CVPR 2020). A synthesized
classifier adds ``kappa`` × this score to the logits of its classification layer: late
fusion of two heads written from the same words.

* :class:`SentenceMatch` — the trained, shared maps (what a checkpoint stores, with
  :class:`MatchConfig`);
* :class:`MatchEnsemble` — what a checkpoint carries and a synthesizer uses: the mean of
  several matches trained alike with other seeds; :meth:`MatchEnsemble.write` turns one class set's sentences into a
  :class:`SentenceHead`, the per-class part of a
  :class:`~n3core.synthesize.SynthesizedClassifier` (plain tensors, no text path, exportable);
* :func:`train_sentence_match` — episodic training on a split's train classes over cached
  feature maps of a frozen backbone (``python -m n3core train-match [--members M]``);
  :func:`join_matches` averages matches already trained (``python -m n3core join-matches``).
"""
from __future__ import annotations

import dataclasses
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .meta import config_from_dict
from .text import split_sentences

__all__ = ["MatchConfig", "MatchTrainConfig", "SentenceMatch", "MatchEnsemble", "SentenceHead",
           "sentence_bank", "train_sentence_match", "join_matches", "WEIGHT_PREFIX"]

WEIGHT_PREFIX = "sentence_match."     # its tensors' names inside a checkpoint's model.safetensors


@dataclass
class MatchConfig:
    """The sentence match's shape, and how strongly a classifier fuses it (``kappa``)."""
    text_dim: int = 384               # the text encoder's state size
    channels: int = 1280              # the backbone feature map's channels (Lite0 1280, ResNet-18 512)
    dim: int = 256                    # the shared query / key / value / target space
    max_sentences: int = 16           # per description; the rest are left out
    sentence_dropout: float = 0.2     # on sentence embeddings, training only
    kappa: float = 1.0                # logits = classification layer + kappa × match (chosen on the dev split)

    @classmethod
    def from_dict(cls, d: dict) -> "MatchConfig":
        return config_from_dict(cls, d, "sentence-match config")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class MatchTrainConfig:
    """Episodic training of the sentence match on a split's train classes (saved beside its weights)."""
    split: str = "ss0"
    data: str | None = None
    descriptions: str = "allaboutbirds"
    extra_descriptions: list = field(default_factory=lambda: ["wikipedia_lead", "gpt3_descriptors",
                                                              "gpt4_part_descriptors"])
    text_variants: int = 8            # main text + sentence-dropped copies; extra sets get half as many
    sentence_keep: float = 0.7
    main_text_prob: float = 0.5       # an episode reads a class's main description this often
    steps: int = 1500
    k: int = 25
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    label_smoothing: float = 0.1
    grad_clip: float = 1.0
    views: int = 2                    # feature maps cached per photo: the whole photo + augmented crops
    seed: int = 0
    threads: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> "MatchTrainConfig":
        return config_from_dict(cls, d, "sentence-match train config")

    def __post_init__(self):
        if self.k < 2:
            raise ValueError(f"k must be at least 2, got {self.k}")
        if self.steps < 1 or self.batch_size < 1 or self.views < 1:
            raise ValueError("steps, batch_size and views must be positive")


# ----------------------------------------------------------------------------- the match
def _match_scores(fmap: torch.Tensor, keys: tuple[torch.Tensor, torch.Tensor], values: tuple[torch.Tensor, torch.Tensor],
                  query: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, *,
                  detail: bool = False):
    """The one scoring rule, for M matches at once (M = 1 in training). ``fmap`` ``[B, C, h, w]``;
    per match the key and value maps (weight ``[M, d, C]``, bias ``[M, d]``) and ``scale``
    ``[M]``; per match, class and sentence the query ``[M, K, S, d]``, unit target
    ``[M, K, S, d]`` and weight ``[M, K, S]`` (0 on padding) → logits ``[B, K]``: the mean over
    the matches of scale × weighted cosine. With ``detail`` also each sentence's attention
    ``[B, M, K, S, h, w]``, its cosine ``[B, M, K, S]`` and its term ``[B, M, K, S]`` (scale ×
    weight × cosine; their sum over S, averaged over M, is the logit)."""
    B, C, h, w = fmap.shape
    m = fmap.float().flatten(2)                                             # [B, C, P]
    k = torch.einsum("mdc,bcp->bmdp", keys[0], m) + keys[1][None, :, :, None]
    v = torch.einsum("mdc,bcp->bmdp", values[0], m) + values[1][None, :, :, None]
    att = (torch.einsum("mksd,bmdp->bmksp", query, k) / math.sqrt(query.shape[-1])).softmax(-1)
    seen = F.normalize(torch.einsum("bmksp,bmdp->bmksd", att, v), dim=-1)
    cos = (seen * target[None]).sum(-1)                                     # [B, M, K, S]
    term = cos * weight[None] * scale[None, :, None, None]
    score = term.sum(-1).mean(1)
    if detail:
        return score, att.unflatten(-1, (h, w)), cos, term
    return score


class SentenceHead(nn.Module):
    """The sentence match written for one class set: ``forward(fmap)`` with the backbone's
    feature map ``[B, C, h, w]`` → ``kappa × match`` ``[B, K]``, the term a classifier adds
    to its logits (the mean over the M trained matches it was written from). Plain tensors
    only, taken as given: :meth:`MatchEnsemble.write` passes freshly stacked ones (its own
    copies of the key and value maps), so no second copy is made here. ``sentences[k]`` are class k's sentences
    (the app shows where each looked, :meth:`attention`)."""

    def __init__(self, keys: tuple[torch.Tensor, torch.Tensor], values: tuple[torch.Tensor, torch.Tensor],
                 query: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor,
                 kappa: float, sentences: list[list[str]]):
        super().__init__()
        for name, t in (("keys_weight", keys[0]), ("keys_bias", keys[1]), ("values_weight", values[0]),
                        ("values_bias", values[1]), ("query", query), ("target", target), ("weight", weight),
                        ("scale", scale)):
            self.register_buffer(name, t.detach())
        self.kappa = float(kappa)
        self.sentences = sentences

    @property
    def members(self) -> int:
        """How many trained matches this head averages."""
        return self.query.shape[0]

    def _scores(self, fmap, detail=False):
        return _match_scores(fmap, (self.keys_weight, self.keys_bias), (self.values_weight, self.values_bias),
                             self.query, self.target, self.weight, self.scale, detail=detail)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.kappa * self._scores(fmap)

    @torch.no_grad()
    def attention(self, fmap: torch.Tensor) -> dict:
        """For the app, averaged over the matches: ``attention`` ``[B, K, S, h, w]`` (each
        sentence's map over the positions, summing to 1), ``cosine`` ``[B, K, S]`` (how well the
        region matched the sentence), ``weight`` ``[K, S]`` (how much it counts; sums to 1 over
        a class's sentences), ``contribution`` ``[B, K, S]`` (what it adds to the logit; sums over
        S to ``logit``) and ``logit`` ``[B, K]`` (this head's term)."""
        score, att, cos, term = self._scores(fmap, detail=True)
        return {"attention": att.mean(1), "cosine": cos.mean(1), "weight": self.weight.mean(0),
                "contribution": self.kappa * term.mean(1), "logit": self.kappa * score}


class SentenceMatch(nn.Module):
    """The trained maps shared by every sentence of every class (see the module docstring).

    ``forward(fmap, sents, mask)``: feature maps ``[B, C, h, w]``, one class set's sentence
    embeddings ``[K, S, D]`` with mask ``[K, S]`` → logits ``[B, K]`` (scale × match, without
    ``kappa``: what training fits)."""

    def __init__(self, cfg: MatchConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.sentence_dropout = nn.Dropout(cfg.sentence_dropout)
        self.query = nn.Sequential(nn.LayerNorm(cfg.text_dim), nn.Linear(cfg.text_dim, d))
        self.target = nn.Linear(cfg.text_dim, d)
        self.weight = nn.Linear(cfg.text_dim, 1)
        self.keys = nn.Linear(cfg.channels, d)
        self.values = nn.Linear(cfg.channels, d)
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))

    def per_class(self, sents: torch.Tensor, mask: torch.Tensor):
        """Sentence embeddings ``[K, S, D]``, mask ``[K, S]`` → query ``[K, S, d]``, unit target
        ``[K, S, d]``, weight ``[K, S]`` (softmax over each class's real sentences)."""
        if not mask.any(1).all():
            raise ValueError("every class needs at least one sentence")
        dropped = self.sentence_dropout(sents)
        query = self.query(dropped)
        weight = self.weight(dropped).squeeze(-1).masked_fill(~mask, float("-inf")).softmax(-1)
        return query, F.normalize(self.target(sents), dim=-1), weight

    def forward(self, fmap: torch.Tensor, sents: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        query, target, weight = self.per_class(sents, mask)
        one = lambda lin: (lin.weight[None], lin.bias[None])               # noqa: E731  (M = 1)
        return _match_scores(fmap, one(self.keys), one(self.values), query[None], target[None], weight[None],
                             self.log_scale.exp()[None])


class MatchEnsemble(nn.Module):
    """The sentence match a checkpoint carries: the mean of ``M`` :class:`SentenceMatch`
    trained independently (other seeds) on the same classes and feature maps (M = 1: one
    match). Chosen on the development split (``experiments/match_ensemble.py``: the mean of
    three scored at least as well as each dev full model's own match, +1.1 points on average);
    it does not remove the seed's effect: on ss0 test three such means spread 35.8–39.3%
    (``docs/RESULTS.md``)."""

    def __init__(self, members: list[SentenceMatch]):
        super().__init__()
        if not members:
            raise ValueError("a sentence match needs at least one trained member")
        shapes = {(m.cfg.text_dim, m.cfg.channels, m.cfg.dim, m.cfg.max_sentences) for m in members}
        if len(shapes) != 1:
            raise ValueError(f"the matches to average differ in shape: {sorted(shapes)}")
        self.members = nn.ModuleList(members)

    @property
    def cfg(self) -> MatchConfig:
        """The shared config (the first member's, whose ``kappa`` the classifier uses)."""
        return self.members[0].cfg

    def __len__(self) -> int:
        return len(self.members)

    @torch.no_grad()
    def write(self, sents: torch.Tensor, mask: torch.Tensor, sentences: list[list[str]],
              kappa: float | None = None) -> SentenceHead:
        """One class set's sentence embeddings ``[K, S, D]`` with mask ``[K, S]`` → its
        :class:`SentenceHead` (copies of every tensor it needs, so a classifier never shares
        storage with this module)."""
        was = self.training
        self.eval()
        try:
            parts = [m.per_class(sents, mask) for m in self.members]
        finally:
            self.train(was)
        stack = lambda xs: torch.stack([x.detach() for x in xs])            # noqa: E731
        ms = list(self.members)
        return SentenceHead((stack([m.keys.weight for m in ms]), stack([m.keys.bias for m in ms])),
                            (stack([m.values.weight for m in ms]), stack([m.values.bias for m in ms])),
                            stack([p[0] for p in parts]), stack([p[1] for p in parts]), stack([p[2] for p in parts]),
                            stack([m.log_scale.exp() for m in ms]),
                            self.cfg.kappa if kappa is None else kappa, sentences)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Its tensors as a checkpoint stores them: ``sentence_match.<i>.<name>``."""
        return {f"{WEIGHT_PREFIX}{i}.{k}": v for i, m in enumerate(self.members) for k, v in m.state_dict().items()}

    @classmethod
    def from_checkpoint(cls, weights: dict[str, torch.Tensor], record: dict) -> "MatchEnsemble":
        """The match of a checkpoint: ``weights`` its tensors (only those under
        ``sentence_match.`` are read), ``record`` its ``checkpoint.json["sentence_match"]``
        (``record["members"]``: one entry per match, its tensors under ``sentence_match.<i>.``)."""
        cfg = MatchConfig.from_dict(record["config"])
        names = {k[len(WEIGHT_PREFIX):]: v for k, v in weights.items() if k.startswith(WEIGHT_PREFIX)}
        groups = [{k[len(f"{i}."):]: v for k, v in names.items() if k.startswith(f"{i}.")}
                  for i in range(len(record["members"]))]
        if sum(map(len, groups)) != len(names):
            raise ValueError(f"tensors of more matches than the record's {len(record['members'])}")
        members = []
        for g in groups:
            m = SentenceMatch(cfg)
            m.load_state_dict({k: v.float() for k, v in g.items()}, strict=True)
            members.append(m.eval())
        return cls(members)


# ----------------------------------------------------------------------------- sentences
def sentence_bank(text_encoder, texts: list[str], max_sentences: int, width: int | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, list[list[str]]]:
    """Texts → their sentences embedded ``[T, S, D]``, mask ``[T, S]`` and the sentences
    themselves; ``S`` the most sentences of any text (or ``width``), at most ``max_sentences``
    per text."""
    split = [split_sentences(t)[:max_sentences] for t in texts]
    unique = sorted({x for ss in split for x in ss})
    emb = dict(zip(unique, text_encoder.embed(unique)))   # each sentence alone, cached per sentence
    S = width or max(len(ss) for ss in split)
    vec = torch.zeros(len(texts), S, text_encoder.dim)
    mask = torch.zeros(len(texts), S, dtype=torch.bool)
    for i, ss in enumerate(split):
        if ss:
            vec[i, :len(ss)] = torch.stack([emb[x] for x in ss])
            mask[i, :len(ss)] = True
    return vec, mask, split


# ----------------------------------------------------------------------------- training
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
    from .backbones import create_backbone
    from .checkpoint import CheckpointError, load_checkpoint
    from .data import resolve_data_root
    from .datasets import read_images, resolve_split
    from .features import frozen_features
    from .imagecache import ImageCache
    from .meta import N3Config
    from .preprocess import PreprocessSpec
    from .text import TextEncoder
    from .textbank import class_texts

    if members < 1:
        raise ValueError(f"members must be at least 1, got {members}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    weights, info, _ = load_checkpoint(checkpoint)
    n3cfg = N3Config.from_dict(info["config"])
    backbone = backbone or create_backbone(n3cfg.backbone)
    sig = info.get("backbone")
    if sig and sig != backbone.signature():
        raise CheckpointError(f"{checkpoint} was trained on another {n3cfg.backbone!r} than the one available")
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
    _save_with_match(weights, info, out, MatchEnsemble(trained), record)
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


def _save_with_match(weights: dict, info: dict, out, ensemble: MatchEnsemble, record: dict) -> None:
    """A loaded checkpoint's meta-model (``weights``, ``info``) with ``ensemble`` as its sentence
    match (any match it had is dropped), to ``out``."""
    from .checkpoint import carried_info, save_checkpoint

    weights = {k: v for k, v in weights.items() if not k.startswith(WEIGHT_PREFIX)}
    keep = carried_info(info) | {"sentence_match": record}
    weights.update(ensemble.tensors())
    save_checkpoint(out, weights, keep, half=info.get("dtype") == "float16")


def join_matches(checkpoint: str | Path, sources: list[str | Path], out: str | Path) -> dict:
    """``checkpoint``'s meta-model with the mean of the sentence matches of ``sources`` (each
    trained with ``train-match`` on the same split, match shape and training settings, seeds
    aside), written to ``out``; the matches' records are kept, member by member. The
    classifier's ``kappa`` is the first source's. Returns the new record."""
    from .checkpoint import CheckpointError, load_checkpoint

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
    _save_with_match(weights, info, out, MatchEnsemble(members), record)
    return record
