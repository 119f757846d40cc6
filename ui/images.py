"""An image picker: uploads, the built-in samples and a data folder's images, decoded once and shared."""
from __future__ import annotations

import hashlib

import streamlit as st

from ui.state import PERFORM_DATA_KEY
from vitdash.data.images import open_image
from vitdash.data.samples import (
    SAMPLE_DIR_ENV,
    ImageRef,
    data_samples,
    default_picks,
    image_data_for,
    merge_samples,
    sample_dir,
    samples_for,
)
from vitdash.errors import VitdashError

Chosen = tuple[str, str, object, "str | None"]  # (name, cache key, PIL image, known class)


@st.cache_data(max_entries=32, show_spinner=False)
def _decode(data: bytes, name: str):
    return open_image(data, name)


@st.cache_data(show_spinner=False)
def _samples(in_chans: int) -> list[ImageRef]:
    return samples_for(in_chans)


@st.cache_data(show_spinner=False)
def _data_samples(folder: str) -> list[ImageRef]:
    return data_samples(folder, limit=500)


def choose_images(in_chans: int, max_images: int) -> list[Chosen]:
    """Every chosen image that opens (bad files get st.error), at most `max_images`."""
    left, right = st.columns(2)
    with left:
        uploads = st.file_uploader("Upload images (JPEG, PNG, WebP)", type=["jpg", "jpeg", "png", "webp"],
                                   accept_multiple_files=True, key="attn_uploads")
        if "attn_data_folder" not in st.session_state:  # start from the accuracy check's data when it was set
            st.session_state["attn_data_folder"] = st.session_state.get(PERFORM_DATA_KEY, image_data_for(in_chans))
        folder = st.text_input("Images from a data folder (as in the accuracy check), or 'digits'",
                               key="attn_data_folder", placeholder="/path/to/imagenet/val")
    refs = _samples(in_chans)
    if folder.strip():
        try:
            refs = merge_samples(refs, _data_samples(folder.strip()))
        except VitdashError as e:
            st.error(str(e))
    titles = {r.title: r for r in refs}
    with right:
        picked = st.multiselect("Samples", list(titles), default=[r.title for r in default_picks(refs)],
                                key="attn_samples",
                                help=f"scikit-learn's photographs, the sample folder (${SAMPLE_DIR_ENV}, now "
                                     f"{sample_dir() or 'absent'}), and the data folder's images")
    chosen: list[Chosen] = []
    for up in uploads or []:
        data = up.getvalue()
        try:
            chosen.append((up.name, hashlib.sha256(data).hexdigest(), _decode(data, up.name), None))
        except VitdashError as e:
            st.error(str(e))
    for ref in (titles[t] for t in picked):
        try:
            chosen.append((ref.name, f"{ref.origin}:{ref.path}", ref.load(), ref.label))
        except VitdashError as e:
            st.error(str(e))
    if len(chosen) > max_images:
        st.warning(f"{len(chosen)} images chosen; showing the first {max_images}.")
    return chosen[:max_images]
