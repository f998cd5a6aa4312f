"""Backbone registry: real ImageNet weights, column views, preprocessing."""
from __future__ import annotations

import logging

import pytest
import torch

from n3core.backbones import BackboneError, available_backbones, create_backbone
from n3core.data import load_image
from n3core.preprocess import PreprocessSpec

# CUB species that ImageNet-1k knows, and the ImageNet class each should get.
KNOWN = {
    "047.American_Goldfinch": "goldfinch", "048.European_Goldfinch": "goldfinch",
    "014.Indigo_Bunting": "indigo bunting", "073.Blue_Jay": "jay",
    "100.Brown_Pelican": "pelican", "101.White_Pelican": "pelican",
    "001.Black_footed_Albatross": "albatross", "087.Mallard": "drake",
}


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names, offline, from torchvision's weight metadata."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def test_registry_lists_all():
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "resnet18"} <= set(available_backbones())
    assert [create_backbone(f"efficientnet_lite{v}", pretrained=False).preprocess.input_size for v in (1, 2)] == [240, 260]
    with pytest.raises(BackboneError, match="unknown backbone"):
        create_backbone("vgg99")


def test_lite0_tensors_and_columns(lite0):
    names = [t.name for t in lite0.tensors]
    params = dict(lite0.module.named_parameters())
    assert names[0] == "conv_stem.weight" and names[-1] == "bn2.bias"
    assert set(names) == set(params), "every conv and BN parameter is adaptable, nothing else"
    assert sum(t.numel for t in lite0.tensors) == sum(p.numel() for p in params.values())
    by = {t.name: t for t in lite0.tensors}
    stem = by["conv_stem.weight"]
    assert (stem.n_columns, stem.column_size) == (32, 27)
    dw = by["blocks.1.0.conv_dw.weight"]          # depthwise [C, 1, 3, 3]: C columns of 9
    assert dw.column_size == 9 and dw.n_columns == params[dw.name].shape[0]
    bn = by["bn1.weight"]
    assert (bn.n_columns, bn.column_size) == (32, 1)
    w = params[stem.name]
    assert torch.equal(stem.from_columns(stem.view_as_columns(w)), w)
    assert torch.equal(stem.view_as_columns(w)[5], w[5].flatten()), "column j is output channel j"
    assert lite0.feature_dim == 1280 and lite0.preprocess.mean == (0.5,) * 3 == lite0.preprocess.std


def test_lite0_features_and_frozen(lite0):
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        f = lite0.module(x)
    assert f.shape == (2, 1280)
    assert not any(p.requires_grad for p in lite0.module.parameters())
    assert not lite0.module.training


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_lite_imagenet_sanity_on_real_cub_photos(cub, name):
    """The mapped weights are real and the preprocessing right: CUB photos of species
    ImageNet knows get their ImageNet class in the top 5 (at least 80% of them)."""
    bb = create_backbone(name, keep_imagenet_head=True)
    names = imagenet_class_names()
    spec = PreprocessSpec.for_backbone(bb, crop_pct=bb.preprocess.crop_pct)    # timm's ImageNet evaluation
    hits, total, per = 0, 0, {}
    for cls, target in KNOWN.items():
        t = names.index(target)
        recs = [cub.records[i] for i in cub.indices(cls)]
        x = spec.pil_batch([load_image(r.path) for r in recs])
        with torch.no_grad():
            top5 = bb.imagenet_head(bb.module(x)).topk(5, dim=1).indices
        h = int((top5 == t).any(1).sum())
        per[cls] = h / len(recs)
        hits, total = hits + h, total + len(recs)
    assert total > 300
    assert hits / total >= 0.80, per
    # and shuffled weights break it: the test can fail
    bad = create_backbone(name, pretrained=False, keep_imagenet_head=True)
    recs = [cub.records[i] for i in cub.indices("047.American_Goldfinch")][:16]
    x = spec.pil_batch([load_image(r.path) for r in recs])
    with torch.no_grad():
        top5 = bad.imagenet_head(bad.module(x)).topk(5, dim=1).indices
    assert (top5 == names.index("goldfinch")).any(1).float().mean() < 0.5


def test_resnet18_random_is_loud(caplog):
    with caplog.at_level(logging.WARNING):
        bb = create_backbone("resnet18")
    assert "RANDOM" in caplog.text
    assert not bb.pretrained and bb.feature_dim == 512
    with torch.no_grad():
        assert bb.module(torch.randn(1, 3, 64, 64)).shape == (1, 512)
    assert all(t.kind in ("conv", "bn_weight", "bn_bias") for t in bb.tensors)
    assert not any("fc" in t.name for t in bb.tensors)


def test_resnet18_weights_file(tmp_path):
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    torch.manual_seed(3)
    ref = resnet18(weights=None)
    p = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(p))
    bb = create_backbone("resnet18", weights=p, keep_imagenet_head=True)
    assert bb.pretrained and bb.weights_source == str(p)
    assert torch.equal(bb.module.conv1.weight, ref.conv1.weight)
    pth = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), pth)
    assert torch.equal(create_backbone("resnet18", weights=pth).module.layer1[0].conv1.weight,
                       ref.layer1[0].conv1.weight)


def test_wrong_weights_file_is_a_clear_error(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "bad.safetensors"
    save_file({"nope": torch.zeros(3)}, str(p))
    with pytest.raises(BackboneError, match="does not fit resnet18"):
        create_backbone("resnet18", weights=p)
    with pytest.raises(BackboneError, match="not found"):
        create_backbone("resnet18", weights=tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a pickle at all")
    with pytest.raises(BackboneError, match="could not read"):
        create_backbone("efficientnet_lite0", weights=junk)


def test_preprocess_transforms(lite0):
    from PIL import Image

    spec = PreprocessSpec.for_backbone(lite0, 160)
    im = Image.new("RGB", (300, 200), (255, 0, 0))
    x = spec.pil_batch(im)[0]
    assert x.shape == (3, 160, 160)
    assert torch.equal(x[0], torch.ones(160, 160)) and torch.equal(x[1], -torch.ones(160, 160))   # (1 - 0.5) / 0.5
    y = spec.augment(spec.to_uint8(im)[None], torch.Generator().manual_seed(0))
    assert y.shape == (1, 3, 160, 160)
    assert torch.equal(spec.denormalize(x)[0], torch.ones(160, 160))
