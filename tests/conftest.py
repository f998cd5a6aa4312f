"""Shared fixtures. The real weights and the shared CUB photos are required: a missing
data folder fails the suite loudly rather than skipping it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from n3core import runtime

ROOT = Path(__file__).resolve().parent.parent
runtime.setup()      # what every entry point opts into: offline mode, malloc tuning
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def data_root() -> Path:
    from n3core.data import resolve_data_root

    return resolve_data_root(None)


@pytest.fixture(scope="session")
def cub(data_root):
    from n3core.data import read_cub

    return read_cub(data_root)


@pytest.fixture(scope="session")
def lite0():
    from n3core.backbones import create_backbone

    return create_backbone("efficientnet_lite0")


@pytest.fixture(scope="session")
def text_encoder():
    from n3core.text import TextEncoder

    return TextEncoder()


def make_tiny_backbone(seed: int = 0):
    """A 2-conv CNN with BatchNorm, wrapped as a registry Backbone (feature size 8)."""
    from n3core.backbones import Backbone, Preprocess, adaptable_tensors

    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                      nn.Conv2d(4, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with torch.no_grad():
        for mod in m:
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.1)
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return Backbone(name="tiny", module=m, tensors=adaptable_tensors(m), feature_dim=8,
                    preprocess=Preprocess(input_size=16, mean=(0.5,) * 3, std=(0.5,) * 3),
                    pretrained=False, weights_source="random")


def tiny_config(**kw):
    from n3core.meta import N3Config

    base = dict(backbone="tiny", text_dim=12, feature_dim=8, d_model=16, n_heads=2, dropout=0.0,
                token_dropout=0.0, image_size=16)
    base.update(kw)
    return N3Config(**base)


@pytest.fixture
def tiny_backbone():
    return make_tiny_backbone()


@pytest.fixture(scope="session")
def small_split(data_root, tmp_path_factory):
    """A 5 / 3 / 3-class split of ss0 as a .json path, for quick training runs."""
    import json

    from n3core.data import load_split

    s = load_split(data_root, "ss0")
    p = tmp_path_factory.mktemp("split") / "small.json"
    p.write_text(json.dumps({"train": s["train"][:5], "val": s["val"][:3], "test": s["test"][:3]}))
    return str(p)
