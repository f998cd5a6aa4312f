"""Describe & classify: the class editor beside the photos' predictions (three bars per class:
full, ΔΘ only, fc-only), with what the last edit changed."""
from __future__ import annotations

import hashlib

import streamlit as st
from state import add_class, add_image, edit_summary, md, photo_selection, remove_class, session, thumbnail

from n3core.data import IMAGE_TYPES, DataError, label_from_filename, read_upload
from n3core.figures import probability_bars_html, shift_figure
from n3core.workbench import Workbench, aligned_probabilities, correct, probability_shift


def image_inputs() -> None:
    ss = session()
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


def selected_images() -> list[tuple[str, object]]:
    ss = session()
    sel = photo_selection()
    if not ss.images:
        return []
    st.session_state.chosen_images = sel
    chosen = st.multiselect("Photos to classify", list(ss.images), key="chosen_images")
    return [(k, ss.images[k]["image"]) for k in chosen if k in ss.images]


def editor(wb: Workbench) -> None:
    ss, w = session(), st.session_state
    texts = {e["id"]: w.get(f"text_{e['id']}", e["text"]) for e in ss.classes}
    counts = {i: wb.token_count(t) for i, t in texts.items()}
    st.caption(f"{len(ss.classes)} classes. Edit a name or a description (Ctrl+Enter or click outside the box) and "
               "the classifiers are re-synthesized; the predictions beside it show what the edit changed.")
    compact = len(ss.classes) > 6          # many classes: one collapsed row each
    for e in ss.classes:
        i = e["id"]
        for field in ("name", "text"):       # a widget's state is dropped while another view is open
            if f"{field}_{i}" not in w:
                w[f"{field}_{i}"] = e[field]
        n = counts[i]
        box = st.expander(f"{md(w.get(f'name_{i}', e['name'])) or '(no name)'} · {n} tokens",
                          expanded=False) if compact else st.container(border=True)
        with box:
            c1, c2 = st.columns([5, 1], vertical_alignment="bottom")
            c1.text_input("Class name", key=f"name_{i}")
            c2.button("✕", key=f"del_{i}", on_click=remove_class, args=(i,), help="Remove this class")
            st.text_area("Description", key=f"text_{i}", height=110)
            if n > wb.token_limit:
                st.warning(f"{n} tokens: the description will be truncated to the first {wb.token_limit} tokens.")
    st.button("Add a class", key="add_class", on_click=add_class)


def predictions(wb: Workbench, syn) -> None:
    ss = session()
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
    before_syn = ss.before
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
        st.caption(f"Bars: now. Black ticks: before edit {ss.edit_number} ({edit_summary(before_syn, syn)}). "
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
                                           f"{ss.edit_number}: {edit_summary(before_syn, syn, markdown=False)})"),
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
