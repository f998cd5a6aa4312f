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
from n3core.baselines import meanpool_text
from n3core.data import description_file, load_descriptions, read_cub, resolve_data_root
from n3core.datasets import resolve_split
from n3core.evaluate import nearest_by_embedding, per_class_accuracy, write_report
from n3core.imagecache import ImageCache, cache_path, load_array, save_array
from n3core.preprocess import PreprocessSpec
from n3core.text import TextEncoder
from n3core.textbank import text_variants

ROOT = Path(__file__).resolve().parent.parent
EXTRA_SETS = ("wikipedia_lead", "gpt3_descriptors", "gpt4_part_descriptors")
CANDIDATES = ("fc-only", "film", "attend", "attend-mix", "csra")


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
        f = F.normalize(self.features(z, cond_text), dim=-1)
        if f.dim() == 2:
            return s * f @ w.T + b
        return s * (f * w[None]).sum(-1) + b


# ----------------------------------------------------------------------------- data
def sentence_embeddings(te: TextEncoder, texts: list[str]) -> torch.Tensor:
    """:func:`n3core.baselines.meanpool_text` in chunks of 64 (bounds the encoder's padded batch)."""
    return torch.cat([meanpool_text(te, texts[s:s + 64]) for s in range(0, len(texts), 64)])


def class_texts(root, classes, te, seed: int):
    """Per class: the main description's embedding (row 0) and its training variants' ``[V, D]``."""
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
    return out


def pick_texts(bank: dict, classes: list[str], gen: torch.Generator, main_prob: float = 0.5) -> torch.Tensor:
    rows = []
    for c in classes:
        v = bank[c]
        if len(v) == 1 or float(torch.rand(1, generator=gen)) < main_prob:
            rows.append(v[0])
        else:
            rows.append(v[1 + int(torch.randint(len(v) - 1, (1,), generator=gen))])
    return torch.stack(rows)


# ----------------------------------------------------------------------------- train / score
def train_probe(kind: str, maps, labels, train_classes, bank, *, seed: int, steps: int, k: int = 25, batch: int = 64,
                hard: bool = False, lr: float = 1e-3) -> Probe:
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
        logits = model(z, pick_texts(bank, cls, gen))
        loss = F.cross_entropy(logits, y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return model.eval()


@torch.no_grad()
def score(model: Probe, maps, labels, classes, bank, control_classes, *, draws: int = 3, seed: int = 0) -> dict:
    """Paper protocol (K-way over ``classes``) and hard5 with the language control."""
    z_all = maps[:, 0]
    text = torch.stack([bank[c][0] for c in classes])
    ctrl = [c for c in control_classes]
    rng = random.Random(f"control-{seed}")

    def logits_for(idx_rows, rows_text, cond_text):
        return torch.cat([model(z_all[idx_rows[s:s + 32]], rows_text, cond_text) for s in range(0, len(idx_rows), 32)])

    every = torch.arange(len(labels))
    res = {"paper": {}, "hard5": {}}
    true = per_class_accuracy(logits_for(every, text, text), labels, len(classes))["top1"]
    plain = per_class_accuracy(logits_for(every, text, None), labels, len(classes))["top1"]
    swapped = []
    for _ in range(draws):
        other = torch.stack([bank[c][0] for c in rng.sample(ctrl, len(classes))])
        swapped.append(per_class_accuracy(logits_for(every, text, other), labels, len(classes))["top1"])
    res["paper"] = {"top1": true, "no_adaptation": plain, "swapped_adaptation": statistics.median(swapped),
                    "language_gain": true - statistics.median(swapped)}
    tasks = nearest_by_embedding(list(classes), text, 5)
    per, per_plain, per_sw = [], [], [[] for _ in range(draws)]
    others = [torch.stack([bank[c][0] for c in rng.sample(ctrl, 5)]) for _ in range(draws)]
    for c, task in tasks.items():
        ti = [classes.index(t) for t in task]
        rows = torch.cat([(labels == i).nonzero().flatten() for i in ti])
        y = torch.tensor([ti.index(int(labels[r])) for r in rows])
        t = text[ti]
        per.append(per_class_accuracy(logits_for(rows, t, t), y, 5)["per_class_top1"][0])
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
    bank = class_texts(root, train_classes + eval_classes, te, seed=0)
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
            model = train_probe(kind, tr_maps, tr_y, train_classes, bank, seed=seed, steps=args.steps, hard=args.hard)
            r = score(model, ev_maps, ev_y, eval_classes, bank, train_classes, seed=seed)
            r["seed"], r["train_s"] = seed, round(time.time() - t, 1)
            if kind == "csra":
                r["lambda"], r["temperature"] = model.lam.item(), model.log_temp.exp().item()
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
