"""The selected checkpoint, kept per session as a source string and loaded once per content.

Sessions share loaded checkpoints through `st.cache_resource` (keyed by the source and the file's
size and mtime, so an overwritten file is reloaded), but each session only ever sees the source it
picked: uploads are keyed by their own sha256 and named only in that session's state.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from vitdash.checkpoint import Checkpoint
from vitdash.errors import VitdashError

SOURCE_KEY = "source"


def _fingerprint(source: str) -> str:
    path = Path(source)
    if path.exists():
        st_ = path.stat()
        return f"{st_.st_size}-{st_.st_mtime_ns}"
    return ""


@st.cache_resource(max_entries=8, show_spinner="Reading checkpoint...")
def _load(source: str, fingerprint: str) -> Checkpoint:
    from vitdash.sources import load

    return load(source)


@st.cache_resource(max_entries=8, show_spinner="Reading upload...")
def _load_upload(digest: str, filename: str, _data: bytes) -> Checkpoint:
    from vitdash.sources import load_bytes

    return load_bytes(_data, filename)


def load_source(source: str) -> Checkpoint:
    return _load(source, _fingerprint(source))


def select_upload(data: bytes, filename: str) -> Checkpoint:
    """Load an upload (raises VitdashError on a bad file) and make it this session's checkpoint."""
    digest = hashlib.sha256(data).hexdigest()
    ckpt = _load_upload(digest, filename, data)
    st.session_state[SOURCE_KEY] = f"upload:{digest}:{filename}"
    st.session_state["upload_ckpt"] = ckpt
    return ckpt


def selected() -> Checkpoint | None:
    source = st.session_state.get(SOURCE_KEY)
    if not source:
        return None
    if source.startswith("upload:"):
        return st.session_state.get("upload_ckpt")
    return load_source(source)


def current_checkpoint() -> Checkpoint:
    """The session's checkpoint; otherwise a hint (or the load error) and the page stops here."""
    try:
        ckpt = selected()
    except VitdashError as e:
        st.error(str(e))
        st.stop()
    if ckpt is None:
        st.info("Pick a checkpoint in the sidebar: a demo model, a timm architecture, a file from the library, "
                "a path, or an upload.")
        st.stop()
    return ckpt

