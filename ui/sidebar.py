"""The sidebar checkpoint picker: one choice per session, kept in `st.session_state` across pages."""
from __future__ import annotations

import streamlit as st

from ui.access import current_user, hold_uploads, may_save_to_library, server_path
from ui.state import (
    DEFAULT_TRIED_KEY,
    SOURCE_KEY,
    UPLOAD_KEY,
    configured_dirs,
    library_changed,
    library_entries,
    select_upload,
    selected,
)
from vitdash.errors import VitdashError
from vitdash.history import AuditHistory
from vitdash.load.library import (
    TIMM_ARCHITECTURES,
    LibraryEntry,
    demo_entries,
    prepare,
    save_dir,
    save_upload,
)

_REFUSED, _GENERATION = "upload_refused", "uploader_generation"  # a refused upload's reason; resets so far
_KINDS = ("Demo", "Library", "timm architecture (init)", "Path on server", "Upload", "Hugging Face Hub")


def _set(source: str) -> None:
    st.session_state[SOURCE_KEY] = source
    st.session_state.pop(UPLOAD_KEY, None)


def _open_entry(entry: LibraryEntry) -> None:
    """Open a library entry; the demo pair is trained here on first use, with a progress bar."""
    if not entry.ready:
        bar = st.progress(0.0, text="Training the demo ViT on digits (first use only, under a minute)...")
        try:
            source = prepare(entry, progress=lambda p: bar.progress(p.fraction, text=p.message))
        except VitdashError as e:
            st.error(str(e))
            return
        finally:
            bar.empty()
        library_changed()
    else:
        source = entry.source
    _set(source)


def open_default() -> None:
    """A new session opens on the demo's trained model (trained here, with a progress bar, on a fresh machine),
    so the first screen answers the four questions instead of asking for a file. Tried once per session."""
    if SOURCE_KEY in st.session_state or st.session_state.get(DEFAULT_TRIED_KEY):
        return
    st.session_state[DEFAULT_TRIED_KEY] = True
    _open_entry(demo_entries()[0])


def checkpoint_picker() -> None:
    with st.sidebar:
        st.header("Checkpoint")
        kind = st.radio("Source", _KINDS, key="source_kind", label_visibility="collapsed")
        if kind == "Demo":
            st.caption("A small ViT that vitdash trains on scikit-learn's digits, and the same ViT before training.")
            trained, init = demo_entries()
            left, right = st.columns(2)
            if left.button("Trained", key="open_demo_trained"):
                _open_entry(trained)
            if right.button("At init", key="open_demo_init"):
                _open_entry(init)
        elif kind == "Library":
            entries = {e.source: e for e in library_entries()}
            choice = st.selectbox("Model", list(entries), index=None, format_func=lambda s: entries[s].label,
                                  placeholder="Choose a checkpoint")
            if choice is not None and st.button("Open", key="open_library"):
                _open_entry(entries[choice])
        elif kind == "timm architecture (init)":
            name = st.selectbox("Architecture", TIMM_ARCHITECTURES, index=0)
            if st.button("Open", key="open_timm"):
                _set(f"timm:{name}")
        elif kind == "Path on server":
            path = st.text_input("File or folder path", key="server_path")
            if path and st.button("Open", key="open_path"):
                try:
                    _set(server_path(path))
                except VitdashError as e:
                    st.error(str(e))
        elif kind == "Upload":
            _upload()
        else:
            repo = st.text_input("Repository id or timm name", placeholder="timm/vit_base_patch16_224.augreg2_in21k_ft_in1k")
            if repo and st.button("Download", key="open_hub"):
                _set(f"hf-hub:{repo.strip()}")
        if kind != "Upload":
            _hold(None)  # the uploader is gone with its file; an opened upload still counts
        _describe_current()


def _hold(up) -> None:
    """Report this session's uploads (the uploader's file or the opened upload, whichever is larger) to the
    per-user quota; over it, the uploader is reset (Streamlit drops its file) and the reason shown."""
    opened = st.session_state.get(UPLOAD_KEY)
    try:
        hold_uploads(max(up.size if up is not None else 0, opened.size_bytes if opened is not None else 0))
    except VitdashError as e:
        st.session_state[_REFUSED] = str(e)
        st.session_state[_GENERATION] = st.session_state.get(_GENERATION, 0) + 1
        st.rerun()


def _upload() -> None:
    generation = st.session_state.get(_GENERATION, 0)
    up = st.file_uploader("Checkpoint file", type=None, key=f"uploader_{generation}" if generation else "uploader")
    if _REFUSED in st.session_state:
        st.error(st.session_state.pop(_REFUSED))
    _hold(up)
    if up is None:
        return
    if st.button("Open", key="open_upload"):
        try:
            select_upload(up.getvalue(), up.name)
        except VitdashError as e:
            st.error(str(e))
            _still_open()
    if str(st.session_state.get(SOURCE_KEY, "")).endswith(f":{up.name}"):  # this upload opened fine
        folder = save_dir(configured_dirs())
        st.caption("Only this session sees the upload until you save it.")
        if not may_save_to_library():
            st.caption("Saving to the library is open to the people on `[vitdash] library_writers` only.")
        elif st.button("Save to the library", key="save_upload", help=f"copies it into {folder}"):
            try:
                path = save_upload(up.getvalue(), up.name, folder, saved_by=current_user())
            except VitdashError as e:
                st.error(str(e))
                return
            library_changed()
            _set(str(path))
            st.success(f"Saved as {path}")


def _still_open() -> None:
    """After a failed upload: what is still this session's checkpoint (the pages keep showing it)."""
    try:
        ckpt = selected()
    except VitdashError:
        ckpt = None
    st.info(f"The upload was not opened; the pages still show **{ckpt.name}**." if ckpt is not None else
            "The upload was not opened; no checkpoint is open.")


def _describe_current() -> None:
    source = st.session_state.get(SOURCE_KEY)
    if not source:
        return
    st.divider()
    try:
        ckpt = selected()
    except VitdashError:
        # The page says why, in full, once (current_checkpoint); here only which source failed.
        st.caption(f"Could not open `{source}`: the reason is on the page.")
        return
    if ckpt is None:
        return
    st.markdown(f"**{ckpt.name}**  \n{ckpt.layout} layout · {ckpt.num_params / 1e6:.2f} M params")

    try:
        earlier = AuditHistory().find_by_hash(ckpt.sha256)
    except VitdashError:
        return  # the History page says what is wrong with the database
    if earlier:
        st.info(f"Audited before ({len(earlier)}x). Latest: {earlier[0].describe()}", icon=":material/history:")
