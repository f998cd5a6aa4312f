"""Baselines that turn class descriptions into a classifier over a **frozen** backbone, on the
same splits and protocol as N3 (``docs/RESULTS.md``; run by ``experiments/baselines.py``, not
part of the library, which holds what the shipped models, the CLI and the app use):

* :class:`PDCNNFC` — Lei Ba et al. (2015), as the N3 paper re-ran it: an MLP maps a description
  embedding to the weights (and bias) of the classification layer over the frozen pooled
  features.
* :class:`PDCNNFCConv` — the same, plus a predicted convolution on the last feature map: each
  class gets ``M`` 1×1 filters over a 64-channel projection of that map (PCA fitted on the
  training images' maps, :func:`pca_maps`, then a learned 1×1 layer), scored by spatial
  max-pooling and added to the fc score (Ba et al.'s conv branch, at the scale of this backbone
  and of a 2-core CPU).
* :func:`eszsl_fit` — ESZSL (Romera-Paredes and Torr, 2015): the closed-form bilinear map
  ``V = (XᵀX + γI)⁻¹ Xᵀ Y S (SᵀS + λI)⁻¹`` between image features and class embeddings.

Description embeddings: :func:`maxpool_text` (max-pooled MiniLM token states, 384-d),
:func:`meanpool_text` (their normalised mean, MiniLM's sentence embedding) or
:class:`TfidfText` (a bag-of-words TF-IDF encoder fitted on the training descriptions only,
the ablation's stand-in for the paper's GloVe row).

Image features come from :func:`n3core.features.frozen_features` (view 0: the whole photo at
the N3 model's image size): pooled features ``[N, F]`` and, for the conv branch, the last
feature map ``[N, C, h, w]`` (fp16).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from n3core.evaluate import per_class_accuracy
from n3core.text import word_positions

__all__ = ["pca_maps", "maxpool_text", "meanpool_text", "TfidfText", "PDCNNFC", "PDCNNFCConv", "train_pdcnn",
           "eszsl_fit", "eszsl_scores", "PDCNNConfig"]


# ---------------------------------------------------------------------------- feature maps
@torch.no_grad()
def pca_maps(maps: torch.Tensor, fit_rows: torch.Tensor, dim: int = 64) -> torch.Tensor:
    """Project feature maps ``[N, C, h, w]`` onto the top ``dim`` principal channel directions
    of the maps in ``fit_rows`` (training images only) → ``[N, dim, h, w]`` (fp32)."""
    fit = maps[fit_rows].float().permute(0, 2, 3, 1).reshape(-1, maps.shape[1])
    mean = fit.mean(0)
    _, _, v = torch.pca_lowrank(fit - mean, q=dim, center=False, niter=4)
    out = torch.empty(maps.shape[0], dim, *maps.shape[2:])
    for s in range(0, len(maps), 512):
        m = maps[s:s + 512].float().permute(0, 2, 3, 1)
        out[s:s + 512] = ((m - mean) @ v).permute(0, 3, 1, 2)
    return out


# ---------------------------------------------------------------------------- text
@torch.no_grad()
def maxpool_text(text_encoder, texts: list[str]) -> torch.Tensor:
    """Max-pooled token states (special tokens excluded) ``[K, D]``."""
    enc = text_encoder.encode(list(texts))
    return enc.states.masked_fill(~word_positions(enc.mask)[..., None], float("-inf")).max(1).values


@torch.no_grad()
def meanpool_text(text_encoder, texts: list[str]) -> torch.Tensor:
    """Normalised mean of the token states (special tokens excluded) ``[K, D]``: MiniLM's own
    sentence embedding (:meth:`~n3core.text.TextEncoder.embed`, as N3 computes it)."""
    return text_encoder.embed(list(texts))


class TfidfText:
    """Bag-of-words TF-IDF vectors (lower-cased word tokens, sublinear tf, L2-normalised)
    with the vocabulary and IDF of the descriptions it is fitted on."""

    def __init__(self, min_df: int = 2, max_features: int = 2000):
        self.min_df, self.max_features = min_df, max_features

    @staticmethod
    def _tokens(text: str) -> list[str]:
        return re.findall(r"[a-z]+", text.lower())

    def fit(self, texts: list[str]) -> "TfidfText":
        df = Counter(w for t in texts for w in set(self._tokens(t)))
        vocab = [w for w, c in df.most_common() if c >= self.min_df][:self.max_features]
        self.vocab = {w: i for i, w in enumerate(vocab)}
        n = len(texts)
        self.idf = torch.tensor([math.log((1 + n) / (1 + df[w])) + 1 for w in vocab])
        return self

    def __call__(self, texts: list[str]) -> torch.Tensor:
        out = torch.zeros(len(texts), len(self.vocab))
        for i, t in enumerate(texts):
            for w, c in Counter(self._tokens(t)).items():
                if w in self.vocab:
                    out[i, self.vocab[w]] = 1 + math.log(c)
        return F.normalize(out * self.idf, dim=-1)


# ---------------------------------------------------------------------------- PDCNN
@dataclass
class PDCNNConfig:
    hidden: int = 512
    dropout: float = 0.3
    lr: float = 1e-3
    weight_decay: float = 1e-3
    epochs: int = 100
    conv_filters: int = 4          # M, for FC+Conv
    conv_dim: int = 64             # the learned projection of the feature map
    seed: int = 0


class PDCNNFC(nn.Module):
    """``scores[n, k] = s · cos(φ(x_n), g(t_k)) + b(t_k)``; ``g`` a two-layer MLP."""

    def __init__(self, text_dim: int, feature_dim: int, cfg: PDCNNConfig):
        super().__init__()
        self.g = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(text_dim, cfg.hidden), nn.GELU(),
                               nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, feature_dim + 1))
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.center = nn.Parameter(torch.zeros(feature_dim))

    def fc_scores(self, feats: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        wb = self.g(text)
        w, b = F.normalize(wb[:, :-1], dim=-1), wb[:, -1]
        return self.scale * F.normalize(feats - self.center, dim=-1) @ w.T + b

    def forward(self, feats, text, maps=None):
        return self.fc_scores(feats, text)


class PDCNNFCConv(PDCNNFC):
    """PDCNN-FC plus a predicted convolution: per class ``M`` 1×1 filters over a learned
    ``conv_dim``-channel projection of the last feature map; score = mean over filters of the
    spatial max, added to the fc score."""

    def __init__(self, text_dim: int, feature_dim: int, map_channels: int, cfg: PDCNNConfig):
        super().__init__(text_dim, feature_dim, cfg)
        self.proj = nn.Conv2d(map_channels, cfg.conv_dim, 1)
        self.m = cfg.conv_filters
        self.h = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(text_dim, cfg.hidden), nn.GELU(),
                               nn.Linear(cfg.hidden, cfg.conv_filters * cfg.conv_dim))

    def forward(self, feats, text, maps=None):
        z = F.normalize(self.proj(maps.float()), dim=1)                          # [N, d, h, w]
        f = F.normalize(self.h(text).view(len(text), self.m, -1), dim=-1)       # [K, M, d]
        conv = torch.einsum("ndhw,kmd->nkmhw", z, f).flatten(3).amax(-1).mean(-1)  # [N, K]
        return self.fc_scores(feats, text) + self.scale * conv


def train_pdcnn(model: PDCNNFC, feats: torch.Tensor, labels: torch.Tensor, text: torch.Tensor, cfg: PDCNNConfig,
                maps: torch.Tensor | None = None, val=None, batch_size: int = 512,
                alternatives: list[list[torch.Tensor]] | None = None, main_prob: float = 0.5
                ) -> tuple[PDCNNFC, list[float]]:
    """Cross-entropy over all training classes at once, mini-batches of images. ``val`` =
    ``(feats, labels, text, maps)`` of the val classes: the epoch with the best val per-class
    top-1 is kept. ``alternatives[k]``: other description vectors of training class k (other
    description sets, edited copies); each mini-batch, class k reads ``text[k]`` with probability
    ``main_prob`` and otherwise one of its alternatives, as N3's ``main_text_prob`` does.
    Returns the model (best weights loaded) and the val curve."""
    import copy
    import random

    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    curve, best, best_state = [], -1.0, None
    n = len(feats)
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n, generator=g)
        for s in range(0, n, batch_size):
            idx = perm[s:s + batch_size]
            t = text
            if alternatives is not None:
                t = torch.stack([rng.choice(a) if a and rng.random() >= main_prob else text[k]
                                 for k, a in enumerate(alternatives)])
            logits = model(feats[idx], t, maps[idx] if maps is not None else None)
            loss = F.cross_entropy(logits, labels[idx], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if val is not None and (epoch + 1) % 10 == 0:
            acc = per_class_top1(predict(model, *val[:1], val[2], val[3]), val[1], len(val[2]))
            curve.append(acc)
            if acc > best:
                best, best_state = acc, copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), curve


@torch.no_grad()
def predict(model: PDCNNFC, feats, text, maps=None, batch_size: int = 512) -> torch.Tensor:
    model.eval()
    return torch.cat([model(feats[s:s + batch_size], text, maps[s:s + batch_size] if maps is not None else None)
                      for s in range(0, len(feats), batch_size)])


def per_class_top1(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Per-class averaged top-1, as :func:`n3core.evaluate.per_class_accuracy` computes it."""
    return per_class_accuracy(logits, labels, k)["top1"]


# ---------------------------------------------------------------------------- ESZSL
def eszsl_fit(feats: torch.Tensor, labels: torch.Tensor, class_emb: torch.Tensor, gamma: float, lam: float
              ) -> torch.Tensor:
    """``V`` ``[F, D]`` from training features ``[N, F]``, labels ``[N]`` and class embeddings
    ``[Z, D]`` (rows = training classes); Y is ±1 as in the paper."""
    X = feats.double()
    S = class_emb.double()
    Y = -torch.ones(len(X), len(S), dtype=torch.double)
    Y[torch.arange(len(X)), labels] = 1.0
    A = X.T @ X + gamma * torch.eye(X.shape[1], dtype=torch.double)
    B = S.T @ S + lam * torch.eye(S.shape[1], dtype=torch.double)
    V = torch.linalg.solve(A, X.T @ Y @ S) @ torch.linalg.inv(B)
    return V.float()


def eszsl_scores(feats: torch.Tensor, V: torch.Tensor, class_emb: torch.Tensor) -> torch.Tensor:
    return feats @ V @ class_emb.T
