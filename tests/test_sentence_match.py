"""The sentence match: how a synthesized classifier fuses it, the language control over it,
export, training on synthetic maps, and ``train-match`` end to end with the real models."""
from __future__ import annotations

import json

import pytest
import torch

from n3core.backbones import feature_map
from n3core.checkpoint import CheckpointError
from n3core.evaluate import evaluate_protocol, format_summary
from n3core.meta import N3Model, SynthesisError
from n3core.sentence_match import MatchConfig, MatchEnsemble, SentenceMatch, WEIGHT_PREFIX, sentence_bank
from n3core.train import MatchTrainConfig, fit_match
from n3core.synthesize import Synthesizer
from tests.conftest import ROOT, make_tiny_backbone, tiny_config
from tests.test_evaluate import photos  # noqa: F401  (fixture)

DESC = {"Cardinal": "A red songbird with a crest. Its face is black around a thick red bill.",
        "Blue Jay": "A crested jay, blue above. Black bars cross its wings; a black necklace.",
        "Goldfinch": "A small yellow finch. Black wings with white bars; a black cap."}
OTHER = {"Mallard": "A duck with a glossy green head. A yellow bill.",
         "Crow": "All black, large, with a heavy bill."}


def _match(kappa=0.5, text_blind=False, seed=0):
    torch.manual_seed(seed)
    match = SentenceMatch(MatchConfig(text_dim=384, channels=8, dim=16, kappa=kappa))
    with torch.no_grad():
        for p in match.parameters():             # big enough to move the logits of a random model
            p.mul_(3.0)
        if text_blind:                           # every map from the sentences is its bias: text-independent
            for lin in (match.query[1], match.target, match.weight):
                lin.weight.zero_()
    return match.eval()


def _synth(text_encoder, mode="fc-only", kappa=0.5, text_blind=False, members=1):
    torch.manual_seed(0)
    model = N3Model(tiny_config(text_dim=384, mode=mode, mu_init=0.5), make_tiny_backbone())
    matches = [_match(kappa, text_blind, seed) for seed in range(members)]
    return Synthesizer(model, text_encoder, match=MatchEnsemble(matches))


def test_the_classifier_adds_kappa_times_the_match_to_its_layer(text_encoder):
    synth = _synth(text_encoder, mode="full")
    clf, plain = synth.synthesize(DESC), synth.synthesize(DESC, kappa=0.0)
    assert torch.equal(clf.fc.weight, plain.fc.weight)
    x = torch.randn(4, 3, 16, 16)
    vec, mask, sentences = sentence_bank(text_encoder, list(DESC.values()), 16)
    assert sentences[0] == ["A red songbird with a crest.", "Its face is black around a thick red bill."]
    with torch.no_grad():
        fmap = feature_map(clf.backbone, x)
        expected = plain(x) + 0.5 * synth.match.members[0](fmap, vec, mask)
        assert torch.allclose(clf(x), expected, atol=1e-5)
        assert (clf(x) - plain(x)).abs().max() > 1e-3, "the match moved the logits"
        # pooled features: the classification layer alone (the control's "no adaptation")
        assert torch.allclose(clf.head(fmap.mean((2, 3))), plain(x), atol=1e-5)
    assert clf.words.sentences == sentences and clf.info["sentence_match"] == {"kappa": 0.5}
    fc = synth.synthesize(DESC, layer_only=True)
    assert fc.words is None and fc.info["sentence_match"] is None


def test_several_matches_are_averaged(text_encoder):
    synth = _synth(text_encoder, mode="full", members=3)
    clf, plain = synth.synthesize(DESC), synth.synthesize(DESC, kappa=0.0)
    assert clf.words.members == 3
    x = torch.randn(4, 3, 16, 16)
    vec, mask, _ = sentence_bank(text_encoder, list(DESC.values()), 16)
    with torch.no_grad():
        fmap = feature_map(clf.backbone, x)
        each = torch.stack([m(fmap, vec, mask) for m in synth.match.members])
        assert (each[0] - each[1]).abs().max() > 1e-3, "the members differ"
        assert torch.allclose(clf(x), plain(x) + 0.5 * each.mean(0), atol=1e-5)
        att = clf.words.attention(fmap)
    # what the app shows: per sentence, the members' mean; the contributions still sum to the term
    S, (h, w) = vec.shape[1], fmap.shape[-2:]
    assert att["attention"].shape == (4, 3, S, h, w) and att["weight"].shape == (3, S)
    assert torch.allclose(att["contribution"].sum(-1), att["logit"], atol=1e-5)
    assert torch.allclose(att["logit"], 0.5 * each.mean(0), atol=1e-5)
    with pytest.raises(ValueError, match="differ in shape"):
        MatchEnsemble([_match(), SentenceMatch(MatchConfig(text_dim=384, channels=8, dim=32))])


def test_an_ensemble_round_trips_through_its_checkpoint_tensors():
    """Each match's tensors live under ``sentence_match.<i>.``; the record's ``members`` says how many."""
    match = _match()
    record = {"config": match.cfg.to_dict(), "train_config": MatchTrainConfig().__dict__, "history": []}
    new = MatchEnsemble([match, _match(seed=1)])
    rec2 = dict(record, members=[{"seed": 0}, {"seed": 1}])
    back = MatchEnsemble.from_checkpoint(new.tensors(), rec2)
    assert len(back) == 2 and torch.equal(back.members[1].keys.weight, new.members[1].keys.weight)
    for k, v in match.state_dict().items():
        assert torch.equal(back.members[0].state_dict()[k], v), k
    with pytest.raises(ValueError, match="more matches"):
        MatchEnsemble.from_checkpoint(new.tensors(), dict(record, members=[{"seed": 0}]))


def test_sentences_are_capped_and_padding_counts_for_nothing(text_encoder):
    long = " ".join(f"Sentence number {i} says a thing." for i in range(20))
    vec, mask, sentences = sentence_bank(text_encoder, ["One sentence only.", long], 16)
    assert mask.sum(1).tolist() == [1, 16] and len(sentences[1]) == 16 and vec.shape == (2, 16, 384)
    head = MatchEnsemble([SentenceMatch(MatchConfig(text_dim=384, channels=8, dim=16))]).write(vec, mask, sentences)
    assert head.weight[0, 0, 0] == pytest.approx(1.0) and head.weight[0, 0, 1:].abs().sum() == 0
    assert torch.allclose(head.weight.sum(-1), torch.ones(1, 2))
    att = head.attention(torch.rand(3, 8, 4, 4))
    assert att["attention"].shape == (3, 2, 16, 4, 4)
    assert torch.allclose(att["attention"].sum((-2, -1)), torch.ones(3, 2, 16), atol=1e-5)
    assert att["cosine"].shape == (3, 2, 16) and att["logit"].shape == (3, 2)


def test_the_control_swaps_the_match_and_keeps_the_rows(text_encoder):
    synth = _synth(text_encoder)
    true, swapped = synth.synthesize(DESC), synth.synthesize(DESC, delta_from=OTHER)
    assert torch.equal(true.fc.weight, swapped.fc.weight)
    # 3 classes, 2 other descriptions: class k reads other description k mod 2
    assert swapped.words.sentences == [["A duck with a glossy green head.", "A yellow bill."],
                                       ["All black, large, with a heavy bill."],
                                       ["A duck with a glossy green head.", "A yellow bill."]]
    assert swapped.info["delta_from"] == sorted(OTHER) and not swapped.info["adapted_backbone"]
    with pytest.raises(SynthesisError, match="at least 2"):
        synth.synthesize(DESC, delta_from={"Crow": "black"})
    with pytest.raises(SynthesisError, match="no sentence match"):
        Synthesizer(synth.model, text_encoder).sentence_head(DESC)


def test_the_control_swaps_each_part_alone(text_encoder):
    """swap="delta" writes ΔΘ alone from the other texts (the match reads the true ones),
    swap="match" the match alone (ΔΘ from the true texts); "both" does both."""
    synth = _synth(text_encoder, mode="full")
    true = synth.synthesize(DESC)
    arms = {s: synth.synthesize(DESC, delta_from=OTHER, swap=s) for s in ("both", "delta", "match")}

    def same_backbone(a, b):
        sa, sb = a.backbone.state_dict(), b.backbone.state_dict()
        return all(torch.equal(sa[k], sb[k]) for k in sa)

    assert not same_backbone(arms["both"], true) and same_backbone(arms["both"], arms["delta"])
    assert same_backbone(arms["match"], true)
    assert arms["delta"].words.sentences == true.words.sentences
    assert arms["match"].words.sentences == arms["both"].words.sentences != true.words.sentences
    assert all(torch.equal(a.fc.weight, true.fc.weight) for a in arms.values())
    assert {s: a.info["swapped"] for s, a in arms.items()} == {"both": "both", "delta": "delta", "match": "match"}
    with pytest.raises(ValueError, match="swap must be one of"):
        synth.synthesize(DESC, delta_from=OTHER, swap="rows")


@pytest.mark.parametrize("protocol", ["paper", "hard5"])
def test_the_language_control_covers_the_match(text_encoder, photos, protocol):  # noqa: F811
    images, desc, control = photos
    blind = evaluate_protocol(_synth(text_encoder, text_blind=True), desc, images, protocol=protocol,
                              permutations=2, control_descriptions=control, progress=False)
    assert blind["language_gain"] == 0.0, "a match that ignores the text adds no language"
    assert blind["sentence_match_kappa"] == 0.5 and "sentence match" in format_summary(blind)
    r = evaluate_protocol(_synth(text_encoder), desc, images, protocol=protocol, permutations=2,
                          control_descriptions=control, progress=False)
    rows_only = evaluate_protocol(_synth(text_encoder), desc, images, protocol=protocol, permutations=2,
                                  control_descriptions=control, progress=False, kappa=0.0)
    assert r["no_adaptation"] == pytest.approx(rows_only["per_class_top1"]["median"])
    assert r["language_gain"] == pytest.approx(r["per_class_top1"]["median"] - r["swapped_adaptation"])
    assert rows_only["language_gain"] == 0.0 and rows_only["sentence_match_kappa"] == 0.0
    # fc-only meta-model: ΔΘ is empty, so swapping ΔΘ alone changes nothing and the match carries it all
    assert r["swapped_delta"] == pytest.approx(r["per_class_top1"]["median"])
    assert r["swapped_match"] == pytest.approx(r["swapped_adaptation"])
    assert r["language_gain_match"] == pytest.approx(r["language_gain"]) and r["language_gain_delta"] == 0


def test_export_keeps_the_match(text_encoder, tmp_path):
    clf = _synth(text_encoder, mode="full").synthesize(DESC)
    path = clf.export(tmp_path / "c.pt2")
    loaded = torch.export.load(path).module()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(loaded(x), clf(x), atol=1e-5)


def test_training_learns_which_sentence_fits_which_map():
    """Synthetic: class c's maps light channel c at one corner, its one 'sentence' is a fixed
    random vector; a few hundred episodes must beat chance clearly and lower the loss."""
    torch.manual_seed(0)
    n_cls, C = 6, 8
    sents = torch.randn(n_cls, 384)
    maps = torch.rand(n_cls * 20, 1, C, 4, 4) * 0.1
    labels = torch.arange(n_cls).repeat_interleave(20)
    for i, y in enumerate(labels):
        maps[i, 0, y, 0, 0] += 3.0
    classes = [f"c{i}" for i in range(n_cls)]
    bank = {c: (sents[i][None, None], torch.ones(1, 1, dtype=torch.bool)) for i, c in enumerate(classes)}
    match = SentenceMatch(MatchConfig(text_dim=384, channels=C, dim=16, sentence_dropout=0.0))
    cfg = MatchTrainConfig(steps=300, k=3, batch_size=12, warmup_steps=10, views=1)
    history = fit_match(match, maps, labels, bank, classes, cfg, progress=False)
    assert history[-1]["loss"] < 0.7 * history[0]["loss"]
    with torch.no_grad():
        logits = match(maps[:, 0], sents[:, None], torch.ones(n_cls, 1, dtype=torch.bool))
    assert (logits.argmax(1) == labels).float().mean() > 0.9
    with pytest.raises(ValueError, match="at least 7"):
        fit_match(match, maps, labels, bank, classes, MatchTrainConfig(k=7, steps=1), progress=False)


def test_train_match_end_to_end_with_the_real_models(small_split, tmp_path, capsys):
    from n3core.cli import main

    out = tmp_path / "with-match"
    args = ["train-match", "--checkpoint", str(ROOT / "checkpoints" / "n3-effl0-minilm-ss0"), "--out", str(out),
            "--split", small_split, "--steps", "6", "--k", "3", "--members", "2", "--no-progress"]
    assert main(args) == 0
    info = json.loads((out / "checkpoint.json").read_text())
    rec = info["sentence_match"]
    assert rec["config"]["channels"] == 1280 and rec["train_classes"] == 5 and rec["train_config"]["steps"] == 6
    assert [m["seed"] for m in rec["members"]] == [0, 1] and all(len(m["history"]) == 1 for m in rec["members"])
    synth = Synthesizer.from_checkpoint(out, device="cpu")
    assert len(synth.match) == 2 and synth.match.cfg.kappa == 1.0
    assert not torch.equal(synth.match.members[0].keys.weight, synth.match.members[1].keys.weight)
    clf = synth.synthesize(DESC)
    assert clf.words.members == 2 and clf.predict(torch.zeros(1, 3, 224, 224)).shape == (1, 3)
    assert main(args) == 2 and "exists" in capsys.readouterr().err       # never overwritten
    # join-matches: matches trained alike with other seeds, averaged onto a checkpoint
    one = tmp_path / "seed-5"
    assert main(args[:4] + [str(one)] + args[5:-3] + ["--seed", "5", "--members", "1", "--no-progress"]) == 0
    fconly = str(ROOT / "checkpoints" / "n3-effl0-minilm-ss0-fconly")
    joined = tmp_path / "joined"
    assert main(["join-matches", "--checkpoint", fconly, "--matches", str(out), str(one), "--out", str(joined)]) == 0
    jrec = json.loads((joined / "checkpoint.json").read_text())["sentence_match"]
    assert [m["seed"] for m in jrec["members"]] == [0, 1, 5] and jrec["joined_from"] == [str(out), str(one)]
    js = Synthesizer.from_checkpoint(joined, device="cpu")
    assert len(js.match) == 3 and js.config.mode == "fc-only"
    assert torch.equal(js.match.members[2].values.weight, Synthesizer.from_checkpoint(one, device="cpu").match.members[0].values.weight)
    capsys.readouterr()
    assert main(["join-matches", "--checkpoint", fconly, "--matches", str(out), str(out), "--out", str(tmp_path / "x")]) == 2
    assert "same seed twice" in capsys.readouterr().err
    assert main(["join-matches", "--checkpoint", fconly, "--matches", fconly, "--out", str(tmp_path / "y")]) == 2
    assert "no sentence match" in capsys.readouterr().err
    bad = json.loads((one / "checkpoint.json").read_text())
    bad["sentence_match"]["config"]["dim"] = 64                   # a record that does not fit its tensors
    (one / "checkpoint.json").write_text(json.dumps(bad))
    assert main(["join-matches", "--checkpoint", fconly, "--matches", str(one), "--out", str(tmp_path / "z")]) == 2
    assert "does not fit" in capsys.readouterr().err and not (tmp_path / "z").exists()
    # package ships it with the weight chosen on a dev split; the tensors are unchanged
    assert main(["package", "--checkpoint", str(out), "--out", str(tmp_path / "shipped"), "--kappa", "1.5"]) == 0
    shipped = Synthesizer.from_checkpoint(tmp_path / "shipped", device="cpu")
    assert shipped.match.cfg.kappa == 1.5 and shipped.synthesize(DESC).words.kappa == 1.5
    for k, v in synth.match.state_dict().items():
        assert torch.equal(v, shipped.match.state_dict()[k]), k
    assert main(["package", "--checkpoint", str(ROOT / "checkpoints" / "n3-effl0-minilm-ss0-fconly"), "--out",
                 str(tmp_path / "no"), "--kappa", "1"]) == 2
    assert "no sentence match" in capsys.readouterr().err
    # a sentence-match config that does not fit its tensors is refused, naming the match
    info["sentence_match"]["config"]["dim"] = 64
    (out / "checkpoint.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="sentence match"):
        Synthesizer.from_checkpoint(out, device="cpu")


def test_match_weights_without_a_record_are_refused(tmp_path):
    from n3core.checkpoint import load_checkpoint, save_checkpoint

    weights, info, _ = load_checkpoint(ROOT / "checkpoints" / "n3-effl0-minilm-ss0-fconly")
    weights[WEIGHT_PREFIX + "log_scale"] = torch.tensor(1.0)
    keep = {k: v for k, v in info.items() if k not in ("files", "format", "version", "saved_at", "dtype")}
    save_checkpoint(tmp_path / "odd", weights, keep)
    with pytest.raises(CheckpointError, match="sentence match"):
        Synthesizer.from_checkpoint(tmp_path / "odd", device="cpu")


def test_sentence_attention_explains_one_label(text_encoder):
    from PIL import Image

    from n3core.explain import sentence_attention
    from n3core.figures import sentence_attention_figure

    synth = _synth(text_encoder, mode="full")
    clf = synth.synthesize(DESC)
    image = Image.fromarray((torch.rand(40, 30, 3) * 255).byte().numpy())
    att = sentence_attention(clf, image, target=1)
    assert att["sentences"] == ["A crested jay, blue above.", "Black bars cross its wings;", "a black necklace."]
    assert att["attention"].shape == (3, 16, 16) and torch.allclose(att["attention"].amax((1, 2)), torch.ones(3))
    # the sentences' contributions are the match's whole term in the label's logit
    assert float(att["contribution"].sum()) == pytest.approx(att["match_logit"], abs=1e-5)
    with torch.no_grad():
        assert att["logit"] == pytest.approx(float(clf(clf.prepare(image))[0, 1]), abs=1e-5)
    fig = sentence_attention_figure(att)
    assert len(fig.data) == 6 and "match" in fig.layout.annotations[0].text
    with pytest.raises(ValueError, match="no sentence match"):
        sentence_attention(synth.synthesize(DESC, layer_only=True), image)


def test_token_evidence_predicts_what_the_classifier_predicts(text_encoder):
    from PIL import Image

    from n3core.explain import token_evidence

    synth = _synth(text_encoder, mode="full")
    clf = synth.synthesize(DESC)
    image = Image.fromarray((torch.rand(40, 30, 3) * 255).byte().numpy())
    ev = token_evidence(synth, DESC, image)
    probs = clf.predict(image)[0]
    assert ev.predicted == list(DESC)[int(probs.argmax())]
    assert [ev.probabilities[c] for c in DESC] == pytest.approx(probs.tolist(), abs=1e-5)


def test_train_match_refuses_no_members_before_any_work(tmp_path, capsys):
    from n3core.cli import main

    out = tmp_path / "none"
    assert main(["train-match", "--checkpoint", str(ROOT / "checkpoints" / "n3-effl0-minilm-ss0"), "--out", str(out),
                 "--members", "0", "--no-progress"]) == 2
    assert "members must be at least 1" in capsys.readouterr().err and not out.exists()
