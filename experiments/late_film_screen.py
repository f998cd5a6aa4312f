"""Can a per-class adaptation of the backbone's last layer carry the words? A dev-split screen.

    .venv/bin/python experiments/late_film_screen.py [--seeds 0] [--steps 800]
        [--out experiments/results/cub/late_film_screen.json]

Reads only ss0's 98 **train** classes: three dev folds, each holding out 25 of them (the encoder
screen's folds, seeds 0, 1, 2) and training on the other 73. The frozen Lite0 is run once up to its last
layer's pre-activation ``z`` (``bn2`` before ReLU6, ``[N, 1280, 7, 7]``, the whole photo). Per class
k, its own description (MiniLM, mean-pooled) writes

* the classification row ``w_k`` (an MLP, as PDCNN-FC / fc-only), and, in the FiLM arms,
* a per-channel scale and shift of that last layer, identity at start (zero-initialised):
  ``f_k(x) = mean_hw ReLU6((1 + Δγ_k) ⊙ z(x) + Δβ_k)``; the logit is ``s · cos(f_k(x), w_k)``.

To fit a 2-core CPU, ``z`` is average-pooled to ``--grid`` × ``--grid`` positions (default 3)
before the per-class nonlinearity, in every arm alike.

Arms (the same episodes, seeds and folds):

* ``rows``: rows only (Δγ = Δβ = 0): the fc-only control;
* ``film``: rows + the per-class FiLM, task loss only;
* ``film+contrast``: as ``film``, plus a margin loss that asks the true FiLM's loss to be lower
  than that of a FiLM written from other classes' texts (rows kept true), by ``--margin``;
* ``setfilm``: one scale and shift for the whole class set, the mean of what each class's text
  writes (N3's set-level adaptation, on the last layer alone), task loss only;
* ``setfilm+distil``: as ``setfilm``, started from a trained ``rows`` model's rows and trained on
  ``--episodes`` fixed episodes, plus a relative squared error between the set's FiLM and that
  episode's target: the set-level FiLM that 40 Adam steps of real fine-tuning on 16 photos of each
  of the episode's classes find, rows fixed (Text-to-LoRA's reconstruction training). ``fitted_gain`` is a
  ceiling: the same fine-tune on every other held-out photo, scored on the rest against the rows.

Each arm runs once per fold and seed (seed ``10·fold + s`` for each ``s`` of ``--seeds``: by
default three runs, folds 0–2, each with its own seed), and gives the mean and spread of the
runs. Per run: held-out 25-way per-class top-1 with the true texts, and with the FiLM
written from a derangement of the held-out classes' texts (rows true): ``language_gain_film``
is the difference, the test of whether this adaptation carries each class's words. A set-level
FiLM does not change under a derangement, so ``setfilm``'s is written instead from 25 of the
fold's training classes' texts (as ``evaluate``'s language control does). Runs are added to
``--out``: a run at a (fold, seed) already there with the same ``--steps`` replaces it, the rest are
kept.
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from n3core.backbones import create_backbone
from baseline_methods import meanpool_text, per_class_top1
from n3core.data import description_file, load_descriptions, load_split, read_cub, resolve_data_root
from n3core.imagecache import ImageCache, cache_path, load_array, save_array
from n3core.preprocess import PreprocessSpec
from n3core.text import TextEncoder

ROOT = Path(__file__).resolve().parent.parent
FOLDS, HELD_OUT = 3, 25          # the encoder screen's dev folds (commit 7e324e8)


def dev_classes() -> tuple[object, list[str], list]:
    """The data root, ss0's 98 train classes and their photos' records (2 torch threads)."""
    torch.set_num_threads(2)
    root = resolve_data_root(None)
    train = load_split(root, "ss0")["train"]
    return root, train, read_cub(root).subset(train).records


def folds(train: list[str]) -> list[tuple[list[str], list[str]]]:
    """Three (73 train, 25 held-out) partitions of ``train``, seeded 0, 1, 2."""
    out = []
    for seed in range(FOLDS):
        c = sorted(train)
        random.Random(seed).shuffle(c)
        out.append((sorted(c[HELD_OUT:]), sorted(c[:HELD_OUT])))
    return out
@torch.no_grad()
def last_preactivation(bb, cache: ImageCache) -> torch.Tensor:
    """Lite0's ``bn2`` output before its ReLU6, ``[N, 1280, 7, 7]`` (fp16), cached on disk."""
    m = bb.module.eval()
    path = cache_path("late-film-z", [str(r.path) for r in cache.records], cache.spec.to_dict(), bb.weights_source)
    z = load_array(path)
    if z is not None and len(z) == len(cache):
        return torch.from_numpy(z)
    out = []
    for s in tqdm(range(0, len(cache), 64), desc="last pre-activation", mininterval=5):
        x = m.bn1(m.conv_stem(cache.spec.normalize(cache.images[s:s + 64])))
        h = m.conv_head(m.blocks(x))
        bn = m.bn2
        out.append(F.batch_norm(h, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps).half())
    z = torch.cat(out)
    save_array(path, z.numpy())
    return z


class LateFiLM(nn.Module):
    """Text ``[K, D]`` → rows ``[K, C]`` and (``film``) a scale and shift of the last layer, per
    class or (``per_class=False``) one for the set."""

    def __init__(self, text_dim: int, channels: int, film: bool, hidden: int = 512, per_class: bool = True):
        super().__init__()
        self.per_class = per_class
        self.rows = nn.Sequential(nn.Linear(text_dim, hidden), nn.GELU(), nn.Linear(hidden, channels))
        self.film = nn.Sequential(nn.Linear(text_dim, hidden), nn.GELU(), nn.Linear(hidden, 2 * channels)) if film else None
        if film:
            nn.init.zeros_(self.film[-1].weight)
            nn.init.zeros_(self.film[-1].bias)
        self.log_scale = nn.Parameter(torch.tensor(2.3))

    def forward(self, z: torch.Tensor, text_rows: torch.Tensor, text_film: torch.Tensor | None = None) -> torch.Tensor:
        """``z`` ``[B, C, h, w]`` (pre-activation), texts ``[K, D]`` → logits ``[B, K]``."""
        w = F.normalize(self.rows(text_rows), dim=-1)
        if self.film is not None:
            g, b = self.film(text_rows if text_film is None else text_film).chunk(2, dim=-1)   # [K, C]
            if self.per_class:
                zz = z.flatten(2)                                            # [B, C, P]
                f = F.relu6((1 + g)[None, :, :, None] * zz[:, None] + b[None, :, :, None]).mean(-1)   # [B, K, C]
                return self.log_scale.exp() * (F.normalize(f, dim=-1) * w[None]).sum(-1)
            z = (1 + g.mean(0))[None, :, None, None] * z + b.mean(0)[None, :, None, None]   # one FiLM for the set
        f = F.relu6(z).mean((2, 3))                                          # [B, C]
        return self.log_scale.exp() * F.normalize(f, dim=-1) @ w.T


def derangement(n: int, gen: torch.Generator) -> torch.Tensor:
    while True:
        p = torch.randperm(n, generator=gen)
        if not (p == torch.arange(n)).any():
            return p


def fit_set_film(rows: torch.Tensor, log_scale: torch.Tensor, z: torch.Tensor, y: torch.Tensor,
                 steps: int = 40) -> torch.Tensor:
    """A real fine-tune: one set-level scale and shift ``[2C]`` fitted by Adam on these photos
    (``z`` ``[N, C, h, w]``, labels ``y``), the normalised rows ``[K, C]`` fixed; starts at identity."""
    gb = torch.zeros(2 * z.shape[1], requires_grad=True)
    opt = torch.optim.Adam([gb], lr=1e-2)
    for _ in range(steps):
        g, b = gb.chunk(2)
        f = F.relu6((1 + g)[None, :, None, None] * z + b[None, :, None, None]).mean((2, 3))
        loss = F.cross_entropy(log_scale.exp() * F.normalize(f, dim=-1) @ rows.T, y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return gb.detach()


def train(model: LateFiLM, arm: str, z, labels, text, rows_of, ctr, seed: int, steps: int, margin: float,
          k: int, batch: int, episodes: list[list[int]] | None = None, targets: torch.Tensor | None = None,
          distil: float = 1.0) -> None:
    """Episodic training, random ``k``-way episodes from ``ctr`` (or, with ``targets``, the fixed
    ``episodes`` and a relative squared error of the set's FiLM to each episode's target)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = 1e-3 * min(1.0, (step + 1) / 50) * 0.5 * (1 + np.cos(np.pi * step / steps))
        e = rng.randrange(len(episodes)) if episodes else None
        cls = episodes[e] if episodes else rng.sample(ctr, k)
        idx = torch.stack([rows_of[cls[i % k]][torch.randint(len(rows_of[cls[i % k]]), (1,), generator=gen)][0]
                           for i in range(batch)])
        y = torch.arange(batch) % k
        zb = z[idx].float()
        if rng.random() < 0.5:
            zb = zb.flip(-1)
        t = text[torch.tensor(cls)]
        loss = F.cross_entropy(model(zb, t), y, label_smoothing=0.1)
        if arm == "film+contrast":
            swapped = F.cross_entropy(model(zb, t, t[derangement(k, gen)]), y, label_smoothing=0.1)
            loss = loss + F.relu(loss - swapped + margin)
        if targets is not None:
            pred = model.film(t).mean(0)
            loss = loss + distil * (pred - targets[e]).pow(2).sum() / targets[e].pow(2).sum().clamp_min(1e-8)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()


def distil_targets(rows_model: LateFiLM, z, labels, text, rows_of, ctr, seed: int, n: int, k: int,
                   per_class: int = 16) -> tuple[list[list[int]], torch.Tensor]:
    """``n`` fixed ``k``-way episodes from ``ctr`` and, for each, the set-level FiLM ``[n, 2C]``
    that fine-tuning on ``per_class`` photos of each of its classes finds with ``rows_model``'s rows."""
    rng, episodes, targets = random.Random(1000 + seed), [], []
    gen = torch.Generator().manual_seed(1000 + seed)
    for _ in tqdm(range(n), desc="distil targets", mininterval=10):
        cls = rng.sample(ctr, k)
        idx = [rows_of[c][torch.randperm(len(rows_of[c]), generator=gen)[:per_class]] for c in cls]
        with torch.no_grad():
            rows = F.normalize(rows_model.rows(text[torch.tensor(cls)]), dim=-1)
        targets.append(fit_set_film(rows, rows_model.log_scale.detach(), z[torch.cat(idx)].float(),
                                    torch.cat([torch.full((len(j),), i) for i, j in enumerate(idx)])))
        episodes.append(cls)
    return episodes, torch.stack(targets)


def run(arm: str, z, labels, text, ctr, cho, seed: int, steps: int, margin: float, k: int = 25,
        batch: int = 32, episodes: int = 64) -> dict:
    rows_of = {c: (labels == c).nonzero().flatten() for c in ctr + cho}
    torch.manual_seed(seed)
    model = LateFiLM(text.shape[1], z.shape[1], film=arm != "rows", per_class=arm not in ("setfilm", "setfilm+distil"))
    out, eps, targets = {}, None, None
    if arm == "setfilm+distil":                      # the fc-only rows first, then targets with them
        torch.manual_seed(seed)
        rows_model = LateFiLM(text.shape[1], z.shape[1], film=False)
        train(rows_model, "rows", z, labels, text, rows_of, ctr, seed, steps, margin, k, batch)
        eps, targets = distil_targets(rows_model, z, labels, text, rows_of, ctr, seed, episodes, k)
        model.rows.load_state_dict(rows_model.rows.state_dict())
        model.log_scale.data.copy_(rows_model.log_scale.data)
        out["target_rms"] = float(targets.pow(2).mean().sqrt())
    train(model, arm, z, labels, text, rows_of, ctr, seed, steps, margin, k, batch, eps, targets)
    rows = torch.cat([rows_of[c] for c in cho])
    y = torch.cat([torch.full((len(rows_of[c]),), i) for i, c in enumerate(cho)])
    t = text[torch.tensor(cho)]
    with torch.no_grad():
        true = torch.cat([model(z[rows[s:s + 128]].float(), t) for s in range(0, len(rows), 128)])
        out["top1"] = per_class_top1(true, y, len(cho))
        if arm != "rows":
            gains = []
            for r in range(3):
                if arm.startswith("setfilm"):
                    other = text[torch.tensor(random.Random(100 + r).sample(ctr, len(cho)))]
                else:
                    other = t[derangement(len(cho), torch.Generator().manual_seed(100 + r))]
                sw = torch.cat([model(z[rows[s:s + 128]].float(), t, other) for s in range(0, len(rows), 128)])
                gains.append(out["top1"] - per_class_top1(sw, y, len(cho)))
            out["language_gain_film"] = statistics.mean(gains)
            g, b = model.film(t).chunk(2, dim=-1)
            out["film_rms"] = float(torch.cat([g, b], -1).pow(2).mean().sqrt())
    if arm == "setfilm+distil":                      # the ceiling: the same fine-tune on half the held-out photos
        fit_rows, score_rows = rows[0::2], rows[1::2]
        r0 = F.normalize(model.rows(t), dim=-1).detach()
        g, b = fit_set_film(r0, model.log_scale.detach(), z[fit_rows].float(), y[0::2]).chunk(2)
        with torch.no_grad():
            zs = z[score_rows].float()
            f = F.relu6((1 + g)[None, :, None, None] * zs + b[None, :, None, None]).mean((2, 3))
            logits = [model.log_scale.exp() * F.normalize(x, dim=-1) @ r0.T for x in (f, F.relu6(zs).mean((2, 3)))]
        out["fitted_gain"] = per_class_top1(logits[0], y[1::2], len(cho)) - per_class_top1(logits[1], y[1::2], len(cho))
    return out


def summary(values: list[float]) -> dict:
    return {"mean": round(statistics.mean(values), 4), "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            "runs": [round(v, 4) for v in values]}


def arm_entry(old: dict | None, per: list[dict], steps: int) -> dict:
    """An arm's entry: these runs, plus the runs of ``old`` (same steps) at other (fold, seed) pairs."""
    if old is not None and old["steps"] == steps:
        done = {(r["fold"], r["seed"]) for r in per}
        per = sorted([r for r in old["runs"] if (r["fold"], r["seed"]) not in done] + per,
                     key=lambda r: (r["fold"], r["seed"]))
    return {"steps": steps, "seeds": sorted({r["seed"] % 10 for r in per}), "runs": per,
            **{k: summary([r[k] for r in per]) for k in ("top1", "language_gain_film", "film_rms", "target_rms",
                                                 "fitted_gain") if k in per[0]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--margin", type=float, default=0.5)
    ap.add_argument("--episodes", type=int, default=32, help="setfilm+distil's fixed episodes")
    ap.add_argument("--grid", type=int, default=3, help="z average-pooled to grid × grid positions (0: all 7 × 7)")
    ap.add_argument("--arms", nargs="+", default=["rows", "film", "film+contrast", "setfilm"])
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "cub" / "late_film_screen.json"))
    args = ap.parse_args()
    root, train, recs = dev_classes()
    index = {c: i for i, c in enumerate(train)}
    labels = torch.tensor([index[r.label] for r in recs])
    desc = load_descriptions(description_file(root, "allaboutbirds"), train)
    text = meanpool_text(TextEncoder(), [desc[c] for c in train])
    bb = create_backbone("efficientnet_lite0")
    t0 = time.time()
    z = last_preactivation(bb, ImageCache(recs, PreprocessSpec.for_backbone(bb)))
    if args.grid:
        z = torch.cat([F.adaptive_avg_pool2d(z[s:s + 512].float(), args.grid) for s in range(0, len(z), 512)])
    report = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads, {platform.system()}",
              "classes": "ss0 train (98); 3 folds of 73 train / 25 held out", "photos": len(recs),
              "margin": args.margin, "grid": args.grid, "features_s": round(time.time() - t0, 1),
              "arms": {}}
    for arm in args.arms:
        per = []
        for s in args.seeds:                         # every fold once before the next seed: a kill keeps a spread
            for f, (ctr, cho) in enumerate(folds(train)):
                seed, t1 = 10 * f + s, time.time()
                r = run(arm, z, labels, text, [index[c] for c in ctr], [index[c] for c in cho], seed, args.steps,
                        args.margin, episodes=args.episodes)
                r.update(fold=f, seed=seed, train_s=round(time.time() - t1, 1))
                per.append(r)
                print(arm, f, seed, {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}, flush=True)
                if Path(args.out).exists():          # read again: another run may have written an arm
                    report["arms"] = json.loads(Path(args.out).read_text()).get("arms", {})
                report["arms"][arm] = arm_entry(report["arms"].get(arm), per, args.steps)
                Path(args.out).write_text(json.dumps(report, indent=1))     # after every run: a kill loses one
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
