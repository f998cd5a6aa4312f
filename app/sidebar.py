"""The sidebar: what is loaded, where a class set comes from (the demo, a split of the data
folder, a JSON file), and the class set's export as JSON."""
from __future__ import annotations

import hashlib
import json
import os

import streamlit as st
from state import add_image, current_descriptions, data_root, md, session, set_classes

from n3core.data import DESCRIPTION_SETS, SPLITS, DataError, read_descriptions_json, read_upload, sample_photos, split_classes
from n3core.meta import SynthesisError
from n3core.workbench import Workbench, demo_descriptions


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
                        st.success(f"Loaded {len(session().classes)} classes of {split} {part} ({dset}).")
                    except DataError as e:
                        st.error(str(e))
                if st.button("Add 2 photos of each class", key="data_photos"):
                    try:
                        names = [e["name"] for e in session().classes]
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
            if session().imported != tag:
                try:
                    set_classes(read_descriptions_json(up.getvalue(), name=up.name))
                    session().imported = tag
                    st.success(f"Imported {len(session().classes)} classes from {md(up.name)}.")
                except DataError as e:
                    st.error(str(e))
        try:
            payload = json.dumps(current_descriptions(), indent=1, ensure_ascii=False)
        except SynthesisError:
            payload = json.dumps({e["name"]: e["text"] for e in session().classes}, indent=1, ensure_ascii=False)
        st.download_button("Export classes as JSON", payload, file_name="descriptions.json",
                           mime="application/json", key="export_json")
