"""Descriptions → a working classifier.

    synth = Synthesizer.from_checkpoint("checkpoints/n3-effl0-minilm-ss0")
    clf = synth.synthesize({"Blue Jay": "A crested jay, bright blue above ...", ...})
    probs = clf.predict([pil_image, ...])          # [B, K]
    clf.export("blue_things.pt")                   # TorchScript; runs with torch alone

:class:`SynthesizedClassifier` is a plain ``nn.Module`` with Θ' merged into its own copy of
the backbone and the K-way layer attached: its per-image cost is the backbone's, with no
meta-model work per image.
"""
from __future__ import annotations

import copy
import json
import time
import unicodedata
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import Backbone, create_backbone
from .checkpoint import CheckpointError, load_checkpoint
from .meta import Adaptation, N3Config, N3Model, SynthesisError
from .text import EncodedTexts, TextEncoder

__all__ = ["Synthesizer", "SynthesizedClassifier", "check_descriptions", "prepare_images"]


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
        key = unicodedata.normalize("NFKC", name).strip().casefold()
        if key in seen:
            raise SynthesisError(f"duplicate class name: {name!r} and {seen[key]!r}")
        seen[key] = name
        if not isinstance(text, str):
            raise SynthesisError(f"the description of {name!r} is not text")
        if not text.strip():
            raise SynthesisError(f"the description of {name!r} is empty")
    return dict(descriptions)


def image_transform(size: int, mean, std):
    """PIL image → normalised ``[3, size, size]``: resize the short side, centre crop."""
    from torchvision import transforms as T

    return T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BILINEAR), T.CenterCrop(size),
                      T.ToTensor(), T.Normalize(mean, std)])


def prepare_images(images, size: int, mean, std) -> torch.Tensor:
    """PIL images (or one), or an already normalised ``[B, 3, S, S]`` tensor → ``[B, 3, S, S]``."""
    if isinstance(images, torch.Tensor):
        return images if images.dim() == 4 else images.unsqueeze(0)
    from PIL import Image

    if isinstance(images, Image.Image):
        images = [images]
    tf = image_transform(size, mean, std)
    return torch.stack([tf(im.convert("RGB")) for im in images])


class SynthesizedClassifier(nn.Module):
    """A K-way image classifier: adapted backbone + new classification layer.

    ``forward(x)``: normalised images ``[B, 3, S, S]`` → logits ``[B, K]``.
    ``predict(images)``: PIL images or a normalised batch → probabilities ``[B, K]``.
    """

    def __init__(self, backbone_module: nn.Module, fc_weight: torch.Tensor, fc_bias: torch.Tensor,
                 logit_scale: float, cosine: bool, class_names: Sequence[str], preprocess: dict, image_size: int,
                 info: dict | None = None, feature_center: torch.Tensor | None = None):
        super().__init__()
        self.backbone = backbone_module
        center = feature_center.detach().clone() if feature_center is not None else torch.zeros(fc_weight.shape[1])
        self.register_buffer("center", center)
        w = F.normalize(fc_weight, dim=-1) * logit_scale if cosine else fc_weight
        self.fc = nn.Linear(fc_weight.shape[1], fc_weight.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(w)
            self.fc.bias.copy_(fc_bias)
        self.cosine = cosine
        self.class_names = list(class_names)
        self.preprocess = dict(preprocess)
        self.image_size = int(image_size)
        self.info = dict(info or {})
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return self.fc.weight.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[B, F]`` → logits ``[B, K]``."""
        features = features - self.center
        if self.cosine:
            features = F.normalize(features, dim=-1)
        return self.fc(features)

    def transform(self):
        """PIL image → normalised tensor ``[3, S, S]``: resize the short side, centre crop."""
        return image_transform(self.image_size, self.preprocess["mean"], self.preprocess["std"])

    def prepare(self, images) -> torch.Tensor:
        """PIL images (or one), or an already normalised ``[B, 3, S, S]`` tensor → batch tensor."""
        return prepare_images(images, self.image_size, self.preprocess["mean"], self.preprocess["std"])

    @torch.no_grad()
    def predict(self, images, batch_size: int = 64) -> torch.Tensor:
        x = self.prepare(images)
        out = [self(x[s:s + batch_size].to(self.device)).softmax(-1).cpu() for s in range(0, len(x), batch_size)]
        return torch.cat(out)

    def export(self, path: str | Path) -> Path:
        """Write a TorchScript file that ``torch.jit.load`` runs with torch alone. Its extra file
        ``n3.json`` holds the class names and preprocessing (mean, std, image size)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        model = copy.deepcopy(self).cpu().eval()
        example = torch.zeros(1, 3, self.image_size, self.image_size)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, example, check_trace=False)
        meta = {"format": "n3-synthesized-classifier", "class_names": self.class_names,
                "image_size": self.image_size, "mean": list(self.preprocess["mean"]),
                "std": list(self.preprocess["std"]), "resize": "short side to image_size, centre crop",
                "output": "logits [B, K]; softmax for probabilities", **self.info}
        tmp = path.with_name(path.name + ".tmp")
        torch.jit.save(traced, str(tmp), _extra_files={"n3.json": json.dumps(meta)})
        tmp.replace(path)
        return path


class Synthesizer:
    """A loaded N3 model (backbone, text encoder, meta-model) that turns descriptions into
    classifiers. Thread-safe for concurrent ``synthesize`` calls: nothing shared is mutated."""

    def __init__(self, model: N3Model, text_encoder: TextEncoder, info: dict | None = None):
        self.model = model.eval()
        self.text_encoder = text_encoder
        self.info = info or {}

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
        weights, info, _ = load_checkpoint(directory)
        try:
            cfg = N3Config.from_dict(info["config"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{directory}: bad config in checkpoint.json ({e})") from e
        bb = backbone or create_backbone(cfg.backbone, weights=backbone_weights)
        sig = info.get("backbone")
        if sig and sig != bb.signature():
            raise CheckpointError(f"{directory} was trained on backbone {sig.get('name')!r} with other tensors; "
                                  f"it cannot be used with {bb.name!r}")
        if bb.name != cfg.backbone:
            raise CheckpointError(f"{directory} is for backbone {cfg.backbone!r}, not {bb.name!r}")
        te = text_encoder or TextEncoder(max_length=cfg.text_max_length)
        if te.dim != cfg.text_dim:
            raise CheckpointError(f"{directory} expects {cfg.text_dim}-d token states; the text encoder gives {te.dim}")
        model = N3Model(cfg, bb)
        try:
            model.meta.load_state_dict(weights, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"{directory}: weights do not fit the saved config ({e})") from e
        from .train import pick_device

        dev = pick_device(device)
        model.to(dev)
        bb.module.to(dev)
        return cls(model, te, info)

    def prepare(self, images) -> torch.Tensor:
        """PIL images or a normalised batch → ``[B, 3, S, S]`` at this model's image size."""
        p = self.backbone.preprocess
        return prepare_images(images, self.config.image_size, p.mean, p.std)

    def encode(self, descriptions: dict[str, str]) -> EncodedTexts:
        descriptions = check_descriptions(descriptions)
        return self.text_encoder.encode(list(descriptions.values()))

    def adaptation(self, descriptions: dict[str, str], encoded: EncodedTexts | None = None,
                   states: torch.Tensor | None = None) -> Adaptation:
        """The meta-model's output for these classes (with autograd when ``states`` requires grad)."""
        enc = encoded or self.encode(descriptions)
        dev = self.device
        st = states if states is not None else enc.states
        return self.model.meta(st.to(dev), enc.mask.to(dev))

    @torch.no_grad()
    def synthesize(self, descriptions: dict[str, str], *, mode: str | None = None) -> SynthesizedClassifier:
        """``{class name: description}`` → :class:`SynthesizedClassifier` (K = number of classes).

        ``mode="fc-only"`` drops ΔΘ and keeps only the new classification layer."""
        t0 = time.perf_counter()
        enc = self.encode(descriptions)
        a = self.adaptation(descriptions, enc)
        module = copy.deepcopy(self.model.backbone_module)
        if a.delta and mode != "fc-only":
            params = dict(module.named_parameters())
            for name, value in a.adapted_params(self.model.theta()).items():
                params[name].data.copy_(value)
        info = {"mode": "fc-only" if (mode == "fc-only" or not a.delta) else "full",
                "mu": float(a.mu), "backbone": self.config.backbone,
                "truncated": [list(descriptions)[t.index] for t in enc.truncated],
                "synthesis_ms": None}
        clf = SynthesizedClassifier(module, a.fc_weight, a.fc_bias, float(a.logit_scale), a.cosine,
                                    list(descriptions), self.backbone.preprocess.to_dict(), self.config.image_size, info,
                                    feature_center=a.feature_center)
        clf.info["synthesis_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return clf
