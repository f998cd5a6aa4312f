"""One person's session: the class set they edit, their photos, the last two syntheses.

Everything the app keeps between reruns lives in one typed :class:`Session` (``session()``);
``st.session_state`` otherwise holds only widget values, under the widgets' own keys
(``name_<id>`` / ``text_<id>`` for the editor, ``ab_text_<id>`` for description B, …).
Results are never cached here: the shared :class:`~n3core.workbench.Workbench` caches them
by content for every session.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import streamlit as st

from n3core.data import DataError, read_upload, resolve_data_root
from n3core.synthesize import descriptions_from_pairs
from n3core.workbench import Synthesis, demo_descriptions, demo_photos, describe_edit

MD_SPECIAL = "\\`*_{}[]()#+-.!|<>~$"


@dataclass
class Session:
    """What one browser session keeps. ``classes``: the editor's rows ``{"id", "name", "text"}``
    (ids never reused, so widget keys stay unique); ``images``: display name → ``{"name",
    "image", "source", "thumb"}``; ``current`` / ``before``: the latest synthesis and the one
    before the last edit (``edit_number`` counts edits)."""

    classes: list[dict] = field(default_factory=list)
    next_id: int = 0
    images: dict[str, dict] = field(default_factory=dict)
    upload_errors: dict[str, str] = field(default_factory=dict)   # file name → why it was not added
    seen_uploads: set = field(default_factory=set)                # (name, digest) of uploads already read
    photo_selection: list[str] | None = None                      # photos chosen for classification
    known_images: list[str] | None = None                         # the photos when the selection was made
    current: Synthesis | None = None
    before: Synthesis | None = None
    edit_number: int = 0
    ab_b: dict[int, str] = field(default_factory=dict)            # class id → its description B
    ab_load_error: str | None = None
    imported: str | None = None                                   # digest of the last imported JSON
    exports: dict = field(default_factory=dict)                   # (synthesis key, mode) → .pt2 bytes


def session() -> Session:
    """This browser session's state, made on first use with the demo's classes and photos."""
    if "n3" not in st.session_state:
        st.session_state.n3 = s = Session()
        set_classes(demo_descriptions())
        for p in demo_photos():
            add_image(p.name, read_upload(p.name, p.read_bytes()), "demo")
        return s
    return st.session_state.n3


def md(text: str) -> str:
    """User text made safe for Streamlit's markdown labels: shown literally, never rendered."""
    return "".join("\\" + ch if ch in MD_SPECIAL else ch for ch in str(text)).replace("\n", " ")


def data_root():
    try:
        return resolve_data_root(None)
    except DataError:
        return None


# ---------------------------------------------------------------------------- the class set
def set_classes(descriptions: dict[str, str]) -> None:
    """Replace the class set (and the editor's widgets) with ``descriptions``."""
    s, w = session(), st.session_state
    for entry in s.classes:
        w.pop(f"name_{entry['id']}", None)
        w.pop(f"text_{entry['id']}", None)
    start = s.next_id
    s.classes = [{"id": start + i, "name": n, "text": t} for i, (n, t) in enumerate(descriptions.items())]
    s.next_id = start + len(descriptions)
    for e in s.classes:
        w[f"name_{e['id']}"] = e["name"]
        w[f"text_{e['id']}"] = e["text"]


def add_class() -> None:
    s, w = session(), st.session_state
    i = s.next_id
    s.next_id += 1
    s.classes.append({"id": i, "name": f"New class {i}", "text": ""})
    w[f"name_{i}"] = f"New class {i}"
    w[f"text_{i}"] = ""


def remove_class(i: int) -> None:
    s, w = session(), st.session_state
    s.classes = [e for e in s.classes if e["id"] != i]
    w.pop(f"name_{i}", None)
    w.pop(f"text_{i}", None)


def current_descriptions() -> dict[str, str]:
    """The class set as the editor's widgets hold it now."""
    s, w = session(), st.session_state
    for e in s.classes:
        e["name"] = w.get(f"name_{e['id']}", e["name"])
        e["text"] = w.get(f"text_{e['id']}", e["text"])
    return descriptions_from_pairs((e["name"], e["text"]) for e in s.classes)


def record_synthesis(syn: Synthesis) -> None:
    """Keep ``syn`` as the current synthesis; a new class set counts as an edit."""
    s = session()
    if s.current is None or s.current.key != syn.key:
        if s.current is not None:
            s.edit_number += 1
        s.before, s.current = s.current, syn


def edit_summary(before, after, *, markdown: bool = True) -> str:
    """What changed between two syntheses' class sets, in words, escaped for markdown or for
    plotly's HTML-ish titles."""
    import html

    text = ", ".join(describe_edit(before.descriptions, after.descriptions)) or "no change"
    return md(text) if markdown else html.escape(text)


# ---------------------------------------------------------------------------- photos
def add_image(name: str, image, source: str) -> None:
    """Keep an image under a unique display name (a second upload of a name gets a suffix)."""
    images = session().images
    key, n = name, 1
    while key in images:
        n += 1
        key = f"{name} ({n})"
    images[key] = {"name": key, "image": image, "source": source}


def photo_selection() -> list[str]:
    """The photos chosen for classification, kept outside the widget so that every view (and the
    working view after a tab switch) sees it: new photos join it, removed ones leave it."""
    s, w = session(), st.session_state
    keys = list(s.images)
    if "chosen_images" in w:                 # the multiselect's latest value
        s.photo_selection = list(w.chosen_images)
    known = s.known_images if s.known_images is not None else keys
    chosen = s.photo_selection if s.photo_selection is not None else keys
    sel = [k for k in chosen if k in s.images] + [k for k in keys if k not in known]
    s.photo_selection, s.known_images = sel, keys
    return sel


def thumbnail(key: str) -> bytes:
    """A small JPEG of a photo, made once per photo (sent on every rerun, so kept small)."""
    entry = session().images[key]
    if "thumb" not in entry:
        im = entry["image"].copy()
        im.thumbnail((200, 200))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=85)
        entry["thumb"] = buf.getvalue()
    return entry["thumb"]
