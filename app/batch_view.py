"""Batch evaluation: a labelled zip → per-class accuracy and confusions of both classifiers."""
from __future__ import annotations

import streamlit as st

from n3core.data import DataError
from n3core.figures import accuracy_figure, confusion_figure
from n3core.workbench import Workbench


def batch_view(wb: Workbench, syn) -> None:
    st.caption("Upload a zip with one folder per class, folder names matching the class names "
               "(case, spaces, `_` and a `NNN.` prefix are ignored).")
    up = st.file_uploader("Labelled images (zip)", type=["zip"], key="upload_zip")
    if syn is None or up is None:
        return
    try:
        with st.spinner("Classifying the zip's images…"):
            report, problems = wb.evaluate_zip(syn, up.getvalue())
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
