"""Interpretability, checked analytically with tiny deterministic models (captum's style)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from n3core.explain import (adaptation_norms, gaussian_blur, heatmap_overlay, merge_word_pieces, norms_figure,
                            saliency, saliency_maps, sentence_ablation, shared_scale, token_evidence)
from n3core.figures import probability_bars_html, saliency_figure, shift_figure
from n3core.meta import N3Model
from n3core.preprocess import PreprocessSpec
from n3core.synthesize import SynthesizedClassifier, Synthesizer
from tests.conftest import make_tiny_backbone, tiny_config

DESC = {"cardinal": "A red songbird with a crest. The face is black.",
        "blue jay": "A large blue jay with a white belly and a crest.",
        "goldfinch": "A tiny unbelievably yellow finch with black wings."}


@pytest.fixture
def tiny_synth(text_encoder):
    torch.manual_seed(0)
    return Synthesizer(N3Model(tiny_config(text_dim=384, mu_init=0.1), make_tiny_backbone()), text_encoder)


def test_merge_word_pieces_keeps_spans(text_encoder):
    text = DESC["goldfinch"]
    enc = text_encoder.encode([text])
    n = len(enc.pieces[0])
    scores = torch.arange(n, dtype=torch.float)
    words = merge_word_pieces(enc.pieces[0], enc.spans[0], scores, text, "goldfinch")
    assert [w.text for w in words] == ["A", "tiny", "unbelievably", "yellow", "finch", "with", "black", "wings", "."]
    for w in words:
        assert text[w.start:w.end] == w.text
    pieces = enc.pieces[0]
    assert pieces[3:8] == ["un", "##bel", "##ie", "##va", "##bly"]
    assert words[2].score == 7.0, "a word scores the maximum of its pieces"


def test_evidence_gradients_and_negative_ranking(tiny_synth):
    x = torch.randn(1, 3, 16, 16)
    ev = token_evidence(tiny_synth, DESC, x, top_words=5)
    assert ev.label == ev.predicted and abs(sum(ev.probabilities.values()) - 1) < 1e-5
    assert all(w.cls == ev.label for w in ev.positive)
    assert [w.score for w in ev.positive] == sorted((w.score for w in ev.positive), reverse=True)
    # recompute the ratio independently: max token gradient / probability
    enc = tiny_synth.encode(DESC)
    st = enc.states.clone().requires_grad_(True)
    a = tiny_synth.model.meta(st, enc.mask)
    logits = a.classify(tiny_synth.model.features(x, a))[0]
    t = list(DESC).index(ev.label)
    torch.nn.functional.cross_entropy(logits[None], torch.tensor([t])).backward()
    g = st.grad.norm(dim=-1)
    assert (g[~enc.mask] == 0).all(), "padding tokens cannot affect the output: zero gradient"
    p = logits.softmax(-1).detach()
    expect = sorted(((n, float(g[k].max() / p[k])) for k, n in enumerate(DESC) if k != t), key=lambda r: -r[1])
    assert [n for n, _ in ev.negative_classes] == [n for n, _ in expect]
    for (_, r1), (_, r2) in zip(ev.negative_classes, expect):
        assert r1 == pytest.approx(r2, rel=1e-4)
    top_neg = ev.negative_classes[0][0]
    assert ev.negative[0].cls in {n for n, _ in ev.negative_classes[:3]}
    assert any(w.cls == top_neg for w in ev.negative)
    # a chosen label
    other = next(n for n in DESC if n != ev.predicted)
    ev2 = token_evidence(tiny_synth, DESC, x, label=other)
    assert ev2.label == other and all(w.cls == other for w in ev2.positive)
    with pytest.raises(ValueError, match="not one of the classes"):
        token_evidence(tiny_synth, DESC, x, label="ostrich")


def test_sentence_ablation_reports_each_sentence(tiny_synth):
    x = torch.randn(1, 3, 16, 16)
    rows = sentence_ablation(tiny_synth, DESC, x, "cardinal")
    assert [r["sentence"] for r in rows] == ["A red songbird with a crest.", "The face is black."]
    base = float(tiny_synth.synthesize(DESC).predict(x)[0, 0])
    alone = float(tiny_synth.synthesize({**DESC, "cardinal": "The face is black."}).predict(x)[0, 0])
    assert rows[0]["probability"] == pytest.approx(alone, abs=1e-6)
    assert rows[0]["delta"] == pytest.approx(alone - base, abs=1e-6)


class _TopLeft(nn.Module):
    """A 'backbone' that only looks at the top-left 8×8 pixels."""

    def forward(self, x):
        return x[:, :, :8, :8].flatten(1)[:, :8] * torch.arange(1.0, 9.0)


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "smoothgrad"])
def test_saliency_lands_where_the_model_looks(method):
    torch.manual_seed(0)
    clf = SynthesizedClassifier(_TopLeft(), torch.randn(3, 8), torch.zeros(3), 1.0, ["a", "b", "c"],
                                PreprocessSpec(image_size=16, mean=(0.5,) * 3, std=(0.5,) * 3))
    s = saliency(clf, torch.randn(1, 3, 16, 16), method=method)
    assert s.shape == (16, 16)
    assert s[:8, :8].sum() > 0 and s[8:, :].abs().sum() == 0 and s[:, 8:].abs().sum() == 0


def test_shared_scale_and_overlay():
    a, b = torch.rand(8, 8), torch.rand(8, 8) * 4
    sa, sb = shared_scale(a, b, percentile=100)
    assert float(sb.max()) == pytest.approx(1.0) and float(sa.max()) <= 0.26
    im = heatmap_overlay(torch.rand(3, 8, 8), sb)
    assert im.size == (8, 8) and im.mode == "RGB"


def test_norms_match_a_hand_computation(tiny_synth):
    rows = adaptation_norms(tiny_synth, DESC)
    a = tiny_synth.adaptation(DESC)
    theta = tiny_synth.model.theta()
    assert [r["name"] for r in rows] == [t.name for t in tiny_synth.backbone.tensors]
    for r in rows:
        # references in float64: the float32 norms differ from them only by float32 summation (≪ 1e-5)
        d = (a.mu * a.delta[r["name"]]).detach().double().flatten()
        assert r["delta_norm"] == pytest.approx(float((d ** 2).sum().sqrt()), rel=1e-5)
        t = theta[r["name"]].detach().double().flatten()
        assert r["theta_norm"] == pytest.approx(float((t ** 2).sum().sqrt()), rel=1e-5)
        assert r["ratio"] == pytest.approx(r["delta_norm"] / r["theta_norm"], rel=1e-6)
    fig = norms_figure(rows)
    assert len(fig.data) == 3 and list(fig.data[0].x) == [r["name"] for r in rows]


def test_edit_norms_match_a_hand_computation(tiny_synth):
    other = {**DESC, "goldfinch": "A small grey bird with a long tail."}
    rows = adaptation_norms(tiny_synth, other, before=DESC)
    a, b = tiny_synth.adaptation(other), tiny_synth.adaptation(DESC)
    for r in rows:
        d = (a.mu * a.delta[r["name"]] - b.mu * b.delta[r["name"]]).detach().double().flatten()
        assert r["edit_norm"] == pytest.approx(float((d ** 2).sum().sqrt()), rel=1e-5, abs=1e-12)
    assert all(r["edit_norm"] == 0 for r in adaptation_norms(tiny_synth, DESC, before=DESC))
    fig = norms_figure(rows)
    assert [t.name for t in fig.data][-2:] == ["‖μ·(ΔΘ − ΔΘ before)‖ the last edit", "edit / ‖μ·ΔΘ‖"]


def test_gaussian_blur_spreads_a_point_and_keeps_its_mass():
    m = torch.zeros(21, 21)
    m[10, 10] = 1.0
    b = gaussian_blur(m, 2.0)
    assert b.shape == m.shape and float(b.sum()) == pytest.approx(1.0, rel=1e-5)
    assert float(b.max()) < 0.1 and b[10, 10] == b.max() and b[10, 12] == pytest.approx(float(b[12, 10]))
    assert torch.equal(gaussian_blur(m, 0), m)


def test_saliency_maps_share_one_unit_and_their_difference():
    torch.manual_seed(0)
    spec = PreprocessSpec(image_size=16, mean=(0.5,) * 3, std=(0.5,) * 3)
    w = torch.randn(3, 8)
    a = SynthesizedClassifier(_TopLeft(), w, torch.zeros(3), 1.0, ["a", "b", "c"], spec)
    b = SynthesizedClassifier(_TopLeft(), w, torch.zeros(3), 4.0, ["a", "b", "c"], spec)     # logits 4x
    x = torch.randn(1, 3, 16, 16)
    maps = saliency_maps({"full": a, "fc-only": b}, x, target=1)
    assert maps["target"] == 1 and maps["image"].shape == (3, 16, 16)
    torch.testing.assert_close(maps["difference"], maps["full"] - maps["fc-only"])
    free = maps["fc-only"] < 1                                   # not clipped at the 99th percentile
    assert free.sum() > 200
    torch.testing.assert_close(4 * maps["full"][free], maps["fc-only"][free])    # one unit: 4x weaker stays 4x weaker
    assert float(maps["difference"].min()) < 0 and float(maps["difference"].max()) <= 0
    smooth = saliency_maps({"full": a, "fc-only": b}, x, target=1, smooth=2.0)
    assert maps["full"][3].sum() == 0 < smooth["full"][3].sum(), "smoothing spreads the map to nearby pixels"
    fig = saliency_figure(maps)
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len(heat) == 3 and all((t.zmin, t.zmax) == (-1, 1) for t in heat)


def test_figures_escape_names_and_show_before_ticks():
    names = ["<b>Jay</b>", "Crow"]
    after = {"full": torch.tensor([0.7, 0.3]), "fc-only": torch.tensor([0.4, 0.6])}
    before = {"full": torch.tensor([0.5, float("nan")]), "fc-only": torch.tensor([0.4, float("nan")])}
    html_ = probability_bars_html(names, after, before, true=0)
    assert "<b>Jay" not in html_ and "&lt;b&gt;Jay&lt;/b&gt; ✓" in html_
    assert html_.count("before: 50%") == 1 and "▲20" in html_ and "new" in html_
    fig = shift_figure(["p<1>"], names, {"full": torch.tensor([[0.2, -0.2]]), "fc-only": torch.zeros(1, 2)})
    assert list(fig.data[0].x) == ["&lt;b&gt;Jay&lt;/b&gt;", "Crow"] and list(fig.data[0].y) == ["p&lt;1&gt;"]
    assert fig.data[0].zmin == pytest.approx(-20) and list(fig.data[0].text[0]) == ["+20", "-20"]
