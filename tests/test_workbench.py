"""The app's UI-free actions (n3core.workbench) with the shipped models: cached synthesis,
concurrent sessions without cross-talk, uploads, zips and JSON imports."""
from __future__ import annotations

import json
import threading

import pytest
import torch

from bad_inputs import bad_images, make_zip
from n3core.data import DataError, ImageError, load_image
from n3core.meta import SynthesisError
from n3core.evaluate import control_sets
from n3core.data import label_from_filename, read_descriptions_json, read_labelled_zip, read_upload, split_classes
from n3core.workbench import (LanguageControl, Workbench, aligned_probabilities, control_descriptions, correct,
                              demo_descriptions, demo_photos, describe_edit, probability_shift)


@pytest.fixture(scope="module")
def wb():
    return Workbench.load(device="cpu")


@pytest.fixture(scope="module")
def photos():
    return [load_image(p) for p in demo_photos()]


def test_synthesis_is_cached_by_content_and_reencodes_only_edits(wb):
    desc = demo_descriptions()
    a = wb.synthesize(desc)
    assert wb.synthesize(dict(desc)) is a
    first = next(iter(desc))
    b = wb.synthesize({**desc, first: desc[first] + " A test edit that no other test makes."})
    assert b is not a and b.encoded == 1
    assert b.full.info["mode"] == "full" and b.fc_only.info["mode"] == "fc-only"
    with pytest.raises(SynthesisError, match="at least 2 classes"):
        wb.synthesize({first: desc[first]})


def test_concurrent_sessions_get_what_they_get_alone(wb, photos, data_root):
    """8 threads, each its own class set (different K and order), synthesize and classify at
    once; each result equals the one computed alone."""
    pool = split_classes(data_root, "ss0", "test")
    names = list(pool)
    sets = [{n: pool[n] for n in names[i:i + 3 + i]} for i in range(8)]
    alone = [wb.classify(wb.synthesize(s), photos) for s in sets]
    wb.clear_caches()                         # force fresh syntheses and classifications under concurrency
    results: list = [None] * len(sets)
    errors: list = []
    barrier = threading.Barrier(len(sets))

    def session(i):
        try:
            barrier.wait()
            results[i] = wb.classify(wb.synthesize(sets[i]), photos)
        except Exception as e:  # noqa: BLE001 — reported below
            errors.append(e)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(len(sets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, (r, a) in enumerate(zip(results, alone)):
        assert r["full"].shape == (len(photos), len(sets[i]))
        for mode in ("full", "fc-only"):
            torch.testing.assert_close(r[mode], a[mode], atol=1e-5, rtol=0)


def test_labelled_zip_matching_and_problems(wb, photos):
    jpg = demo_photos()[0].read_bytes()
    data = make_zip({"top/014.Blue_Jay/a.jpg": jpg, "top/blue jay/b.jpg": jpg, "top/CEDAR-WAXWING/c.jpg": jpg,
                 "top/Emu/d.jpg": jpg, "loose.jpg": jpg, "top/Blue_Jay/e.txt": b"x", "top/Blue_Jay/f.jpg": b""})
    images, labels, problems = read_labelled_zip(data, ["Blue Jay", "Cedar Waxwing"])
    assert labels == [0, 0, 1]
    assert any("Emu" in p for p in problems) and any("loose.jpg" in p for p in problems)
    assert any("e.txt" in p for p in problems) and any("f.jpg" in p and "empty" in p for p in problems)
    syn = wb.synthesize({"Blue Jay": "A blue crested jay.", "Cedar Waxwing": "A tan crested bird with a black mask."})
    rep = wb.evaluate_batch(syn, images, labels)
    assert rep.images == 3 and sum(map(sum, rep.confusion["full"])) == 3
    with pytest.raises(DataError, match="no usable images"):
        read_labelled_zip(make_zip({"Emu/a.jpg": jpg}), ["Blue Jay", "Cedar Waxwing"])
    with pytest.raises(DataError, match="not a zip"):
        read_labelled_zip(b"PK\x03\x04 nope", ["A", "B"])
    with pytest.raises(DataError, match="unpacks to"):
        read_labelled_zip(make_zip({"Blue Jay/a.jpg": jpg}), ["Blue Jay"], max_bytes=10)


def test_uploads_and_json_imports():
    for name, (data, pattern) in bad_images().items():
        with pytest.raises(ImageError, match=pattern):
            read_upload(name, data)
    with pytest.raises(ImageError, match="larger than"):
        read_upload("big.jpg", b"\xff" * 2048, max_bytes=1024)
    assert read_descriptions_json(json.dumps({"A": ["red", "small"], "B": "blue"}).encode()) == {"A": "red. small.", "B": "blue"}
    got = read_descriptions_json('{"A": "red", "B": "blue"}')
    assert got == {"A": "red", "B": "blue"}
    for bad, msg in [(b"\xff\xfe\x00", "UTF-8"), (b"[1, 2]", "JSON object"), (b"{}", "non-empty"),
                     (b'{"A": 3}', "must be a string"), (b'{"A": ""}', "is empty")]:
        with pytest.raises(DataError, match=msg):
            read_descriptions_json(bad, name="mine.json")


def test_explain_actions_cover_both_classifiers(wb, photos):
    """Every explain view the app shows comes from the workbench: saliency of both classifiers,
    the full model's token evidence, and the per-layer adaptation norms of this class set."""
    desc = demo_descriptions()
    syn = wb.synthesize(desc)
    maps = wb.saliency(syn, photos[0], target=0, smooth=4)
    S = syn.full.spec.image_size
    assert maps["full"].shape == maps["fc-only"].shape == maps["difference"].shape == (S, S)
    assert maps["image"].shape == (3, S, S) and maps["target"] == 0
    torch.testing.assert_close(maps["difference"], maps["full"] - maps["fc-only"])
    assert 0 <= float(maps["full"].min()) and float(maps["full"].max()) <= 1
    ev = wb.evidence(syn, photos[0], label=syn.names[1])
    assert ev.label == syn.names[1] and set(ev.words) == set(desc)
    rows = wb.adaptation_norms(syn)
    assert rows and all(r["delta_norm"] > 0 and r["theta_norm"] > 0 for r in rows)
    assert wb.sentence_match is not None, "the shipped full model has a sentence match"
    att = wb.sentence_attention(syn, photos[0], label=syn.names[1])
    assert att["target"] == 1 and len(att["sentences"]) == len(att["cosine"]) == att["attention"].shape[0] >= 1
    assert att["attention"].shape[1:] == (S, S)
    with torch.no_grad():
        logit = syn.full(syn.full.prepare(photos[0]).to(syn.full.device))[0, 1]
    assert att["logit"] == pytest.approx(float(logit), abs=1e-4)


def test_classify_reuses_features_and_matches_the_classifiers(wb, photos):
    """After an edit only the full classifier runs its backbone: the fc-only probabilities come
    from the cached plain-backbone features and equal the fc-only classifier's own."""
    desc = demo_descriptions()
    wb.clear_caches()
    syn = wb.synthesize(desc)
    first = wb.classify(syn, photos)
    assert wb.classify(syn, photos) is first, "the same photos and classes come from the cache"
    assert len(wb._plain) == len(photos)
    name = next(iter(desc))
    edited = wb.synthesize({**desc, name: desc[name] + " A dark eye, for the feature-reuse test."})
    probs = wb.classify(edited, photos)
    assert len(wb._plain) == len(photos), "no new plain-backbone pass after an edit"
    torch.testing.assert_close(probs["fc-only"], edited.fc_only.predict(photos), atol=1e-5, rtol=0)
    torch.testing.assert_close(probs["full"], edited.full.predict(photos), atol=1e-5, rtol=0)
    assert list(probs) == list(wb.modes) == ["full", "ΔΘ only", "fc-only"]
    no_match = wb.full.synthesize(edited.descriptions, kappa=0)          # ΔΘ without the sentence match
    torch.testing.assert_close(probs["ΔΘ only"], no_match.predict(photos), atol=1e-5, rtol=0)
    assert not torch.allclose(probs["ΔΘ only"], probs["full"], atol=1e-3), "the match moves the probabilities"
    assert edited.fc_only.backbone is wb.fc_only.model.backbone_module, "fc-only shares the plain backbone"
    assert edited.full.backbone is not wb.full.model.backbone_module
    some = wb.classify(edited, photos[3:5])
    torch.testing.assert_close(some["full"], probs["full"][3:5])


def test_edit_norms_say_which_layers_an_edit_moved(wb):
    desc = demo_descriptions()
    a = wb.synthesize(desc)
    same = wb.adaptation_norms(a, before=a)
    assert all(r["edit_norm"] == 0 for r in same)
    name = next(iter(desc))
    b = wb.synthesize({**desc, name: "A plain grey bird."})
    rows = wb.adaptation_norms(b, before=a)
    assert len(rows) == 147 and all(r["edit_norm"] > 0 for r in rows), "ΔΘ comes from the set: every layer moves"
    assert all(r["edit_norm"] < r["delta_norm"] + next(x for x in same if x["name"] == r["name"])["delta_norm"]
               for r in rows), "triangle inequality: ‖a − b‖ ≤ ‖a‖ + ‖b‖"
    assert "edit_norm" not in wb.adaptation_norms(b)[0]
    assert describe_edit(a.descriptions, b.descriptions) == [f"edited {name}"]
    renamed = {("Crow" if n == name else n): t for n, t in desc.items()}
    assert describe_edit(desc, renamed) == ["added Crow", f"removed {name}"]


def test_language_control_in_the_workbench(wb, photos):
    desc = demo_descriptions()
    syn = wb.synthesize(desc)
    pool, source = control_descriptions(None)
    assert "assets/control_descriptions.json" in source and len(pool) >= 10
    assert not {n.casefold() for n in pool} & {n.casefold() for n in desc}, "the project's pool is other birds"
    lc = wb.language_control(syn, photos, pool, draws=3, seed=0)
    assert lc.own.shape == lc.no_adaptation.shape == (len(photos), 5) and lc.swapped.shape == (3, len(photos), 5)
    torch.testing.assert_close(lc.own, wb.classify(syn, photos)["full"])
    assert all(len(d) == 5 and not set(d) & set(desc) for d in lc.drawn)
    assert lc.swapped_delta.shape == lc.swapped_match.shape == lc.swapped.shape
    others = {n: t for n, t in pool.items() if n not in desc}
    assert lc.drawn == [list(d) for d in control_sets(others, 5, 3, 0)], "evaluate's draws"
    first = {n: pool[n] for n in lc.drawn[0]}
    for arm, got in (("both", lc.swapped), ("delta", lc.swapped_delta), ("match", lc.swapped_match)):
        want = wb.full.synthesize(desc, delta_from=first, swap=arm).predict(photos)
        torch.testing.assert_close(got[0], want, atol=1e-5, rtol=0, msg=arm)
    assert not torch.allclose(lc.swapped_delta, lc.swapped_match, atol=1e-3), "two different arms"
    again = wb.language_control(syn, photos, pool, draws=3, seed=0)
    assert again.drawn == lc.drawn, "fixed seeds"
    torch.testing.assert_close(again.swapped, lc.swapped)
    labels = [label_from_filename(p.name, syn.names) for p in demo_photos()]
    s = lc.summary(labels)
    assert s["labelled"] == len(photos) and 0 <= s["swapped_accuracy"] <= 1 and s["shift"] > 0
    assert 0 <= s["swapped_delta_accuracy"] <= 1 and 0 <= s["swapped_match_accuracy"] <= 1
    assert s["shift_delta"] >= 0 and s["shift_match"] > 0 and "changed_match" in s
    with_own = {**pool, **{n: desc[n] for n in list(desc)[:2]}}
    assert wb.language_control(syn, photos, with_own, draws=1).drawn[0] == lc.drawn[0], "own classes are left out"
    with pytest.raises(SynthesisError, match="at least 2 other classes"):
        wb.language_control(syn, photos, {**{n: desc[n] for n in desc}, "Crow": "A black bird."})
    with pytest.raises(DataError, match="at least one photo"):
        wb.language_control(syn, [], pool)


def test_language_control_summary_is_zero_when_the_text_does_not_matter():
    own = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    lc = LanguageControl(["a", "b", "c"], own, own.clone(), own.expand(3, 2, 3).clone(), [["x", "y"]] * 3, "")
    s = lc.summary([0, 1])
    assert s["changed"] == 0 and s["shift"] == 0
    assert s["own_accuracy"] == s["swapped_accuracy"] == s["no_adaptation_accuracy"] == 0.5
    moved = own.expand(3, 2, 3).clone()
    moved[1, 1] = torch.tensor([0.1, 0.8, 0.1])
    s = LanguageControl(["a", "b", "c"], own, own, moved, [["x", "y"]] * 3, "").summary([0, 1])
    assert s["changed"] == 1 and s["shift"] > 0 and s["swapped_accuracy"] == 0.5
    arms = LanguageControl(["a", "b", "c"], own, own, own.expand(3, 2, 3).clone(), [["x", "y"]] * 3, "",
                           swapped_delta=own.expand(3, 2, 3).clone(), swapped_match=moved).summary([0, 1])
    assert arms["changed"] == arms["changed_delta"] == 0 and arms["changed_match"] == 1
    assert arms["swapped_delta_accuracy"] == 0.5 and arms["shift_match"] == s["shift"]


def test_compare_descriptions_a_b(wb, photos):
    desc = demo_descriptions()
    name = list(desc)[1]
    labels = [label_from_filename(p.name, list(desc)) for p in demo_photos()]
    assert None not in labels
    b = "A small brown bird with a streaked breast that walks on the ground."
    cmp = wb.compare_descriptions(desc, name, b, photos, labels)
    a_syn, b_syn = wb.synthesize(desc), wb.synthesize({**desc, name: b})
    torch.testing.assert_close(cmp.probs_a["full"], wb.classify(a_syn, photos)["full"])
    torch.testing.assert_close(cmp.probs_b["fc-only"], wb.classify(b_syn, photos)["fc-only"])
    assert cmp.labelled == len(photos)
    for mode in ("full", "fc-only"):
        right_a = correct(cmp.probs_a[mode], labels)[0]
        right_b = correct(cmp.probs_b[mode], labels)[0]
        fixed = sum(n for *_, n in cmp.fixed[mode])
        caused = sum(n for *_, n in cmp.caused[mode])
        assert right_b - right_a == fixed - caused, "the fixed and caused confusions account for the change"
        assert set(cmp.per_class_a[mode]) == set(desc)
    assert cmp.mean_b["full"] < cmp.mean_a["full"], "describing a jay as a brown ground bird loses its photos"
    assert cmp.better("full") == "A"
    assert wb.compare_descriptions(desc, name, b, photos).labelled == 0, "without labels: shifts only"
    for text, msg in [("  ", "is empty"), (desc[name] + "  ", "the same as A")]:
        with pytest.raises(SynthesisError, match=msg):
            wb.compare_descriptions(desc, name, text, photos)
    with pytest.raises(SynthesisError, match="not one of the classes"):
        wb.compare_descriptions(desc, "Emu", b, photos)
    with pytest.raises(DataError, match="no photos"):
        wb.compare_descriptions(desc, name, b, [])


def test_probability_shift_labels_and_alignment():
    before = {"full": torch.tensor([[0.6, 0.4]])}
    after = {"full": torch.tensor([[0.5, 0.2, 0.3]])}
    names, shift = probability_shift(before, ["A", "B"], after, ["A", "C", "D"])
    assert names == ["A", "C", "D", "B"]
    torch.testing.assert_close(shift["full"], torch.tensor([[-0.1, 0.2, 0.3, -0.4]]))
    aligned = aligned_probabilities(before, ["A", "B"], ["B", "Z"])["full"]
    assert aligned[0, 0] == before["full"][0, 1] and torch.isnan(aligned[0, 1])
    classes = ["Red-winged Blackbird", "Blue Jay"]
    assert label_from_filename("blue_jay_2.jpg", classes) == 1
    assert label_from_filename("red_winged_blackbird_1.jpg (2)", classes) == 0
    assert label_from_filename("Blue Jay — Blue_Jay_0042_x.jpg", classes) == 1
    assert label_from_filename("073.Blue_Jay/x.jpg", classes) == 1
    assert label_from_filename("IMG_2231.jpg", classes) is None
    assert correct(torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]), [0, 0, None]) == (1, 2)


def test_description_b_from_another_description_set(data_root):
    from n3core.data import description_for

    for dset in ("allaboutbirds", "wikipedia_lead", "gpt3_descriptors", "gpt4_part_descriptors"):
        text = description_for(data_root, "blue jay", dset)
        assert isinstance(text, str) and len(text.split()) > 5, dset
    assert description_for(data_root, "Blue_Jay", "allaboutbirds") != description_for(data_root, "Blue Jay", "gpt3_descriptors")
    with pytest.raises(DataError, match="no description of 'Emu'"):
        description_for(data_root, "Emu", "allaboutbirds")
    pool, source = control_descriptions(data_root)
    assert len(pool) >= 50 and "ss0 train" in source


def test_a_rename_reuses_both_networks_and_every_probability(wb, photos):
    desc = demo_descriptions()
    wb.clear_caches()
    a = wb.synthesize(desc)
    pa = wb.classify(a, photos)
    plain = len(wb._plain)
    first = next(iter(desc))
    renamed = {("A bird I call Redwing" if n == first else n): t for n, t in desc.items()}
    b = wb.synthesize(renamed)
    assert b.key != a.key and b.network_key == a.network_key
    assert b.ms == 0 and b.encoded == 0
    assert b.names[0] == "A bird I call Redwing" and b.full.class_names == b.names
    assert a.full.class_names == list(desc), "the original classifier keeps its names"
    assert b.full.backbone is a.full.backbone, "the same adapted network, not a copy"
    pb = wb.classify(b, photos)
    assert pb is pa and len(wb._plain) == plain, "no classification rerun for a rename"
    swapped = dict(reversed(list(desc.items())))
    c = wb.synthesize(swapped)
    assert c.network_key != a.network_key, "another order is another set of K-way rows: synthesized anew"
