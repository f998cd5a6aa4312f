"""Probe (issue 14, item 3): can a description write *task-specific* features, measurably?

A fast proxy on frozen EfficientNet-Lite0 maps, so that every candidate gets 3 seeds on this
2-core CPU. The head's pre-activation map ``z`` ``[1280, 7, 7]`` (conv_head + BatchNorm, before
ReLU6) is cached once for every CUB-100 photo, two views each (the whole photo, and one
augmented crop through the preprocessing spec). Every candidate shares the fc-only part: an MLP
of the class's sentence embedding (normalised mean of MiniLM word states) writes its
classifier row and bias, scored by cosine against pooled features (the shipped model's
``mean_skip="classifier"`` path, which alone is PDCNN-FC). Candidates add a *per-class*
conditioning of the last stage, written from the same class text, zero-initialised so that
training starts at fc-only:

* ``fc-only``   f(x) = GAP(relu6(z));                       logit_k = s·cos(f(x), w_k) + b_k
* ``film``      f_k(x) = GAP(relu6(z ⊙ (1 + γ_k) + β_k))    (per-class FiLM of the head's BN)
* ``attend``    f_k(x) = Σ_p softmax_p(q_k · m_p / √C) m_p, m = relu6(z)  (text-written attention
                pooling: the description says *where* to look; uniform, i.e. GAP, at init)
* ``attend-mix`` f_k(x) = ½ (GAP(m) + attend_k(x)), its query MLP 4× narrower: the same idea with
                less room to overfit the training classes' texts
* ``csra``      logit_k = s·(cos(GAP(m), w_k) + λ Σ_p softmax_p(T·c_kp) c_kp) + b_k, c_kp = cos(m_p, w_k):
                class-specific residual attention (Zhu & Wu, ICCV 2021) with the text-written row as
                the query, so the description decides where each class looks, with two new scalars
                (λ from 0, T from 10) and nothing new to overfit; the control writes the attention
                queries (not the scored rows) from other classes' texts
* ``sentences`` each description split into sentences (descriptor lists into phrases, ≤ 16), each
                embedded alone; one *shared* linear map turns every sentence into a query over the 49
                positions and a shared weight says how much each sentence counts; each class pools
                where its sentences point, λ of the way from GAP (λ from 0), scored by its row
* ``sentences-match`` GAP scored by the row, plus λ × how well the region each sentence points at
                matches that sentence (DAZLE-style dense attention, Huynh & Elhamifar, CVPR 2020)
* ``sentences-alone`` that match score trained alone, without rows; with ``--mix κ ...`` it is also
                fused late with the fc-only probe of the same seed (fc-only logits + κ × its logits)

Training: episodes of K = 25 classes and 64 photos from the training classes, each class
reading its main description half the time and otherwise a sentence-dropped copy or its text
from another description set (the v3 recipe's variants); optionally (``--hard``) half the
episodes are a class and its 24 nearest classes by description. Scored on held-out classes:
the paper's protocol (one K-way classifier, per-class top-1), ``hard5``, and the language
control: the per-class conditioning written from random *training* classes' descriptions
while the classifier rows stay the true ones (``language_gain`` = top-1 − that).

    .venv/bin/python experiments/late_conditioning.py --threads 1 --candidates fc-only attend attend-mix \\
        --seeds 0 1 2 --steps 1500 --out experiments/results/late_conditioning-dev.json
    .venv/bin/python experiments/late_conditioning.py --threads 1 --hard --candidates fc-only attend \\
        --seeds 0 1 2 --steps 1500 --out experiments/results/late_conditioning-dev-hard.json
    .venv/bin/python experiments/late_conditioning.py --threads 1 --candidates fc-only csra \\
        --seeds 0 1 2 --steps 1500 --out experiments/results/late_conditioning-dev-csra.json
    # the sentence candidates, one process each (side by side on the two cores):
    .venv/bin/python experiments/late_conditioning.py --threads 1 --candidates fc-only \\
        --seeds 0 1 2 --steps 1500 --out experiments/results/late_conditioning-dev-sentences-fconly.json
    .venv/bin/python experiments/late_conditioning.py --threads 1 --candidates sentences \\
        --seeds 0 1 2 --steps 1500 --out experiments/results/late_conditioning-dev-sentences.json
    .venv/bin/python experiments/late_conditioning.py --threads 1 --candidates sentences-match \\
        --seeds 0 1 2 --steps 1500 --out experiments/results/late_conditioning-dev-sentences-match.json
    .venv/bin/python experiments/late_conditioning.py --threads 1 --candidates sentences-alone --mix 0.25 0.5 1 \\
        --seeds 0 1 2 --steps 1500 --out experiments/results/late_conditioning-dev-sentences-alone.json

(the dev split is the default ``--split``; ``film`` is slow on a CPU: one 1,500-step seed had not
finished after 15 minutes on one thread)

Choose on the development split (ss0's train+val classes only); run a test split only to
confirm the chosen candidate.
"""
from __future__ import annotations

import argparse
import math
import platform
import random
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from n3core.backbones import create_backbone
from n3core.data import description_file, load_descriptions, read_cub, resolve_data_root
from n3core.datasets import resolve_split
from n3core.evaluate import nearest_by_embedding, per_class_accuracy, write_report
from n3core.imagecache import ImageCache, cache_path, load_array, save_array
from n3core.preprocess import PreprocessSpec
from n3core.sentence_match import encode_sentences
from n3core.text import TextEncoder, split_sentences
from n3core.textbank import text_variants

ROOT = Path(__file__).resolve().parent.parent
EXTRA_SETS = ("wikipedia_lead", "gpt3_descriptors", "gpt4_part_descriptors")
CANDIDATES = ("fc-only", "film", "attend", "attend-mix", "csra", "sentences", "sentences-match", "sentences-alone")
SENTENCE_KINDS = ("sentences", "sentences-match", "sentences-alone")
MAX_SENTENCES = 16


# ----------------------------------------------------------------------------- cached maps
@torch.no_grad()
def head_maps(records, views: int = 2, seed: int = 0) -> torch.Tensor:
    """Pre-activation head maps ``[N, V, 1280, 7, 7]`` (fp16) of every photo: view 0 the whole
    photo, the others augmented crops. Cached on disk (keyed by photos, views and seed)."""
    bb = create_backbone()
    m = bb.module.eval()
    spec = PreprocessSpec.for_backbone(bb, 224)
    path = cache_path("head-maps", [str(r.path) for r in records], views, seed, spec.to_dict(), bb.weights_source)
    cached = load_array(path, (len(records), views, 1280, 7, 7))
    if cached is not None:
        return torch.from_numpy(cached)
    cache = ImageCache(records, spec)
    grabbed = []
    hook = m.conv_head.register_forward_hook(lambda mod, inp, out: grabbed.append(out))
    bn = m.bn2
    out = torch.empty(len(records), views, 1280, 7, 7, dtype=torch.float16)
    gen = torch.Generator().manual_seed(seed)
    try:
        for v in range(views):
            for s in tqdm(range(0, len(cache), 64), desc=f"head maps, view {v}", mininterval=5):
                imgs = cache.images[s:s + 64]
                x = spec.normalize(imgs) if v == 0 else spec.augment(imgs, gen)
                grabbed.clear()
                m(x)
                z = F.batch_norm(grabbed[0], bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
                out[s:s + 64, v] = z.half()
    finally:
        hook.remove()
    save_array(path, out.numpy())
    return out


# ----------------------------------------------------------------------------- model
def _mlp(din: int, dout: int, hidden: int = 1024, drop: float = 0.5, zero: bool = False) -> nn.Sequential:
    last = nn.Linear(hidden, dout)
    if zero:
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    return nn.Sequential(nn.Dropout(drop), nn.Linear(din, hidden), nn.GELU(), nn.Dropout(drop), last)


class Probe(nn.Module):
    """Text embeddings ``[K, D]`` → classifier rows, and (film / attend) a per-class
    conditioning; ``forward(z, rows_text, cond_text)`` → logits ``[B, K]``. ``cond_text`` is
    the language control's hook: the conditioning written from other texts than the rows."""

    def __init__(self, kind: str, text_dim: int = 384, channels: int = 1280):
        super().__init__()
        self.kind = kind
        self.rows = _mlp(text_dim, channels + 1)
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        # built only for its own kind: every candidate then draws the same initial rows from a seed
        self.cond = (_mlp(text_dim, 2 * channels, zero=True) if kind == "film" else
                     _mlp(text_dim, channels, zero=True) if kind == "attend" else
                     _mlp(text_dim, channels, hidden=256, zero=True) if kind == "attend-mix" else None)
        if kind == "csra":                                # no random draws: rows start as fc-only's
            self.lam = nn.Parameter(torch.tensor(0.0))
            self.log_temp = nn.Parameter(torch.tensor(math.log(10.0)))
        if kind in SENTENCE_KINDS:                        # maps shared by every sentence of every class
            d = 256
            self.sent_drop = nn.Dropout(0.2)
            self.query = nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, d))
            self.keys = nn.Linear(channels, d)
            self.weight = nn.Linear(text_dim, 1)          # how much each sentence counts (shape, colour > habitat)
            self.lam = nn.Parameter(torch.tensor(0.0))    # 0: training starts at fc-only
            self.mix = 1.0                                # scoring only: κ × the learned λ (κ grid)
            if kind in ("sentences-match", "sentences-alone"):
                self.values = nn.Linear(channels, d)
                self.match = nn.Linear(text_dim, d)

    def features(self, z: torch.Tensor, cond_text: torch.Tensor | None) -> torch.Tensor:
        """``z`` ``[B, C, h, w]`` → pooled features ``[B, C]`` (fc-only / no conditioning) or
        per-class ``[B, K, C]``."""
        z = z.float()
        if self.kind == "fc-only" or cond_text is None:
            return F.relu6(z).mean((2, 3))
        c = self.cond(cond_text)                                          # [K, ·]
        if self.kind == "film":
            g, b = c.chunk(2, dim=-1)                                     # [K, C] each
            return F.relu6(z[:, None] * (1 + g[None, :, :, None, None]) + b[None, :, :, None, None]).mean((3, 4))
        m = F.relu6(z).flatten(2)                                         # [B, C, P]
        att = torch.einsum("kc,bcp->bkp", c, m) / math.sqrt(m.shape[1])
        pooled = torch.einsum("bkp,bcp->bkc", att.softmax(-1), m)
        return pooled if self.kind == "attend" else 0.5 * (pooled + m.mean(-1)[:, None])

    def _sentence_attention(self, m: torch.Tensor, sents: torch.Tensor, mask: torch.Tensor):
        """``m`` ``[B, C, P]``, one class set's sentences ``[K, S, D]`` (mask ``[K, S]``) →
        attention of every sentence over the positions ``[B, K, S, P]`` and each class's
        sentence weights ``[K, S]`` (softmax over its real sentences)."""
        sents = self.sent_drop(sents)
        q = self.query(sents)                                             # [K, S, d]
        keys = torch.einsum("dc,bcp->bdp", self.keys.weight, m) + self.keys.bias[None, :, None]
        att = (torch.einsum("ksd,bdp->bksp", q, keys) / math.sqrt(q.shape[-1])).softmax(-1)
        w = self.weight(sents).squeeze(-1).masked_fill(~mask, float("-inf")).softmax(-1)
        return att, w

    def _sentences(self, z: torch.Tensor, w_rows: torch.Tensor, cond) -> torch.Tensor:
        """Cosine logits ``[B, K]`` before scale and bias. ``sentences``: each class pools the
        map where its own sentences point (λ of the way from GAP), scored by its row;
        ``sentences-match``: GAP scored by the row, plus λ × how well the region each
        sentence points at matches that sentence."""
        m = F.relu6(z.float()).flatten(2)                                 # [B, C, P]
        gap = m.mean(-1)
        if cond is None:
            return F.normalize(gap, dim=-1) @ w_rows.T
        sents, mask = cond
        att, w = self._sentence_attention(m, sents, mask)
        if self.kind == "sentences":
            where = torch.einsum("ks,bksp->bkp", w, att)                  # each class's attention map
            pooled = torch.einsum("bkp,bcp->bkc", where, m)
            f = F.normalize(gap[:, None] + self.mix * self.lam * (pooled - gap[:, None]), dim=-1)
            return (f * w_rows[None]).sum(-1)
        vals = torch.einsum("dc,bcp->bdp", self.values.weight, m) + self.values.bias[None, :, None]
        seen = F.normalize(torch.einsum("bksp,bdp->bksd", att, vals), dim=-1)
        said = F.normalize(self.match(sents), dim=-1)                    # [K, S, d]
        fit = ((seen * said[None]).sum(-1) * w[None]).sum(-1)             # [B, K]
        if self.kind == "sentences-alone":
            return fit
        return F.normalize(gap, dim=-1) @ w_rows.T + self.mix * self.lam * fit

    def _csra(self, z: torch.Tensor, w: torch.Tensor, rows_text: torch.Tensor, cond_text: torch.Tensor | None):
        """Cosine logits ``[B, K]``: of the pooled map, plus λ × each class's attention-pooled
        per-position cosine; the attention's queries are the rows written from ``cond_text``."""
        m = F.relu6(z.float()).flatten(2)                                 # [B, C, P]
        base = F.normalize(m.mean(-1), dim=-1) @ w.T
        if cond_text is None:
            return base
        mp = F.normalize(m, dim=1)
        c = torch.einsum("kc,bcp->bkp", w, mp)
        if cond_text is rows_text:
            q = c
        else:
            q = torch.einsum("kc,bcp->bkp", F.normalize(self.rows(cond_text)[:, :-1], dim=-1), mp)
        att = (self.log_temp.exp() * q).softmax(-1)
        return base + self.lam * (att * c).sum(-1)

    def forward(self, z: torch.Tensor, rows_text: torch.Tensor, cond_text: torch.Tensor | None = "same") -> torch.Tensor:
        if isinstance(cond_text, str):
            cond_text = rows_text
        wb = self.rows(rows_text)
        w, b = F.normalize(wb[:, :-1], dim=-1), wb[:, -1]
        s = self.log_scale.exp()
        if self.kind == "csra":
            return s * self._csra(z, w, rows_text, cond_text) + b
        if self.kind == "sentences-alone":                               # the words' match, no rows
            if cond_text is None:
                return torch.zeros(len(z), len(w))
            return s * self._sentences(z, w, cond_text)
        if self.kind in SENTENCE_KINDS:
            return s * self._sentences(z, w, cond_text) + b
        f = F.normalize(self.features(z, cond_text), dim=-1)
        if f.dim() == 2:
            return s * f @ w.T + b
        return s * (f * w[None]).sum(-1) + b


class Fused(nn.Module):
    """Late fusion of two separately trained probes: the fc-only rows' logits plus κ × the
    sentence match's (``sentences-alone``); with no conditioning, the rows alone (fc-only)."""

    def __init__(self, rows: Probe, words: Probe, kappa: float):
        super().__init__()
        self.rows, self.words, self.kappa, self.kind = rows, words, kappa, words.kind

    def forward(self, z, rows_text, cond_text="same"):
        base = self.rows(z, rows_text, "same")
        return base if cond_text is None else base + self.kappa * self.words(z, rows_text, cond_text)


# ----------------------------------------------------------------------------- data
sentence_embeddings = encode_sentences    # MiniLM's normalised mean of word states, in chunks of 64


def class_texts(root, classes, te, seed: int):
    """Per class: the main description's embedding (row 0) and its training variants' ``[V, D]``,
    and the texts themselves (the same ``V`` per class)."""
    main = load_descriptions(description_file(root, "allaboutbirds"), classes)
    rng = random.Random(seed)
    texts = {c: text_variants(main[c], 8, 0.7, rng) for c in classes}
    for name in EXTRA_SETS:
        more = load_descriptions(description_file(root, name))
        for c in classes:
            if c in more:
                texts[c] += text_variants(more[c], 4, 0.7, rng)
    flat = [t for c in classes for t in texts[c]]
    emb = sentence_embeddings(te, flat)
    out, i = {}, 0
    for c in classes:
        out[c] = emb[i:i + len(texts[c])]
        i += len(texts[c])
    return out, texts


def sentence_sets(te: TextEncoder, texts: dict[str, list[str]]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per class: every text variant split into sentences (phrases, for the descriptor lists),
    each embedded alone: ``[V, S, D]`` padded to the longest text of any class (at most
    ``MAX_SENTENCES``) and the mask ``[V, S]``."""
    split = {c: [split_sentences(t)[:MAX_SENTENCES] for t in ts] for c, ts in texts.items()}
    unique = sorted({x for ss in split.values() for s in ss for x in s})
    emb = dict(zip(unique, sentence_embeddings(te, unique)))
    width = max(len(s) for ss in split.values() for s in ss)
    out = {}
    for c, ss in split.items():
        vec = torch.zeros(len(ss), width, emb[unique[0]].shape[-1])
        mask = torch.zeros(len(ss), width, dtype=torch.bool)
        for v, sents in enumerate(ss):
            vec[v, :len(sents)] = torch.stack([emb[x] for x in sents])
            mask[v, :len(sents)] = True
        out[c] = (vec, mask)
    return out


def sentence_cond(sents: dict, classes: list[str], variants: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """One class set's sentences ``[K, S, D]`` and mask ``[K, S]``, variant ``variants[k]`` of class k,
    cut to the longest of them."""
    mask = torch.stack([sents[c][1][v] for c, v in zip(classes, variants)])
    n = int(mask.sum(1).max())
    return torch.stack([sents[c][0][v, :n] for c, v in zip(classes, variants)]), mask[:, :n]


def pick_variants(bank: dict, classes: list[str], gen: torch.Generator, main_prob: float = 0.5) -> list[int]:
    """Per class, which text variant an episode reads: the main text (0) with ``main_prob``."""
    picks = []
    for c in classes:
        v = bank[c]
        if len(v) == 1 or float(torch.rand(1, generator=gen)) < main_prob:
            picks.append(0)
        else:
            picks.append(1 + int(torch.randint(len(v) - 1, (1,), generator=gen)))
    return picks


# ----------------------------------------------------------------------------- train / score
def train_probe(kind: str, maps, labels, train_classes, bank, *, seed: int, steps: int, k: int = 25, batch: int = 64,
                hard: bool = False, lr: float = 1e-3, sents: dict | None = None) -> Probe:
    torch.manual_seed(seed)
    model = Probe(kind)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    by_class = {c: (labels == i).nonzero().flatten().tolist() for i, c in enumerate(train_classes)}
    main = torch.stack([bank[c][0] for c in train_classes])
    near = nearest_by_embedding(train_classes, main, size=k) if hard else None
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * step / steps))
        cls = near[rng.choice(train_classes)] if hard and rng.random() < 0.5 else rng.sample(train_classes, k)
        idx = [rng.choice(by_class[cls[i % k]]) for i in range(batch)]
        y = torch.tensor([i % k for i in range(batch)])
        views = torch.randint(maps.shape[1], (batch,), generator=gen)
        z = maps[torch.tensor(idx), views]
        if rng.random() < 0.5:
            z = z.flip(-1)
        picks = pick_variants(bank, cls, gen)
        text = torch.stack([bank[c][v] for c, v in zip(cls, picks)])
        logits = model(z, text, sentence_cond(sents, cls, picks) if kind in SENTENCE_KINDS else "same")
        loss = F.cross_entropy(logits, y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return model.eval()


@torch.no_grad()
def score(model: Probe, maps, labels, classes, bank, control_classes, *, draws: int = 3, seed: int = 0,
          sents: dict | None = None) -> dict:
    """Paper protocol (K-way over ``classes``) and hard5 with the language control."""
    z_all = maps[:, 0]
    text = torch.stack([bank[c][0] for c in classes])
    ctrl = [c for c in control_classes]
    rng = random.Random(f"control-{seed}")

    def logits_for(idx_rows, rows_text, cond_text):
        return torch.cat([model(z_all[idx_rows[s:s + 32]], rows_text, cond_text) for s in range(0, len(idx_rows), 32)])

    def cond(names, text_of_names):
        """What conditions the network for these classes: their main texts' sentences
        (sentence kinds) or their main-text embeddings (the same tensor as the rows when they are
        the rows' own classes, which csra tests by identity)."""
        return sentence_cond(sents, names, [0] * len(names)) if model.kind in SENTENCE_KINDS else text_of_names

    every = torch.arange(len(labels))
    res = {"paper": {}, "hard5": {}}
    true = per_class_accuracy(logits_for(every, text, cond(classes, text)), labels, len(classes))["top1"]
    plain = per_class_accuracy(logits_for(every, text, None), labels, len(classes))["top1"]
    swapped = []
    for _ in range(draws):
        names = rng.sample(ctrl, len(classes))
        other = cond(names, torch.stack([bank[c][0] for c in names]))
        swapped.append(per_class_accuracy(logits_for(every, text, other), labels, len(classes))["top1"])
    res["paper"] = {"top1": true, "no_adaptation": plain, "swapped_adaptation": statistics.median(swapped),
                    "language_gain": true - statistics.median(swapped)}
    tasks = nearest_by_embedding(list(classes), text, 5)
    per, per_plain, per_sw = [], [], [[] for _ in range(draws)]
    others = []
    for _ in range(draws):
        names = rng.sample(ctrl, 5)
        others.append(cond(names, torch.stack([bank[c][0] for c in names])))
    for c, task in tasks.items():
        ti = [classes.index(t) for t in task]
        rows = torch.cat([(labels == i).nonzero().flatten() for i in ti])
        y = torch.tensor([ti.index(int(labels[r])) for r in rows])
        t = text[ti]
        per.append(per_class_accuracy(logits_for(rows, t, cond(task, t)), y, 5)["per_class_top1"][0])
        per_plain.append(per_class_accuracy(logits_for(rows, t, None), y, 5)["per_class_top1"][0])
        for d in range(draws):
            per_sw[d].append(per_class_accuracy(logits_for(rows, t, others[d]), y, 5)["per_class_top1"][0])
    mean = lambda xs: sum(xs) / len(xs)
    sw = statistics.median(mean(x) for x in per_sw)
    res["hard5"] = {"top1": mean(per), "no_adaptation": mean(per_plain), "swapped_adaptation": sw,
                    "language_gain": mean(per) - sw}
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", default=str(ROOT / "experiments" / "splits" / "ss0-dev.json"),
                    help="train on its train classes, score on its val classes (or --part test)")
    ap.add_argument("--part", default="val", choices=["val", "test"])
    ap.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=CANDIDATES)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--hard", action="store_true", help="half the episodes: a class and its nearest classes")
    ap.add_argument("--mix", nargs="*", type=float, default=[],
                    help="sentence kinds: also score with the learned conditioning scaled by each κ (1 = as trained)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = resolve_data_root(None)
    cub = read_cub(root)
    split = resolve_split(root, args.split, cub)
    train_classes, eval_classes = split["train"], split[args.part]
    te = TextEncoder()
    bank, texts = class_texts(root, train_classes + eval_classes, te, seed=0)
    sents = sentence_sets(te, texts) if set(args.candidates) & set(SENTENCE_KINDS) else None
    recs_train = [cub.records[i] for c in train_classes for i in cub.indices(c)]
    recs_eval = [cub.records[i] for c in eval_classes for i in cub.indices(c)]
    t0 = time.time()
    maps = head_maps(cub.records)                     # every photo once, whatever the split
    order = {str(r.path): i for i, r in enumerate(cub.records)}
    tr_maps = maps[torch.tensor([order[str(r.path)] for r in recs_train])]
    ev_maps = maps[torch.tensor([order[str(r.path)] for r in recs_eval])]
    tr_y = torch.tensor([train_classes.index(r.label) for r in recs_train])
    ev_y = torch.tensor([eval_classes.index(r.label) for r in recs_eval])
    print(f"maps {tuple(maps.shape)} in {time.time() - t0:.0f} s", flush=True)
    report = {"machine": f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads",
              "split": args.split, "part": args.part, "train_classes": len(train_classes),
              "eval_classes": len(eval_classes), "eval_photos": len(recs_eval), "steps": args.steps,
              "hard_episodes": args.hard, "runs": {}}
    for kind in args.candidates:
        runs = []
        for seed in args.seeds:
            t = time.time()
            model = train_probe(kind, tr_maps, tr_y, train_classes, bank, seed=seed, steps=args.steps, hard=args.hard,
                                sents=sents)
            r = score(model, ev_maps, ev_y, eval_classes, bank, train_classes, seed=seed, sents=sents)
            r["seed"], r["train_s"] = seed, round(time.time() - t, 1)
            if kind == "csra":
                r["lambda"], r["temperature"] = model.lam.item(), model.log_temp.exp().item()
            if kind in SENTENCE_KINDS:
                r["lambda"] = model.lam.item()
                r["mix"] = {}
                rows = (train_probe("fc-only", tr_maps, tr_y, train_classes, bank, seed=seed, steps=args.steps,
                                    hard=args.hard) if kind == "sentences-alone" else None)
                for kappa in args.mix:                   # the same model, its conditioning scaled at scoring
                    model.mix = kappa
                    scored = model if rows is None else Fused(rows, model, kappa)
                    r["mix"][str(kappa)] = score(scored, ev_maps, ev_y, eval_classes, bank, train_classes, seed=seed,
                                                 sents=sents)
                    print(f"  κ = {kappa}: paper {100 * r['mix'][str(kappa)]['paper']['top1']:.1f} "
                          f"(gain {100 * r['mix'][str(kappa)]['paper']['language_gain']:+.1f})  hard5 "
                          f"{100 * r['mix'][str(kappa)]['hard5']['top1']:.1f}", flush=True)
                model.mix = 1.0
            runs.append(r)
            print(f"{kind:8s} seed {seed}: paper {100 * r['paper']['top1']:.1f} (gain {100 * r['paper']['language_gain']:+.1f}, "
                  f"no cond {100 * r['paper']['no_adaptation']:.1f})  hard5 {100 * r['hard5']['top1']:.1f} "
                  f"(gain {100 * r['hard5']['language_gain']:+.1f})  {r['train_s']} s", flush=True)
        summary = {}
        for proto in ("paper", "hard5"):
            for key in ("top1", "language_gain", "no_adaptation"):
                xs = [r[proto][key] for r in runs]
                summary[f"{proto}_{key}"] = {"mean": statistics.mean(xs),
                                             "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0}
        report["runs"][kind] = {"seeds": runs, "summary": summary}
        write_report(report, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    from n3core import runtime

    runtime.setup()
    main()
