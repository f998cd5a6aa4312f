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
* :func:`sentence_bank` — texts → their sentences, embedded one by one.

Training (:func:`n3core.train.train_sentence_match`, ``python -m n3core train-match``) and
joining trained matches (:func:`n3core.checkpoint.join_matches`) live with the other stages and
the checkpoint format.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .meta import config_from_dict
from .text import split_sentences

__all__ = ["MatchConfig", "SentenceMatch", "MatchEnsemble", "SentenceHead", "sentence_bank", "WEIGHT_PREFIX"]

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
    match). The mean of three was chosen over one on a development split
    (``experiments/README.md``)."""

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
