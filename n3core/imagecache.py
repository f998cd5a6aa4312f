"""Decoded photos held in memory as one uint8 tensor, with tensor-side augmentation.

Decoding JPEGs costs more than a training step's worth of CPU on a 2-core machine, so a
data set is decoded once through :meth:`PreprocessSpec.to_uint8 <n3core.preprocess.PreprocessSpec.to_uint8>`
and kept as ``[N, 3, S, S]`` uint8 (``.npy`` on disk under ``$N3_CACHE`` or ``~/.cache/n3``;
no pickles). Normalisation and augmentation then run on tensors, through the same spec.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import ImageRecord, load_image
from .preprocess import PreprocessSpec

__all__ = ["ImageCache", "cache_dir", "cache_path", "load_array", "save_array"]


def cache_dir() -> Path:
    return Path(os.environ.get("N3_CACHE", Path.home() / ".cache" / "n3"))


def save_array(path: Path, arr: np.ndarray) -> None:
    """Write ``arr`` to ``path`` (.npy) atomically: a temporary file, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)


def cache_path(kind: str, *parts) -> Path:
    """Where an array computed from ``parts`` lives: ``<cache_dir>/<kind>-<key>.npy``, the key a
    hash of the parts as JSON. The one keying rule of every on-disk cache (photos, frozen
    features, feature maps): a change to anything the array depends on is a new file."""
    key = hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"{kind}-{key}.npy"


def load_array(path: Path, shape: tuple | None = None) -> np.ndarray | None:
    """The cached array at ``path``, or None when it is missing, unreadable (a killed write
    leaves only a temporary file, but a disk can still corrupt one) or of another shape."""
    if not path.exists():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return arr if shape is None or arr.shape == tuple(shape) else None


class ImageCache:
    """``[N, 3, S, S]`` uint8 images for ``records`` (their order), decoded by ``spec``
    (``S = spec.cache_side``), built or reloaded."""

    def __init__(self, records: Sequence[ImageRecord], spec: PreprocessSpec, *, use_disk: bool = True,
                 progress: bool = True):
        self.records, self.spec = list(records), spec
        side = spec.cache_side
        path = cache_path(f"images-{side}", [f"{r.path}|{r.bbox}" for r in self.records], spec.to_dict())
        arr = load_array(path, (len(self.records), 3, side, side)) if use_disk else None
        if arr is None:
            arr = np.empty((len(self.records), 3, side, side), dtype=np.uint8)
            for i, r in enumerate(tqdm(self.records, desc=f"decoding images ({side}px)", disable=not progress,
                                       mininterval=2)):
                arr[i] = spec.to_uint8(load_image(r.path, bbox=r.bbox)).numpy()
            if use_disk:
                save_array(path, arr)
        self.images = torch.from_numpy(arr)

    def __len__(self) -> int:
        return len(self.records)
