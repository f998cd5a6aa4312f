"""The interactive session behind the app, without any UI: one loaded pair of models (full
adaptation and fc-only), the class set a person edits, and every action the app offers.

    wb = Workbench.load()                                # shipped checkpoints, GPU if present
    syn = wb.synthesize({"Blue Jay": "...", ...})         # both classifiers, cached by content
    probs = wb.classify(syn, [pil_image])                 # {"full", "ΔΘ only", "fc-only"}: [B, K] each
    report = wb.evaluate_batch(syn, images, labels)       # per-class accuracy + confusion
    wb.saliency(syn, image, target); wb.evidence(syn, image); wb.adaptation_norms(syn)   # explain
    wb.adaptation_norms(after, before=syn)               # what an edit moved, per layer
    wb.language_control(syn, images, control_descriptions(syn.names))   # own words vs other texts'
    wb.compare_descriptions(desc, "Blue Jay", text_b, images, labels)  # A/B of one description

A :class:`Workbench` is shared by every user of one app process: it holds no per-user state,
its caches are keyed by content (descriptions, image pixels) and guarded by locks, identical
work asked for by two sessions at once is done once, and the models are never mutated, so
concurrent sessions get exactly the results they would get alone. Model work runs one call
at a time (``_compute``): on a few CPU cores, sessions that queue finish sooner than sessions
that split the cores between them.

An edit re-runs only what it changes: the text encoder re-encodes only edited descriptions,
the fc-only classifier reuses each photo's plain-backbone features (its backbone is Θ), and a
photo is prepared (resized, normalised) once.

Turning a browser's bytes into images and class sets (uploads, zips, JSON) is
:mod:`n3core.data`'s; this module holds the models' side.
"""
from __future__ import annotations

import copy
import hashlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from .data import DataError, load_descriptions, read_labelled_zip, split_classes
from .checkpoint import fc_only_sibling
from .evaluate import control_arms, control_sets, per_class_accuracy
from .meta import MODES, SynthesisError
from .synthesize import SynthesizedClassifier, Synthesizer, check_descriptions, class_key

__all__ = ["Workbench", "Synthesis", "BatchReport", "LanguageControl", "DescriptionComparison",
           "demo_descriptions", "demo_photos", "control_descriptions", "image_digest", "probability_shift",
           "aligned_probabilities", "correct", "describe_edit", "DELTA_ONLY", "DEFAULT_CHECKPOINT", "DEMO_DIR",
           "CONTROL_FILE", "shipped"]


def shipped(folder: str) -> Path:
    """The project's ``checkpoints/`` or ``assets/`` folder: inside the package when n3core was
    installed from a wheel (``n3core/_checkpoints``, ``n3core/_assets``; see pyproject.toml),
    else the checkout's own."""
    inside = Path(__file__).resolve().parent / f"_{folder}"
    return inside if inside.is_dir() else Path(__file__).resolve().parent.parent / folder


DEFAULT_CHECKPOINT = shipped("checkpoints") / "n3-effl0-minilm-ss0"
DEMO_DIR = shipped("assets") / "demo"
CONTROL_FILE = shipped("assets") / "control_descriptions.json"
DELTA_ONLY = "ΔΘ only"                 # the full classifier without its sentence match


@dataclass
class Synthesis:
    """The two classifiers synthesized from one class set.

    ``full`` adapts every backbone tensor and writes the K-way layer; ``fc_only`` writes only
    the K-way layer (from the fc-only checkpoint). ``ms`` is the wall time of this synthesis,
    ``encoded`` how many descriptions went through the text encoder for it (0 when all were
    cached), ``truncated`` the classes whose description exceeded the token limit.
    ``network_key`` identifies the networks alone: the meta-model reads the descriptions, never
    the names, so two class sets with the same descriptions in the same order share both
    classifiers' weights and every probability (a rename costs no synthesis, no backbone pass)."""

    key: str
    names: list[str]
    descriptions: dict[str, str]
    full: SynthesizedClassifier
    fc_only: SynthesizedClassifier
    ms: float
    encoded: int
    truncated: list[str] = field(default_factory=list)
    network_key: str = ""

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


@dataclass
class LanguageControl:
    """The full classifier on some photos with its language-written parts (ΔΘ and the sentence
    match) written from other texts: the app's view of ``evaluate``'s ``language_gain``, with
    the same draws (:func:`~n3core.evaluate.control_sets`) and arms. The classification layer
    is always the one written from the class set's own descriptions:

    ``own`` ``[B, K]``: both parts from the class set's own descriptions (the synthesized classifier);
    ``no_adaptation`` ``[B, K]``: Θ itself, no ΔΘ and no match (the classification layer alone);
    ``swapped`` ``[R, B, K]``: both parts from R draws of other classes' descriptions
    (``drawn[r]`` names them), the same number of classes as the set where the pool allows;
    ``swapped_delta`` / ``swapped_match`` ``[R, B, K]``: the same draws writing ΔΘ alone / the
    match alone, the other part from the own descriptions (None without a sentence match).
    If the task's words shaped a part, ``own`` beats its swap; if any bird text does as well,
    ``own`` ≈ the swap."""

    names: list[str]
    own: torch.Tensor
    no_adaptation: torch.Tensor
    swapped: torch.Tensor
    drawn: list[list[str]]
    source: str
    swapped_delta: torch.Tensor | None = None
    swapped_match: torch.Tensor | None = None

    def arms(self) -> dict[str, torch.Tensor]:
        """``{"both": swapped, "delta": swapped_delta, "match": swapped_match}``, the arms there are."""
        out = {"both": self.swapped, "delta": self.swapped_delta, "match": self.swapped_match}
        return {k: v for k, v in out.items() if v is not None}

    def summary(self, labels: Sequence[int | None] | None = None) -> dict:
        """``changed``: photos whose own prediction some draw of the both-parts swap changes;
        ``shift``: mean |p_own − p_swapped| of the own prediction (over photos and draws);
        ``changed_delta``/``shift_delta``, ``changed_match``/``shift_match``: the same for the
        one-part arms. With ``labels`` (None for an unlabelled photo): top-1 accuracy of each
        way over the labelled photos (``own_accuracy``, ``swapped_accuracy``,
        ``swapped_delta_accuracy``, ``swapped_match_accuracy``, ``no_adaptation_accuracy``),
        an arm's as the median of its draws."""
        pred = self.own.argmax(-1)
        idx = torch.arange(len(pred))
        p_own = self.own[idx, pred]
        out = {"photos": len(pred), "draws": len(self.swapped)}
        for arm, sw in self.arms().items():
            tag = "" if arm == "both" else f"_{arm}"
            out["changed" + tag] = int((sw.argmax(-1) != pred).any(0).sum())
            out["shift" + tag] = float((p_own - sw[:, idx, pred]).abs().mean()) if len(pred) else 0.0
        known = [(i, y) for i, y in enumerate(labels or []) if y is not None]
        if known:
            rows = torch.tensor([i for i, _ in known])
            y = torch.tensor([t for _, t in known])

            def acc(p: torch.Tensor) -> float:
                return float((p[rows].argmax(-1) == y).float().mean())

            out.update(labelled=len(known), own_accuracy=acc(self.own),
                       no_adaptation_accuracy=acc(self.no_adaptation))
            for arm, sw in self.arms().items():
                key = "swapped_accuracy" if arm == "both" else f"swapped_{arm}_accuracy"
                out[key] = float(torch.tensor([acc(s) for s in sw]).median())
        return out


@dataclass
class DescriptionComparison:
    """Description A (the current one) vs B of one class, everything else unchanged.

    ``probs_a[mode]`` / ``probs_b[mode]``: ``[B, K]`` on the photos. With labels: per-class
    accuracy (``per_class_a/b[mode][class]``, None for a class with no labelled photo), the
    mean per-class accuracy, and the changes of prediction that the edit ``fixed`` (wrong under
    A, right under B) or ``caused`` (right under A, wrong under B): ``{mode: [(true class,
    predicted under A, predicted under B, photos)]}``."""

    cls: str
    names: list[str]
    text_a: str
    text_b: str
    probs_a: dict[str, torch.Tensor]
    probs_b: dict[str, torch.Tensor]
    labelled: int = 0
    per_class_a: dict[str, dict[str, float | None]] = field(default_factory=dict)
    per_class_b: dict[str, dict[str, float | None]] = field(default_factory=dict)
    mean_a: dict[str, float] = field(default_factory=dict)
    mean_b: dict[str, float] = field(default_factory=dict)
    fixed: dict[str, list[tuple[str, str, str, int]]] = field(default_factory=dict)
    caused: dict[str, list[tuple[str, str, str, int]]] = field(default_factory=dict)

    def better(self, mode: str = "full") -> str | None:
        """``"A"`` or ``"B"`` by mean per-class accuracy of ``mode`` on the labelled photos;
        None without labels or on a tie."""
        if not self.labelled or self.mean_a[mode] == self.mean_b[mode]:
            return None
        return "B" if self.mean_b[mode] > self.mean_a[mode] else "A"


def _content_key(descriptions: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(list(descriptions.items()), ensure_ascii=False).encode("utf-8",
                                                                                          "surrogatepass")).hexdigest()


def _network_key(descriptions: dict[str, str]) -> str:
    return _content_key({str(i): t for i, t in enumerate(descriptions.values())})


def _renamed(clf: SynthesizedClassifier, names: list[str]) -> SynthesizedClassifier:
    """The same classifier (shared weights, never modified) under other class names."""
    out = copy.copy(clf)
    out.class_names, out.info = list(names), dict(clf.info)
    return out


def image_digest(image: Image.Image) -> str:
    """What makes two images the same photo for the caches: mode, size and pixels."""
    h = hashlib.blake2b(f"{image.mode}{image.size}".encode(), digest_size=16)
    h.update(image.tobytes())
    return h.hexdigest()


class _Memo:
    """A bounded LRU cache whose ``get(key, compute)`` runs ``compute`` once per key even when
    several threads ask at once (the others wait and share the result)."""

    def __init__(self, size: int):
        self._data: OrderedDict = OrderedDict()
        self._size = size
        self._lock = threading.Lock()
        self._inflight: dict = {}

    def peek(self, key):
        with self._lock:
            return self._data.get(key)

    def put(self, key, value) -> None:
        with self._lock:
            self._store(key, value)

    def _store(self, key, value) -> None:
        """Insert with the lock held, dropping the least recently used beyond the size."""
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self._size:
            self._data.popitem(last=False)

    def get(self, key, compute):
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
            flight = self._inflight.setdefault(key, threading.Lock())
        with flight:
            with self._lock:
                if key in self._data:
                    return self._data[key]
            value = compute()
            with self._lock:
                self._store(key, value)
                self._inflight.pop(key, None)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


def probability_shift(before: dict[str, torch.Tensor], before_names: Sequence[str], after: dict[str, torch.Tensor],
                      after_names: Sequence[str]) -> tuple[list[str], dict[str, torch.Tensor]]:
    """Per mode, ``p_after − p_before`` ``[B, C]`` over the union of both class lists (the
    after list first, then classes the edit removed): a class absent on one side counts as
    probability 0 there, so a rename shows as one class falling and another rising."""
    names = list(after_names) + [n for n in before_names if n not in after_names]
    a = aligned_probabilities(after, after_names, names)
    b = aligned_probabilities(before, before_names, names)
    return names, {mode: a[mode].nan_to_num(0.0) - b[mode].nan_to_num(0.0) for mode in after}


def aligned_probabilities(probs: dict[str, torch.Tensor], names_from: Sequence[str], names_to: Sequence[str]
                          ) -> dict[str, torch.Tensor]:
    """``probs[mode]`` ``[B, len(names_from)]`` re-indexed to ``names_to``; NaN for a class of
    ``names_to`` that ``names_from`` lacks (e.g. the probabilities before an edit, per class now)."""
    out = {}
    for mode, p in probs.items():
        q = torch.full((p.shape[0], len(names_to)), float("nan"))
        for j, n in enumerate(names_to):
            if n in names_from:
                q[:, j] = p[:, list(names_from).index(n)]
        out[mode] = q
    return out


def correct(probs: torch.Tensor, labels: Sequence[int | None]) -> tuple[int, int]:
    """(photos predicted right, photos with a known class) for ``probs`` ``[B, K]``."""
    known = [(j, y) for j, y in enumerate(labels) if y is not None]
    return sum(int(probs[j].argmax()) == y for j, y in known), len(known)


def describe_edit(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """What changed between two class sets, as short phrases (``"edited Blue Jay"``)."""
    parts = [f"added {n}" for n in after if n not in before] + [f"removed {n}" for n in before if n not in after]
    parts += [f"edited {n}" for n in after if n in before and after[n] != before[n]]
    if not parts and list(after) != list(before):
        parts = ["reordered the classes"]
    return parts


class Workbench:
    """A full-adaptation and an fc-only synthesizer sharing one backbone and text encoder."""

    def __init__(self, full: Synthesizer, fc_only: Synthesizer, cache_size: int = 8,
                 checkpoints: tuple[str, str] = ("", "")):
        self.full = full
        self.checkpoints = checkpoints
        self.fc_only = fc_only
        self._cache = _Memo(cache_size)            # content key → Synthesis
        self._networks = _Memo(cache_size)         # network key → the Synthesis that computed those networks
        self._prepared = _Memo(256)                # image digest → normalised [3, S, S]
        self._plain = _Memo(1024)                  # image digest → plain-backbone features [F]
        self._probs = _Memo(4096)                  # (synthesis key, image digest) → {mode: [K]}
        self._batches = _Memo(64)                  # (synthesis key, digests) → {mode: [B, K]}
        self._results = _Memo(256)                 # (action, its inputs' content keys) → its result
        self._zips = _Memo(2)                      # (zip digest, class names) → its images, labels, problems
        self._compute = threading.Lock()           # one model call at a time (see the module doc)
        self._plain_lock = threading.Lock()        # plain-backbone features of new photos: one pass for all

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

    def clear_caches(self) -> None:
        """Forget every cached synthesis, prepared photo, feature and probability."""
        for memo in (self._cache, self._networks, self._prepared, self._plain, self._probs, self._batches,
                     self._results, self._zips):
            memo.clear()

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
        key, network = _content_key(descriptions), _network_key(descriptions)

        def compute() -> Synthesis:
            same = self._networks.peek(network)
            if same is not None:                  # only names changed: the same networks, renamed
                names = list(descriptions)
                return Synthesis(key, names, dict(descriptions), _renamed(same.full, names),
                                 _renamed(same.fc_only, names), 0.0, 0,
                                 [names[same.names.index(t)] for t in same.truncated], network)
            te = self.full.text_encoder
            with self._compute:
                # descriptions the encoder has not seen (the sentence match also encodes each new
                # sentence alone; those are not counted here)
                encoded = sum(not te.is_cached(t) for t in set(descriptions.values()))
                t0 = time.perf_counter()
                full = self.full.synthesize(descriptions)
                fc = self.fc_only.synthesize(descriptions, layer_only=True, share_backbone=True)
                ms = (time.perf_counter() - t0) * 1000
            syn = Synthesis(key, list(descriptions), dict(descriptions), full, fc, round(ms, 1), encoded,
                            list(full.info.get("truncated", [])), network)
            self._networks.put(network, syn)
            return syn

        return self._cache.get(key, compute)

    # ------------------------------------------------------------------ classify
    def _prepare(self, images: Sequence[Image.Image], digests: Sequence[str]) -> torch.Tensor:
        spec = self.full.preprocess
        return torch.stack([self._prepared.get(d, lambda im=im: spec.pil_batch([im])[0])
                            for im, d in zip(images, digests)])

    def _plain_features(self, images: Sequence[Image.Image], digests: Sequence[str]) -> torch.Tensor:
        """Pooled features ``[B, F]`` of the unadapted backbone (what every fc-only classifier sees)."""
        found = {d: self._plain.peek(d) for d in digests}
        if any(f is None for f in found.values()):
            with self._plain_lock:              # sessions asking for the same new photos wait for one pass
                found = {d: self._plain.peek(d) for d in digests}
                missing = [i for i, d in enumerate(digests) if found[d] is None]
                if missing:
                    x = self._prepare([images[i] for i in missing], [digests[i] for i in missing])
                    module = self.fc_only.model.backbone_module
                    with torch.no_grad(), self._compute:
                        feats = torch.cat([module(x[s:s + 64].to(self.device)).cpu() for s in range(0, len(x), 64)])
                    for i, f in zip(missing, feats):
                        found[digests[i]] = f
                        self._plain.put(digests[i], f)
        return torch.stack([found[d] for d in digests])

    @property
    def modes(self) -> tuple[str, ...]:
        """What :meth:`classify` returns: ``"full"``, with a sentence match also ``"ΔΘ only"``
        (the full classifier without its match: N3's adapted network and classification layer
        alone), and ``"fc-only"``."""
        return ("full", DELTA_ONLY, "fc-only") if self.full.match is not None else ("full", "fc-only")

    @torch.no_grad()
    def classify(self, syn: Synthesis, images: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        """Probabilities ``[B, K]`` per mode of :attr:`modes` for PIL images. "ΔΘ only" comes
        from the full classifier's own backbone pass. Photos already seen with this synthesis
        come from the cache; the fc-only classifier reuses plain-backbone features, so after an
        edit only the full classifier runs its backbone."""
        return self._classify(syn, images, [image_digest(im) for im in images])

    def _classify(self, syn: Synthesis, images: Sequence[Image.Image], digests: list[str]) -> dict[str, torch.Tensor]:
        """:meth:`classify` for photos whose digests the caller already has."""
        K = len(syn.names)
        modes = self.modes
        if not images:
            return {m: torch.zeros(0, K) for m in modes}

        def compute() -> dict[str, torch.Tensor]:
            found = {d: self._probs.peek((syn.network_key, d)) for d in digests}
            todo = list(dict.fromkeys(d for d in digests if found[d] is None))
            if todo:
                ims = [images[digests.index(d)] for d in todo]
                x = self._prepare(ims, todo)
                with self._compute:
                    full, layer = syn.full.predict_layer_and_match(x)
                fc = syn.fc_only.head(self._plain_features(ims, todo).to(syn.fc_only.device)).softmax(-1).cpu()
                for j, d in enumerate(todo):
                    found[d] = {"full": full[j], DELTA_ONLY: layer[j], "fc-only": fc[j]}
                    self._probs.put((syn.network_key, d), found[d])
            return {m: torch.stack([found[d][m] for d in digests]) for m in modes}

        return self._batches.get((syn.network_key, tuple(digests)), compute)

    def _scored(self, syn: Synthesis, images: Sequence[Image.Image], labels: Sequence[int]) -> tuple:
        """Both classifiers' probabilities on labelled images, per-class accuracy, means, confusions."""
        K = len(syn.names)
        y = torch.as_tensor(list(labels), dtype=torch.long)
        probs = {"full": [], "fc-only": []}
        for s in range(0, len(images), 64):
            p = self.classify(syn, list(images[s:s + 64]))
            for m in probs:
                probs[m].append(p[m])
        per_class, mean, conf = {}, {}, {}
        for mode in ("full", "fc-only"):
            p = probs[mode] = torch.cat(probs[mode])
            cm = torch.zeros(K, K, dtype=torch.long)
            cm.index_put_((y, p.argmax(1)), torch.ones_like(y), accumulate=True)
            res = per_class_accuracy(p, y, K)
            per_class[mode] = {n: (None if a != a else a) for n, a in zip(syn.names, res["per_class_top1"])}
            mean[mode], conf[mode] = res["top1"], cm.tolist()
        return probs, per_class, mean, conf

    @torch.no_grad()
    def evaluate_batch(self, syn: Synthesis, images: Sequence[Image.Image], labels: Sequence[int]) -> BatchReport:
        """Per-class accuracy (top-1) and confusion matrices of both classifiers."""
        if len(images) != len(labels):
            raise ValueError("one label per image")
        if not images:
            raise DataError("no labelled images to evaluate")
        _, per_class, mean, conf = self._scored(syn, images, labels)
        return BatchReport(list(syn.names), len(images), per_class, mean, conf)

    def labelled_zip(self, data: bytes, names: Sequence[str]) -> tuple[list[Image.Image], list[int], list[str]]:
        """:func:`~n3core.data.read_labelled_zip` of an uploaded zip for these class names, the
        last few kept (a zip is read once, however often the view reruns)."""
        key = (hashlib.sha256(data).hexdigest(), tuple(names))
        return self._zips.get(key, lambda: read_labelled_zip(data, names))

    def evaluate_zip(self, syn: Synthesis, data: bytes) -> tuple[BatchReport, list[str]]:
        """:meth:`evaluate_batch` on a labelled zip (:func:`~n3core.data.read_labelled_zip`),
        with the files it skipped and why; cached by the zip's and the class set's content."""
        def compute():
            images, labels, problems = self.labelled_zip(data, syn.names)
            return self.evaluate_batch(syn, images, labels), problems
        return self._results.get(("zip-report", syn.key, hashlib.sha256(data).hexdigest()), compute)

    # ------------------------------------------------------------------ what the words did
    @torch.no_grad()
    def language_control(self, syn: Synthesis, images: Sequence[Image.Image], pool: dict[str, str], *,
                         draws: int = 3, seed: int = 0, source: str = "") -> LanguageControl:
        """The full classifier on ``images`` with its language-written parts from the class set's
        own descriptions, from none, and from ``draws`` seeded draws of other descriptions out
        of ``pool`` (``{class: description}``; classes of the set itself are left out), each
        draw in every arm of :func:`~n3core.evaluate.control_arms`. Cached by content."""
        key = ("control", syn.key, _content_key(pool), tuple(map(image_digest, images)), draws, seed, source)
        return self._results.get(key, lambda: self._language_control(syn, images, pool, draws, seed, source))

    def _language_control(self, syn, images, pool, draws, seed, source) -> LanguageControl:
        own_keys = {class_key(n) for n in syn.names}
        others = {n: t for n, t in pool.items() if class_key(n) not in own_keys}
        if len(others) < 2:
            raise SynthesisError(f"the language control needs at least 2 other classes' descriptions; "
                                 f"the pool has {len(others)} outside this class set")
        if not images:
            raise DataError("the language control needs at least one photo")
        digests = [image_digest(im) for im in images]
        own = self._classify(syn, images, digests)["full"]
        x = self._prepare(images, digests)
        arms = {arm: [] for arm in control_arms(self.full)}
        drawn = []
        with self._compute:                    # one model call at a time, so other sessions interleave
            none = self.full.synthesize(syn.descriptions, layer_only=True, share_backbone=True).predict(x)
        for other in control_sets(others, len(syn.names), draws, seed):
            for arm, out in arms.items():
                with self._compute:
                    out.append(self.full.synthesize(syn.descriptions, delta_from=other, swap=arm).predict(x))
            drawn.append(list(other))
        stacked = {arm: torch.stack(v) for arm, v in arms.items()}
        return LanguageControl(list(syn.names), own, none, stacked["both"], drawn, source,
                               stacked.get("delta"), stacked.get("match"))

    def compare_descriptions(self, descriptions: dict[str, str], cls: str, text_b: str,
                             images: Sequence[Image.Image], labels: Sequence[int | None] | None = None
                             ) -> DescriptionComparison:
        """Description A (``descriptions[cls]``) vs ``text_b`` for one class, on ``images``
        (and, with ``labels`` — class indices, None for an unlabelled photo — per-class
        accuracy and the confusions B fixed or caused). Raises :class:`SynthesisError` for an
        unknown class, an empty B or a B identical to A."""
        descriptions = check_descriptions(descriptions)
        if cls not in descriptions:
            raise SynthesisError(f"{cls!r} is not one of the classes")
        if not isinstance(text_b, str) or not text_b.strip():
            raise SynthesisError(f"description B of {cls!r} is empty")
        if " ".join(text_b.split()) == " ".join(descriptions[cls].split()):
            raise SynthesisError(f"description B of {cls!r} is the same as A: change a word to compare")
        if not images:
            raise DataError("no photos to compare A and B on: upload photos or a labelled zip")
        a = self.synthesize(descriptions)
        b = self.synthesize({**descriptions, cls: text_b})
        out = DescriptionComparison(cls, list(a.names), descriptions[cls], text_b,
                                    self.classify(a, images), self.classify(b, images))
        known = [(i, y) for i, y in enumerate(labels or []) if y is not None]
        if known:
            ims = [images[i] for i, _ in known]
            ys = [y for _, y in known]
            pa, out.per_class_a, out.mean_a, _ = self._scored(a, ims, ys)
            pb, out.per_class_b, out.mean_b, _ = self._scored(b, ims, ys)
            out.labelled = len(known)
            for mode in MODES:
                fixed: dict = {}
                caused: dict = {}
                for y, ya, yb in zip(ys, pa[mode].argmax(-1).tolist(), pb[mode].argmax(-1).tolist()):
                    key = (a.names[y], a.names[ya], a.names[yb])
                    if ya != y and yb == y:
                        fixed[key] = fixed.get(key, 0) + 1
                    elif ya == y and yb != y:
                        caused[key] = caused.get(key, 0) + 1
                out.fixed[mode] = sorted(((*k, n) for k, n in fixed.items()), key=lambda t: -t[3])
                out.caused[mode] = sorted(((*k, n) for k, n in caused.items()), key=lambda t: -t[3])
        return out

    # ------------------------------------------------------------------ explain
    def saliency(self, syn: Synthesis, image: Image.Image, target: int, method: str = "saliency",
                 smooth: float = 0.0) -> dict:
        """Where each classifier looks for class ``target``: ``{"full", "fc-only", "difference"}``
        maps ``[S, S]`` in one unit (a fraction of the larger map's 99th percentile; the
        difference is full − fc-only) and ``"image"``, the photo as the model sees it.
        ``smooth``: Gaussian blur of the gradient maps, σ in pixels. Cached by content."""
        from .explain import saliency_maps

        def compute():
            with self._compute:
                return saliency_maps({"full": syn.full, "fc-only": syn.fc_only}, image, target, method, smooth=smooth)
        return self._results.get(("saliency", syn.network_key, image_digest(image), target, method, smooth), compute)

    def evidence(self, syn: Synthesis, image: Image.Image, label: str | None = None):
        """Token evidence (:class:`n3core.explain.Evidence`) of the full model for ``label``
        (default: its prediction): the description words that argued for and against it."""
        from .explain import token_evidence

        def compute():
            with self._compute:
                return token_evidence(self.full, syn.descriptions, image, label=label)
        return self._results.get(("evidence", syn.key, image_digest(image), label), compute)

    @property
    def sentence_match(self) -> float | None:
        """The full model's sentence-match weight κ, or None when its checkpoint has no match."""
        return self.full.match.cfg.kappa if self.full.match is not None else None

    def sentence_attention(self, syn: Synthesis, image: Image.Image, label: str | None = None) -> dict:
        """Where each sentence of ``label``'s description (default: the prediction) looked in
        the photo, through the full classifier's sentence match
        (:func:`n3core.explain.sentence_attention`)."""
        from .explain import sentence_attention

        target = None if label is None else syn.names.index(label)

        def compute():
            with self._compute:
                return sentence_attention(syn.full, image, target)
        return self._results.get(("sentences", syn.network_key, image_digest(image), target), compute)

    def adaptation_norms(self, syn: Synthesis, before: Synthesis | None = None) -> list[dict]:
        """Per adapted tensor: ‖μ·ΔΘ‖, ‖Θ‖ and their ratio for this class set (figure 6); with
        ``before``, also ``edit_norm`` = ‖μ·(ΔΘ − ΔΘ_before)‖, what the edit from ``before`` moved."""
        from .explain import adaptation_norms

        def compute():
            with self._compute:
                return adaptation_norms(self.full, syn.descriptions,
                                        before=before.descriptions if before is not None else None)
        return self._results.get(("norms", syn.network_key, before.network_key if before else None), compute)

    # ------------------------------------------------------------------ export
    def export(self, syn: Synthesis, mode: str = "full") -> bytes:
        """The standalone ``torch.export`` file (.pt2) the synthesize CLI writes, as bytes."""
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            path = syn.classifier(mode).export(Path(d) / "classifier.pt2")
            return path.read_bytes()


def demo_descriptions() -> dict[str, str]:
    return load_descriptions(DEMO_DIR / "descriptions.json")


def demo_photos() -> list[Path]:
    return sorted((DEMO_DIR / "photos").glob("*.jpg"))


def control_descriptions(root: str | Path | None = None) -> tuple[dict[str, str], str]:
    """Other classes' descriptions for the language control, and where they come from: the
    shipped model's own training classes (ss0 train, All About Birds) when the data folder is
    at ``root``, else the project's own file of short bird descriptions (``CONTROL_FILE``)."""
    if root is not None:
        try:
            return split_classes(root, "ss0", "train"), "ss0 train classes (All About Birds), the shipped model's training texts"
        except DataError:
            pass
    own = load_descriptions(CONTROL_FILE)
    return own, f"{len(own)} birds described in assets/control_descriptions.json (written by this project)"
