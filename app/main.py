"""N3 app: describe classes in words, get an image classifier, see why it decides.

``streamlit run app/main.py`` (or ``make app``). UI only: every number and image comes from
``n3core`` (``n3core.workbench`` holds the actions, ``n3core.figures`` the charts).
"""
from __future__ import annotations

import hashlib
import json
import os

import streamlit as st

from n3core import runtime

runtime.setup()        # offline, malloc tuning: before any model loads

from n3core.data import DESCRIPTION_SETS, SPLITS, DataError, resolve_data_root
from n3core.explain import SALIENCY_METHODS
from n3core.figures import (accuracy_figure, confusion_figure, evidence_html, evidence_sentences, norms_figure,
                            probability_figure)
from n3core.meta import SynthesisError
from n3core.synthesize import descriptions_from_pairs
from n3core.workbench import (IMAGE_TYPES, Workbench, demo_descriptions, demo_photos, read_descriptions_json,
                              read_labelled_zip, read_upload, sample_photos, split_classes)

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


# ---------------------------------------------------------------------------- describe
def describe_tab(wb: Workbench) -> None:
    ss = st.session_state
    texts = {e["id"]: ss.get(f"text_{e['id']}", e["text"]) for e in ss.classes}
    counts = {i: wb.token_count(t) for i, t in texts.items()}
    st.caption(f"{len(ss.classes)} classes. Edit a name or a description and the classifier is re-synthesized; "
               "only the changed description is re-encoded. Press Ctrl+Enter or click outside a box to apply.")
    expand = len(ss.classes) <= 6
    for e in ss.classes:
        i = e["id"]
        n = counts[i]
        label = f"{md(ss.get(f'name_{i}', e['name'])) or '(no name)'} · {n} tokens"
        with st.expander(label, expanded=expand):
            c1, c2 = st.columns([5, 1])
            c1.text_input("Class name", key=f"name_{i}")
            c2.button("Remove", key=f"del_{i}", on_click=remove_class, args=(i,))
            st.text_area("Description", key=f"text_{i}", height=120)
            if n > wb.token_limit:
                st.warning(f"{n} tokens: the description will be truncated to the first {wb.token_limit} tokens.")
    st.button("Add a class", key="add_class", on_click=add_class)


# ---------------------------------------------------------------------------- classify
def image_inputs() -> None:
    ss = st.session_state
    files = st.file_uploader("Upload images (jpg, png, webp)", type=list(IMAGE_TYPES), accept_multiple_files=True,
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


def selected_images() -> list[tuple[str, object]]:
    ss = st.session_state
    keys = list(ss.images)
    if not keys:
        return []
    if "chosen_images" in ss:                # new images join the selection; removed ones leave it
        known = ss.get("known_images", [])
        ss.chosen_images = [k for k in ss.chosen_images if k in ss.images] + [k for k in keys if k not in known]
    ss.known_images = keys
    chosen = st.multiselect("Images to classify", keys, default=None if "chosen_images" in ss else keys,
                            key="chosen_images")
    return [(k, ss.images[k]["image"]) for k in chosen if k in ss.images]


def classify_tab(wb: Workbench, syn) -> None:
    image_inputs()
    chosen = selected_images()
    if syn is None or not chosen:
        st.info("Add images above to see predictions." if syn is not None else
                "Fix the class set (see the message above) to classify.")
        return
    probs = memo(("classify", syn.key, tuple(k for k, _ in chosen)), lambda: wb.classify(syn, [im for _, im in chosen]))
    cols = st.columns(2)
    for j, (k, im) in enumerate(chosen):
        with cols[j % 2]:
            a, b = st.columns([1, 2])
            a.image(im, caption=st.session_state.images[k]["name"], width="stretch")
            full, fc = probs["full"][j], probs["fc-only"][j]
            a.caption(f"full: **{md(syn.names[int(full.argmax())])}**  \nfc-only: **{md(syn.names[int(fc.argmax())])}**")
            b.plotly_chart(probability_figure(syn.names, full, fc), key=f"probs_{j}_{k}", config={"displayModeBar": False})


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


# ---------------------------------------------------------------------------- explain
def explain_tab(wb: Workbench, syn) -> None:
    ss = st.session_state
    if syn is None or not ss.images:
        st.info("Synthesize a classifier and add an image to explain it.")
        return
    keys = list(ss.images)
    c1, c2, c3 = st.columns(3)
    k = c1.selectbox("Image", keys, key="explain_image")
    image = ss.images[k]["image"]
    pred = memo(("classify", syn.key, (k,)), lambda: wb.classify(syn, [image]))["full"][0]
    options = list(syn.names)
    default = int(pred.argmax())
    label = c2.selectbox("Explain the label", options, index=default, key=f"explain_label_{syn.key[:8]}")
    method = c3.selectbox("Saliency method", SALIENCY_METHODS, key="explain_method")
    target = options.index(label)

    st.subheader(f"Where the classifiers look for {md(label)}")
    with st.spinner("Computing saliency…"):
        overlays = memo(("saliency", syn.key, k, target, method),
                        lambda: wb.saliency(syn, image, target, method))
    a, b, c = st.columns(3)
    a.image(image, caption="image", width="stretch")
    b.image(overlays["full"], caption="full adaptation", width="stretch")
    c.image(overlays["fc-only"], caption="fc-only (same colour scale)", width="stretch")

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

    st.subheader("How much each layer was adapted")
    rows = memo(("norms", syn.key), lambda: wb.adaptation_norms(syn))
    if rows:
        st.plotly_chart(norms_figure(rows, title=f"‖μ·ΔΘ‖ vs ‖Θ‖ for {len(rows)} adapted tensors"), key="norms")


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
def main() -> None:
    wb = load_workbench()
    init_state()
    sidebar(wb)
    st.title("N3 — an image classifier from class descriptions")
    syn = None
    try:
        descriptions = current_descriptions()
        with st.spinner(f"Synthesizing a {len(descriptions)}-way classifier…"):
            syn = wb.synthesize(descriptions)
        st.session_state.last_good = syn
        st.success(f"Synthesized a {len(syn.names)}-way classifier (full adaptation of every backbone layer, and "
                   f"fc-only) in {syn.ms:.0f} ms; {syn.encoded} description(s) re-encoded.")
        if syn.truncated:
            st.warning("Truncated to the token limit: " + ", ".join(md(t) for t in syn.truncated))
    except (SynthesisError, DataError) as e:
        st.error(f"Cannot synthesize: {md(e)}. Fix the classes in the Describe tab.")
    tabs = st.tabs(["Describe", "Classify", "Batch evaluation", "Explain", "Export"])
    with tabs[0]:
        describe_tab(wb)
    with tabs[1]:
        classify_tab(wb, syn)
    with tabs[2]:
        batch_tab(wb, syn)
    with tabs[3]:
        explain_tab(wb, syn)
    with tabs[4]:
        export_tab(wb, syn)


main()
