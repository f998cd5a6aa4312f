"""The one image pipeline (n3core.preprocess) and the photo cache built on it."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from n3core.imagecache import ImageCache, cache_path, load_array, save_array
from n3core.preprocess import PreprocessSpec

SPEC = PreprocessSpec(image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)


def test_pil_and_cached_paths_give_the_same_tensor(cub, tmp_path, monkeypatch):
    """A photo through the cache (uint8 on disk, normalised on tensors) and through the PIL
    eval transform is the same tensor, bit for bit."""
    monkeypatch.setenv("N3_CACHE", str(tmp_path))
    from n3core.data import load_image

    recs = [cub.records[i] for i in range(0, 40, 8)]
    cache = ImageCache(recs, SPEC, progress=False)
    again = ImageCache(recs, SPEC, progress=False)            # reloaded from disk
    assert torch.equal(cache.images, again.images) and cache.images.shape == (5, 3, 32, 32)
    direct = SPEC.pil_batch([load_image(r.path, bbox=r.bbox) for r in recs])
    assert torch.equal(SPEC.normalize(cache.images), direct)


def test_the_central_square_is_kept_and_resized():
    im = Image.new("RGB", (300, 100), (0, 0, 0))
    im.paste((255, 255, 255), (100, 0, 200, 100))            # the central 100×100 square is white
    x = SPEC.to_uint8(im)
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8
    # white inside; only the bicubic kernel's reach at the two edges sees the black beyond the box
    assert int(x[:, :, 1:-1].min()) == 255 and int(x.min()) > 200
    half = PreprocessSpec(image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=0.5)
    assert int(half.to_uint8(Image.new("L", (64, 64), 7)).max()) == 7      # grey converted, constant kept


def test_augment_is_seeded_and_normalised():
    x = torch.randint(0, 256, (4, 3, 40, 40), dtype=torch.uint8)
    a = SPEC.augment(x, torch.Generator().manual_seed(3))
    b = SPEC.augment(x, torch.Generator().manual_seed(3))
    c = SPEC.augment(x, torch.Generator().manual_seed(4))
    assert a.shape == (4, 3, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= -1.0 and float(a.max()) <= 1.0


def test_spec_round_trips_and_refuses_bad_values():
    assert PreprocessSpec.from_dict(SPEC.to_dict()) == SPEC
    with pytest.raises(ValueError, match="interpolation"):
        PreprocessSpec(image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="lanczos9")
    with pytest.raises(ValueError, match="crop_pct"):
        PreprocessSpec(image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=0.0)


def test_cache_files_are_keyed_by_everything_they_depend_on(tmp_path, monkeypatch):
    monkeypatch.setenv("N3_CACHE", str(tmp_path))
    p = cache_path("feats", ["a.jpg"], SPEC.to_dict())
    assert p == cache_path("feats", ["a.jpg"], SPEC.to_dict()) and p.parent == tmp_path
    assert p != cache_path("feats", ["a.jpg"], PreprocessSpec.from_dict({**SPEC.to_dict(), "image_size": 64}).to_dict())
    assert p != cache_path("feats", ["b.jpg"], SPEC.to_dict())
    assert load_array(p) is None                                        # missing
    save_array(p, np.ones((2, 3), dtype=np.float32))
    assert load_array(p, (2, 3)).sum() == 6 and load_array(p, (3, 2)) is None   # another shape: recompute
    p.write_bytes(b"not an array")
    assert load_array(p) is None                                        # corrupt: recompute, never crash
