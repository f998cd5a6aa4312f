"""Export: the synthesized classifiers as standalone ``torch.export`` files."""
from __future__ import annotations

import streamlit as st
from state import session

from n3core.workbench import Workbench


def export_view(wb: Workbench, syn) -> None:
    if syn is None:
        st.info("Fix the class set to export a classifier.")
        return
    st.caption("A `torch.export` program (.pt2) that `torch.export.load(path).module()` runs with torch alone; "
               "its extra file `n3.json` holds the class names and preprocessing (the same file "
               "`python -m n3core synthesize` writes).")
    for mode in ("full", "fc-only"):
        key = (syn.key, mode)
        if key not in session().exports:
            if st.button(f"Prepare the {mode} classifier for download", key=f"prep_{mode}"):
                with st.spinner("Exporting…"):
                    session().exports[key] = wb.export(syn, mode)
        if key in session().exports:
            data = session().exports[key]
            st.download_button(f"Download the {mode} classifier ({len(data) / 2**20:.1f} MB)", data,
                               file_name=f"n3-{mode}-{len(syn.names)}way.pt2", mime="application/octet-stream",
                               key=f"dl_{mode}")


# ---------------------------------------------------------------------------- page
VIEWS = ["Describe & classify", "Network & language control", "A/B descriptions", "Batch evaluation", "Explain",
         "Export"]
