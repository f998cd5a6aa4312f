"""Network & language control: how much each layer was adapted and what the last edit moved,
and the three-way language control on the session's photos."""
from __future__ import annotations

import streamlit as st
from state import data_root, edit_summary, md, photo_selection, session

from n3core.data import DataError, label_from_filename
from n3core.figures import control_figure, norms_figure
from n3core.meta import SynthesisError
from n3core.workbench import Workbench, control_descriptions


def network_view(wb: Workbench, syn) -> None:
    ss = session()
    if syn is None:
        st.info("Fix the class set to see the network.")
        return
    before = ss.before
    st.subheader("What the last edit moved in the network")
    rows = wb.adaptation_norms(syn, before)
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
            control = run_control()
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
