"""A/B descriptions: a second version of one class's description, compared with the first on
the session's photos or a labelled zip."""
from __future__ import annotations

import hashlib
import html

import streamlit as st
from state import data_root, md, photo_selection, session

from n3core.data import DESCRIPTION_SETS, DataError, description_for, label_from_filename
from n3core.figures import ab_accuracy_figure, shift_figure
from n3core.meta import SynthesisError
from n3core.workbench import Workbench, probability_shift


def use_b(i: int, text: str) -> None:
    st.session_state[f"text_{i}"] = text
    for e in session().classes:
        if e["id"] == i:
            e["text"] = text


def set_b(i: int, text: str) -> None:
    st.session_state[f"ab_text_{i}"] = session().ab_b[i] = text


def keep_a(i: int) -> None:
    set_b(i, next(e for e in session().classes if e["id"] == i)["text"])


def load_b(i: int, root, label: str, dset: str) -> None:
    try:
        set_b(i, description_for(root, label, dset))
        session().ab_load_error = None
    except DataError as e:
        session().ab_load_error = str(e)


def ab_view(wb: Workbench, syn) -> None:
    ss, w = session(), st.session_state
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
    versions = ss.ab_b                            # B outlives the widget when another view is open
    if f"ab_text_{i}" in w:
        versions[i] = w[f"ab_text_{i}"]
    else:
        w[f"ab_text_{i}"] = versions.get(i, text_a)
    a, b = st.columns(2)
    a.text_area("A (current)", value=text_a, height=150, disabled=True, key=f"ab_a_{i}_{hashlib.sha1(text_a.encode()).hexdigest()[:8]}")
    b.text_area("B", key=f"ab_text_{i}", height=150)
    root = data_root()
    if root is not None:
        c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
        dset = c1.selectbox("Load B from a description set of the data folder", DESCRIPTION_SETS, key="ab_dset")
        c2.button("Load B", key="ab_load", on_click=load_b, args=(i, root, cls, dset))
        if ss.ab_load_error:
            st.error(ss.ab_load_error)
    zip_up = st.file_uploader("Labelled photos for the comparison (zip, one folder per class; optional)", type=["zip"],
                              key="ab_zip")
    text_b = w.get(f"ab_text_{i}", "")
    chosen = photo_selection()
    photos = ab_photos(wb, syn, zip_up, chosen)
    if photos is None:
        return
    images, labels = photos
    try:
        with st.spinner("Synthesizing with B and classifying…"):
            cmp = wb.compare_descriptions(syn.descriptions, cls, text_b, images, labels)
    except (SynthesisError, DataError) as e:
        st.warning(md(e))
        return
    c = st.columns(2)
    c[0].button("Use B as the description", key="ab_use_b", on_click=use_b, args=(i, text_b), type="primary")
    c[1].button("Keep A (reset B)", key="ab_keep_a", on_click=keep_a, args=(i,))
    ab_results(cmp, cls, labels, chosen if zip_up is None else None)


def ab_photos(wb: Workbench, syn, zip_up, chosen: list[str]):
    """The A/B comparison's photos and labels: the labelled zip's when one is uploaded, else the
    session's chosen photos (labels from their file names); None when the zip cannot be used."""
    ss = session()
    if zip_up is None:
        return [ss.images[k]["image"] for k in chosen], [label_from_filename(k, syn.names) for k in chosen]
    try:
        images, labels, problems = wb.labelled_zip(zip_up.getvalue(), syn.names)
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
