"""N3 app: describe classes in words, get an image classifier, see why it decides.

``streamlit run app/main.py`` (or ``make app``). UI only: every number and image comes from
``n3core`` (``n3core.workbench`` holds the actions, ``n3core.figures`` the charts). One file
per view; ``state.py`` holds the session.
"""
from __future__ import annotations

import os
import sys

import streamlit as st

# the views beside this file, however the script was started (streamlit, AppTest, or a
# multiprocessing child that re-imports its parent's main script)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from n3core import runtime

runtime.setup()        # offline, malloc tuning: before any model loads

from ab_view import ab_view                     # noqa: E402  (the app's folder is on sys.path)
from batch_view import batch_view               # noqa: E402
from classify_view import working_view          # noqa: E402
from explain_view import explain_view           # noqa: E402
from export_view import export_view             # noqa: E402
from network_view import network_view           # noqa: E402
from sidebar import sidebar                     # noqa: E402
from state import current_descriptions, md, record_synthesis, session   # noqa: E402

from n3core.data import DataError               # noqa: E402
from n3core.meta import SynthesisError          # noqa: E402
from n3core.workbench import Workbench          # noqa: E402

st.set_page_config(page_title="N3 — classifiers from descriptions", page_icon="🐦", layout="wide")


@st.cache_resource(show_spinner="Loading the N3 models (backbone, text encoder, meta-models)…")
def load_workbench() -> Workbench:
    return Workbench.load(device=os.environ.get("N3_DEVICE", "auto"))


VIEWS = ["Describe & classify", "Network & language control", "A/B descriptions", "Batch evaluation", "Explain",
         "Export"]


def main() -> None:
    wb = load_workbench()
    session()
    sidebar(wb)
    st.title("N3 — an image classifier from class descriptions")
    syn = None
    try:
        descriptions = current_descriptions()
        with st.spinner(f"Synthesizing a {len(descriptions)}-way classifier…"):
            syn = wb.synthesize(descriptions)
        record_synthesis(syn)
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
             lambda: batch_view(wb, syn), lambda: explain_view(wb, syn), lambda: export_view(wb, syn)]
    for tab, view in zip(tabs, views):
        if tab.open:
            with tab:
                view()


if __name__ == "__main__":      # streamlit runs the script as __main__; an importer gets the functions only
    main()
