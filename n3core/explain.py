"""Why a synthesized classifier decides what it decides (the N3 paper's section 5): token
evidence (figure 3) with a sentence-ablation cross-check, pixel saliency through captum
(figure 4), where each sentence of the sentence match looked, and the adaptation's norms per
tensor (figure 6)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from .figures import norms_figure  # noqa: F401  (re-exported: figure 6 lives with the other figures)
from .synthesize import SynthesizedClassifier, Synthesizer, check_descriptions
from .text import split_sentences

__all__ = ["SALIENCY_METHODS", "Word", "Evidence", "token_evidence", "sentence_ablation", "saliency", "shared_scale",
           "adaptation_norms", "norms_figure", "heatmap_overlay", "merge_word_pieces", "model_rgb",
           "saliency_overlays", "saliency_maps", "gaussian_blur", "sentence_attention"]


# Function words carry large gradients (attention sinks) but no visual meaning; they are
# coloured in the text but left out of the evidence lists.
STOPWORDS = frozenset("""a an the and or but nor of in on at to from by with without for as is are was were be been
being it its it's this that these those there their they them he she his her him its has have had do does did
than then so very also often usually mostly some any each all both either neither not no into onto over under
up down out off about above below between through during while when where which who whom whose what can may
might will would shall should could one two""".split())


@dataclass
class Word:
    """A word of a description with its evidence score; ``start:end`` indexes the text."""

    text: str
    score: float
    cls: str
    start: int
    end: int


@dataclass
class Evidence:
    """Token evidence for one image: the label explained, probabilities, and per-class words."""

    label: str
    predicted: str
    probabilities: dict[str, float]
    positive: list[Word]                         # top words of the label's own description
    negative: list[Word]                         # top words of the other (top-ranked) descriptions
    negative_classes: list[tuple[str, float]]    # (class, max-grad / probability), ranked
    words: dict[str, list[Word]] = field(default_factory=dict)  # every word of every description

    def to_dict(self) -> dict:
        d = asdict(self)
        d["negative_classes"] = [list(x) for x in self.negative_classes]
        return d


def merge_word_pieces(pieces: list[str], spans: list[tuple[int, int]], scores: torch.Tensor, text: str,
                      cls: str) -> list[Word]:
    """WordPiece tokens (``##`` continues a word) → words, each scored by its pieces' maximum.
    Special tokens (span (0, 0)) are dropped."""
    words: list[Word] = []
    for piece, (s, e), sc in zip(pieces, spans, scores.tolist()):
        if s == e:
            continue
        if words and (piece.startswith("##") or s == words[-1].end and text[s - 1:s].isalnum() and
                      text[s:s + 1].isalnum()):
            w = words[-1]
            w.end, w.text, w.score = e, text[w.start:e], max(w.score, sc)
        else:
            words.append(Word(text[s:e], float(sc), cls, s, e))
    return words


def _as_batch(clf: SynthesizedClassifier, image) -> torch.Tensor:
    x = clf.prepare(image)
    if x.shape[0] != 1:
        raise ValueError("explain one image at a time")
    return x


def token_evidence(synth: Synthesizer, descriptions: dict[str, str], image, *, label: str | None = None,
                   top_words: int = 10, top_negative_classes: int = 3) -> Evidence:
    """Gradient of the loss (w.r.t. ``label``, by default the predicted class) with respect to
    the token states of every description, for one image (PIL or ``[1, 3, S, S]``). Positive
    evidence: the top words of the label's own description; negative: the top words of the
    other descriptions ranked by (largest token gradient) / (that class's probability). Word
    pieces are merged into words with character spans in the text a person wrote.

    With a sentence match, its term joins the logits (so the prediction and probabilities are the
    classifier's own) as a constant: it reads each sentence encoded alone, not these token
    states; :func:`sentence_attention` gives its evidence sentence by sentence."""
    descriptions = check_descriptions(descriptions)
    names = list(descriptions)
    if label is not None and label not in descriptions:
        raise ValueError(f"label {label!r} is not one of the classes")
    enc = synth.encode(descriptions)
    model = synth.model
    dev = synth.device
    states = enc.states.detach().clone().to(dev).requires_grad_(True)
    x = synth.prepare(image).to(dev)
    words_term = 0.0
    if synth.match is not None:
        from .backbones import feature_map

        with torch.no_grad():
            clf = synth.synthesize(descriptions)
            words_term = clf.words(feature_map(clf.backbone, x))[0]
    with torch.enable_grad():
        a = model.meta(states, enc.mask.to(dev))
        logits = a.classify(model.features(x, a))[0] + words_term
        probs = logits.softmax(-1)
        pred = int(probs.argmax())
        target = names.index(label) if label is not None else pred
        loss = F.cross_entropy(logits[None], torch.tensor([target], device=dev))
        (grad,) = torch.autograd.grad(loss, states)
    g = grad.norm(dim=-1).cpu() * enc.mask                              # [K, L]
    words = {names[k]: merge_word_pieces(enc.pieces[k], enc.spans[k], g[k, :len(enc.pieces[k])],
                                         enc.texts[k], names[k]) for k in range(len(names))}
    p = probs.detach().cpu()
    lab = names[target]
    def wordlike(w: Word) -> bool:       # punctuation and stop words stay in `words` (for colouring),
        return any(ch.isalnum() for ch in w.text) and w.text.casefold() not in STOPWORDS  # not in the lists

    positive = sorted(filter(wordlike, words[lab]), key=lambda w: -w.score)[:top_words]
    ratio = [(names[k], float(g[k].max() / p[k].clamp_min(1e-12))) for k in range(len(names)) if k != target]
    ratio.sort(key=lambda t: -t[1])
    chosen = ratio[:top_negative_classes]
    negative = sorted((w for c, _ in chosen for w in words[c] if wordlike(w)), key=lambda w: -w.score)[:top_words]
    return Evidence(label=lab, predicted=names[pred], probabilities={n: float(p[i]) for i, n in enumerate(names)},
                    positive=positive, negative=negative, negative_classes=ratio, words=words)


@torch.no_grad()
def sentence_ablation(synth: Synthesizer, descriptions: dict[str, str], image, cls: str) -> list[dict]:
    """For each sentence of ``descriptions[cls]``: the probability of ``cls`` for the image with
    that sentence removed, and the change from the full description (negative: the sentence
    argued for the class)."""
    descriptions = check_descriptions(descriptions)
    sents = split_sentences(descriptions[cls])
    base = synth.synthesize(descriptions)
    x = base.prepare(image)
    k = list(descriptions).index(cls)
    p0 = float(base.predict(x)[0, k])
    out = []
    for i, s in enumerate(sents):
        rest = " ".join(t for j, t in enumerate(sents) if j != i)
        if not rest.strip():
            out.append({"sentence": s, "index": i, "probability": None, "delta": None})
            continue
        clf = synth.synthesize({**descriptions, cls: rest})
        p = float(clf.predict(x)[0, k])
        out.append({"sentence": s, "index": i, "probability": p, "delta": p - p0})
    return out


SALIENCY_METHODS = ("saliency", "smoothgrad", "integrated_gradients")


def gaussian_blur(heat: torch.Tensor, sigma: float) -> torch.Tensor:
    """A map ``[H, W]`` blurred by a Gaussian of ``sigma`` pixels (reflect padding); the
    gradient speckle of a saliency map becomes regions a person can read."""
    if sigma <= 0:
        return heat
    r = max(1, int(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    x = F.pad(heat[None, None].float(), (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    x = F.conv2d(x, k.view(1, 1, -1, 1))
    return x[0, 0]


def saliency(clf: SynthesizedClassifier, image, target: int | None = None, method: str = "saliency",
             steps: int = 24, samples: int = 8, noise: float = 0.1, smooth: float = 0.0) -> torch.Tensor:
    """Pixel saliency ``[H, W]`` (non-negative) of ``clf`` for one image and class ``target``
    (default: its prediction). ``method``: ``saliency``, ``integrated_gradients`` or
    ``smoothgrad`` (Saliency through captum's NoiseTunnel). ``smooth``: σ in pixels of a
    Gaussian blur of the map (0: none)."""
    from captum.attr import IntegratedGradients, NoiseTunnel, Saliency

    x = _as_batch(clf, image).to(clf.device).requires_grad_(True)
    if target is None:
        with torch.no_grad():
            target = int(clf(x).argmax())
    with torch.enable_grad():
        if method == "saliency":
            attr = Saliency(clf).attribute(x, target=target, abs=True)
        elif method == "integrated_gradients":
            attr = IntegratedGradients(clf).attribute(x, baselines=torch.zeros_like(x), target=target,
                                                      n_steps=steps, internal_batch_size=steps).abs()
        elif method == "smoothgrad":
            attr = NoiseTunnel(Saliency(clf)).attribute(x, nt_type="smoothgrad", nt_samples=samples,
                                                        nt_samples_batch_size=samples, stdevs=noise, target=target,
                                                        abs=True)
        else:
            raise ValueError(f"unknown saliency method {method!r}; choose one of {', '.join(SALIENCY_METHODS)}")
    return gaussian_blur(attr.detach()[0].abs().amax(0).cpu(), smooth)


def shared_scale(*maps: torch.Tensor, percentile: float = 99.0) -> list[torch.Tensor]:
    """Scale several saliency maps by one common value (the ``percentile`` of all of them),
    clipped to [0, 1], so their colours compare."""
    allv = torch.cat([m.flatten() for m in maps])
    hi = float(torch.quantile(allv.float(), percentile / 100.0)) or float(allv.max()) or 1.0
    return [(m / hi).clamp(0, 1) for m in maps]


def heatmap_overlay(image_rgb: torch.Tensor, heat: torch.Tensor, alpha: float = 0.55):
    """RGB ``[3, H, W]`` in [0, 1] and a heat map ``[H, W]`` in [0, 1] → a PIL image."""
    import numpy as np
    from PIL import Image

    h = heat.clamp(0, 1).numpy()
    # a perceptual 'inferno'-like ramp without matplotlib: black → red → yellow → white
    r = np.clip(h * 3, 0, 1)
    g = np.clip(h * 3 - 1, 0, 1)
    b = np.clip(h * 3 - 2, 0, 1)
    colour = np.stack([r, g, b])
    base = image_rgb.clamp(0, 1).numpy()
    out = (1 - alpha * h) * base + alpha * h * colour
    return Image.fromarray((out.transpose(1, 2, 0) * 255).astype("uint8"))


def model_rgb(clf: SynthesizedClassifier, image) -> torch.Tensor:
    """The image as the model sees it (the central square, resized), RGB ``[3, S, S]`` in [0, 1]."""
    return clf.spec.denormalize(_as_batch(clf, image)[0].cpu())


def saliency_overlays(classifiers: dict, image, target: int | None = None, method: str = "saliency") -> dict:
    """Saliency of several classifiers (e.g. ``{"full": clf, "fc-only": clf2}``) for one image
    and one class (default: the first classifier's prediction), on one shared colour scale.
    Returns ``{name: PIL overlay}``."""
    maps = saliency_maps(classifiers, image, target, method)
    return {name: heatmap_overlay(maps["image"], maps[name]) for name in classifiers}


def saliency_maps(classifiers: dict, image, target: int | None = None, method: str = "saliency",
                  smooth: float = 0.0) -> dict:
    """Saliency of several classifiers (``{"full": clf, "fc-only": clf2}``) for one image and
    one class (default: the first one's prediction), all in one unit: each map divided by the
    99th percentile of all of them, so in [0, 1]. Returns those ``[S, S]`` maps by name,
    ``"image"`` (RGB ``[3, S, S]`` in [0, 1], the photo as the model sees it) and ``"target"``;
    for two classifiers also ``"difference"`` (first − second, in [−1, 1]) and
    ``"difference_peak"`` (the largest |difference|)."""
    names = list(classifiers)
    first = classifiers[names[0]]
    if target is None:
        with torch.no_grad():
            target = int(first(_as_batch(first, image).to(first.device)).argmax())
    scaled = shared_scale(*(saliency(c, image, target, method=method, smooth=smooth) for c in classifiers.values()))
    out = dict(zip(names, scaled))
    if len(names) == 2:
        diff = scaled[0] - scaled[1]
        out.update(difference=diff, difference_peak=float(diff.abs().max()))
    out.update(image=model_rgb(first, image), target=target)
    return out


@torch.no_grad()
def sentence_attention(clf: SynthesizedClassifier, image, target: int | None = None) -> dict:
    """Where each sentence of class ``target``'s description (default: the prediction) looked
    in one image, through the classifier's sentence match. Returns ``sentences`` (S strings),
    ``attention`` ``[S, H, W]`` (each map upsampled to the model's view and divided by its own
    maximum, so in [0, 1]), ``cosine`` ``[S]`` (how well the attended region matched the
    sentence, in [-1, 1]), ``weight`` ``[S]`` (how much the sentence counts; sums to 1),
    ``contribution`` ``[S]`` (what it added to the logit: kappa × scale × weight × cosine,
    averaged over the matches the head averages; ``attention``, ``cosine`` and ``weight`` are
    their means too; ``members`` says how many),
    ``match_logit`` and ``logit`` (the class's whole logit), ``target`` and ``image`` (RGB
    ``[3, H, W]``, as the model sees it)."""
    from .backbones import feature_map

    if clf.words is None:
        raise ValueError("this classifier has no sentence match (a checkpoint trained with train-match has one)")
    x = _as_batch(clf, image).to(clf.device)
    fmap = feature_map(clf.backbone, x)
    logits = clf.head(fmap)[0]
    target = int(logits.argmax()) if target is None else int(target)
    d = clf.words.attention(fmap)
    n = len(clf.words.sentences[target])
    att = d["attention"][0, target, :n].float().cpu()                           # [S, h, w]
    S = x.shape[-1]
    up = F.interpolate(att[:, None], size=(S, S), mode="bilinear", align_corners=False)[:, 0]
    up = up / up.flatten(1).max(1).values.clamp_min(1e-12)[:, None, None]
    cos = d["cosine"][0, target, :n].float().cpu()
    w = d["weight"][target, :n].float().cpu()
    return {"sentences": list(clf.words.sentences[target]), "attention": up, "cosine": cos, "weight": w,
            "contribution": d["contribution"][0, target, :n].float().cpu(), "members": clf.words.members,
            "match_logit": float(d["logit"][0, target]), "logit": float(logits[target]),
            "target": target, "image": model_rgb(clf, image)}


@torch.no_grad()
def adaptation_norms(synth: Synthesizer, descriptions: dict[str, str],
                     before: dict[str, str] | None = None) -> list[dict]:
    """Per adapted tensor, in network order: ``{"name", "kind", "delta_norm" = ‖μ·ΔΘ‖₂,
    "theta_norm" = ‖Θ‖₂, "ratio"}``; with ``before`` (the descriptions before an edit), also
    ``"edit_norm"`` = ‖μ·(ΔΘ − ΔΘ_before)‖₂: how far
    the edit moved each tensor. ΔΘ depends
    on the whole class set, so editing one description can move every layer. Empty for an
    fc-only model."""
    a = synth.adaptation(descriptions)
    b = synth.adaptation(before) if before is not None else None
    theta = synth.model.theta()
    kinds = {t.name: t.kind for t in synth.backbone.tensors}
    ca = a.changes()
    cb = b.changes() if b is not None else None
    rows = []
    for t in synth.backbone.tensors:
        if t.name not in ca:
            continue
        dn = float(ca[t.name].norm())
        tn = float(theta[t.name].norm())
        row = {"name": t.name, "kind": kinds[t.name], "delta_norm": dn, "theta_norm": tn,
               "ratio": dn / tn if tn else float("inf")}
        if cb is not None:
            row["edit_norm"] = float((ca[t.name] - cb[t.name]).norm())
        rows.append(row)
    return rows
