"""N3 app entry point (``streamlit run app/main.py``).

The full app (describe classes, synthesize, classify, explain) is issue 5; until it lands this
page shows what the installed library provides. UI only: every value comes from ``n3core``.
"""
import streamlit as st

import n3core
from n3core.backbones import available_backbones
from n3core.data import DataError, resolve_data_root

st.set_page_config(page_title="N3", layout="wide")
st.title("N3 — classifiers from class descriptions")
st.write(f"n3core {n3core.__version__}; backbones: {', '.join(available_backbones())}")
try:
    st.write(f"Data folder: `{resolve_data_root(None)}`")
except DataError as e:
    st.info(str(e))
