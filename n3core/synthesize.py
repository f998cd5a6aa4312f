"""Descriptions → a working classifier.

    synth = Synthesizer.from_checkpoint("checkpoints/n3-effl0-minilm-ss0")
    clf = synth.synthesize({"Blue Jay": "A crested jay, bright blue above ...", ...})
    probs = clf.predict([pil_image, ...])          # [B, K]
    clf.export("blue_things.pt2")                  # torch.export program; runs with torch alone

:class:`SynthesizedClassifier` is a plain ``nn.Module`` with Θ' merged into its own copy of
the backbone and the K-way layer attached: its per-image cost is the backbone's, with no
meta-model work per image.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import threading
import time
import unicodedata
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import Backbone, create_backbone, feature_map
from .checkpoint import load_model, model_config, read_checkpoint_info
from .meta import Adaptation, N3Config, N3Model, SynthesisError
from .preprocess import PreprocessSpec
from .runtime import pick_device
from .sentence_match import MatchEnsemble, SentenceHead, sentence_bank
from .text import EncodedTexts, TextEncoder

__all__ = ["Synthesizer", "SynthesizedClassifier", "SWAPS", "check_descriptions", "class_key", "descriptions_from_pairs"]

SWAPS = ("both", "delta", "match")   # what the language control's other descriptions write: see Synthesizer.synthesize


def class_key(name: str) -> str:
    """What makes two class names the same class: equal after NFKC, trimming and casefolding."""
    return unicodedata.normalize("NFKC", name).strip().casefold()


def descriptions_from_pairs(pairs) -> dict[str, str]:
    """``[(class name, description), ...]`` (e.g. a form's rows) → ``{name: description}``,
    names trimmed; two names that are the same class (:func:`class_key`) raise
    :class:`SynthesisError` instead of one silently replacing the other."""
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name, text in pairs:
        name = name.strip()
        key = class_key(name)
        if name and key in seen:          # an empty name is check_descriptions' to report
            raise SynthesisError(f"duplicate class name: {name!r} and {seen[key]!r}")
        seen[key] = name
        out[name] = text
    return out


def check_descriptions(descriptions: dict[str, str]) -> dict[str, str]:
    """Validate ``{class name: description}``; raise :class:`SynthesisError` saying what is wrong."""
    if not isinstance(descriptions, dict):
        raise SynthesisError("descriptions must be a mapping {class name: description}")
    if len(descriptions) < 2:
        raise SynthesisError(f"a classifier needs at least 2 classes, got {len(descriptions)}")
    seen: dict[str, str] = {}
    for name, text in descriptions.items():
        if not isinstance(name, str) or not name.strip():
            raise SynthesisError("a class has an empty name")
        key = class_key(name)
        if key in seen:
            raise SynthesisError(f"duplicate class name: {name!r} and {seen[key]!r}")
        seen[key] = name
        if not isinstance(text, str):
            raise SynthesisError(f"the description of {name!r} is not text")
        if not text.strip():
            raise SynthesisError(f"the description of {name!r} is empty")
    return dict(descriptions)


_CONTAINERS = (dict, OrderedDict, set, list)


def clone_module(module: nn.Module, replace: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of ``module`` that shares no tensor with it: parameter ``name`` becomes
    ``replace[name]`` (a frozen parameter over that tensor, not copied again), every other
    parameter and buffer a clone.

    The result is what ``copy.deepcopy`` makes, built directly: each submodule's attributes
    are copied one level deep (the dicts of parameters, buffers, submodules and hooks are
    new, a tensor kept as a plain attribute is cloned, other settings are shared): for Lite0's
    273 modules about 7 ms instead of deepcopy's 27 (``benchmarks/results/backbone_copy.json``). A
    submodule reached twice is copied once."""
    memo: dict[int, nn.Module] = {}
    used = set()

    def param(name: str, p: nn.Parameter | None) -> nn.Parameter | None:
        if p is None:
            return None
        if name in replace:
            used.add(name)
            return nn.Parameter(replace[name].detach(), requires_grad=False)
        return nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad)

    def walk(m: nn.Module, prefix: str) -> nn.Module:
        if id(m) in memo:
            return memo[id(m)]
        new = memo[id(m)] = object.__new__(type(m))
        d = {k: v.copy() if type(v) in _CONTAINERS else v.clone() if isinstance(v, torch.Tensor) else v
             for k, v in m.__dict__.items()}
        d["_parameters"] = {n: param(prefix + n, p) for n, p in m._parameters.items()}
        d["_buffers"] = {n: None if b is None else b.clone() for n, b in m._buffers.items()}
        d["_modules"] = {n: None if c is None else walk(c, prefix + n + ".") for n, c in m._modules.items()}
        new.__dict__ = d
        return new

    out = walk(module, "")
    if used != set(replace):
        raise KeyError(f"clone_module: {sorted(set(replace) - used)[:3]} are not parameters of the module")
    return out


def _prepare(spec: PreprocessSpec, images) -> torch.Tensor:
    """PIL images (or one), or an already normalised ``[B, 3, S, S]`` tensor → ``[B, 3, S, S]``."""
    if isinstance(images, torch.Tensor):
        return images if images.dim() == 4 else images.unsqueeze(0)
    return spec.pil_batch(images)


class SynthesizedClassifier(nn.Module):
    """A K-way image classifier: adapted backbone + new classification layer, and (checkpoints
    with a sentence match) the per-class :class:`~n3core.sentence_match.SentenceHead` written
    from the same descriptions, whose term is added to the layer's logits.

    ``forward(x)``: normalised images ``[B, 3, S, S]`` → logits ``[B, K]``.
    ``predict(images)``: PIL images or a normalised batch → probabilities ``[B, K]``.
    """

    def __init__(self, backbone_module: nn.Module, fc_weight: torch.Tensor, fc_bias: torch.Tensor,
                 logit_scale: float, class_names: Sequence[str], spec: PreprocessSpec,
                 info: dict | None = None, words: SentenceHead | None = None):
        super().__init__()
        self.backbone = backbone_module
        self.words = words
        w = F.normalize(fc_weight, dim=-1) * logit_scale       # cosine classifier: rows normalised once
        self.fc = nn.Linear(fc_weight.shape[1], fc_weight.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(w)
            self.fc.bias.copy_(fc_bias)
        self.class_names = list(class_names)
        self.spec = spec
        self.info = dict(info or {})
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return self.fc.weight.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What :meth:`head` needs of normalised images ``[B, 3, S, S]``: pooled features
        ``[B, F]``, or with a sentence match the backbone's feature map ``[B, C, h, w]``."""
        return self.backbone(x) if self.words is None else feature_map(self.backbone, x)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Features → logits ``[B, K]``. A feature map ``[B, C, h, w]``: pooled and scored by the
        classification layer, plus the sentence match's term when there is one. Pooled
        features ``[B, F]``: the classification layer alone (what the language control's
        "no adaptation" reads)."""
        if features.dim() == 4:
            logits = self.head(features.mean((2, 3)))
            return logits if self.words is None else logits + self.words(features)
        return self.fc(F.normalize(features, dim=-1))

    def prepare(self, images) -> torch.Tensor:
        """PIL images (or one) → normalised ``[B, 3, S, S]`` through the model's one pipeline
        (:class:`~n3core.preprocess.PreprocessSpec`); an already normalised tensor passes through."""
        return _prepare(self.spec, images)

    @torch.no_grad()
    def predict(self, images, batch_size: int = 64) -> torch.Tensor:
        x = self.prepare(images)
        out = [self(x[s:s + batch_size].to(self.device)).softmax(-1).cpu() for s in range(0, len(x), batch_size)]
        return torch.cat(out)

    @torch.no_grad()
    def predict_layer_and_match(self, images, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """Probabilities ``[B, K]`` twice from one backbone pass: the whole classifier
        (:meth:`predict`) and its classification layer alone on the same adapted features (for
        a full model: ΔΘ without the sentence match). Without a match both are the same."""
        x = self.prepare(images)
        whole, layer = [], []
        for s in range(0, len(x), batch_size):
            f = self.features(x[s:s + batch_size].to(self.device))
            whole.append(self.head(f).softmax(-1).cpu())
            layer.append(self.head(f.mean((2, 3)) if f.dim() == 4 else f).softmax(-1).cpu())
        return torch.cat(whole), torch.cat(layer)

    def export(self, path: str | Path) -> Path:
        """Write a ``torch.export`` program (``.pt2``) that ``torch.export.load(path).module()``
        runs with torch alone: normalised images ``[B, 3, S, S]`` (any batch size) → logits
        ``[B, K]``. Its extra file ``n3.json`` holds the class names and the preprocessing spec
        (image size, mean, std, crop, interpolation), so the file is all a user needs."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        model = copy.deepcopy(self).cpu().eval()
        S = self.spec.image_size
        batch = torch.export.Dim("batch", min=1, max=4096)
        with torch.no_grad():
            program = torch.export.export(model, (torch.zeros(2, 3, S, S),), dynamic_shapes=({0: batch},))
        meta = {"format": "n3-synthesized-classifier", "class_names": self.class_names,
                "image_size": S, "mean": list(self.spec.mean), "std": list(self.spec.std),
                "preprocess": self.spec.to_dict(),
                "resize": f"central square ({self.spec.crop_pct:g} of the short side), {self.spec.interpolation} to image_size",
                "input": "normalised images [B, 3, image_size, image_size]: (pixel / 255 - mean) / std",
                "output": "logits [B, K]; softmax for probabilities",
                "load": "torch.export.load(path, extra_files={'n3.json': ''}).module()", **self.info}
        tmp = path.with_name(path.name + ".tmp")
        torch.export.save(program, tmp, extra_files={"n3.json": json.dumps(meta)})
        tmp.replace(path)
        return path


class Synthesizer:
    """A loaded N3 model (backbone, text encoder, meta-model) that turns descriptions into
    classifiers. Thread-safe for concurrent ``synthesize`` calls: the models are never mutated;
    the only shared state is content-keyed caches (text states, label embeddings)."""

    def __init__(self, model: N3Model, text_encoder: TextEncoder, info: dict | None = None,
                 match: MatchEnsemble | None = None):
        self.model = model.eval()
        self.text_encoder = text_encoder
        self.info = info or {}
        self.match = match.eval() if match is not None else None     # the sentence match, when trained
        self._labels: OrderedDict[str, torch.Tensor] = OrderedDict()   # description → Tokens2Label output [d]
        self._labels_key: tuple = ()
        self._labels_lock = threading.Lock()          # the cache's reads and writes (not the model call)

    @property
    def config(self) -> N3Config:
        return self.model.cfg

    @property
    def backbone(self) -> Backbone:
        return self.model.backbone

    @property
    def device(self) -> torch.device:
        return next(self.model.meta.parameters()).device

    @classmethod
    def from_checkpoint(cls, directory: str | Path, *, device: str = "auto", backbone: Backbone | None = None,
                        backbone_weights: str | None = None, text_encoder: TextEncoder | None = None) -> "Synthesizer":
        """Load a checkpoint folder; the backbone and text encoder come from their own sources
        and are checked against what the checkpoint was trained with."""
        cfg = model_config(directory, read_checkpoint_info(directory))
        bb = backbone or create_backbone(cfg.backbone, weights=backbone_weights)
        te = text_encoder or TextEncoder(max_length=cfg.text_max_length)
        model, match, info = load_model(directory, bb, te.dim)
        dev = pick_device(device)
        model.to(dev)
        if match is not None:
            match.to(dev)
        return cls(model, te, info, match)

    @property
    def preprocess(self) -> PreprocessSpec:
        """The model's one image pipeline (the same as training and ``evaluate`` use)."""
        return self.model.preprocess

    def prepare(self, images) -> torch.Tensor:
        """PIL images or a normalised batch → ``[B, 3, S, S]`` at this model's image size."""
        return _prepare(self.preprocess, images)

    def encode(self, descriptions: dict[str, str]) -> EncodedTexts:
        descriptions = check_descriptions(descriptions)
        return self.text_encoder.encode(list(descriptions.values()))

    def adaptation(self, descriptions: dict[str, str], encoded: EncodedTexts | None = None,
                   states: torch.Tensor | None = None) -> Adaptation:
        """The meta-model's output for these classes (with autograd when ``states`` requires grad).
        Without autograd, each description's label embedding is kept, so an edit runs
        Tokens2Label on the edited description alone."""
        enc = encoded or self.encode(descriptions)
        dev = self.device
        st = states if states is not None else enc.states
        st, mask = st.to(dev), enc.mask.to(dev)
        labels = self._label_embeddings(enc, st, mask) if states is None and not torch.is_grad_enabled() else None
        return self.model.meta(st, mask, labels=labels)

    def _label_embeddings(self, enc: EncodedTexts, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[K, d]`` Tokens2Label outputs, computed only for descriptions not seen since the
        text path's parameters last changed (storage or in-place version)."""
        t2l = self.model.meta.tokens2label
        key = tuple((p.data_ptr(), p._version) for p in t2l.parameters()) + (t2l.training,)
        with self._labels_lock:
            if key != self._labels_key:
                self._labels, self._labels_key = OrderedDict(), key
            cache = self._labels
            found = {t: cache.get(t) for t in enc.texts}
        todo = [k for k, t in enumerate(enc.texts) if found[t] is None]
        if todo:
            rows = torch.tensor(todo, device=states.device)
            computed = t2l(states[rows], mask[rows])
            with self._labels_lock:               # as TextEncoder's cache: oldest first out, under a lock
                for k, v in zip(todo, computed):
                    found[enc.texts[k]] = cache[enc.texts[k]] = v
                while len(cache) > 4096:
                    cache.popitem(last=False)
        return torch.stack([found[t] for t in enc.texts])

    def sentence_head(self, descriptions: dict[str, str], kappa: float | None = None) -> SentenceHead:
        """The sentence match written for these classes (their order); needs a checkpoint
        with one (:attr:`match`)."""
        if self.match is None:
            raise SynthesisError("this checkpoint has no sentence match (train one: python -m n3core train-match)")
        texts = list(descriptions.values())
        vec, mask, sentences = sentence_bank(self.text_encoder, texts, self.match.cfg.max_sentences)
        dev = self.device
        return self.match.write(vec.to(dev), mask.to(dev), sentences, kappa)

    @torch.no_grad()
    def synthesize(self, descriptions: dict[str, str], *, layer_only: bool = False,
                   delta_from: dict[str, str] | None = None, swap: str = "both", share_backbone: bool = False,
                   kappa: float | None = None) -> SynthesizedClassifier:
        """``{class name: description}`` → :class:`SynthesizedClassifier` (K = number of classes).

        ``layer_only``: only the new classification layer this model writes, on the pretrained
        backbone: no ΔΘ, no sentence match (the language control's "no adaptation" arm). An
        fc-only model (``N3Config.mode``) writes nothing else in any case.
        ``delta_from`` (the language control): ΔΘ and the sentence match are written from
        these other descriptions (any number ≥ 2 of classes; the match gives class k the
        sentences of ``delta_from``'s class k, cycling when there are fewer) while the
        classification layer is still written from ``descriptions``; a network shaped by the
        task's words should then score lower. ``swap`` says which parts ``delta_from`` writes:
        ``"both"`` (ΔΘ and the match), ``"delta"`` (ΔΘ only; the match reads ``descriptions``)
        or ``"match"`` (the match only; ΔΘ is written from ``descriptions``).
        ``kappa``: the sentence match's weight in the logits (default: the checkpoint's).
        ``share_backbone``: a classifier with no ΔΘ uses this synthesizer's own backbone module
        instead of a copy (saves the copy's time and memory); the caller promises never to
        modify it (``export`` copies it anyway)."""
        t0 = time.perf_counter()
        if swap not in SWAPS:
            raise ValueError(f"swap must be one of {SWAPS}, got {swap!r}")
        enc = self.encode(descriptions)
        a = self.adaptation(descriptions, enc)
        if delta_from is not None and swap != "match" and a.delta and not layer_only:
            a = dataclasses.replace(a, delta=self.adaptation(delta_from).delta)
        adapt = bool(a.delta) and not layer_only
        source = self.model.backbone_module
        if share_backbone and not adapt:
            module = source
        else:   # the copy takes Θ' for adapted tensors directly (no copy of Θ to overwrite)
            module = clone_module(source, a.adapted_params(self.model.theta()) if adapt else {})
        words = None
        if self.match is not None and not layer_only:
            if delta_from is not None and swap != "delta":
                check_descriptions(delta_from)
                other = list(delta_from.values())
                words = self.sentence_head({c: other[k % len(other)] for k, c in enumerate(descriptions)}, kappa)
            else:
                words = self.sentence_head(descriptions, kappa)
        info = {"mode": "fc-only" if (layer_only or not (a.delta or words is not None)) else "full",
                "delta_from": sorted(delta_from) if delta_from is not None and (adapt or words is not None) else None,
                "swapped": swap if delta_from is not None and (adapt or words is not None) else None,
                "mu": float(a.mu), "backbone": self.config.backbone, "adapted_backbone": adapt,
                "sentence_match": {"kappa": words.kappa} if words is not None else None,
                "truncated": [list(descriptions)[t.index] for t in enc.truncated],
                "synthesis_ms": None}
        clf = SynthesizedClassifier(module, a.fc_weight, a.fc_bias, float(a.logit_scale), list(descriptions),
                                    self.preprocess, info, words=words)
        clf.info["synthesis_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return clf
