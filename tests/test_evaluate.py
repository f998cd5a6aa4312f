"""The evaluation protocols and the language control, on a tiny random model over real photos
(fast), and the hard5 task choice with the real text encoder."""
from __future__ import annotations

import pytest
import torch

from n3core.evaluate import evaluate_protocol, format_summary, nearest_tasks
from n3core.meta import N3Model
from n3core.synthesize import Synthesizer
from tests.conftest import make_tiny_backbone, tiny_config

WORDS = ["red crown", "blue wings", "yellow breast", "long tail", "hooked bill", "webbed feet", "black mask",
         "white bars", "green head", "brown streaks"]


@pytest.fixture(scope="module")
def photos(cub, data_root):
    """Six ss0 test classes, five photos each, with made-up descriptions; and
    twelve train classes whose descriptions the control draws from."""
    from n3core.data import ImageSet, load_split

    split = load_split(data_root, "ss0")
    classes = split["test"][:6]
    records = [cub.records[i] for c in classes for i in cub.indices(c)[:5]]
    desc = {c: f"A bird with a {WORDS[i]} and a {WORDS[(i + 3) % 10]}." for i, c in enumerate(classes)}
    control = {c: f"A bird with {WORDS[(i * 7) % 10]} and {WORDS[i % 10]}." for i, c in enumerate(split["train"][:12])}
    return ImageSet(cub.root, classes, records), desc, control


def _synth(text_encoder, mode="full", mu=0.5, text_blind=False):
    torch.manual_seed(0)
    model = N3Model(tiny_config(text_dim=384, mode=mode, mu_init=mu), make_tiny_backbone())
    if text_blind:       # keys and values of the decoders' attention zeroed: ΔΘ = W·q + b, whatever the text
        with torch.no_grad():
            model.meta.decoders.kv.weight.zero_()
            model.meta.decoders.kv.bias.zero_()
    return Synthesizer(model, text_encoder)


def test_delta_from_other_descriptions_changes_the_network_not_the_rows(text_encoder, photos):
    _, desc, control = photos
    synth = _synth(text_encoder)
    true, swapped = synth.synthesize(desc), synth.synthesize(desc, delta_from=control)
    assert torch.equal(true.fc.weight, swapped.fc.weight) and torch.equal(true.fc.bias, swapped.fc.bias)
    a, b = dict(true.backbone.named_parameters()), dict(swapped.backbone.named_parameters())
    assert any(not torch.equal(a[k], b[k]) for k in a), "ΔΘ came from the other descriptions"
    assert swapped.info["delta_from"] == sorted(control)
    fc = synth.synthesize(desc, layer_only=True, delta_from=control)     # no ΔΘ at all: nothing to swap
    assert all(torch.equal(p, q) for p, q in zip(fc.backbone.parameters(), synth.model.backbone_module.parameters()))


@pytest.mark.parametrize("protocol", ["paper", "hard5"])
def test_a_text_blind_adaptation_has_no_language_gain(text_encoder, photos, protocol):
    images, desc, control = photos
    r = evaluate_protocol(_synth(text_encoder, text_blind=True), desc, images, protocol=protocol, permutations=2,
                          control_descriptions=control, control_draws=3, progress=False)
    assert r["language_gain"] == 0.0 and r["swapped_adaptation"] == r["per_class_top1"]["median"]
    assert len(r["swapped_adaptation_all"]) == 3
    assert r["protocol"] == protocol and 0 <= r["no_adaptation"] <= 1
    assert "language_gain +0.0 points" in format_summary(r)


@pytest.mark.parametrize("protocol", ["paper", "hard5"])
def test_the_language_control_is_measured_and_fc_only_has_none(text_encoder, photos, protocol):
    images, desc, control = photos
    full = evaluate_protocol(_synth(text_encoder), desc, images, protocol=protocol, permutations=2,
                             control_descriptions=control, control_draws=3, progress=False)
    med = full["per_class_top1"]["median"]
    assert full["language_gain"] == pytest.approx(med - full["swapped_adaptation"])
    assert full["swapped_adaptation"] in full["swapped_adaptation_all"]          # the median of 3 draws
    # the control classifiers really ran on other networks: one backbone pass per draw at least
    assert full["backbone_passes"] >= 1 + 3
    fc = evaluate_protocol(_synth(text_encoder, mode="fc-only"), desc, images, protocol=protocol, permutations=2,
                           control_descriptions=control, progress=False)
    assert fc["language_gain"] == 0.0
    assert fc["no_adaptation"] == fc["swapped_adaptation"] == fc["per_class_top1"]["median"]
    assert fc["backbone_passes"] == 1, "every fc-only classifier shares one backbone pass"


def test_without_control_descriptions_the_gain_is_not_made_up(text_encoder, photos):
    images, desc, _ = photos
    r = evaluate_protocol(_synth(text_encoder), desc, images, permutations=1, progress=False)
    assert r["language_gain"] is None and r["swapped_adaptation"] is None
    assert "not run" in format_summary(r)
    with pytest.raises(ValueError, match="other classes"):
        evaluate_protocol(_synth(text_encoder), desc, images, control_descriptions=desc, progress=False)
    with pytest.raises(ValueError, match="protocol"):
        evaluate_protocol(_synth(text_encoder), desc, images, protocol="hard3", progress=False)


def test_hard5_scores_each_class_in_a_task_of_its_nearest_descriptions(text_encoder, photos):
    images, desc, control = photos
    r = evaluate_protocol(_synth(text_encoder), desc, images, protocol="hard5", control_descriptions=control,
                          progress=False)
    assert set(r["tasks"]) == set(desc)
    for c, task in r["tasks"].items():
        assert task[0] == c and len(set(task)) == 5 and set(task) <= set(desc)
    per = r["per_class_top1_of_median_run"]
    assert r["per_class_top1"]["median"] == pytest.approx(sum(per.values()) / len(per))
    assert all(v in {i / 5 for i in range(6)} for v in per.values()), "each class has 5 photos"


def test_nearest_tasks_follow_the_sentence_embedding(text_encoder):
    desc = {"duck a": "A duck with a green head that dabbles on ponds and lakes.",
            "duck b": "A dabbling duck of ponds and marshes, the drake with a glossy green head.",
            "duck c": "A duck of lakes and ponds with a dark green head and a yellow bill.",
            "hawk a": "A hawk of open country that soars on broad wings and hunts rodents.",
            "hawk b": "A broad-winged hawk that soars over fields hunting voles and mice.",
            "hawk c": "A soaring hawk of farmland with broad rounded wings; it hunts small mammals."}
    synth = _synth(text_encoder)
    tasks = nearest_tasks(synth, desc, size=3)
    for c, task in tasks.items():
        assert {t.split()[0] for t in task} == {c.split()[0]}, (c, task)
    with pytest.raises(ValueError, match="at least 5 classes"):
        nearest_tasks(synth, dict(list(desc.items())[:4]))


def test_reports_record_what_produced_them(tmp_path):
    import json

    from n3core.evaluate import write_report

    write_report({"per_class_top1": {"median": 0.5}}, tmp_path / "r.json")
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["per_class_top1"]["median"] == 0.5
    assert r["provenance"]["command"] and r["provenance"]["commit"], "a git checkout records its commit"
    write_report({"provenance": {"who": "kept"}}, tmp_path / "s.json")
    assert json.loads((tmp_path / "s.json").read_text())["provenance"] == {"who": "kept"}
