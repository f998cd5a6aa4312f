"""Frozen-backbone features of a photo set, computed once and kept on disk.

One cache for every stage that reads a frozen backbone: the fc-only stage (pooled features
of several views per photo), the sentence match (the last feature map), the frozen-feature
baselines and the encoder screen. View 0 is the whole photo as evaluation sees it
(``spec.normalize``); views 1… are augmented crops (``spec.augment``, drawn from a generator
seeded with ``seed``, view by view, batch by batch).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from tqdm.auto import tqdm

from .backbones import Backbone, feature_map, pool_map
from .imagecache import ImageCache, cache_path, load_array, save_array

__all__ = ["frozen_features"]


@torch.no_grad()
def frozen_features(backbone: Backbone, cache: ImageCache, *, views: int = 1, seed: int = 0, maps: bool = False,
                    device: str | torch.device = "cpu", tag: str = "", batch_size: int = 64,
                    progress: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pooled features ``[N, V, F]`` (fp32) of ``cache``'s photos and, with ``maps``, the map
    each was pooled from ``[N, V, C, h, w]`` (fp16); ``V = views``. Kept on disk keyed by the
    photos, views, seed, preprocessing, backbone and its weights (and ``tag``); a backbone with
    random weights is cached only when a ``tag`` names it."""
    if views < 1:
        raise ValueError(f"views must be at least 1, got {views}")
    module, spec = backbone.module.eval(), cache.spec
    parts = ([f"{r.path}|{getattr(r, 'bbox', None)}" for r in cache.records], views, seed, spec.to_dict(),
             backbone.name, backbone.weights_source, tag)
    keep = backbone.pretrained or bool(tag)
    paths = [cache_path(kind, *parts) for kind in ("frozen-pooled", "frozen-maps")]
    probe = feature_map(module, torch.zeros(1, 3, spec.image_size, spec.image_size, device=device))
    n = len(cache)
    shapes = [(n, views, backbone.feature_dim), (n, views, *probe.shape[1:])]
    if keep:
        pooled, fmaps = load_array(paths[0], shapes[0]), (load_array(paths[1], shapes[1]) if maps else None)
        if pooled is not None and (fmaps is not None or not maps):
            return torch.from_numpy(pooled), (torch.from_numpy(fmaps) if maps else None)
    pooled = np.empty(shapes[0], dtype=np.float32)
    fmaps = np.empty(shapes[1], dtype=np.float16) if maps else None
    gen = torch.Generator().manual_seed(seed)
    with tqdm(total=views * math.ceil(n / batch_size), desc="frozen features", disable=not progress,
              mininterval=5) as bar:
        for v in range(views):
            for s in range(0, n, batch_size):
                imgs = cache.images[s:s + batch_size]
                x = (spec.normalize(imgs) if v == 0 else spec.augment(imgs, gen)).to(device)
                if maps:
                    m = feature_map(module, x)
                    fmaps[s:s + batch_size, v] = m.half().cpu().numpy()
                    pooled[s:s + batch_size, v] = pool_map(module, m).float().cpu().numpy()
                else:
                    pooled[s:s + batch_size, v] = module(x).float().cpu().numpy()
                bar.update(1)
    if keep:
        save_array(paths[0], pooled)
        if maps:
            save_array(paths[1], fmaps)
    return torch.from_numpy(pooled), (torch.from_numpy(fmaps) if maps else None)
