"""The sidebar checkpoint picker: one choice per session, kept in `st.session_state` across pages."""
from __future__ import annotations

import streamlit as st

from ui.state import SOURCE_KEY, selected, select_upload
from vitdash.errors import VitdashError
from vitdash.library import TIMM_ARCHITECTURES, list_library

_KINDS = ("Library", "timm architecture (init)", "Path on server", "Upload", "Hugging Face Hub")


def _set(source: str) -> None:
    st.session_state[SOURCE_KEY] = source
    st.session_state.pop("upload_ckpt", None)


def checkpoint_picker() -> None:
    with st.sidebar:
        st.header("Checkpoint")
        kind = st.radio("Source", _KINDS, key="source_kind", label_visibility="collapsed")
        if kind == "Library":
            entries = list_library()
            if not entries:
                st.caption("No model folder configured (set VITDASH_MODEL_DIRS).")
            else:
                names = [e.name for e in entries]
                choice = st.selectbox("Model", names, index=None, placeholder="Choose a checkpoint")
                if choice is not None and st.button("Open", key="open_library"):
                    _set(entries[names.index(choice)].source)
        elif kind == "timm architecture (init)":
            name = st.selectbox("Architecture", TIMM_ARCHITECTURES, index=0)
            if st.button("Open", key="open_timm"):
                _set(f"timm:{name}")
        elif kind == "Path on server":
            path = st.text_input("File or folder path")
            if path and st.button("Open", key="open_path"):
                _set(path.strip())
        elif kind == "Upload":
            up = st.file_uploader("Checkpoint file", type=None, key="uploader")
            if up is not None and st.button("Open", key="open_upload"):
                try:
                    select_upload(up.getvalue(), up.name)
                except VitdashError as e:
                    st.error(str(e))
        else:
            repo = st.text_input("Repository id or timm name", placeholder="timm/vit_base_patch16_224.augreg2_in21k_ft_in1k")
            if repo and st.button("Download", key="open_hub"):
                _set(f"hf-hub:{repo.strip()}")
        _describe_current()


def _describe_current() -> None:
    source = st.session_state.get(SOURCE_KEY)
    if not source:
        return
    st.divider()
    try:
        ckpt = selected()
    except VitdashError as e:
        st.error(str(e))
        return
    if ckpt is not None:
        st.markdown(f"**{ckpt.name}**  \n{ckpt.layout} layout · {ckpt.num_params / 1e6:.2f} M params")
