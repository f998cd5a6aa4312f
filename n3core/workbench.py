"""The interactive session behind the app, without any UI: one loaded pair of models (full
adaptation and fc-only), the class set a person edits, and every action the app offers.

    wb = Workbench.load()                                # shipped checkpoints, GPU if present
    syn = wb.synthesize({"Blue Jay": "...", ...})         # both classifiers, cached by content
    probs = wb.classify(syn, [pil_image])                 # {"full": [B, K], "fc-only": [B, K]}
    report = wb.evaluate_batch(syn, images, labels)       # per-class accuracy + confusion
    wb.saliency(syn, image, target); wb.evidence(syn, image); wb.adaptation_norms(syn)   # explain

A :class:`Workbench` is shared by every user of one app process: it holds no per-user state,
its caches are keyed by content and guarded by a lock, and the models are never mutated, so
concurrent sessions get exactly the results they would get alone.

Upload helpers (:func:`read_upload`, :func:`read_descriptions_json`, :func:`read_labelled_zip`)
turn bytes from a browser into images and class sets, or raise an error a person can act on.
"""
from __future__ import annotations

import hashlib
import io
import json
import threading
import time
import unicodedata
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Sequence

import torch
from PIL import Image

from .data import (DataError, ImageError, description_file, display_name, load_descriptions, load_image,
                   load_split, parse_descriptions)
from .checkpoint import fc_only_sibling
from .evaluate import per_class_accuracy
from .meta import MODES
from .synthesize import SynthesizedClassifier, Synthesizer, check_descriptions

__all__ = ["Workbench", "Synthesis", "BatchReport", "read_upload", "read_descriptions_json",
           "read_labelled_zip", "split_classes", "sample_photos", "demo_descriptions", "demo_photos",
           "DEFAULT_CHECKPOINT", "DEMO_DIR"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = ROOT / "checkpoints" / "n3-effl0-minilm-ss0"
DEMO_DIR = ROOT / "assets" / "demo"
IMAGE_TYPES = ("jpg", "jpeg", "png", "webp")
MAX_UPLOAD_BYTES = 50 * 2**20          # one image file
MAX_ZIP_FILES = 5000
MAX_ZIP_BYTES = 1 * 2**30              # uncompressed total


@dataclass
class Synthesis:
    """The two classifiers synthesized from one class set.

    ``full`` adapts every backbone tensor and writes the K-way layer; ``fc_only`` writes only
    the K-way layer (from the fc-only checkpoint). ``ms`` is the wall time of this synthesis,
    ``encoded`` how many descriptions went through the text encoder for it (0 when all were
    cached), ``truncated`` the classes whose description exceeded the token limit."""

    key: str
    names: list[str]
    descriptions: dict[str, str]
    full: SynthesizedClassifier
    fc_only: SynthesizedClassifier
    ms: float
    encoded: int
    truncated: list[str] = field(default_factory=list)

    def classifier(self, mode: str) -> SynthesizedClassifier:
        if mode not in MODES:
            raise ValueError(f"mode must be 'full' or 'fc-only', not {mode!r}")
        return self.full if mode == "full" else self.fc_only


@dataclass
class BatchReport:
    """Accuracy of both classifiers on labelled images. ``per_class[mode][class]`` is a
    fraction or ``None`` for a class with no images; ``confusion[mode]`` is ``[K, K]`` counts,
    rows = true class, columns = predicted."""

    names: list[str]
    images: int
    per_class: dict[str, dict[str, float | None]]
    mean_per_class: dict[str, float]
    confusion: dict[str, list[list[int]]]


def _content_key(descriptions: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(list(descriptions.items()), ensure_ascii=False).encode("utf-8",
                                                                                          "surrogatepass")).hexdigest()


class Workbench:
    """A full-adaptation and an fc-only synthesizer sharing one backbone and text encoder."""

    def __init__(self, full: Synthesizer, fc_only: Synthesizer, cache_size: int = 8,
                 checkpoints: tuple[str, str] = ("", "")):
        self.full = full
        self.checkpoints = checkpoints
        self.fc_only = fc_only
        self._cache: OrderedDict[str, Synthesis] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._synth_locks: dict[str, threading.Lock] = {}

    @classmethod
    def load(cls, checkpoint: str | Path = DEFAULT_CHECKPOINT, fc_only_checkpoint: str | Path | None = None,
             device: str = "auto") -> "Workbench":
        """Load a full checkpoint and its fc-only sibling (default ``<checkpoint>-fconly``)."""
        checkpoint = Path(checkpoint)
        fc_dir = Path(fc_only_checkpoint) if fc_only_checkpoint else fc_only_sibling(checkpoint)
        full = Synthesizer.from_checkpoint(checkpoint, device=device)
        fc = Synthesizer.from_checkpoint(fc_dir, device=device, backbone=full.backbone, text_encoder=full.text_encoder)
        if fc.config.image_size != full.config.image_size:
            raise DataError(f"{checkpoint} and {fc_dir} use different image sizes")
        return cls(full, fc, checkpoints=(str(checkpoint), str(fc_dir)))

    # ------------------------------------------------------------------ facts
    @property
    def device(self) -> torch.device:
        return self.full.device

    def describe(self) -> dict:
        """What is loaded, for display."""
        dev = self.device
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
        return {"device": str(dev), "device_name": name, "backbone": self.full.config.backbone,
                "text_encoder": self.full.text_encoder.name, "image_size": self.full.config.image_size,
                "token_limit": self.full.text_encoder.max_length,
                "checkpoints": {"full": str(self.checkpoints[0]), "fc-only": str(self.checkpoints[1])},
                "mu": float(self.full.model.meta.mu.detach())}

    def token_count(self, text: str) -> int:
        """Tokens of one description (special tokens included, before truncation); 0 when empty."""
        return self.full.text_encoder.count_tokens(text) if isinstance(text, str) and text.strip() else 0

    @property
    def token_limit(self) -> int:
        return self.full.text_encoder.max_length

    # ------------------------------------------------------------------ synthesis
    def synthesize(self, descriptions: dict[str, str]) -> Synthesis:
        """Both classifiers for ``{class: description}``; the same content returns the cached
        pair. Raises :class:`~n3core.meta.SynthesisError` for a bad class set."""
        descriptions = check_descriptions(descriptions)
        key = _content_key(descriptions)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            lock = self._synth_locks.setdefault(key, threading.Lock())
        with lock:                              # two sessions asking for the same set wait for one synthesis
            with self._lock:
                if key in self._cache:
                    return self._cache[key]
            te = self.full.text_encoder
            before = te.encoder_calls
            t0 = time.perf_counter()
            full = self.full.synthesize(descriptions)
            fc = self.fc_only.synthesize(descriptions, mode="fc-only")
            ms = (time.perf_counter() - t0) * 1000
            syn = Synthesis(key, list(descriptions), dict(descriptions), full, fc, round(ms, 1),
                            max(0, te.encoder_calls - before), list(full.info.get("truncated", [])))
            with self._lock:
                self._cache[key] = syn
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
                self._synth_locks.pop(key, None)
        return syn

    # ------------------------------------------------------------------ classify
    @torch.no_grad()
    def classify(self, syn: Synthesis, images: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        """Probabilities ``[B, K]`` of both classifiers for PIL images."""
        if not images:
            return {"full": torch.zeros(0, len(syn.names)), "fc-only": torch.zeros(0, len(syn.names))}
        x = syn.full.prepare(list(images))
        return {"full": syn.full.predict(x), "fc-only": syn.fc_only.predict(x)}

    @torch.no_grad()
    def evaluate_batch(self, syn: Synthesis, images: Sequence[Image.Image], labels: Sequence[int]) -> BatchReport:
        """Per-class accuracy (top-1) and confusion matrices of both classifiers."""
        if len(images) != len(labels):
            raise ValueError("one label per image")
        if not images:
            raise DataError("no labelled images to evaluate")
        K = len(syn.names)
        y = torch.as_tensor(list(labels), dtype=torch.long)
        per_class, mean, conf = {}, {}, {}
        for mode in ("full", "fc-only"):
            clf = syn.classifier(mode)
            probs = torch.cat([clf.predict(list(images[s:s + 64])) for s in range(0, len(images), 64)])
            cm = torch.zeros(K, K, dtype=torch.long)
            cm.index_put_((y, probs.argmax(1)), torch.ones_like(y), accumulate=True)
            res = per_class_accuracy(probs, y, K)
            per_class[mode] = {n: (None if a != a else a) for n, a in zip(syn.names, res["per_class_top1"])}
            mean[mode], conf[mode] = res["top1"], cm.tolist()
        return BatchReport(list(syn.names), len(images), per_class, mean, conf)

    # ------------------------------------------------------------------ explain
    def saliency(self, syn: Synthesis, image: Image.Image, target: int, method: str = "saliency") -> dict:
        """``{"full": PIL overlay, "fc-only": PIL overlay}``: where each classifier looks for
        class ``target``, both on one colour scale."""
        from .explain import saliency_overlays

        return saliency_overlays({"full": syn.full, "fc-only": syn.fc_only}, image, target, method)

    def evidence(self, syn: Synthesis, image: Image.Image, label: str | None = None):
        """Token evidence (:class:`n3core.explain.Evidence`) of the full model for ``label``
        (default: its prediction): the description words that argued for and against it."""
        from .explain import token_evidence

        return token_evidence(self.full, syn.descriptions, image, label=label)

    def adaptation_norms(self, syn: Synthesis) -> list[dict]:
        """Per adapted tensor: ‖μ·ΔΘ‖, ‖Θ‖ and their ratio for this class set (figure 6)."""
        from .explain import adaptation_norms

        return adaptation_norms(self.full, syn.descriptions)

    # ------------------------------------------------------------------ export
    def export(self, syn: Synthesis, mode: str = "full") -> bytes:
        """The standalone ``torch.export`` file (.pt2) the synthesize CLI writes, as bytes."""
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            path = syn.classifier(mode).export(Path(d) / "classifier.pt2")
            return path.read_bytes()


# ---------------------------------------------------------------------- uploads
def read_upload(name: str, data: bytes, *, max_bytes: int = MAX_UPLOAD_BYTES) -> Image.Image:
    """Bytes of one uploaded file → an RGB PIL image, or :class:`ImageError` saying why not."""
    if data is None or len(data) == 0:
        raise ImageError(f"{name}: the file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageError(f"{name}: {len(data) / 2**20:.0f} MB is larger than the {max_bytes / 2**20:.0f} MB limit")
    return load_image(bytes(data), name=name)


def read_descriptions_json(data: bytes | str, *, name: str = "descriptions.json") -> dict[str, str]:
    """A JSON object ``{class: text}`` (or ``{class: [phrases]}``) → ``{class: text}``."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise DataError(f"{name} is not UTF-8 text ({e})") from e
    try:
        raw = json.loads(data)
    except json.JSONDecodeError as e:
        raise DataError(f"{name} is not valid JSON: {e}") from e
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{name} must be a non-empty JSON object mapping class names to descriptions")
    return parse_descriptions(raw, name)             # the same checks as description files


def _norm(name: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", display_name(name)).replace("-", " ").casefold().split())


def read_labelled_zip(data: bytes, classes: Sequence[str], *, max_files: int = MAX_ZIP_FILES,
                      max_bytes: int = MAX_ZIP_BYTES) -> tuple[list[Image.Image], list[int], list[str]]:
    """A zip in the image-folder layout (``<class>/<image>``, at any depth below one common
    top folder) → images, label indices into ``classes``, and a list of problems (files
    skipped and why). Folder names match classes ignoring case, ``_``/``-``/spaces and a
    ``NNN.`` prefix. Raises :class:`DataError` when nothing usable is in it."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as e:
        raise DataError(f"not a zip file ({e})") from e
    index = {_norm(c): i for i, c in enumerate(classes)}
    infos = [i for i in zf.infolist() if not i.is_dir() and not PurePosixPath(i.filename).name.startswith(".")
             and "__MACOSX" not in i.filename]
    if len(infos) > max_files:
        raise DataError(f"the zip holds {len(infos)} files; the limit is {max_files}")
    total = sum(i.file_size for i in infos)
    if total > max_bytes:
        raise DataError(f"the zip unpacks to {total / 2**20:.0f} MB; the limit is {max_bytes / 2**20:.0f} MB")
    images, labels, problems = [], [], []
    unknown: dict[str, int] = {}
    for info in infos:
        parts = PurePosixPath(info.filename).parts
        if len(parts) < 2:
            problems.append(f"{info.filename}: not inside a class folder")
            continue
        folder = parts[-2]
        if _norm(folder) not in index:
            unknown[folder] = unknown.get(folder, 0) + 1
            continue
        if PurePosixPath(info.filename).suffix.lower().lstrip(".") not in IMAGE_TYPES:
            problems.append(f"{info.filename}: not a jpg, png or webp file")
            continue
        try:
            with zf.open(info) as f:
                raw = f.read(MAX_UPLOAD_BYTES + 1)
            images.append(read_upload(info.filename, raw))
            labels.append(index[_norm(folder)])
        except (ImageError, zipfile.BadZipFile, OSError, RuntimeError) as e:
            problems.append(str(e))
    for folder, n in unknown.items():
        problems.append(f"folder {folder!r} ({n} files) matches no class; skipped")
    if not images:
        raise DataError("no usable images in the zip: it needs one folder per class, named like the classes"
                        + (f" ({'; '.join(problems[:3])})" if problems else ""))
    return images, labels, problems


# ---------------------------------------------------------------------- data folder
def split_classes(root: str | Path, split: str, part: str = "test", description_set: str = "allaboutbirds"
                  ) -> dict[str, str]:
    """``{display name: description}`` for the classes of one part of a split, in split order.
    Classes the description set does not cover (Wikipedia covers 52 of 100) are left out."""
    labels = load_split(root, split)[part]
    desc = load_descriptions(description_file(root, description_set))
    out = {display_name(c): desc[c] for c in labels if c in desc}
    if len(out) < 2:
        raise DataError(f"{description_set} describes only {len(out)} of the {len(labels)} {part} classes of {split}")
    return out


def sample_photos(root: str | Path, classes: Sequence[str], per_class: int = 2, seed: int = 0
                  ) -> list[tuple[str, Path]]:
    """``(class display name, path)`` for a few photos of each named class in a CUB-layout folder."""
    import random

    from .data import read_cub

    ims = read_cub(root, check_files=False)
    by_name: dict[str, list[Path]] = {}
    for rec in ims.records:
        by_name.setdefault(display_name(rec.label), []).append(Path(rec.path))
    rng = random.Random(seed)
    out = []
    for c in classes:
        paths = sorted(by_name.get(c, []))
        out += [(c, p) for p in rng.sample(paths, min(per_class, len(paths)))]
    return out


def demo_descriptions() -> dict[str, str]:
    return load_descriptions(DEMO_DIR / "descriptions.json")


def demo_photos() -> list[Path]:
    return sorted((DEMO_DIR / "photos").glob("*.jpg"))
