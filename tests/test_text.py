"""The text encoder: real MiniLM, offline, deterministic, cached, differentiable."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from n3core.text import TextEncoder, TextEncoderError

TEXTS = ["A small finch with a bright yellow body and black wings.",
         "Large white seabird with a long hooked bill and dark wings; glides over the ocean."]


def test_shapes_pieces_spans(text_encoder):
    enc = text_encoder.encode(TEXTS)
    K, L = enc.input_ids.shape
    assert K == 2 and enc.states.shape == (2, L, 384) and enc.mask.shape == (2, L)
    n0 = int(enc.mask[0].sum())
    assert n0 < L and not enc.mask[0, n0:].any(), "the shorter text is padded"
    assert enc.pieces[0][0] == "[CLS]" and enc.pieces[0][-1] == "[SEP]" and len(enc.pieces[0]) == n0
    i = enc.pieces[0].index("yellow")
    s, e = enc.spans[0][i]
    assert TEXTS[0][s:e] == "yellow"
    assert enc.truncated == []


def test_deterministic_and_matches_sentence_embedding(text_encoder):
    a = text_encoder.encode(TEXTS).states
    text_encoder.clear_cache()
    b = text_encoder.encode(TEXTS).states
    assert torch.equal(a, b)
    # mean-pooled MiniLM states give a meaningful sentence similarity: finch/finch > finch/albatross
    enc = text_encoder.encode(TEXTS + ["A tiny yellow finch with black wings."])
    m = enc.mask.unsqueeze(-1).float()
    emb = torch.nn.functional.normalize((enc.states * m).sum(1) / m.sum(1), dim=-1)
    assert emb[2] @ emb[0] > emb[2] @ emb[1] + 0.1


def test_cache_encodes_only_changed_description(text_encoder):
    text_encoder.clear_cache()
    base = [f"Description number {i}: a brown bird with streaks." for i in range(5)]
    text_encoder.encode(base)
    calls = text_encoder.encoder_calls
    edited = list(base)
    edited[3] = "Description number 3: a bright red bird with a black mask."
    text_encoder.encode(edited)
    assert text_encoder.encoder_calls == calls + 1
    text_encoder.encode(edited)
    assert text_encoder.encoder_calls == calls + 1


def test_truncation_is_reported():
    enc = TextEncoder(max_length=32)
    long = " ".join(["feather"] * 100)
    out = enc.encode([long, "short text"])
    assert out.input_ids.shape[1] == 32
    assert len(out.truncated) == 1 and out.truncated[0].index == 0
    assert out.truncated[0].n_tokens == 102 and out.truncated[0].n_lost == 70
    with pytest.raises(TextEncoderError, match="max_length"):
        TextEncoder(max_length=600)


def test_bad_text_input(text_encoder):
    with pytest.raises(TextEncoderError, match="empty"):
        text_encoder.encode(["fine", "   "])
    with pytest.raises(TextEncoderError, match="not a string"):
        text_encoder.encode(["fine", None])
    with pytest.raises(TextEncoderError, match="list"):
        text_encoder.encode("just one string")


def test_gradients_reach_token_states(text_encoder):
    """Evidence needs d(output)/d(token states): grads flow to every real token, not padding."""
    from n3core.meta import Tokens2Label
    from tests.conftest import tiny_config

    enc = text_encoder.encode(TEXTS)
    states = enc.states.clone().requires_grad_(True)
    t2l = Tokens2Label(tiny_config(text_dim=384))
    torch.manual_seed(0)
    (t2l(states, enc.mask) * torch.randn(2, 16)).sum().backward()
    g = states.grad.norm(dim=-1)
    assert (g[enc.mask] > 0).all()
    assert (g[~enc.mask] == 0).all()


def test_works_with_no_network(tmp_path):
    """Load and encode in a fresh process where every socket connection fails."""
    code = (
        "import socket\n"
        "def no(*a, **k): raise OSError('network disabled by test')\n"
        "socket.socket.connect = no; socket.create_connection = no; socket.getaddrinfo = no\n"
        "import os; os.environ.pop('HF_HUB_OFFLINE', None)\n"
        "from n3core.text import TextEncoder\n"
        "e = TextEncoder().encode(['a red bird'])\n"
        "print(tuple(e.states.shape))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "(1, 5, 384)" in r.stdout


def test_embed_is_the_cached_sentence_embedding(text_encoder):
    """``embed`` gives what mean_embedding makes of ``encode``'s padded batch, and runs the
    network only for texts it has not seen."""
    from n3core.text import mean_embedding

    text_encoder.clear_cache()
    texts = TEXTS + ["Dark brown above; pale below.", TEXTS[0]]
    enc = text_encoder.encode(texts)
    ref = mean_embedding(enc.states, enc.mask)
    calls = text_encoder.encoder_calls
    out = text_encoder.embed(texts, chunk=2)
    assert out.shape == (4, 384) and text_encoder.encoder_calls == calls
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(out.norm(dim=-1), torch.ones(4))
    text_encoder.embed(texts + ["A new sentence about a heron."])
    assert text_encoder.encoder_calls == calls + 1
    assert text_encoder.embed([]).shape == (0, 384)
