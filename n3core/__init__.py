"""N3: turn plain-language class descriptions into an image classifier.

Public API::

    from n3core import Synthesizer
    clf = Synthesizer.from_checkpoint("checkpoints/n3-effl0-minilm-ss0").synthesize({name: text, ...})
    probs = clf.predict(images)            # [B, K]

Building blocks: :func:`create_backbone`, :class:`TextEncoder`, :class:`N3Config`,
:class:`N3Model`, :func:`train`, :func:`evaluate_protocol`, and the readers in
:mod:`n3core.data`.
"""
from .backbones import Backbone, available_backbones, create_backbone
from .meta import N3Config, N3Model, SynthesisError
from .synthesize import SynthesizedClassifier, Synthesizer
from .text import TextEncoder

__version__ = "0.1.0"

__all__ = ["Backbone", "N3Config", "N3Model", "SynthesisError", "SynthesizedClassifier", "Synthesizer",
           "TextEncoder", "available_backbones", "create_backbone", "__version__"]
