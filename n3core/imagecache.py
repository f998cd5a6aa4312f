"""Decoded photos held in memory as one uint8 tensor, with tensor-side augmentation.

Decoding JPEGs costs more than a training step's worth of CPU on a 2-core machine, so a
data set is decoded once, resized to ``side × side`` and kept as ``[N, 3, side, side]``
uint8 (``.npy`` on disk under ``$N3_CACHE`` or ``~/.cache/n3``; no pickles). Augmentation
and evaluation resizing then run on tensors.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import ImageRecord, load_image

__all__ = ["ImageCache", "cache_dir", "save_array"]


def cache_dir() -> Path:
    return Path(os.environ.get("N3_CACHE", Path.home() / ".cache" / "n3"))


def save_array(path: Path, arr: np.ndarray) -> None:
    """Write ``arr`` to ``path`` (.npy) atomically: a temporary file, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)


class ImageCache:
    """``[N, 3, side, side]`` uint8 images for ``records`` (their order), built or reloaded."""

    def __init__(self, records: Sequence[ImageRecord], side: int = 192, *, use_disk: bool = True,
                 progress: bool = True):
        self.records, self.side = list(records), side
        key = hashlib.sha256(("\n".join(f"{r.path}|{r.bbox}" for r in self.records) + f"|{side}").encode()).hexdigest()[:16]
        path = cache_dir() / f"images-{side}-{key}.npy"
        arr = None
        if use_disk and path.exists():
            try:
                arr = np.load(path, allow_pickle=False, mmap_mode=None)
                if arr.shape != (len(self.records), 3, side, side):
                    arr = None
            except (OSError, ValueError):
                arr = None
        if arr is None:
            arr = np.empty((len(self.records), 3, side, side), dtype=np.uint8)
            for i, r in enumerate(tqdm(self.records, desc=f"decoding images ({side}px)", disable=not progress,
                                       mininterval=2)):
                im = load_image(r.path, bbox=r.bbox).resize((side, side), resample=3)
                arr[i] = np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
            if use_disk:
                save_array(path, arr)
        self.images = torch.from_numpy(arr)

    def __len__(self) -> int:
        return len(self.records)


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` → float, normalised."""
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x.float() / 255.0 - m) / s


def eval_batch(images: torch.Tensor, size: int, mean, std) -> torch.Tensor:
    """Whole image resized to ``size`` (the photos are already cropped to the bird)."""
    x = images.float()
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return normalize(x.clamp(0, 255), mean, std)


def augment_batch(images: torch.Tensor, size: int, mean, std, generator: torch.Generator,
                  scale=(0.4, 1.0), ratio=(3 / 4, 4 / 3), jitter: float = 0.2) -> torch.Tensor:
    """Random resized crop, horizontal flip and brightness/contrast/saturation jitter."""
    B, _, H, W = images.shape
    out = torch.empty(B, 3, size, size)
    r = torch.rand(B, 8, generator=generator)
    for i in range(B):
        area = H * W * (scale[0] + (scale[1] - scale[0]) * r[i, 0].item())
        logr = np.log(ratio[0]) + (np.log(ratio[1]) - np.log(ratio[0])) * r[i, 1].item()
        ar = float(np.exp(logr))
        w = int(round(min(W, np.sqrt(area * ar))))
        h = int(round(min(H, np.sqrt(area / ar))))
        x0 = int(r[i, 2].item() * (W - w + 1))
        y0 = int(r[i, 3].item() * (H - h + 1))
        crop = images[i:i + 1, :, y0:y0 + h, x0:x0 + w].float()
        crop = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
        if r[i, 4] < 0.5:
            crop = crop.flip(-1)
        if jitter > 0:
            b = 1 + jitter * (2 * r[i, 5].item() - 1)
            c = 1 + jitter * (2 * r[i, 6].item() - 1)
            s = 1 + jitter * (2 * r[i, 7].item() - 1)
            crop = crop * b
            crop = (crop - crop.mean()) * c + crop.mean()
            grey = crop.mean(0, keepdim=True)
            crop = (crop - grey) * s + grey
        out[i] = crop.clamp(0, 255)
    return normalize(out, mean, std)
