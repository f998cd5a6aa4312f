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
from n3core.workbench import (Workbench, demo_descriptions, demo_photos, read_descriptions_json, read_labelled_zip,
                              read_upload, split_classes)


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
    wb._cache.clear()                         # force fresh syntheses under concurrency
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
    overlays = wb.saliency(syn, photos[0], target=0)
    assert set(overlays) == {"full", "fc-only"}
    assert overlays["full"].size == overlays["fc-only"].size == (syn.full.spec.image_size,) * 2
    ev = wb.evidence(syn, photos[0], label=syn.names[1])
    assert ev.label == syn.names[1] and set(ev.words) == set(desc)
    rows = wb.adaptation_norms(syn)
    assert rows and all(r["delta_norm"] > 0 and r["theta_norm"] > 0 for r in rows)
