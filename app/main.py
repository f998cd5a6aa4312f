"""N3 app: describe classes in words, get an image classifier, see why it decides.

``streamlit run app/main.py`` (or ``make app``). UI only: every number and image comes from
``n3core`` (``n3core.workbench`` holds the actions, ``n3core.figures`` the charts).
"""
from __future__ import annotations

import hashlib
import html
import io
import json
import os

import streamlit as st

from n3core import runtime

runtime.setup()        # offline, malloc tuning: before any model loads

from n3core.data import DESCRIPTION_SETS, SPLITS, DataError, resolve_data_root
from n3core.explain import SALIENCY_METHODS
from n3core.figures import (ab_accuracy_figure, accuracy_figure, confusion_figure, control_figure, evidence_html,
                            evidence_sentences, norms_figure, probability_bars_html, saliency_figure,
                            sentence_attention_figure, shift_figure)
from n3core.meta import SynthesisError
from n3core.synthesize import descriptions_from_pairs
from n3core.workbench import (IMAGE_TYPES, Workbench, aligned_probabilities, control_descriptions, correct,
                              demo_descriptions, demo_photos, describe_edit, description_for, label_from_filename,
                              probability_shift, read_descriptions_json, read_labelled_zip, read_upload, sample_photos,
                              split_classes)

st.set_page_config(page_title="N3 — classifiers from descriptions", page_icon="🐦", layout="wide")

MD_SPECIAL = "\\`*_{}[]()#+-.!|<>~$"


def md(text: str) -> str:
    """User text made safe for Streamlit's markdown labels: shown literally, never rendered."""
    return "".join("\\" + ch if ch in MD_SPECIAL else ch for ch in str(text)).replace("\n", " ")


@st.cache_resource(show_spinner="Loading the N3 models (backbone, text encoder, meta-models)…")
def load_workbench() -> Workbench:
    return Workbench.load(device=os.environ.get("N3_DEVICE", "auto"))


def data_root():
    try:
        return resolve_data_root(None)
    except DataError:
        return None


# ---------------------------------------------------------------------------- session state
def set_classes(descriptions: dict[str, str]) -> None:
    """Replace the class set (and the editor's widgets) with ``descriptions``."""
    ss = st.session_state
    for entry in ss.get("classes", []):
        ss.pop(f"name_{entry['id']}", None)
        ss.pop(f"text_{entry['id']}", None)
    start = ss.get("next_id", 0)
    ss.classes = [{"id": start + i, "name": n, "text": t} for i, (n, t) in enumerate(descriptions.items())]
    ss.next_id = start + len(descriptions)
    for e in ss.classes:
        ss[f"name_{e['id']}"] = e["name"]
        ss[f"text_{e['id']}"] = e["text"]


def add_class() -> None:
    ss = st.session_state
    i = ss.next_id
    ss.next_id += 1
    ss.classes.append({"id": i, "name": f"New class {i}", "text": ""})
    ss[f"name_{i}"] = f"New class {i}"
    ss[f"text_{i}"] = ""


def remove_class(i: int) -> None:
    ss = st.session_state
    ss.classes = [e for e in ss.classes if e["id"] != i]
    ss.pop(f"name_{i}", None)
    ss.pop(f"text_{i}", None)


def add_image(name: str, image, source: str) -> None:
    """Keep an image under a unique display name (a second upload of a name gets a suffix)."""
    images = st.session_state.images
    key, n = name, 1
    while key in images:
        n += 1
        key = f"{name} ({n})"
    images[key] = {"name": key, "image": image, "source": source}


def init_state() -> None:
    ss = st.session_state
    if "classes" in ss:
        return
    ss.images = {}
    ss.upload_errors = {}
    ss.seen_uploads = set()
    ss.exports = {}
    ss.cache = {}
    set_classes(demo_descriptions())
    for p in demo_photos():
        add_image(p.name, read_upload(p.name, p.read_bytes()), "demo")


def current_descriptions() -> dict[str, str]:
    ss = st.session_state
    for e in ss.classes:                     # the widgets hold the latest edits
        e["name"] = ss.get(f"name_{e['id']}", e["name"])
        e["text"] = ss.get(f"text_{e['id']}", e["text"])
    return descriptions_from_pairs((e["name"], e["text"]) for e in ss.classes)


def memo(key: tuple, compute):
    """Per-session memo for results of (synthesis, image, …); bounded."""
    cache = st.session_state.cache
    if key not in cache:
        if len(cache) > 64:
            cache.pop(next(iter(cache)))
        cache[key] = compute()
    return cache[key]


# ---------------------------------------------------------------------------- sidebar
def sidebar(wb: Workbench) -> None:
    info = wb.describe()
    with st.sidebar:
        st.header("Model")
        st.markdown(f"**Device:** {md(info['device_name'])} (`{info['device']}`)  \n"
                    f"**Backbone:** {md(info['backbone'])} at {info['image_size']} px  \n"
                    f"**Text encoder:** {md(info['text_encoder'])} (limit {info['token_limit']} tokens)  \n"
                    f"**μ (full model):** {info['mu']:.4f}")
        st.caption("Shipped checkpoints, trained on ss0's train classes only: "
                   + ", ".join(f"`{os.path.basename(v)}`" for v in info["checkpoints"].values()))

        st.header("Classes")
        if st.button("Reset to the demo", key="load_demo"):
            set_classes(demo_descriptions())
        root = data_root()
        if root is not None:
            with st.expander("Load a split from the data folder", expanded=False):
                st.caption(f"`{root}`")
                split = st.selectbox("Split", SPLITS, key="data_split")
                part = st.selectbox("Classes", ["test", "val", "train"], key="data_part")
                dset = st.selectbox("Description set", DESCRIPTION_SETS, key="data_dset")
                if st.button("Load classes", key="data_load"):
                    try:
                        set_classes(split_classes(root, split, part, dset))
                        st.success(f"Loaded {len(st.session_state.classes)} classes of {split} {part} ({dset}).")
                    except DataError as e:
                        st.error(str(e))
                if st.button("Add 2 photos of each class", key="data_photos"):
                    try:
                        names = [e["name"] for e in st.session_state.classes]
                        found = sample_photos(root, names, per_class=2)
                        for cls, path in found:
                            add_image(f"{cls} — {path.name}", read_upload(path.name, path.read_bytes()), "data")
                        st.success(f"Added {len(found)} photos." if found else
                                   "No photos in the data folder match these class names.")
                    except DataError as e:
                        st.error(str(e))
        else:
            st.caption("No data folder found (set `N3_DATA`); the demo and your own classes work without it.")

        up = st.file_uploader("Import classes (JSON {class: description})", type=["json"], key="import_json")
        if up is not None:
            tag = hashlib.sha1(up.getvalue()).hexdigest()
            if st.session_state.get("imported") != tag:
                try:
                    set_classes(read_descriptions_json(up.getvalue(), name=up.name))
                    st.session_state.imported = tag
                    st.success(f"Imported {len(st.session_state.classes)} classes from {md(up.name)}.")
                except DataError as e:
                    st.error(str(e))
        try:
            payload = json.dumps(current_descriptions(), indent=1, ensure_ascii=False)
        except SynthesisError:
            payload = json.dumps({e["name"]: e["text"] for e in st.session_state.classes}, indent=1, ensure_ascii=False)
        st.download_button("Export classes as JSON", payload, file_name="descriptions.json",
                           mime="application/json", key="export_json")


# ---------------------------------------------------------------------------- photos
def image_inputs() -> None:
    ss = st.session_state
    files = st.file_uploader("Upload photos (jpg, png, webp)", type=list(IMAGE_TYPES), accept_multiple_files=True,
                             key="upload_images")
    for f in files or []:
        data = f.getvalue()
        tag = (f.name, hashlib.sha1(data).hexdigest())
        if tag in ss.seen_uploads:
            continue
        ss.seen_uploads.add(tag)
        try:
            add_image(f.name, read_upload(f.name, data), "upload")
            ss.upload_errors.pop(f.name, None)
        except DataError as e:
            ss.upload_errors[f.name] = str(e)
    for name, msg in ss.upload_errors.items():
        st.error(f"{md(name)} was not added: {md(msg)}")


def photo_selection() -> list[str]:
    """The photos chosen for classification, kept outside the widget so that every view (and the
    working view after a tab switch) sees it: new photos join it, removed ones leave it."""
    ss = st.session_state
    keys = list(ss.images)
    if "chosen_images" in ss:                # the multiselect's latest value
        ss.photo_selection = list(ss.chosen_images)
    known = ss.get("known_images", keys)
    sel = [k for k in ss.get("photo_selection", keys) if k in ss.images] + [k for k in keys if k not in known]
    ss.photo_selection, ss.known_images = sel, keys
    return sel


def selected_images() -> list[tuple[str, object]]:
    ss = st.session_state
    sel = photo_selection()
    if not ss.images:
        return []
    ss.chosen_images = sel
    chosen = st.multiselect("Photos to classify", list(ss.images), key="chosen_images")
    return [(k, ss.images[k]["image"]) for k in chosen if k in ss.images]


def thumbnail(key: str) -> bytes:
    """A small JPEG of a photo, made once per photo (sent on every rerun, so kept small)."""
    entry = st.session_state.images[key]
    if "thumb" not in entry:
        im = entry["image"].copy()
        im.thumbnail((200, 200))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=85)
        entry["thumb"] = buf.getvalue()
    return entry["thumb"]


# ---------------------------------------------------------------------------- the working view
def editor(wb: Workbench) -> None:
    ss = st.session_state
    texts = {e["id"]: ss.get(f"text_{e['id']}", e["text"]) for e in ss.classes}
    counts = {i: wb.token_count(t) for i, t in texts.items()}
    st.caption(f"{len(ss.classes)} classes. Edit a name or a description (Ctrl+Enter or click outside the box) and "
               "both classifiers are re-synthesized; the predictions beside it show what the edit changed.")
    compact = len(ss.classes) > 6          # many classes: one collapsed row each
    for e in ss.classes:
        i = e["id"]
        for field in ("name", "text"):       # a widget's state is dropped while another view is open
            if f"{field}_{i}" not in ss:
                ss[f"{field}_{i}"] = e[field]
        n = counts[i]
        box = st.expander(f"{md(ss.get(f'name_{i}', e['name'])) or '(no name)'} · {n} tokens",
                          expanded=False) if compact else st.container(border=True)
        with box:
            c1, c2 = st.columns([5, 1], vertical_alignment="bottom")
            c1.text_input("Class name", key=f"name_{i}")
            c2.button("✕", key=f"del_{i}", on_click=remove_class, args=(i,), help="Remove this class")
            st.text_area("Description", key=f"text_{i}", height=110)
            if n > wb.token_limit:
                st.warning(f"{n} tokens: the description will be truncated to the first {wb.token_limit} tokens.")
    st.button("Add a class", key="add_class", on_click=add_class)


def edit_summary(before, after, *, markdown: bool = True) -> str:
    """What changed between two syntheses' class sets, in words, escaped for markdown or for
    plotly's HTML-ish titles."""
    text = ", ".join(describe_edit(before.descriptions, after.descriptions)) or "no change"
    return md(text) if markdown else html.escape(text)


def predictions(wb: Workbench, syn) -> None:
    ss = st.session_state
    with st.expander("Photos", expanded=not ss.images):
        image_inputs()
        chosen = selected_images()
    if syn is None:
        st.info("Fix the class set (see the message above) to classify.")
        return
    if not chosen:
        st.info("Upload photos above to see predictions.")
        return
    keys = [k for k, _ in chosen]
    images = [im for _, im in chosen]
    after = wb.classify(syn, images)
    labels = [label_from_filename(k, syn.names) for k in keys]
    before_syn = ss.get("before")
    before = None
    if before_syn is not None:
        prev = wb.classify(before_syn, images)
        names, shift = probability_shift(prev, before_syn.names, after, syn.names)
        before = aligned_probabilities(prev, before_syn.names, syn.names)
    if any(y is not None for y in labels):
        cols = st.columns(len(after))
        for c, mode in zip(cols, after):
            right, known = correct(after[mode], labels)
            delta = None
            if before_syn is not None:
                delta = right - correct(prev[mode], [label_from_filename(k, before_syn.names) for k in keys])[0]
            c.metric(f"{mode}: correct on photos with a known class", f"{right} / {known}",
                     delta=delta if delta else None)
    if before_syn is not None:
        st.caption(f"Bars: now. Black ticks: before edit {ss.get('edit_number', 1)} ({edit_summary(before_syn, syn)}). "
                   "▲▼: the change in points. ✓: the class the photo's name gives.")
    else:
        st.caption(parts_caption(wb) + " ✓: the class the photo's name gives. Edit a description to see what changes.")
    grid = st.columns(2)
    for j, k in enumerate(keys):
        with grid[j % 2].container(border=True):
            a, b = st.columns([1, 2])
            a.image(thumbnail(k), caption=ss.images[k]["name"], width="stretch")
            b.html(probability_bars_html(syn.names, {m: after[m][j] for m in after},
                                         {m: before[m][j] for m in before} if before is not None else None,
                                         true=labels[j]))
    if before_syn is not None:
        st.plotly_chart(shift_figure(keys, names, shift,
                                     title=f"What the last edit changed, per photo and class (edit "
                                           f"{ss.get('edit_number', 1)}: {edit_summary(before_syn, syn, markdown=False)})"),
                        key="shift", config={"displayModeBar": False})


def parts_caption(wb: Workbench) -> str:
    """What each bar is: the parts of the full classifier the words write."""
    if wb.sentence_match is None:
        return "Blue: full (ΔΘ over every backbone layer, written from the descriptions); orange: fc-only."
    return ("Blue: full = ΔΘ over every backbone layer + the sentence match, both written from the descriptions; "
            "purple: ΔΘ only (the full classifier without its match: what N3's adapted network adds); "
            "orange: fc-only (the classification layer alone on the unchanged backbone).")


def working_view(wb: Workbench, syn) -> None:
    left, right = st.columns([2, 3], gap="medium")
    with left:
        st.subheader("Classes")
        editor(wb)
    with right:
        st.subheader("Predictions")
        predictions(wb, syn)


# ---------------------------------------------------------------------------- the network
def network_view(wb: Workbench, syn) -> None:
    ss = st.session_state
    if syn is None:
        st.info("Fix the class set to see the network.")
        return
    before = ss.get("before")
    st.subheader("What the last edit moved in the network")
    rows = memo(("norms", syn.key, before.key if before else None), lambda: wb.adaptation_norms(syn, before))
    if before is not None and rows:
        total = sum(r["edit_norm"] ** 2 for r in rows) ** 0.5
        adapt = sum(r["delta_norm"] ** 2 for r in rows) ** 0.5
        top = sorted(rows, key=lambda r: -r["edit_norm"] / max(r["delta_norm"], 1e-12))[:3]
        st.markdown(f"The last edit ({edit_summary(before, syn)}) moved the adapted weights by "
                    f"‖μ·(ΔΘ − ΔΘ before)‖ = **{total:.4g}**, {total / adapt:.1%} of the whole adaptation "
                    f"‖μ·ΔΘ‖ = {adapt:.4g}. Moved most, relative to their adaptation: "
                    + ", ".join(f"`{r['name']}` ({r['edit_norm'] / max(r['delta_norm'], 1e-12):.1%})" for r in top)
                    + ". ΔΘ is written from the whole class set, so one description moves every layer.")
    elif rows:
        st.caption("Edit a description to see which layers the edit moves.")
    if rows:
        st.plotly_chart(norms_figure(rows, title=f"How much each layer was adapted ({len(rows)} tensors)"),
                        key="norms")

    st.subheader("What carries the words? The language control")
    chosen = [(k, ss.images[k]["image"]) for k in photo_selection()]
    if not chosen:
        st.info("Add photos to run the language control.")
        return
    keys = [k for k, _ in chosen]

    def run_control():                       # the pool is read only when the control is computed
        pool, source = control_descriptions(data_root())
        return wb.language_control(syn, [im for _, im in chosen], pool, source=source)

    try:
        with st.spinner("Writing ΔΘ and the sentence match from other classes' descriptions (3 draws) and classifying…"):
            control = memo(("control", syn.key, tuple(keys)), run_control)
    except (SynthesisError, DataError) as e:
        st.error(str(e))
        return
    labels = [label_from_filename(k, syn.names) for k in keys]
    s = control.summary(labels)
    st.caption(f"The full classifier keeps the classification layer written from your descriptions; only its "
               f"language-written parts change, each written from your descriptions or from {len(control.drawn[0])} "
               f"other classes' descriptions ({md(control.source)}; {s['draws']} draws, fixed seeds, the same as "
               "`evaluate`'s control). Shuffling your own descriptions among your classes would not do: ΔΘ is "
               "written from the class set as a whole, whatever the order.")
    st.table(control_rows(control, s))
    st.plotly_chart(control_figure(keys, control, labels), key="control", config={"displayModeBar": False})
    with st.expander("The other classes each draw used"):
        for r, names in enumerate(control.drawn):
            st.markdown(f"draw {r + 1}: " + ", ".join(md(n) for n in names))


CONTROL_ARMS = {"both": "ΔΘ and the match from other texts", "delta": "ΔΘ from other texts, the match from yours",
                "match": "the match from other texts, ΔΘ from yours"}


def control_rows(control, s: dict) -> list[dict]:
    """The language control's summary as table rows: one per way of writing the parts."""
    def row(name, acc, changed=None, shift=None):
        r = {"network parts written from": name}
        if "labelled" in s:
            r[f"correct ({s['labelled']} labelled)"] = f"{acc:.0%}"
        r["photos whose prediction changes"] = "—" if changed is None else f"{changed} / {s['photos']}"
        r["mean |Δp| of the prediction"] = "—" if shift is None else f"{100 * shift:.1f} points"
        return r

    rows = [row("your descriptions (the full classifier)", s.get("own_accuracy"))]
    for arm in control.arms():
        tag = "" if arm == "both" else f"_{arm}"
        rows.append(row(CONTROL_ARMS[arm], s.get(f"swapped{tag}_accuracy"), s[f"changed{tag}"], s[f"shift{tag}"]))
    rows.append(row("none (Θ and the classification layer alone)", s.get("no_adaptation_accuracy")))
    return rows


# ---------------------------------------------------------------------------- A/B
def use_b(i: int, text: str) -> None:
    ss = st.session_state
    ss[f"text_{i}"] = text
    for e in ss.classes:
        if e["id"] == i:
            e["text"] = text


def set_b(i: int, text: str) -> None:
    ss = st.session_state
    ss[f"ab_text_{i}"] = ss.setdefault("ab_b", {})[i] = text


def keep_a(i: int) -> None:
    set_b(i, next(e for e in st.session_state.classes if e["id"] == i)["text"])


def load_b(i: int, root, label: str, dset: str) -> None:
    ss = st.session_state
    try:
        set_b(i, description_for(root, label, dset))
        ss.pop("ab_load_error", None)
    except DataError as e:
        ss.ab_load_error = str(e)


def ab_view(wb: Workbench, syn) -> None:
    ss = st.session_state
    if syn is None:
        st.info("Fix the class set to compare descriptions.")
        return
    st.caption("Keep two versions of one class's description and compare them on your photos or on a labelled zip; "
               "everything else stays as it is. A is the description in the editor.")
    entries = {e["name"].strip(): e for e in ss.classes}     # synced by current_descriptions() this run
    cls = st.selectbox("Class", list(syn.names), key="ab_class")
    if cls not in entries:
        return
    i, text_a = entries[cls]["id"], entries[cls]["text"]
    versions = ss.setdefault("ab_b", {})          # B outlives the widget when another view is open
    if f"ab_text_{i}" in ss:
        versions[i] = ss[f"ab_text_{i}"]
    else:
        ss[f"ab_text_{i}"] = versions.get(i, text_a)
    a, b = st.columns(2)
    a.text_area("A (current)", value=text_a, height=150, disabled=True, key=f"ab_a_{i}_{hashlib.sha1(text_a.encode()).hexdigest()[:8]}")
    b.text_area("B", key=f"ab_text_{i}", height=150)
    root = data_root()
    if root is not None:
        c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
        dset = c1.selectbox("Load B from a description set of the data folder", DESCRIPTION_SETS, key="ab_dset")
        c2.button("Load B", key="ab_load", on_click=load_b, args=(i, root, cls, dset))
        if ss.get("ab_load_error"):
            st.error(ss.ab_load_error)
    zip_up = st.file_uploader("Labelled photos for the comparison (zip, one folder per class; optional)", type=["zip"],
                              key="ab_zip")
    text_b = ss.get(f"ab_text_{i}", "")
    chosen = photo_selection()
    photos = ab_photos(syn, zip_up, chosen)
    if photos is None:
        return
    images, labels = photos
    try:
        with st.spinner("Synthesizing with B and classifying…"):
            cmp = memo(("ab", syn.key, cls, text_b, zip_up.file_id if zip_up is not None else tuple(chosen)),
                       lambda: wb.compare_descriptions(syn.descriptions, cls, text_b, images, labels))
    except (SynthesisError, DataError) as e:
        st.warning(md(e))
        return
    c = st.columns(2)
    c[0].button("Use B as the description", key="ab_use_b", on_click=use_b, args=(i, text_b), type="primary")
    c[1].button("Keep A (reset B)", key="ab_keep_a", on_click=keep_a, args=(i,))
    ab_results(cmp, cls, labels, chosen if zip_up is None else None)


def ab_photos(syn, zip_up, chosen: list[str]):
    """The A/B comparison's photos and labels: the labelled zip's when one is uploaded, else the
    session's chosen photos (labels from their file names); None when the zip cannot be used."""
    ss = st.session_state
    if zip_up is None:
        return [ss.images[k]["image"] for k in chosen], [label_from_filename(k, syn.names) for k in chosen]
    try:
        images, labels, problems = memo(("zip", hashlib.sha1(zip_up.getvalue()).hexdigest(), tuple(syn.names)),
                                        lambda: read_labelled_zip(zip_up.getvalue(), syn.names))
    except DataError as e:
        st.error(f"The zip cannot be used: {md(e)}")
        return None
    if problems:
        with st.expander(f"{len(problems)} files of the zip skipped"):
            st.text("\n".join(problems))
    return images, labels


def ab_results(cmp, cls: str, labels: list, photo_names: list[str] | None) -> None:
    """A against B: accuracy when photos are labelled, and what B moved per photo and class."""
    if cmp.labelled:
        m = st.columns(2)
        for col, mode in zip(m, ("full", "fc-only")):
            col.metric(f"{mode}: mean per-class accuracy, A → B ({cmp.labelled} labelled photos)",
                       f"{cmp.mean_a[mode]:.1%} → {cmp.mean_b[mode]:.1%}",
                       delta=f"{100 * (cmp.mean_b[mode] - cmp.mean_a[mode]):+.1f} points")
        better = cmp.better("full")
        st.markdown(f"**Better for the full classifier: {better}**" if better else "A and B score the same.")
        st.plotly_chart(ab_accuracy_figure(cmp.per_class_a, cmp.per_class_b), key="ab_acc")
        f1, f2 = st.columns(2)
        for col, title, rows in ((f1, "Fixed by B (wrong with A, right with B)", cmp.fixed),
                                 (f2, "Caused by B (right with A, wrong with B)", cmp.caused)):
            col.markdown(f"**{title}**")
            lines = [f"{mode}: {md(t)} — {md(pa)} → {md(pb)} ({n})" for mode in rows for t, pa, pb, n in rows[mode]]
            col.markdown("\n".join(f"- {x}" for x in lines) if lines else "none")
    else:
        st.caption("No photo has a known class (name photos after their class, or upload a labelled zip) — "
                   "so the comparison shows probability shifts only.")
    names, shift = probability_shift(cmp.probs_a, cmp.names, cmp.probs_b, cmp.names)
    if len(labels) <= 40:
        photo_names = photo_names or [f"{cmp.names[y]} #{j}" for j, y in enumerate(labels)]
        st.plotly_chart(shift_figure(photo_names, names, shift, title=f"p with B − p with A, for {html.escape(cls)}"),
                        key="ab_shift", config={"displayModeBar": False})


# ---------------------------------------------------------------------------- explain
def explain_view(wb: Workbench, syn) -> None:
    ss = st.session_state
    if syn is None or not ss.images:
        st.info("Synthesize a classifier and add a photo to explain it.")
        return
    keys = list(ss.images)
    c1, c2, c3, c4 = st.columns([3, 3, 2, 2])
    k = c1.selectbox("Photo", keys, key="explain_image")
    image = ss.images[k]["image"]
    pred = wb.classify(syn, [image])["full"][0]
    options = list(syn.names)
    label = c2.selectbox("Explain the label", options, index=int(pred.argmax()), key=f"explain_label_{syn.key[:8]}")
    method = c3.selectbox("Saliency method", SALIENCY_METHODS, key="explain_method")
    smooth = c4.slider("Smoothing σ (pixels)", 0, 12, 6, key="explain_smooth")
    target = options.index(label)

    st.subheader(f"Where the classifiers look for {md(label)}")
    with st.spinner("Computing saliency…"):
        maps = memo(("saliency", syn.key, k, target, method, smooth),
                    lambda: wb.saliency(syn, image, target, method, smooth=smooth))
    st.plotly_chart(saliency_figure(maps), key="saliency", config={"displayModeBar": False})
    st.caption(f"One colour scale for all three: the gradient of the label's score w.r.t. the pixels, smoothed "
               f"(σ = {smooth} px), in units of the larger map's 99th percentile. Right: full − fc-only — red where "
               f"the full adaptation looks more, blue where fc-only does; its largest value here is "
               f"{maps['difference_peak']:.2f} of that unit.")

    if wb.sentence_match is not None:
        sentence_view(wb, syn, k, image, label)

    st.subheader("Which words argued for and against")
    with st.spinner("Computing token evidence…"):
        ev = memo(("tokens", syn.key, k, label), lambda: wb.evidence(syn, image, label))
    st.markdown("\n".join(f"- {md(line)}" for line in evidence_sentences(ev)))
    scale = max((w.score for ws in ev.words.values() for w in ws), default=1.0)
    st.markdown(f"**{md(ev.label)}** (argues for the label, green)")
    st.html(f"<div style='line-height:1.8'>{evidence_html(syn.descriptions[ev.label], ev.words[ev.label], positive=True, scale=scale)}</div>")
    for cls, _ in ev.negative_classes[:3]:
        st.markdown(f"**{md(cls)}** (argues against it, red) · p = {ev.probabilities[cls]:.1%}")
        st.html(f"<div style='line-height:1.8'>{evidence_html(syn.descriptions[cls], ev.words[cls], positive=False, scale=scale)}</div>")


def sentence_view(wb: Workbench, syn, k: str, image, label: str) -> None:
    st.subheader(f"Where each sentence of {md(label)}'s description looked")
    with st.spinner("Reading the sentence match…"):
        att = memo(("sentences", syn.key, k, label), lambda: wb.sentence_attention(syn, image, label))
    st.plotly_chart(sentence_attention_figure(att), key="sentence_attention", config={"displayModeBar": False})
    several = (f" (the mean of {att['members']} trained alike; maps, matches and weights below are their means)"
               if att["members"] > 1 else "")
    st.caption(f"The full classifier adds κ = {wb.sentence_match:g} × a sentence match{several} to its logits: each sentence "
               f"of the description looks somewhere in the photo (red: where, each map scaled to its own peak) and is "
               f"scored by how well that region fits it. The sentences added {att['match_logit']:+.2f} to this "
               f"label's logit ({att['logit']:+.2f} in all). Shown: the six that added or took away most.")
    order = sorted(range(len(att["sentences"])), key=lambda i: -abs(float(att["contribution"][i])))
    st.markdown("\n".join(
        f"- **#{i + 1}** {md(att['sentences'][i])} — adds {float(att['contribution'][i]):+.2f} "
        f"(match {float(att['cosine'][i]):+.2f}, weight {float(att['weight'][i]):.0%})" for i in order))


# ---------------------------------------------------------------------------- batch
def batch_tab(wb: Workbench, syn) -> None:
    st.caption("Upload a zip with one folder per class, folder names matching the class names "
               "(case, spaces, `_` and a `NNN.` prefix are ignored).")
    up = st.file_uploader("Labelled images (zip)", type=["zip"], key="upload_zip")
    if syn is None or up is None:
        return
    data = up.getvalue()

    def run():
        images, labels, problems = read_labelled_zip(data, syn.names)
        return wb.evaluate_batch(syn, images, labels), problems

    try:
        with st.spinner("Classifying the zip's images…"):
            report, problems = memo(("batch", syn.key, hashlib.sha1(data).hexdigest()), run)
    except DataError as e:
        st.error(str(e))
        return
    c = st.columns(3)
    c[0].metric("images", report.images)
    c[1].metric("per-class accuracy, full", f"{report.mean_per_class['full']:.1%}")
    c[2].metric("per-class accuracy, fc-only", f"{report.mean_per_class['fc-only']:.1%}")
    st.plotly_chart(accuracy_figure(report.per_class), key="batch_acc")
    t1, t2 = st.columns(2)
    t1.plotly_chart(confusion_figure(report.confusion["full"], report.names, "Confusion, full adaptation"), key="cm_full")
    t2.plotly_chart(confusion_figure(report.confusion["fc-only"], report.names, "Confusion, fc-only"), key="cm_fc")
    if problems:
        with st.expander(f"{len(problems)} files skipped"):
            st.text("\n".join(problems))


# ---------------------------------------------------------------------------- export
def export_tab(wb: Workbench, syn) -> None:
    if syn is None:
        st.info("Fix the class set to export a classifier.")
        return
    st.caption("A `torch.export` program (.pt2) that `torch.export.load(path).module()` runs with torch alone; "
               "its extra file `n3.json` holds the class names and preprocessing (the same file "
               "`python -m n3core synthesize` writes).")
    for mode in ("full", "fc-only"):
        key = (syn.key, mode)
        if key not in st.session_state.exports:
            if st.button(f"Prepare the {mode} classifier for download", key=f"prep_{mode}"):
                with st.spinner("Exporting…"):
                    st.session_state.exports[key] = wb.export(syn, mode)
        if key in st.session_state.exports:
            data = st.session_state.exports[key]
            st.download_button(f"Download the {mode} classifier ({len(data) / 2**20:.1f} MB)", data,
                               file_name=f"n3-{mode}-{len(syn.names)}way.pt2", mime="application/octet-stream",
                               key=f"dl_{mode}")


# ---------------------------------------------------------------------------- page
VIEWS = ["Describe & classify", "Network & language control", "A/B descriptions", "Batch evaluation", "Explain",
         "Export"]


def main() -> None:
    wb = load_workbench()
    init_state()
    sidebar(wb)
    ss = st.session_state
    st.title("N3 — an image classifier from class descriptions")
    syn = None
    try:
        descriptions = current_descriptions()
        with st.spinner(f"Synthesizing a {len(descriptions)}-way classifier…"):
            syn = wb.synthesize(descriptions)
        if ss.get("current") is None or ss.current.key != syn.key:
            if ss.get("current") is not None:
                ss.edit_number = ss.get("edit_number", 0) + 1
            ss.before, ss.current = ss.get("current"), syn
        reused = " Only names changed: both networks were reused." if syn.ms == 0 and syn.encoded == 0 else ""
        match = " and a sentence match" if wb.sentence_match is not None else ""
        st.success(f"Synthesized a {len(syn.names)}-way classifier (ΔΘ over every backbone layer{match}, "
                   f"and fc-only) in {syn.ms:.0f} ms; {syn.encoded} description(s) re-encoded.{reused}")
        if syn.truncated:
            st.warning("Truncated to the token limit: " + ", ".join(md(t) for t in syn.truncated))
    except (SynthesisError, DataError) as e:
        st.error(f"Cannot synthesize: {md(e)}. Fix the classes on the left.")
    # lazy tabs: only the open view runs, so an edit reruns the working view alone
    tabs = st.tabs(VIEWS, key="view", on_change="rerun")
    views = [lambda: working_view(wb, syn), lambda: network_view(wb, syn), lambda: ab_view(wb, syn),
             lambda: batch_tab(wb, syn), lambda: explain_view(wb, syn), lambda: export_tab(wb, syn)]
    for tab, view in zip(tabs, views):
        if tab.open:
            with tab:
                view()


main()
