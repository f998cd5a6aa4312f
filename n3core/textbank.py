"""Training texts: every class's description variants, encoded once, and the per-step pick.

A class reads, in a training step, either its main description or one of its *variants*:
copies with sentences dropped (:func:`text_variants`) and its texts from other description
sets (``TrainConfig.extra_descriptions``). :class:`TextBank` encodes all of them once with the
frozen text encoder and hands out padded token states for any class list.
"""
from __future__ import annotations

import random

import torch

from .text import TextEncoder, split_sentences

__all__ = ["text_variants", "class_texts", "TextBank"]


def text_variants(text: str, n: int, keep: float, rng) -> list[str]:
    """``text`` plus ``n - 1`` copies with each sentence dropped with probability ``1 - keep``
    (at least one sentence kept, order preserved): text augmentation for training."""
    sents = split_sentences(text)
    out = [text]
    for _ in range(n - 1):
        kept = [x for x in sents if rng.random() < keep] or [rng.choice(sents)]
        out.append(" ".join(kept))
    return out


def class_texts(root, cfg, classes: list[str], main_only: list[str] = ()) -> dict[str, list[str]]:
    """The texts training reads, per class: for each of ``classes`` its main description (from
    ``cfg.descriptions``, first), ``cfg.text_variants - 1`` sentence-dropped copies and texts of
    the extra description sets (``cfg.extra_descriptions``, half as many variants each); for
    each of ``main_only`` (validation classes) its main description alone. ``cfg`` is a
    :class:`~n3core.train.TrainConfig` or a :class:`~n3core.train.MatchTrainConfig`;
    every draw comes from ``cfg.seed``, so the same config gives the same texts."""
    from .data import description_file, load_descriptions

    rng = random.Random(cfg.seed)
    everyone = list(classes) + list(main_only)
    main = load_descriptions(description_file(root, cfg.descriptions), everyone)
    texts = {c: text_variants(main[c], cfg.text_variants if c in classes else 1, cfg.sentence_keep, rng)
             for c in everyone}
    for name in cfg.extra_descriptions:
        more = load_descriptions(description_file(root, name))
        for c in classes:
            if c in more:
                texts[c] += text_variants(more[c], max(1, cfg.text_variants // 2), cfg.sentence_keep, rng)
    return texts


class TextBank:
    """Token states of every class description (and its training variants), computed once.

    ``get(classes)`` → padded ``[K, L, D]`` states and ``[K, L]`` mask of variant 0 (the main
    text); ``get(classes, device, rng)`` picks a random variant per class (training): variant 0
    with probability ``main_prob`` and otherwise one of the others, or uniformly over all when
    ``main_prob`` is None."""

    def __init__(self, encoder: TextEncoder, variants: dict[str, list[str]], classes: list[str],
                 main_prob: float | None = None):
        self.main_prob = main_prob
        flat = [(c, t) for c in classes for t in variants[c]]
        self.rows: dict[str, list[int]] = {c: [] for c in classes}
        for j, (c, _) in enumerate(flat):
            self.rows[c].append(j)
        # tokens[j]: [n_j, D] real-token states of text j, unpadded (a padded [N, 256, D] bank of a
        # split's ~1,300 training texts was ~0.5 GB, most of it padding); get() pads what it picks
        self.tokens: list[torch.Tensor] = []
        self.truncated = []
        for i in range(0, len(flat), 64):                # chunks bound the encoder's padded batch
            enc = encoder.encode([t for _, t in flat[i:i + 64]])
            self.tokens += [st[m] for st, m in zip(enc.states, enc.mask)]
            self.truncated += [flat[i + t.index][0] for t in enc.truncated]
        self.dim = self.tokens[0].shape[-1]

    def pick(self, classes: list[str], rng=None) -> list[int]:
        """Row of the text each class reads: variant 0 without ``rng``, else a random variant."""
        if rng is None:
            return [self.rows[c][0] for c in classes]
        if self.main_prob is None:
            return [self.rows[c][int(torch.randint(len(self.rows[c]), (1,), generator=rng))] for c in classes]
        idx = []
        for c in classes:
            rows = self.rows[c]
            main = len(rows) == 1 or float(torch.rand(1, generator=rng)) < self.main_prob
            idx.append(rows[0] if main else rows[1 + int(torch.randint(len(rows) - 1, (1,), generator=rng))])
        return idx

    def get(self, classes: list[str], device="cpu", rng=None) -> tuple[torch.Tensor, torch.Tensor]:
        """States ``[K, L, D]`` (zero-padded to the longest text picked) and mask ``[K, L]``."""
        return self.rows_states(self.pick(classes, rng), device)

    def rows_states(self, rows: list[int], device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """The texts at ``rows``, padded: states ``[R, L, D]`` and mask ``[R, L]``."""
        picked = [self.tokens[j] for j in rows]
        L = max(len(t) for t in picked)
        states = torch.zeros(len(picked), L, self.dim)
        mask = torch.zeros(len(picked), L, dtype=torch.bool)
        for k, t in enumerate(picked):
            states[k, :len(t)] = t
            mask[k, :len(t)] = True
        return states.to(device), mask.to(device)
