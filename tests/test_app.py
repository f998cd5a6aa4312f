"""The app's widget logic with Streamlit's AppTest and the real shipped models: the demo on
start, editing, adding/removing/renaming classes, uploads of every awkward kind, import and
export, batch evaluation and the explanation views. Each test is a fresh browser session."""
from __future__ import annotations

import html
import io
import re
import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from bad_inputs import bad_images, make_zip, good_images

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app" / "main.py")
DEMO = json.loads((ROOT / "assets" / "demo" / "descriptions.json").read_text())


def start() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def messages(at, kind: str) -> list[str]:
    return [e.value for e in getattr(at, kind)]


def synthesized(at) -> str:
    ok = [m for m in messages(at, "success") if m.startswith("Synthesized")]
    assert ok, f"no classifier: errors {messages(at, 'error')}"
    return ok[0]


def class_ids(at) -> list[int]:
    return [e["id"] for e in at.session_state["n3"].classes]


def chart(at, key: str):
    """The plotly chart drawn with ``key`` (its figure as a dict), or None."""
    for c in at.get("plotly_chart"):
        if c.proto.id.endswith(f"-{key}"):
            return json.loads(c.proto.spec)
    return None


def bars(at) -> list[str]:
    """The per-photo prediction bars of the working view (HTML)."""
    return [h.proto.body for h in at.get("html") if "before:" in h.proto.body or "fc-only" in h.proto.body]


def open_view(at, view: str) -> AppTest:
    at.session_state["view"] = view
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_opens_on_the_demo_with_predictions_beside_the_classes():
    at = start()
    assert "5-way" in synthesized(at)
    assert not messages(at, "error")
    names = [at.text_input(key=f"name_{i}").value for i in class_ids(at)]
    assert names == list(DEMO)
    assert [t.label for t in at.tabs][0] == "Describe & classify"
    shown = bars(at)
    assert len(shown) == 10, "the ten demo photos are classified on the landing view, beside the editor"
    assert sum("✓" in b for b in shown) == 10, "each demo photo's class is known from its file name"
    assert len(at.get("image")) == 10
    assert chart(at, "shift") is None, "nothing to compare before the first edit"
    assert [m.label.split(":")[0] for m in at.metric] == ["full", "ΔΘ only", "fc-only"]
    assert all("ΔΘ only" in b and "fc-only" in b and "full" in b for b in shown), "three bars per class"
    caption = " ".join(c.value for c in at.caption)
    assert "ΔΘ over every backbone layer + the sentence match" in caption and "ΔΘ only" in caption, caption
    assert "CPU" in at.sidebar.markdown[0].value or "cuda" in at.sidebar.markdown[0].value


def test_edit_shows_what_changed_in_the_same_view():
    at = start()
    before = bars(at)
    first = class_ids(at)[0]
    box = at.text_area(key=f"text_{first}")
    box.set_value("A plain brown bird of reed beds, dull all over, with no red and no yellow anywhere.").run()
    msg = synthesized(at)
    assert "1 description(s) re-encoded" in msg, msg
    after = bars(at)
    assert len(after) == 10 and after != before, "the prediction bars in the same view change"
    assert all("before:" in b for b in after), "every photo shows where its bars stood before the edit"
    fig = chart(at, "shift")
    assert fig is not None, "the edit-diff chart appears"
    z = [row for trace in fig["data"] for row in trace["z"]]
    assert len(fig["data"]) == 3 and len(z) == 30, "one heat map per mode (full, ΔΘ only, fc-only), a row per photo"
    assert max(abs(v) for row in z for v in row) > 1, "the edit moved some probability by more than a point"
    assert f"edited {list(DEMO)[0]}" in fig["layout"]["title"]["text"]


def test_add_remove_rename_and_class_set_errors():
    at = start()
    at.button(key="add_class").click().run()
    assert any("is empty" in m for m in messages(at, "error")), messages(at, "error")
    new = class_ids(at)[-1]
    at.text_area(key=f"text_{new}").set_value("A small grey bird with a black cap.").run()
    at.text_input(key=f"name_{new}").set_value("Chickadee").run()
    assert "6-way" in synthesized(at)
    at.text_input(key=f"name_{new}").set_value("blue jay").run()          # duplicate, case-insensitive
    assert any("duplicate" in m for m in messages(at, "error")), messages(at, "error")
    at.text_input(key=f"name_{new}").set_value("  ").run()
    assert any("empty name" in m for m in messages(at, "error")), messages(at, "error")
    for i in class_ids(at)[1:]:
        at.button(key=f"del_{i}").click().run()
    assert len(class_ids(at)) == 1
    assert any("at least 2 classes" in m for m in messages(at, "error")), messages(at, "error")
    assert not at.exception
    at.button(key="load_demo").click().run()
    assert "5-way" in synthesized(at)


def test_long_and_odd_unicode_descriptions():
    at = start()
    ids = class_ids(at)
    at.text_area(key=f"text_{ids[0]}").set_value("black red wing marsh " * 2500).run()   # 10,000 words
    assert any("truncated" in m for m in messages(at, "warning")), messages(at, "warning")
    odd = "🐦 Ṡpéčïål ‮RTL‬ zero\u200bwidth 鳥 𝔅𝔦𝔯𝔡 \x07 control, and a tab\tend."
    at.text_area(key=f"text_{ids[1]}").set_value(odd).run()
    at.text_input(key=f"name_{ids[1]}").set_value("鳥 🐦 **bold** <b>x</b>").run()
    assert "5-way" in synthesized(at)
    assert not at.exception


def test_uploads_good_and_bad_images():
    at = start()
    files = [(n, b, "image/png") for n, b in good_images().items()]
    files += [(n, b, "image/jpeg") for n, (b, _) in bad_images().items()]
    at.file_uploader(key="upload_images").set_value(files).run()
    assert not at.exception, [e.value for e in at.exception]
    errors = messages(at, "error")
    for name, (_, pattern) in bad_images().items():
        assert any(name.replace(".", "\\.") in m and re.search(pattern, m) for m in errors), (name, errors)
    images = at.session_state["n3"].images
    for name in good_images():
        assert name in images, name
    assert max(images["huge.jpg"]["image"].size) <= 1024, "very large images are downscaled"
    assert len(bars(at)) == 10 + len(good_images())
    assert "5-way" in synthesized(at)


def test_import_and_export_json():
    at = start()
    good = json.dumps({"Cardinal": "A red songbird with a crest.", "Crow": "A large all-black bird."}).encode()
    at.sidebar.file_uploader(key="import_json").set_value(("birds.json", good, "application/json")).run()
    assert "2-way" in synthesized(at)
    assert [at.text_input(key=f"name_{i}").value for i in class_ids(at)] == ["Cardinal", "Crow"]
    bad = ("bad.json", b"{not json", "application/json")
    at.sidebar.file_uploader(key="import_json").set_value(bad).run()
    assert any("not valid JSON" in m for m in messages(at, "error")), messages(at, "error")
    empty = ("empty.json", json.dumps({"A": "x", "B": "  "}).encode(), "application/json")
    at.sidebar.file_uploader(key="import_json").set_value(empty).run()
    assert any("'B' is empty" in m for m in messages(at, "error")), messages(at, "error")
    assert "2-way" in synthesized(at), "a bad import leaves the class set as it was"


def test_batch_evaluation_from_amake_zip():
    at = start()
    open_view(at, "Batch evaluation")
    photos = sorted((ROOT / "assets" / "demo" / "photos").glob("*.jpg"))
    folder = {"blue_jay": "Blue_Jay", "painted_bunting": "016.painted bunting", "red_winged_blackbird": "Red-winged Blackbird",
              "scarlet_tanager": "scarlet_tanager", "belted_kingfisher": "Belted Kingfisher"}
    files = {}
    for p in photos:
        species = p.stem.rsplit("_", 1)[0]
        files[f"birds/{folder[species]}/{p.name}"] = p.read_bytes()
    files["birds/Ostrich/o.jpg"] = photos[0].read_bytes()
    files["birds/Blue_Jay/notes.txt"] = b"not an image"
    files["birds/Blue_Jay/broken.jpg"] = b"\xff\xd8 broken"
    at.file_uploader(key="upload_zip").set_value(("birds.zip", make_zip(files), "application/zip")).run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["images"] == "10"
    for mode in ("full", "fc-only"):
        v = float(metrics[f"per-class accuracy, {mode}"].rstrip("%"))
        assert 0 <= v <= 100
    skipped = [e.label for e in at.expander if "skipped" in e.label]
    assert skipped == ["3 files skipped"], skipped
    at.file_uploader(key="upload_zip").set_value(("nope.zip", b"PK not really", "application/zip")).run()
    assert any("not a zip" in m for m in messages(at, "error")), messages(at, "error")


def test_explain_views_escape_user_text():
    at = start()
    ids = class_ids(at)
    hostile = "<script>alert(1)</script> **bold** [link](http://x) A blue bird with a crest."
    at.text_area(key=f"text_{ids[1]}").set_value(hostile).run()
    open_view(at, "Explain")
    at.selectbox(key="explain_image").set_value("blue_jay_1.jpg").run()
    label_box = [s for s in at.selectbox if s.key and s.key.startswith("explain_label_")][0]
    label_box.set_value(list(DEMO)[1]).run()
    htmls = [h.proto.body for h in at.get("html")]
    assert not any("<script" in h for h in htmls)
    shown = [html.unescape(re.sub(r"<[^>]+>", "", h)) for h in htmls]
    assert hostile in shown, "the label's description is shown literally (escaped, not rendered)"
    lines = [m.value for m in at.markdown if "because" in m.value]
    assert any("is a Blue Jay because" in m for m in lines), lines
    assert any("is not a" in m for m in lines), lines
    fig = chart(at, "saliency")
    assert fig is not None
    heat = [t for t in fig["data"] if t["type"] == "heatmap"]
    assert len(heat) == 3, "full, fc-only and their difference over the photo"
    assert all((t["zmin"], t["zmax"]) == (-1, 1) for t in heat), "one colour scale for all three"
    assert sum(t.get("showscale", True) for t in heat) == 1, "one colour bar"
    diff = [v for row in heat[2]["z"] for v in row]
    assert -1 <= min(diff) and max(diff) <= 1 and max(map(abs, diff)) > 0.01, "a real difference, on the one scale"
    assert max(v for row in heat[0]["z"] for v in row) > 0
    # the shipped full model's sentence match: where each sentence of the label's description looked
    words = chart(at, "sentence_attention")
    assert words is not None, "the sentence match's view is drawn"
    maps = [t for t in words["data"] if t["type"] == "heatmap"]
    assert 1 <= len(maps) <= 6 and all(0 <= v <= 1 for t in maps for row in t["z"] for v in row)
    listed = [m.value for m in at.markdown if " — adds " in m.value]
    assert listed and "\\<script\\>" in listed[0], "the label's sentences, escaped, with what each added"
    assert not at.exception


def test_export_classifier_download():
    at = start()
    open_view(at, "Export")
    at.button(key="prep_fc-only").click().run()
    assert not at.exception
    assert at.get("download_button"), "a download button appears once the file is ready"
    data = at.session_state["n3"].exports
    blob = next(v for (k, mode), v in data.items() if mode == "fc-only")
    import torch

    files = {"n3.json": ""}
    model = torch.export.load(io.BytesIO(blob), extra_files=files).module()
    meta = json.loads(files["n3.json"])
    assert meta["class_names"] == list(DEMO)
    assert model(torch.zeros(1, 3, meta["image_size"], meta["image_size"])).shape == (1, 5)


def test_loads_a_split_from_the_data_folder(data_root, monkeypatch):
    monkeypatch.setenv("N3_DATA", str(data_root))
    at = start()
    at.sidebar.selectbox(key="data_split").set_value("ss0").run()
    at.sidebar.selectbox(key="data_dset").set_value("wikipedia_lead").run()
    at.sidebar.button(key="data_load").click().run()
    msg = synthesized(at)
    assert "-way" in msg
    k = len(class_ids(at))
    assert 2 <= k <= 25
    at.sidebar.button(key="data_photos").click().run()
    assert len(at.session_state["n3"].images) == 10 + 2 * k


def test_network_view_shows_what_an_edit_moved_and_the_language_control():
    at = start()
    first = class_ids(at)[0]
    box = at.text_area(key=f"text_{first}")
    box.set_value(box.value + " It sings from the tops of cattails.").run()
    open_view(at, "Network & language control")
    norms = chart(at, "norms")
    assert norms is not None
    edit = [t for t in norms["data"] if "last edit" in t.get("name", "")]
    assert edit and len(edit[0]["y"]) == 147 and max(edit[0]["y"]) > 0, "per-layer ‖μ(ΔΘ_after − ΔΘ_before)‖"
    assert any("moved the adapted weights" in m.value for m in at.markdown)
    control = chart(at, "control")
    assert control is not None, "the language control's chart"
    names = {t["name"] for t in control["data"]}
    assert {"from these descriptions", "ΔΘ and match from other texts", "ΔΘ alone from other texts",
            "match alone from other texts", "none (Θ, no match)"} <= names, names
    table = at.table[0].value                                  # the three-way control, one row per way
    ways = list(table["network parts written from"])
    assert ways == ["your descriptions (the full classifier)", "ΔΘ and the match from other texts",
                    "ΔΘ from other texts, the match from yours", "the match from other texts, ΔΘ from yours",
                    "none (Θ and the classification layer alone)"], ways
    assert all(v.endswith("%") for v in table["correct (10 labelled)"]), table
    # back on the working view, the edit is still there
    open_view(at, "Describe & classify")
    assert at.text_area(key=f"text_{first}").value.endswith("tops of cattails.")


def test_ab_descriptions_compare_keep_and_refuse_bad_input(tmp_path):
    at = start()
    open_view(at, "A/B descriptions")
    ids = class_ids(at)
    blackbird = ids[0]
    cls = at.session_state["n3"].classes[0]["name"]
    assert any("the same as A" in m for m in messages(at, "warning")), "B starts as A and says so"
    at.text_area(key=f"ab_text_{blackbird}").set_value("   ").run()
    assert any("is empty" in m for m in messages(at, "warning")), messages(at, "warning")
    b = "A large bird with a long red crest and black-and-white stripes on the face, drumming on trees."
    at.text_area(key=f"ab_text_{blackbird}").set_value(b).run()
    assert not at.exception, [e.value for e in at.exception]
    labels = [m.label for m in at.metric]
    assert any(lab.startswith("full: mean per-class accuracy, A → B (10 labelled photos)") for lab in labels), labels
    fig = chart(at, "ab_acc")
    assert fig is not None and len(fig["data"]) == 4, "A and B for both modes"
    assert len(fig["data"][0]["x"]) == 5, "per-class numbers"
    assert chart(at, "ab_shift") is not None
    # a zip whose classes don't match: a clear error, B kept
    photo = (ROOT / "assets" / "demo" / "photos" / "blue_jay_1.jpg").read_bytes()
    bad = make_zip({"birds/Ostrich/o.jpg": photo, "birds/Emu/e.jpg": photo})
    at.file_uploader(key="ab_zip").set_value(("other.zip", bad, "application/zip")).run()
    assert any("cannot be used" in m and "matches no class" in m for m in messages(at, "error")), messages(at, "error")
    assert at.text_area(key=f"ab_text_{blackbird}").value == b, "nothing lost"
    at.file_uploader(key="ab_zip").set_value(None).run()
    # keep B with one click: the class's description is now B
    at.button(key="ab_use_b").click().run()
    assert at.session_state["n3"].classes[0]["text"] == b
    assert at.session_state["n3"].classes[0]["name"] == cls
    assert "1 description(s) re-encoded" in synthesized(at)
    open_view(at, "Describe & classify")
    assert at.text_area(key=f"text_{blackbird}").value == b
