"""The one image pipeline: how a photo becomes the tensor a model sees, in training and after.

A :class:`PreprocessSpec` is built from a backbone's pretrained config (mean, std,
interpolation: timm's) and the model's image size, as open_clip's ``PreprocessCfg`` yields
its train and eval transforms. Everything that turns photos into tensors goes through it:

* :meth:`PreprocessSpec.to_uint8` — PIL image → ``[3, S, S]`` uint8: the central square
  (times ``crop_pct``) resized to ``S = image_size`` with the backbone's interpolation. The
  photo cache (:class:`n3core.imagecache.ImageCache`), ``SynthesizedClassifier.predict``, the
  app, explain and export all start here, so the same photo gives the same pixels everywhere.
* :meth:`PreprocessSpec.normalize` — uint8 ``[B, 3, S, S]`` → normalised float: the eval
  transform on tensors (training's validation, ``evaluate``, baselines, predict).
* :meth:`PreprocessSpec.augment` — uint8 ``[B, 3, S, S]`` → an augmented normalised batch
  (random resized crop, flip, colour jitter): training only.

The photo cache is kept at :attr:`PreprocessSpec.cache_side` = ``image_size``, so evaluation
never resizes a cached photo again (earlier versions cached test photos at 192 px and
upsampled them, and ``predict`` resized with another filter: three pipelines for one model).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["PreprocessSpec"]

_PIL_FILTERS = {"bicubic": 3, "bilinear": 2, "nearest": 0}     # PIL.Image.Resampling values


@dataclass(frozen=True)
class PreprocessSpec:
    """How photos become model inputs for one backbone at one image size.

    ``crop_pct``: the side of the central square kept, as a fraction of the photo's short side
    (1.0: the whole square; CUB photos are already cropped to the bird). ``train_scale`` /
    ``train_ratio``: the random resized crop's area fraction and aspect range; ``jitter``: the
    brightness / contrast / saturation range of training augmentation.
    """

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    crop_pct: float = 1.0
    train_scale: tuple[float, float] = (0.4, 1.0)
    train_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    jitter: float = 0.2

    def __post_init__(self):
        if self.interpolation not in _PIL_FILTERS:
            raise ValueError(f"interpolation must be one of {sorted(_PIL_FILTERS)}, got {self.interpolation!r}")
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct must lie in (0, 1], got {self.crop_pct}")
        if self.image_size < 8:
            raise ValueError(f"image_size must be at least 8, got {self.image_size}")

    @classmethod
    def for_backbone(cls, backbone, image_size: int | None = None, **overrides) -> "PreprocessSpec":
        """The spec of ``backbone`` (a :class:`~n3core.backbones.Backbone`) at ``image_size``
        (default: the backbone's pretrained input size). ``overrides`` set other fields
        (``crop_pct=backbone.preprocess.crop_pct`` gives timm's ImageNet evaluation)."""
        pre = backbone.preprocess
        return cls(image_size=int(image_size or pre.input_size), mean=tuple(pre.mean), std=tuple(pre.std),
                   interpolation=pre.interpolation, **overrides)

    @property
    def cache_side(self) -> int:
        """The side photos are decoded and cached at: the image size itself."""
        return self.image_size

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessSpec":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    # ------------------------------------------------------------------ PIL → uint8
    def to_uint8(self, image) -> torch.Tensor:
        """PIL image → ``[3, S, S]`` uint8: the central square of side ``crop_pct`` × the short
        side, resized to ``S`` with :attr:`interpolation`."""
        im = image if image.mode == "RGB" else image.convert("RGB")
        w, h = im.size
        c = min(w, h) * self.crop_pct
        box = ((w - c) / 2, (h - c) / 2, (w + c) / 2, (h + c) / 2)
        S = self.image_size
        im = im.resize((S, S), resample=_PIL_FILTERS[self.interpolation], box=box)
        return torch.from_numpy(np.ascontiguousarray(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)))

    def pil_batch(self, images) -> torch.Tensor:
        """PIL images (or one) → normalised ``[B, 3, S, S]``: the eval transform for PIL images."""
        from PIL import Image

        if isinstance(images, Image.Image):
            images = [images]
        return self.normalize(torch.stack([self.to_uint8(im) for im in images]))

    # ------------------------------------------------------------------ tensors
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or 0–255 float) ``[B, 3, H, W]`` → normalised float ``[B, 3, S, S]``; resized
        only when ``H, W`` differ from ``S`` (a cache of another side)."""
        x = images.float()
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size,) * 2, mode="bilinear", antialias=True,
                              align_corners=False).clamp(0, 255)
        m = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
        s = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
        return (x / 255.0 - m) / s

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``[..., 3, H, W]`` → RGB in [0, 1] for display."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(3, 1, 1)
        return (x * std + mean).clamp(0, 1)

    def augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """uint8 ``[B, 3, H, W]`` → augmented, normalised ``[B, 3, S, S]``: random resized crop
        (area ``train_scale``, aspect ``train_ratio``), horizontal flip, brightness / contrast /
        saturation jitter. Every draw comes from ``generator``."""
        B, _, H, W = images.shape
        S = self.image_size
        out = torch.empty(B, 3, S, S)
        r = torch.rand(B, 8, generator=generator)
        lo, hi = self.train_scale
        lr0, lr1 = np.log(self.train_ratio[0]), np.log(self.train_ratio[1])
        for i in range(B):
            area = H * W * (lo + (hi - lo) * r[i, 0].item())
            ar = float(np.exp(lr0 + (lr1 - lr0) * r[i, 1].item()))
            w = int(round(min(W, np.sqrt(area * ar))))
            h = int(round(min(H, np.sqrt(area / ar))))
            x0 = int(r[i, 2].item() * (W - w + 1))
            y0 = int(r[i, 3].item() * (H - h + 1))
            crop = images[i:i + 1, :, y0:y0 + h, x0:x0 + w].float()
            crop = F.interpolate(crop, size=(S, S), mode="bilinear", antialias=True, align_corners=False)[0]
            if r[i, 4] < 0.5:
                crop = crop.flip(-1)
            if self.jitter > 0:
                j = self.jitter
                b, c, s = (1 + j * (2 * r[i, k].item() - 1) for k in (5, 6, 7))
                crop = crop * b
                crop = (crop - crop.mean()) * c + crop.mean()
                grey = crop.mean(0, keepdim=True)
                crop = (crop - grey) * s + grey
            out[i] = crop.clamp(0, 255)
        return self.normalize(out)
