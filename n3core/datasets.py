"""Where a data set's photos, descriptions and class split come from, including presets for
the paper's settings.

A data folder is either the **CUB-200-2011 layout** (``classes.txt`` … in the folder or in
its ``CUB_200_2011/``; descriptions in ``descriptions/<set>.json``; splits in
``splits/<name>.json``) or the **image-folder layout** (one sub-folder of photos per class and
a ``descriptions.json`` beside them). :func:`read_images` tells them apart.

A split is named by a file (``ss0`` → ``splits/ss0.json``, or a path to a ``.json``) or by a
preset, ``preset:<name>``: the classes found in the folder, sorted, shuffled with the preset's
seed and cut into train / val / test counts. The same folder always gives the same split, so
``train`` and ``evaluate`` agree, and the checkpoint records the class lists.

| preset | data set (layout) | train / val / test classes |
| --- | --- | --- |
| ``cub200`` | full CUB-200-2011 (CUB layout) | 100 / 50 / 50 |
| ``awa2`` | Animals with Attributes 2 (image folder) | 27 / 13 / 10 |
| ``flowers`` | Oxford Flowers-102 species (image folder) | 62 / 20 / 20 |
| ``nab`` | NABirds (image folder; leaf classes) | 60% / 20% / 20% |
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from .data import DataError, ImageSet, load_split, read_cub, read_image_folder

__all__ = ["Preset", "PRESETS", "read_images", "resolve_split", "preset_split"]


@dataclass(frozen=True)
class Preset:
    name: str
    dataset: str
    layout: str                     # "cub" or "folder"
    counts: tuple                   # (train, val, test): ints, or fractions summing to 1
    seed: int = 0

    def sizes(self, n_classes: int) -> tuple[int, int, int]:
        if all(isinstance(c, int) for c in self.counts):
            sizes = tuple(self.counts)
        else:
            tr, va = (round(f * n_classes) for f in self.counts[:2])
            sizes = (tr, va, n_classes - tr - va)
        if sum(sizes) != n_classes:
            raise DataError(f"preset {self.name!r} ({self.dataset}) splits {sum(sizes)} classes "
                            f"{'/'.join(map(str, sizes))}, but the folder has {n_classes}")
        return sizes


PRESETS = {p.name: p for p in (
    Preset("cub200", "CUB-200-2011, all 200 species", "cub", (100, 50, 50)),
    Preset("awa2", "Animals with Attributes 2, 50 classes", "folder", (27, 13, 10)),
    Preset("flowers", "Oxford Flowers-102, 102 species", "folder", (62, 20, 20)),
    Preset("nab", "NABirds, leaf classes", "folder", (0.6, 0.2, 0.2)),
)}


def is_cub_layout(root: str | Path) -> bool:
    root = Path(root)
    return (root / "classes.txt").exists() or (root / "CUB_200_2011" / "classes.txt").exists()


def read_images(root: str | Path) -> ImageSet:
    """Every photo of the data folder, from whichever layout it has."""
    return read_cub(root) if is_cub_layout(root) else read_image_folder(root)


def preset_split(preset: Preset, classes: list[str]) -> dict[str, list[str]]:
    """The preset's split of ``classes`` (deterministic: sorted, then shuffled with its seed)."""
    tr, va, te = preset.sizes(len(classes))
    order = sorted(classes)
    random.Random(preset.seed).shuffle(order)
    return {"train": order[:tr], "val": order[tr:tr + va], "test": order[tr + va:]}


def resolve_split(root: str | Path, name: str, images: ImageSet | None = None) -> dict[str, list[str]]:
    """``name`` = a split file name or path, or ``preset:<name>``."""
    if name.startswith("preset:"):
        key = name.split(":", 1)[1]
        if key not in PRESETS:
            raise DataError(f"unknown preset {key!r}; choose one of {', '.join(PRESETS)}")
        preset = PRESETS[key]
        layout = "cub" if is_cub_layout(root) else "folder"
        if layout != preset.layout:
            raise DataError(f"preset {key!r} expects the {preset.layout} layout, but {root} has the {layout} layout")
        images = images or read_images(root)
        return preset_split(preset, images.classes)
    return load_split(root, name)
