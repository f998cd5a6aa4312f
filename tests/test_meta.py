"""The meta-model with a tiny random backbone: shapes, μ, identity at ΔΘ = 0, permutation
equivariance, gradients, modes."""
from __future__ import annotations

import pytest
import torch

from n3core.meta import Adaptation, N3Config, N3MetaModel, N3Model, SynthesisError, mean_embedding
from tests.conftest import tiny_config


def _inputs(K=4, L=7, D=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(K, L, D, generator=g)
    mask = torch.ones(K, L, dtype=torch.bool)
    mask[1, 5:] = False
    mask[3, 3:] = False
    return states, mask


def test_every_delta_is_shaped_like_its_tensor(tiny_backbone):
    model = N3Model(tiny_config(), tiny_backbone)
    a = model.meta(*_inputs())
    theta = model.theta()
    assert set(a.delta) == set(theta) and len(theta) == 6       # 2 convs + 2×(BN weight, bias)
    for name, d in a.delta.items():
        assert d.shape == theta[name].shape, name
    assert a.fc_weight.shape == (4, 8) and a.fc_bias.shape == (4,)
    logits = model(torch.randn(3, 3, 16, 16), *_inputs())
    assert logits.shape == (3, 4)


def test_mu_starts_at_1e_3_and_gamma_default(tiny_backbone):
    model = N3Model(tiny_config(), tiny_backbone)
    assert model.meta.mu.item() == pytest.approx(1e-3) and model.meta.mu.requires_grad
    assert model.cfg.gamma == 1.0
    a = model.meta(*_inputs())
    theta = model.theta()
    name = next(iter(a.delta))
    expected = 1.0 * theta[name] + 1e-3 * a.delta[name]
    assert torch.allclose(a.adapted_params(theta)[name], expected)
    m2 = N3MetaModel(tiny_config(gamma=0.5, mu_init=0.25), tiny_backbone.tensors)
    a2 = m2(*_inputs())
    assert torch.allclose(a2.adapted_params(theta)[name], 0.5 * theta[name] + 0.25 * a2.delta[name])


def test_zero_delta_gives_the_pretrained_network(tiny_backbone):
    model = N3Model(tiny_config(), tiny_backbone).eval()
    x = torch.randn(5, 3, 16, 16)
    a = model.meta(*_inputs())
    zero = Adaptation({k: torch.zeros_like(v) for k, v in a.delta.items()}, a.fc_weight, a.fc_bias,
                      a.mu, 1.0, a.logit_scale)
    with torch.no_grad():
        assert torch.allclose(model.features(x, zero), tiny_backbone.module(x), atol=1e-6)
        # and a real ΔΘ does change the features: the adaptation is live
        big = Adaptation(a.delta, a.fc_weight, a.fc_bias, torch.tensor(0.5), 1.0, a.logit_scale)
        assert not torch.allclose(model.features(x, big), tiny_backbone.module(x), atol=1e-4)


def test_to_moves_the_backbone_but_the_weights_leave_it_out(tiny_backbone):
    model = N3Model(tiny_config(), tiny_backbone)
    model.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in tiny_backbone.module.parameters())
    assert all(b.dtype == torch.float64 for b in tiny_backbone.module.buffers() if b.is_floating_point())
    assert model.meta.mu.dtype == torch.float64
    keys = set(model.state_dict())
    assert keys == {"meta." + k for k in model.meta.state_dict()}, "no backbone tensor in the saved weights"
    assert {id(p) for p in model.parameters()} == {id(p) for p in model.meta.parameters()}
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    states, mask = _inputs()
    assert model(x, states.double(), mask).dtype == torch.float64, "the whole forward runs in the new dtype"


def test_backbone_is_never_mutated(tiny_backbone):
    before = {k: v.clone() for k, v in tiny_backbone.module.state_dict().items()}
    model = N3Model(tiny_config(), tiny_backbone)
    model.train()
    opt = torch.optim.SGD(model.meta.parameters(), lr=1.0)
    for _ in range(2):
        model(torch.randn(2, 3, 16, 16), *_inputs()).sum().backward()
        opt.step()
    after = tiny_backbone.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not tiny_backbone.module.training, "BatchNorm statistics stay frozen"


MEAN_SKIP = [{}, {"mean_skip": "classifier", "mean_hidden": 16}]
SKIP_IDS = ["token", "token+mean-classifier"]


@pytest.mark.parametrize("extra", MEAN_SKIP, ids=SKIP_IDS)
def test_permuting_classes_permutes_rows(tiny_backbone, extra):
    model = N3Model(tiny_config(**extra), tiny_backbone).eval()
    states, mask = _inputs()
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        a, b = model.meta(states, mask), model.meta(states[perm], mask[perm])
        assert torch.allclose(b.fc_weight, a.fc_weight[perm], atol=1e-5)
        assert torch.allclose(b.fc_bias, a.fc_bias[perm], atol=1e-5)
        for k in a.delta:     # ΔΘ depends on the set, not its order
            assert torch.allclose(a.delta[k], b.delta[k], atol=1e-5)
        x = torch.randn(3, 3, 16, 16)
        assert torch.allclose(model(x, states[perm], mask[perm]), model(x, states, mask)[:, perm], atol=1e-5)


@pytest.mark.parametrize("extra", MEAN_SKIP, ids=SKIP_IDS)
def test_padding_tokens_do_not_matter(tiny_backbone, extra):
    meta = N3MetaModel(tiny_config(**extra), tiny_backbone.tensors).eval()
    states, mask = _inputs()
    noisy = states.clone()
    noisy[~mask] = 100.0
    with torch.no_grad():
        assert torch.allclose(meta(states, mask).fc_weight, meta(noisy, mask).fc_weight, atol=1e-5)


@pytest.mark.parametrize("extra", MEAN_SKIP, ids=SKIP_IDS)
def test_gradients_reach_every_meta_parameter(tiny_backbone, extra):
    model = N3Model(tiny_config(**extra), tiny_backbone)
    model.train()
    y = torch.tensor([0, 1, 2, 3, 0])
    loss = torch.nn.functional.cross_entropy(model(torch.randn(5, 3, 16, 16), *_inputs()), y)
    loss.backward()
    # the bias writer's own bias adds one constant to every logit: softmax cross-entropy's gradient
    # for it is a sum of (p_k - y_k) over the classes, zero up to rounding, so it is not checked
    missing = [n for n, p in model.meta.named_parameters()
               if n != "classifier.bias.bias" and (p.grad is None or p.grad.abs().sum() == 0)]
    assert missing == []


def test_mean_embedding_is_the_normalised_mean_of_the_word_tokens(tiny_backbone):
    states, mask = _inputs()
    emb = mean_embedding(states, mask)
    for k in range(len(states)):
        n = int(mask[k].sum())
        words = states[k, 1:n - 1]                       # [CLS] first and [SEP] last are left out
        assert torch.allclose(emb[k], torch.nn.functional.normalize(words.mean(0), dim=0), atol=1e-6)


def test_classifier_skip_alone_is_pdcnn_fc(tiny_backbone):
    """With the transformers' row zeroed, row k is the sentence-embedding MLP's output."""
    meta = N3MetaModel(tiny_config(mean_skip="classifier", mean_hidden=16), tiny_backbone.tensors).eval()
    torch.nn.init.zeros_(meta.classifier.weight[-1].weight)
    torch.nn.init.zeros_(meta.classifier.weight[-1].bias)
    states, mask = _inputs()
    with torch.no_grad():
        a = meta(states, mask)
        wb = meta.classifier.skip(mean_embedding(states, mask))
    assert torch.allclose(a.fc_weight, wb[:, :-1], atol=1e-6)
    for bad in ("yes", "label"):
        with pytest.raises(ValueError, match="mean_skip"):
            tiny_config(mean_skip=bad)


def test_fc_only_mode_has_no_decoders(tiny_backbone):
    model = N3Model(tiny_config(mode="fc-only"), tiny_backbone).eval()
    a = model.meta(*_inputs())
    assert a.delta == {} and model.meta.decoders is None
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model.features(x, a), tiny_backbone.module(x))


def test_adapt_pattern_and_bad_config(tiny_backbone):
    meta = N3MetaModel(tiny_config(adapt_pattern=r"^3\."), tiny_backbone.tensors)
    assert set(meta(*_inputs()).delta) == {"3.weight"}
    with pytest.raises(ValueError, match="matches no backbone tensor"):
        N3MetaModel(tiny_config(adapt_pattern="nothing"), tiny_backbone.tensors)
    with pytest.raises(ValueError, match="mode"):
        tiny_config(mode="half")
    with pytest.raises(ValueError, match="unknown config keys"):
        N3Config.from_dict({"d_model": 8, "colour": "red"})
    with pytest.raises(SynthesisError, match="K >= 2"):
        meta(*[t[:1] for t in _inputs()])


def test_config_round_trip():
    cfg = tiny_config(mu_init=0.01)
    assert N3Config.from_dict(cfg.to_dict()) == cfg


def test_inference_shortcut_of_the_decoders_is_exact_and_follows_the_weights(tiny_backbone):
    """Eval mode without autograd takes the factored path (text-free part kept, K·H products);
    it must give the same ΔΘ as the training path, and a changed parameter must not leave a
    stale kept part behind."""
    torch.manual_seed(0)
    model = N3Model(tiny_config(d_model=32, n_heads=2), tiny_backbone).eval()
    with torch.no_grad():
        for p in model.meta.decoders.parameters():        # non-trivial LayerNorm and biases
            p.add_(torch.randn_like(p) * 0.1)
    states, mask = _inputs(K=5)
    dec = model.meta.decoders

    def both():
        with torch.no_grad():
            fast = model.meta(states, mask).delta
        assert dec._frozen is not None, "the shortcut ran"
        with torch.enable_grad():
            ref = model.meta(states, mask).delta
        return fast, ref

    def assert_same(fast, ref):
        for n in ref:
            r = ref[n].detach()
            # float32 sums over d = 32 terms in another order: a few ulps of the largest value
            assert float((fast[n] - r).abs().max()) <= 1e-5 * float(r.abs().max()), n

    fast, ref = both()
    assert_same(fast, ref)
    with torch.no_grad():
        dec.out[0].weight.mul_(2.0)                         # an in-place update, as an optimizer makes
        dec.queries.add_(0.5)
    fast2, ref2 = both()
    assert_same(fast2, ref2)
    assert not torch.allclose(fast2[dec.names[0]], fast[dec.names[0]])
    model.train()
    with torch.no_grad():
        dec._frozen = None
        model.meta(states, mask)
    assert dec._frozen is None, "training mode never takes the shortcut"


def test_synthesizer_keeps_label_embeddings_per_description(tiny_backbone, text_encoder):
    """Without autograd a synthesizer runs Tokens2Label only on descriptions it has not seen;
    the result equals the whole batch's, and a changed text path is never served stale."""
    from n3core.synthesize import Synthesizer

    torch.manual_seed(0)
    synth = Synthesizer(N3Model(tiny_config(text_dim=384, d_model=32, n_heads=2), tiny_backbone), text_encoder)
    desc = {"a": "A red bird with a crest.", "b": "A small blue bird.", "c": "A black bird with a yellow eye."}
    calls = []
    t2l = synth.model.meta.tokens2label
    t2l.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    with torch.no_grad():
        first = synth.adaptation(desc)
        edited = synth.adaptation({**desc, "b": "A small blue bird with a white belly."})
    assert calls == [3, 1], "the edit re-ran Tokens2Label for the edited description only"
    with torch.enable_grad():
        ref = synth.adaptation({**desc, "b": "A small blue bird with a white belly."})
    scale = float(ref.fc_weight.detach().abs().max())
    assert float((edited.fc_weight - ref.fc_weight.detach()).abs().max()) <= 1e-5 * scale
    with torch.no_grad():
        t2l.proj[1].weight.mul_(1.5)                    # the text path changed: nothing kept is reused
        again = synth.adaptation(desc)
    assert calls[-1] == 3
    assert not torch.allclose(again.fc_weight, first.fc_weight)


def test_clone_module_is_a_deepcopy_that_shares_nothing(tiny_backbone):
    """The synthesized classifier's backbone copy: Θ' where given, every other tensor cloned,
    its own hooks and mode; the same function as a deepcopy with those tensors swapped in."""
    import copy

    from n3core.synthesize import clone_module

    src = tiny_backbone.module.eval()
    name, p = next(iter(src.named_parameters()))
    new_p = p.detach() + 0.5
    clone = clone_module(src, {name: new_p})
    ref = copy.deepcopy(src)
    with torch.no_grad():
        dict(ref.named_parameters())[name].copy_(new_p)
        x = torch.randn(2, 3, 16, 16)
        assert torch.equal(clone(x), ref(x))
    mine = {t.data_ptr() for t in [*clone.parameters(), *clone.buffers()]}
    theirs = {t.data_ptr() for t in [*src.parameters(), *src.buffers()]}
    assert not mine & theirs, "no parameter or buffer storage is shared with the source"
    assert dict(clone.named_parameters())[name].data_ptr() == new_p.data_ptr(), "Θ' is taken, not copied"
    before = {k: v.clone() for k, v in src.state_dict().items()}
    clone.train()
    clone.register_forward_hook(lambda *a: None)
    with torch.no_grad():
        clone(x)                                         # training mode: BatchNorm statistics move
        for b in clone.buffers():
            b.add_(1)
    assert not src.training and not src._forward_hooks
    assert all(torch.equal(before[k], v) for k, v in src.state_dict().items())
    with pytest.raises(KeyError, match="not parameters"):
        clone_module(src, {"no.such.weight": new_p})
