"""The N3 meta-model: class descriptions → a parameter adaptation of a whole CNN.

Read top to bottom:

1. :class:`Tokens2Label` — a transformer over the L token states of *one* description
   (attention never crosses classes), pooled through a learned label token → ``c_k`` ``[K, d]``.
   ``mean_skip="classifier"`` adds an MLP of the description's mean-pooled, L2-normalised
   token states (the sentence embedding MiniLM was trained to produce) straight to the class's
   classifier row.
2. :class:`Labels2Adaptation` — a transformer over the K label embeddings (no positions, so
   permuting the classes permutes the outputs) → ``h`` ``[K, d]``.
3. :class:`TensorDecoders` — for every adapted backbone tensor with M columns of size C,
   M learned column queries cross-attend to ``h`` and a per-tensor linear map writes each
   column: ΔΘ ``[M, C]`` reshaped like Θ.
4. :class:`ClassifierWriter` — the new K-way layer, row k (and bias k) written from ``h_k``.

The adapted network is ``Θ' = γ·Θ + μ·ΔΘ`` (μ trainable, initially 1e-3; γ fixed, 1 by
default), run with ``torch.func.functional_call``: the backbone module is never mutated, so
one loaded model serves many syntheses at once. ``mode="fc-only"`` builds no decoders and
leaves every backbone tensor at Θ.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .backbones import AdaptableTensor, Backbone
from .preprocess import PreprocessSpec
from .text import mean_embedding

__all__ = ["N3Config", "Adaptation", "N3MetaModel", "N3Model", "SynthesisError", "MODES"]

MODES = ("full", "fc-only")
MEAN_SKIPS = ("none", "classifier")


class SynthesisError(ValueError):
    """Inputs a classifier cannot be synthesized from: < 2 classes, duplicates, empty text."""


@dataclass
class N3Config:
    """Every architectural choice of the meta-model; saved beside its weights."""

    backbone: str = "efficientnet_lite0"
    text_encoder: str = "all-MiniLM-L6-v2"
    text_dim: int = 384
    text_max_length: int = 256
    feature_dim: int = 1280
    mode: str = "full"                  # "full" or "fc-only"
    adapt_pattern: str = ".*"           # regex over backbone tensor names adapted in full mode
    d_model: int = 128
    n_heads: int = 4
    t2l_layers: int = 1                 # Tokens2Label transformer layers
    l2a_layers: int = 1                 # Labels2Adaptation transformer layers
    ff_mult: int = 2
    dropout: float = 0.1
    token_dropout: float = 0.1          # training only: drop this fraction of description tokens
    mean_skip: str = "none"             # "none" | "classifier": add an MLP of the normalised mean of
                                        # the token states to each classifier row
    mean_hidden: int = 1024             # hidden width of that MLP
    mean_dropout: float = 0.5           # dropout on its input and hidden layer
    mu_init: float = 1e-3
    gamma: float = 1.0
    logit_scale_init: float = 10.0
    image_size: int = 160

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mean_skip not in MEAN_SKIPS:
            raise ValueError(f"mean_skip must be one of {MEAN_SKIPS}, got {self.mean_skip!r}")
        if self.d_model % self.n_heads:
            raise ValueError("d_model must be divisible by n_heads")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "N3Config":
        return config_from_dict(cls, d, "config")


def config_from_dict(cls, d: dict, what: str):
    """Build dataclass ``cls`` from ``d``, refusing keys it does not know (typos fail loudly)."""
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} keys: {', '.join(sorted(unknown))}")
    return cls(**d)


@dataclass
class Adaptation:
    """What the meta-model writes for one set of K classes.

    ``delta``: ΔΘ by backbone tensor name, each shaped like Θ (empty in fc-only mode);
    ``fc_weight`` ``[K, F]``; ``fc_bias`` ``[K]``; ``mu``, ``gamma``: scalars;
    ``logit_scale``: scalar temperature of the cosine classifier.
    """

    delta: dict[str, torch.Tensor]
    fc_weight: torch.Tensor
    fc_bias: torch.Tensor
    mu: torch.Tensor
    gamma: float
    logit_scale: torch.Tensor

    def adapted_params(self, theta: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``Θ' = γ·Θ + μ·ΔΘ`` for the adapted tensors (others are left out: they stay Θ)."""
        # one fused pass per tensor (γ = 1: Θ itself, no scaled copy); μ keeps its gradient
        return {n: torch.addcmul(theta[n] if self.gamma == 1 else self.gamma * theta[n], self.mu, d)
                for n, d in self.delta.items()}

    def changes(self) -> dict[str, torch.Tensor]:
        """What the adaptation adds to each adapted tensor: ``μ·ΔΘ``, shaped like Θ."""
        return {n: self.mu * d for n, d in self.delta.items()}

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[B, F]`` → logits ``[B, K]`` (cosine, scaled, plus bias)."""
        return self.logit_scale * F.normalize(features, dim=-1) @ F.normalize(self.fc_weight, dim=-1).T + self.fc_bias


def _encoder(d: int, heads: int, layers: int, ff_mult: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(d, heads, d * ff_mult, dropout, batch_first=True, norm_first=True,
                                       activation="gelu")
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def _mean_mlp(cfg: N3Config, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(cfg.mean_dropout), nn.Linear(cfg.text_dim, cfg.mean_hidden), nn.GELU(),
                         nn.Dropout(cfg.mean_dropout), nn.Linear(cfg.mean_hidden, out))


class Tokens2Label(nn.Module):
    """Token states ``[K, L, D_text]`` + mask ``[K, L]`` → label embeddings ``[K, d]``."""

    def __init__(self, cfg: N3Config):
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(cfg.text_dim), nn.Linear(cfg.text_dim, cfg.d_model))
        self.label_token = nn.Parameter(torch.randn(1, 1, cfg.d_model) * 0.02)
        self.encoder = _encoder(cfg.d_model, cfg.n_heads, cfg.t2l_layers, cfg.ff_mult, cfg.dropout)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.token_dropout = cfg.token_dropout

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        K = states.shape[0]
        x = self.proj(states)
        keep = mask.bool()
        if self.training and self.token_dropout > 0:
            drop = torch.rand(keep.shape, device=keep.device) < self.token_dropout
            keep = keep & ~drop
        x = torch.cat([self.label_token.expand(K, -1, -1), x], dim=1)
        keep = torch.cat([keep.new_ones(K, 1), keep], dim=1)
        x = self.encoder(x, src_key_padding_mask=~keep)
        return self.norm(x[:, 0])


class Labels2Adaptation(nn.Module):
    """Label embeddings ``[K, d]`` → hidden states ``h`` ``[K, d]``, attention across classes."""

    def __init__(self, cfg: N3Config):
        super().__init__()
        self.encoder = _encoder(cfg.d_model, cfg.n_heads, cfg.l2a_layers, cfg.ff_mult, cfg.dropout)
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.norm(self.encoder(labels.unsqueeze(0)).squeeze(0))


class ClassifierWriter(nn.Module):
    """``h`` ``[K, d]`` → a K-way layer: weight ``[K, F]`` (row k from h_k) and bias ``[K]``.

    With ``mean_skip="classifier"`` an MLP of class k's sentence embedding ``e_k`` ``[K, D_text]``
    adds to row k and bias k: the transformers then write a correction to a row the plain
    sentence embedding already predicts (alone, that MLP is the PDCNN-FC baseline).
    """

    def __init__(self, cfg: N3Config):
        super().__init__()
        self.weight = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_model * 2), nn.GELU(),
                                    nn.Dropout(cfg.dropout), nn.Linear(cfg.d_model * 2, cfg.feature_dim))
        self.bias = nn.Linear(cfg.d_model, 1)
        nn.init.zeros_(self.bias.weight)
        nn.init.zeros_(self.bias.bias)
        self.log_scale = nn.Parameter(torch.tensor(math.log(cfg.logit_scale_init)))
        self.skip = _mean_mlp(cfg, cfg.feature_dim + 1) if cfg.mean_skip == "classifier" else None

    def forward(self, h: torch.Tensor, sentence: torch.Tensor | None = None):
        w, b = self.weight(h), self.bias(h).squeeze(-1)
        if self.skip is not None:
            wb = self.skip(sentence)
            w, b = w + wb[:, :-1], b + wb[:, -1]
        return w, b, self.log_scale.exp()


class TensorDecoders(nn.Module):
    """One decoder per adapted tensor, sharing the hidden states ``h`` ``[K, d]``.

    All M_total column queries attend to ``h`` in one batched multi-head attention (keys and
    values projected once), then tensor t's ``[M_t, d]`` context goes through its own linear
    map ``d → C_t`` to give its ``[M_t, C_t]`` columns.

    Inference (eval mode, no autograd) with few classes (K·heads < d) takes an exact shortcut:
    the linear maps distribute over the context ``Σ_h A_h V_h + queries``, so the text-free
    part ``W_t·queries_t + b_t`` is computed once and kept, and the rest is
    ``A_t [M_t, H·K] @ (V_h W_t,hᵀ) [H·K, C_t]`` — K·H instead of d multiply-adds per output
    value, and no layer norm of the 63k queries per synthesis. The kept part is recomputed
    whenever a parameter changes (training steps, ``load_state_dict``, ``.to()``).
    """

    def __init__(self, cfg: N3Config, tensors: list[AdaptableTensor]):
        super().__init__()
        self.tensors = tensors
        self.names = [t.name for t in tensors]
        d = cfg.d_model
        total = sum(t.n_columns for t in tensors)
        self.queries = nn.Parameter(torch.randn(total, d) * 0.02)
        self.sizes = [t.n_columns for t in tensors]
        self.kv = nn.Linear(d, 2 * d)
        self.q_norm = nn.LayerNorm(d)
        self.heads = cfg.n_heads
        self.out = nn.ModuleList(nn.Linear(d, t.column_size) for t in tensors)
        self._column_sizes = [t.column_size for t in tensors]
        self._frozen: tuple | None = None        # (parameter versions, queries, text-free outputs, weights)

    def forward(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.training and not torch.is_grad_enabled() and h.shape[0] * self.heads < h.shape[-1]:
            return self._forward_inference(h)
        d, H = h.shape[-1], self.heads
        k, v = self.kv(h).chunk(2, dim=-1)                                   # [K, d] each
        q = self.q_norm(self.queries)                                        # [M, d]
        qh, kh, vh = (t.reshape(t.shape[0], H, d // H).transpose(0, 1) for t in (q, k, v))
        ctx = F.scaled_dot_product_attention(qh, kh, vh)                     # [H, M, d/H]
        ctx = ctx.transpose(0, 1).reshape(-1, d) + self.queries              # [M, d]
        out = {}
        for t, lin, c in zip(self.tensors, self.out, ctx.split(self.sizes)):
            out[t.name] = t.from_columns(lin(c))
        return out

    def _text_free(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The scaled, normed queries per head ``[H, d/H, M]``; per tensor, ``W_t·queries_t + b_t``
        ``[M_t, C_t]``; and every ``W_t`` side by side per head ``[H, d/H, ΣC]``. Kept until a
        parameter changes (its storage or its in-place version)."""
        params = [self.queries, *self.q_norm.parameters(), *self.out.parameters()]
        key = tuple((p.data_ptr(), p._version, p.dtype) for p in params)
        frozen = self._frozen
        if frozen is None or frozen[0] != key:
            d, H = self.queries.shape[1], self.heads
            q = self.q_norm(self.queries) * (d // H) ** -0.5
            q = q.reshape(-1, H, d // H).permute(1, 2, 0).contiguous()         # [H, d/H, M]
            base = [lin(c) for lin, c in zip(self.out, self.queries.split(self.sizes))]
            w = torch.cat([lin.weight for lin in self.out])                   # [ΣC, d]
            w = w.reshape(-1, H, d // H).permute(1, 2, 0).contiguous()         # [H, d/H, ΣC]
            frozen = self._frozen = (key, q, base, w)
        return frozen[1:]

    def _forward_inference(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        K, d = h.shape
        H = self.heads
        qh, base, w = self._text_free()
        k, v = self.kv(h).chunk(2, dim=-1)
        kh, vh = (x.reshape(K, H, d // H).transpose(0, 1) for x in (k, v))     # [H, K, d/H]
        attn = torch.bmm(kh, qh).softmax(1)                                    # [H, K, M], softmax over K
        attn = attn.permute(2, 0, 1).reshape(-1, H * K)                       # [M, H·K]
        vw = torch.bmm(vh, w).reshape(H * K, -1)                              # [H·K, ΣC]: V_h W_t,hᵀ
        out = {}
        for t, a, b, c in zip(self.tensors, attn.split(self.sizes), base, vw.split(self._column_sizes, dim=1)):
            out[t.name] = t.from_columns(torch.addmm(b, a, c))
        return out


class N3MetaModel(nn.Module):
    """Token states of K descriptions → :class:`Adaptation` (ΔΘ for every adapted tensor,
    a K-way classifier, μ and γ)."""

    def __init__(self, cfg: N3Config, tensors: list[AdaptableTensor]):
        super().__init__()
        self.cfg = cfg
        self.tokens2label = Tokens2Label(cfg)
        self.labels2adaptation = Labels2Adaptation(cfg)
        self.classifier = ClassifierWriter(cfg)
        if cfg.mode == "full":
            pat = re.compile(cfg.adapt_pattern)
            chosen = [t for t in tensors if pat.search(t.name)]
            if not chosen:
                raise ValueError(f"adapt_pattern {cfg.adapt_pattern!r} matches no backbone tensor")
            self.decoders = TensorDecoders(cfg, chosen)
        else:
            self.decoders = None
        self.mu = nn.Parameter(torch.tensor(float(cfg.mu_init)))

    def label_parameters(self) -> list[nn.Parameter]:
        """The Tokens2Label part (its own learning rate in training)."""
        return list(self.tokens2label.parameters())

    def adaptation_parameters(self) -> list[nn.Parameter]:
        """Everything else: Labels2Adaptation, decoders, classifier writer, μ."""
        ids = {id(p) for p in self.label_parameters()}
        return [p for p in self.parameters() if id(p) not in ids]

    def forward(self, states: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor | None = None) -> Adaptation:
        """``states`` ``[K, L, D_text]``, ``mask`` ``[K, L]`` → :class:`Adaptation`. ``labels``
        ``[K, d]``: the Tokens2Label outputs when the caller already has them (each class's label
        depends on its own tokens only, so a synthesizer keeps them per description)."""
        if states.dim() != 3 or states.shape[0] < 2:
            raise SynthesisError(f"need token states [K, L, D] with K >= 2 classes, got {tuple(states.shape)}")
        if labels is None:
            labels = self.tokens2label(states, mask)
        h = self.labels2adaptation(labels)
        sentence = mean_embedding(states, mask.bool()) if self.classifier.skip is not None else None
        w, b, scale = self.classifier(h, sentence)
        delta = self.decoders(h) if self.decoders is not None else {}
        return Adaptation(delta=delta, fc_weight=w, fc_bias=b, mu=self.mu, gamma=self.cfg.gamma, logit_scale=scale)


class N3Model(nn.Module):
    """A frozen backbone plus the meta-model; ``forward(images, states, mask)`` → logits.

    The backbone is only ever called through ``functional_call`` with Θ', never mutated.
    """

    def __init__(self, cfg: N3Config, backbone: Backbone):
        super().__init__()
        if backbone.name != cfg.backbone:
            raise ValueError(f"config is for backbone {cfg.backbone!r}, got {backbone.name!r}")
        if backbone.feature_dim != cfg.feature_dim:
            raise ValueError(f"config feature_dim {cfg.feature_dim} != backbone's {backbone.feature_dim}")
        self.cfg = cfg
        self.backbone = backbone
        self.meta = N3MetaModel(cfg, backbone.tensors)
        # the backbone stays out of state_dict()/parameters() (it is loaded from its own source,
        # never saved with the meta-model), but .to() / .cuda() / .half() move it with the rest
        object.__setattr__(self, "_backbone_module", backbone.module)

    @property
    def backbone_module(self) -> nn.Module:
        return self._backbone_module

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self._backbone_module._apply(fn, *args, **kwargs)
        return self

    @property
    def preprocess(self) -> PreprocessSpec:
        """The one image pipeline of this model: its backbone's config at ``cfg.image_size``."""
        return PreprocessSpec.for_backbone(self.backbone, self.cfg.image_size)

    def train(self, mode: bool = True):
        super().train(mode)
        self._backbone_module.eval()  # BatchNorm statistics stay at their pretrained values
        return self

    def theta(self) -> dict[str, torch.Tensor]:
        return self.backbone.parameters_dict()

    def features(self, images: torch.Tensor, adaptation: Adaptation | None = None) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` → pooled features ``[B, F]`` of the (adapted) backbone."""
        if adaptation is None or not adaptation.delta:
            return self._backbone_module(images)
        return functional_call(self._backbone_module, adaptation.adapted_params(self.theta()), (images,))

    def forward(self, images: torch.Tensor, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a = self.meta(states, mask)
        return a.classify(self.features(images, a))
