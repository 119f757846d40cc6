"""The selected checkpoint, kept per session as a source string; what is loaded is shared by all sessions.
Also the session keys more than one page reads (each page's own widget keys stay in that page).

Loaded checkpoints, built models and audits live in one byte-bounded LRU per server process (`vitdash.cache`,
bound $VITDASH_CACHE_MB), so several people opening different ViT-B files cannot exhaust RAM: the least
recently used are dropped first. Paths are keyed by the file's size and mtime (an overwritten file is
reloaded), models by the checkpoint's sha256. Each session only ever sees the source it picked: an upload is
keyed by its own sha256, which only a session holding the same bytes can know, and named only in that
session's state.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import streamlit as st

from ui.jobs import run_job
from vitdash.errors import VitdashError
from vitdash.jobs import LARGE_AUDIT_BYTES
from vitdash.load.checkpoint import Checkpoint
from vitdash.load.library import LibraryEntry, list_library
from vitdash.pipeline import audit_is_cached, cached_audit, cached_checkpoint, cached_model, cached_upload
from vitdash.trained.verdict import Audit, audit_bytes

T = TypeVar("T")
SOURCE_KEY = "source"  # the session's checkpoint: a path, 'timm:<name>', 'hf:<repo>' or an upload's key
UPLOAD_KEY = "upload_ckpt"
DEFAULT_TRIED_KEY = "default_checkpoint_tried"  # the session was opened on the demo once (ui.sidebar.open_default)
PERFORM_DATA_KEY = "benchmark_data"  # the accuracy check's data; the attention page starts from it
PERFORM_RESULT_KEY = "benchmark_result"  # (sha256, result) of 'Does it perform?'; the History page records it


def _fingerprint(source: str) -> str:
    path = Path(source)
    if path.exists():
        st_ = path.stat()
        return f"{st_.st_size}-{st_.st_mtime_ns}"
    return ""


def load_source(source: str) -> Checkpoint:
    with st.spinner("Reading checkpoint..."):
        return cached_checkpoint(source, _fingerprint(source))


def select_upload(data: bytes, filename: str) -> Checkpoint:
    """Load an upload (raises VitdashError on a bad file) and make it this session's checkpoint."""
    digest = hashlib.sha256(data).hexdigest()
    with st.spinner("Reading upload..."):
        ckpt = cached_upload(data, filename, digest)
    st.session_state[SOURCE_KEY] = f"upload:{digest}:{filename}"
    st.session_state[UPLOAD_KEY] = ckpt
    return ckpt


def selected() -> Checkpoint | None:
    source = st.session_state.get(SOURCE_KEY)
    if not source:
        return None
    if source.startswith("upload:"):
        return st.session_state.get(UPLOAD_KEY)
    return load_source(source)


def current_model(ckpt: Checkpoint):
    """The checkpoint as a runnable timm model, built once per content and shared (eval mode: do not mutate)."""
    with st.spinner("Building the model..."):
        return cached_model(ckpt)


def current_audit(ckpt: Checkpoint) -> Audit:
    """The checkpoint's audit, run once per content and shared; a progress bar while it runs. A large file's
    first audit is a job in the server's queue (the page stops here if the queue refuses or cancels it)."""
    bar = st.empty()
    try:
        def run(_stop=None) -> Audit:
            return cached_audit(ckpt, progress=lambda p: bar.progress(
                p.fraction, text=f"Auditing {p.done}/{p.total}: {p.message}"))

        if ckpt.nbytes < LARGE_AUDIT_BYTES or audit_is_cached(ckpt):
            return run()
        result = run_job("audit", audit_bytes(ckpt), run, label=f"the audit of {ckpt.name}")
        if result is None:
            st.stop()
        return result
    finally:
        bar.empty()


def configured_dirs():
    """`model_dirs` under `[vitdash]` in .streamlit/secrets.toml (a list or an os.pathsep string), if any."""
    try:
        return st.secrets.get("vitdash", {}).get("model_dirs")
    except FileNotFoundError:  # no secrets.toml (StreamlitSecretNotFoundError subclasses it)
        return None


@st.cache_data(ttl=30, show_spinner="Scanning the model library...")
def _library(configured) -> list[LibraryEntry]:
    return list_library(configured)


def library_entries() -> list[LibraryEntry]:
    """The model library every page lists: the configured folders ($VITDASH_MODEL_DIRS and the secrets) included,
    walked at most every 30 s."""
    return _library(configured_dirs())


def library_changed() -> None:
    """Walk the library again on the next listing (a file was saved, the demo was built)."""
    _library.clear()


def follow_default(key: str, default) -> None:
    """A widget value that follows the checkpoint's default (another checkpoint picked in the sidebar brings its
    own) until the user changes it: 'digits' must not stay in the Data field of an RGB ImageNet model."""
    mark = f"{key}_default"
    if key not in st.session_state or st.session_state[key] == st.session_state.get(mark):
        st.session_state[key] = default
    st.session_state[mark] = default


def or_stop(compute: Callable[[], T]) -> T:
    """`compute()`, or its VitdashError shown and the page stopped there."""
    try:
        return compute()
    except VitdashError as e:
        st.error(str(e))
        st.stop()


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
