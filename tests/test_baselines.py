"""The baselines of docs/RESULTS.md on small planted problems and the real Lite0 feature path."""
from __future__ import annotations

from types import SimpleNamespace

import torch
from baseline_methods import (PDCNNConfig, PDCNNFC, PDCNNFCConv, TfidfText, eszsl_fit, eszsl_scores,
                              maxpool_text, meanpool_text, per_class_top1, predict, train_pdcnn)

from n3core.preprocess import PreprocessSpec


def planted(n_classes=12, per_class=20, f_dim=16, t_dim=10, seed=0):
    """Classes whose text embedding linearly determines their feature mean: solvable zero-shot."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(t_dim, f_dim, generator=g)
    text = torch.randn(n_classes, t_dim, generator=g)
    means = text @ A
    y = torch.arange(n_classes).repeat_interleave(per_class)
    x = means[y] + 0.3 * torch.randn(len(y), f_dim, generator=g)
    return x, y, text


def test_eszsl_generalises_to_unseen_planted_classes():
    x, y, text = planted(n_classes=30)
    seen = y < 20
    V = eszsl_fit(x[seen], y[seen], text[:20], gamma=1.0, lam=1.0)
    assert V.shape == (16, 10)
    unseen = ~seen
    acc = per_class_top1(eszsl_scores(x[unseen], V, text[20:]), y[unseen] - 20, 10)
    assert acc > 0.6, acc                                   # chance 0.1
    # a model fitted on shuffled class embeddings does not transfer
    Vb = eszsl_fit(x[seen], y[seen], text[:20][torch.randperm(20, generator=torch.Generator().manual_seed(1))], 1.0, 1.0)
    assert per_class_top1(eszsl_scores(x[unseen], Vb, text[20:]), y[unseen] - 20, 10) < acc - 0.3


def test_pdcnn_fc_and_conv_learn_and_pick_the_best_val_epoch():
    x, y, text = planted(n_classes=30)
    tr, va = y < 20, (y >= 20) & (y < 25)
    cfg = PDCNNConfig(hidden=32, dropout=0.0, lr=3e-3, epochs=40)
    model, curve = train_pdcnn(PDCNNFC(10, 16, cfg), x[tr], y[tr], text[:20], cfg,
                               val=(x[va], y[va] - 20, text[20:25], None), batch_size=64)
    assert len(curve) == 4
    te = y >= 25
    acc = per_class_top1(predict(model, x[te], text[25:]), y[te] - 25, 5)
    assert acc > 0.5, acc                                  # chance 0.2
    maps = x[:, :, None, None].expand(-1, -1, 2, 2).contiguous()      # a 2×2 "feature map"
    conv = PDCNNFCConv(10, 16, 16, PDCNNConfig(hidden=32, dropout=0.0, lr=3e-3, epochs=20, conv_dim=8, conv_filters=2))
    logits = conv(x[:5], text[:7], maps[:5])
    assert logits.shape == (5, 7)
    logits.sum().backward()
    assert conv.proj.weight.grad is not None and conv.h[1].weight.grad is not None


def test_pdcnn_alternative_texts_are_read_with_main_prob():
    x, y, text = planted(n_classes=20)
    cfg = PDCNNConfig(hidden=16, dropout=0.0, lr=3e-3, epochs=5)
    other = torch.randn(20, 10, generator=torch.Generator().manual_seed(5))

    def weights(t, **kw):
        torch.manual_seed(0)                                # same initial weights every time
        model, _ = train_pdcnn(PDCNNFC(10, 16, cfg), x, y, t, cfg, batch_size=64, **kw)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    alts = [[o] for o in other]
    main_only, others_only = weights(text), weights(other)
    assert torch.allclose(weights(text, alternatives=alts, main_prob=1.0), main_only)
    assert torch.allclose(weights(text, alternatives=alts, main_prob=0.0), others_only)
    mixed = weights(text, alternatives=alts, main_prob=0.5)
    assert not torch.allclose(mixed, main_only) and not torch.allclose(mixed, others_only)
    # a class without alternatives always reads its main text
    assert torch.allclose(weights(text, alternatives=[[] for _ in range(20)], main_prob=0.0), main_only)


def test_tfidf_vocabulary_comes_from_the_fitted_texts_only():
    tf = TfidfText(min_df=1).fit(["red bird with a red crest", "blue bird"])
    v = tf(["red red crest", "green parrot"])
    assert v.shape == (2, len(tf.vocab))
    assert torch.allclose(v[0].norm(), torch.tensor(1.0)) and v[1].abs().sum() == 0   # unseen words: nothing
    assert "green" not in tf.vocab


def test_maxpool_text_ignores_special_tokens_and_padding(text_encoder):
    short, long = "Red crest.", "A long description of a bird with many words about its wings and tail."
    both = maxpool_text(text_encoder, [short, long])
    alone = maxpool_text(text_encoder, [short])
    assert both.shape == (2, text_encoder.dim)
    torch.testing.assert_close(both[0], alone[0])          # padding never leaks into the max
    enc = text_encoder.encode([short])
    n = int(enc.mask[0].sum())
    torch.testing.assert_close(alone[0], enc.states[0, 1:n - 1].max(0).values)


def test_meanpool_text_is_minilm_sentence_embedding(text_encoder):
    short, long = "Red crest.", "A long description of a bird with many words about its wings and tail."
    both = meanpool_text(text_encoder, [short, long])
    torch.testing.assert_close(both[0], meanpool_text(text_encoder, [short])[0])   # no padding in the mean
    enc = text_encoder.encode([long])
    n = int(enc.mask[0].sum())
    ref = torch.nn.functional.normalize(enc.states[0, 1:n - 1].mean(0), dim=0)
    torch.testing.assert_close(both[1], ref)
    assert torch.allclose(both.norm(dim=-1), torch.ones(2))


def test_frozen_features_gives_pooled_features_and_maps(lite0, tmp_path, monkeypatch):
    from n3core.features import frozen_features

    monkeypatch.setenv("N3_CACHE", str(tmp_path))
    images = torch.randint(0, 255, (3, 3, 64, 64), dtype=torch.uint8)
    cache = _Cache(images, PreprocessSpec.for_backbone(lite0, 64))
    feats, maps = frozen_features(lite0, cache, maps=True, progress=False)
    assert feats.shape == (3, 1, 1280) and maps.shape[:3] == (3, 1, 1280) and maps.dtype == torch.float16
    torch.testing.assert_close(maps[:, 0].float().mean((2, 3)), feats[:, 0], atol=2e-2, rtol=1e-2)   # the map is what gets pooled
    with torch.no_grad():
        torch.testing.assert_close(feats[:, 0], lite0.module(cache.spec.normalize(images)))   # view 0: the whole photo
    again, _ = frozen_features(lite0, cache, progress=False)      # from the disk cache, without maps
    assert torch.equal(again, feats) and len(list(tmp_path.glob("frozen-pooled-*.npy"))) == 1


class _Cache:
    def __init__(self, images, spec):
        self.images, self.spec = images, spec
        self.records = [SimpleNamespace(path=f"photo{i}.jpg", bbox=None) for i in range(len(images))]

    def __len__(self):
        return len(self.images)
