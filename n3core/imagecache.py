"""Decoded photos held in memory as one uint8 tensor, with tensor-side augmentation.

Decoding JPEGs costs more than a training step's worth of CPU on a 2-core machine, so a
data set is decoded once through :meth:`PreprocessSpec.to_uint8 <n3core.preprocess.PreprocessSpec.to_uint8>`
and kept as ``[N, 3, S, S]`` uint8 (``.npy`` on disk under ``$N3_CACHE`` or ``~/.cache/n3``;
no pickles). Normalisation and augmentation then run on tensors, through the same spec.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import ImageRecord, load_image
from .preprocess import PreprocessSpec

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
    """``[N, 3, S, S]`` uint8 images for ``records`` (their order), decoded by ``spec``
    (``S = spec.cache_side``), built or reloaded."""

    def __init__(self, records: Sequence[ImageRecord], spec: PreprocessSpec, *, use_disk: bool = True,
                 progress: bool = True):
        self.records, self.spec = list(records), spec
        self.side = side = spec.cache_side
        pixels = f"|{side}|{spec.interpolation}|{spec.crop_pct}"
        key = hashlib.sha256(("\n".join(f"{r.path}|{r.bbox}" for r in self.records) + pixels).encode()).hexdigest()[:16]
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
                arr[i] = spec.to_uint8(load_image(r.path, bbox=r.bbox)).numpy()
            if use_disk:
                save_array(path, arr)
        self.images = torch.from_numpy(arr)

    def __len__(self) -> int:
        return len(self.records)
