"""Where does it look? Attention rollout, raw attention per layer/head and gradient rollout on chosen images."""
from __future__ import annotations

import hashlib

import streamlit as st

from ui.state import PERFORM_DATA_KEY, current_checkpoint, current_model
from vitdash.attention import overlay as O
from vitdash.attention.capture import token_layout
from vitdash.attention.explain import AttentionResult, explain_images
from vitdash.attention.rollout import HEAD_FUSIONS
from vitdash.data.datasets import suggested_data
from vitdash.data.images import open_image
from vitdash.data.labels import class_names
from vitdash.data.samples import SAMPLE_DIR_ENV, ImageRef, data_samples, sample_dir, samples
from vitdash.errors import VitdashError
from vitdash.figures.attention import heads_figure, map_figure, top5_figure

MAX_IMAGES = 6
VIEWS = {
    "rollout": "Attention rollout",
    "raw": "Raw attention (layer, head)",
    "heads": "All heads of a layer",
    "grad": "Gradient rollout for a class",
}
SOURCE_NAMES = {"pool": "attention pool's query", "cls": "class token", "dist": "distillation token",
                "registers": "mean of registers", "patches": "mean of patches"}


@st.cache_data(max_entries=64, show_spinner=False)
def _explain(sha256: str, image_key: str, settings: tuple, _ckpt, _image, _model) -> AttentionResult:
    return explain_images(_ckpt, [_image], model=_model, **dict(settings))[0]


@st.cache_data(max_entries=32, show_spinner=False)
def _decode(data: bytes, name: str):
    return open_image(data, name)


@st.cache_data(show_spinner=False)
def _samples() -> list[ImageRef]:
    return samples()


@st.cache_data(show_spinner=False)
def _data_samples(folder: str) -> list[ImageRef]:
    return data_samples(folder, limit=500)


def _ref_title(ref: ImageRef) -> str:
    where = {"sklearn": "scikit-learn", "folder": "sample folder", "data": "data", "digits": "digits"}[ref.origin]
    return f"{ref.name} ({where})" + (f" - {ref.label}" if ref.label and ref.label not in ref.name else "")


def _choose_images(in_chans: int) -> list[tuple[str, str, object, str | None]]:
    """(name, cache key, PIL image, known class) for every chosen image that opens; bad files get st.error."""
    left, right = st.columns(2)
    with left:
        uploads = st.file_uploader("Upload images (JPEG, PNG, WebP)", type=["jpg", "jpeg", "png", "webp"],
                                   accept_multiple_files=True, key="attn_uploads")
        if "attn_data_folder" not in st.session_state:  # start from the accuracy check's data when it was set
            st.session_state["attn_data_folder"] = st.session_state.get(
                PERFORM_DATA_KEY, "" if in_chans == 3 else suggested_data(in_chans, None))
        folder = st.text_input("Images from a data folder (as in the accuracy check), or 'digits'",
                               key="attn_data_folder", placeholder="/path/to/imagenet/val")
    refs = _samples() if in_chans == 3 else []  # colour photographs say little about a grayscale model
    if folder.strip():
        try:
            known = {r.path for r in refs}
            refs = refs + [r for r in _data_samples(folder.strip()) if r.path not in known]
        except VitdashError as e:
            st.error(str(e))
    titles = {_ref_title(r): r for r in refs}
    with right:
        labelled = [t for t, r in titles.items() if r.origin == "folder"]  # real photos with a known class
        picked = st.multiselect("Samples", list(titles), default=(labelled or list(titles))[:2], key="attn_samples",
                                help=f"scikit-learn's photographs, the sample folder (${SAMPLE_DIR_ENV}, now "
                                     f"{sample_dir() or 'absent'}), and the data folder's images")
    chosen = []
    for up in uploads or []:
        data = up.getvalue()
        try:
            chosen.append((up.name, hashlib.sha256(data).hexdigest(), _decode(data, up.name), None))
        except VitdashError as e:
            st.error(str(e))
    for title in picked:
        ref = titles[title]
        try:
            chosen.append((ref.name, f"{ref.origin}:{ref.path}", ref.load(), ref.label))
        except VitdashError as e:
            st.error(str(e))
    if len(chosen) > MAX_IMAGES:
        st.warning(f"{len(chosen)} images chosen; showing the first {MAX_IMAGES}.")
    return chosen[:MAX_IMAGES]


st.title("Where does it look?")
ckpt = current_checkpoint()
if not ckpt.canonical:
    st.error(f"{ckpt.name} is not in a recognized ViT layout ({ckpt.layout}), so its attention cannot be computed.")
    st.stop()
try:
    model = current_model(ckpt)
    layout = token_layout(model)
except VitdashError as e:
    st.error(str(e))
    st.stop()
depth, num_heads = len(model.blocks), model.blocks[0].attn.num_heads
(gh, gw), (ph, pw) = layout.grid, model.patch_embed.patch_size
has_head = int(getattr(model, "num_classes", 0) or 0) > 0
prefix = [n for n, present in (("class", layout.cls_index is not None), ("distillation", layout.dist_index is not None))
          if present] + ([f"{len(layout.reg_indices)} register"] if layout.reg_indices else [])
st.caption(f"{depth} layers x {num_heads} heads, patch {ph}x{pw}, native grid {gh}x{gw} "
           f"({gh * ph}x{gw * pw} px); prefix tokens: {', '.join(prefix) or 'none'}. Maps are computed on a "
           "weight-sharing copy with unfused attention; the shared model is not changed.")

st.subheader("Images")
chosen = _choose_images(model.patch_embed.proj.in_channels)

st.subheader("View")
c1, c2, c3 = st.columns(3)
view = c1.radio("What to show", list(VIEWS), format_func=VIEWS.get, key="attn_view")
source = c2.selectbox("Seen from", layout.available_sources, format_func=SOURCE_NAMES.get, key="attn_source",
                      help="whose attention row is shown: by default what feeds the head (the attention "
                           "pool's query, else the class token, else all patches)")
with c3:
    other_size = st.checkbox("Other input resolution", key="attn_other_size",
                             help="position embeddings are interpolated as timm does (dynamic image size)")
    img_size = None
    if other_size:
        h_col, w_col = st.columns(2)
        img_size = (int(h_col.number_input("height", ph, 4096, gh * ph, step=ph, key="attn_h")),
                    int(w_col.number_input("width", pw, 4096, gw * pw, step=pw, key="attn_w")))

settings: dict = {"source": source, "img_size": img_size}
layer, head = depth - 1, None
c1, c2, c3 = st.columns(3)
if view in ("rollout", "grad"):
    if view == "rollout":
        settings["head_fusion"] = c1.selectbox("Head fusion", HEAD_FUSIONS, key="attn_fusion")
    else:
        if not has_head:
            st.info("This checkpoint has no classification head, so there is no class score to take gradients "
                    "of. Use the attention rollout instead.")
            st.stop()
        names = class_names(model.num_classes, ckpt.metadata)
        options = [None, *range(model.num_classes)]
        settings["method"] = "grad_rollout"
        settings["target_class"] = c1.selectbox(
            "Class", options, key="attn_class",
            format_func=lambda i: "top-1 prediction of each image" if i is None else
            f"{i}: {names[i]}" if names else str(i))
    settings["discard_ratio"] = c2.slider("Discard ratio", 0.0, 0.99, 0.0, 0.01, key="attn_discard",
                                          help="drop this fraction of the lowest attentions per layer and image")
    settings["start_layer"] = c3.slider("Start layer", 0, depth - 1, 0, key="attn_start") if depth > 1 else 0
else:
    layer = c1.slider("Layer", 0, depth - 1, depth - 1, key="attn_layer") if depth > 1 else 0
    if view == "raw":
        head = c2.selectbox("Head", [None, *range(num_heads)], key="attn_head",
                            format_func=lambda h: "mean of heads" if h is None else f"head {h}")

c1, c2, c3 = st.columns(3)
colormap = c1.selectbox("Colormap", O.COLORMAPS, key="attn_colormap")
opacity = c2.slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="attn_opacity")
clip = c3.slider("Saturate above quantile", 0.5, 1.0, 1.0, 0.01, key="attn_clip",
                 help="below 1, the strongest patches saturate, so one outlier does not hide the rest")

if not chosen:
    st.info("Choose or upload at least one image.")
    st.stop()

results = []
with st.spinner("Computing attention..."):
    for name, key, image, label in chosen:
        try:
            result = _explain(ckpt.sha256, key, tuple(sorted(settings.items())), ckpt, image, model)
        except VitdashError as e:
            st.error(f"{name}: {e}")
            continue
        results.append((name, label, result))
if not results:
    st.stop()


def _shown(result: AttentionResult):
    if view in ("rollout", "grad"):
        return result.map
    return result.raw(layer, head)


def _describe(result: AttentionResult) -> str:
    if view in ("rollout", "grad"):
        return f"{result.head_fusion}, discard {result.discard_ratio:g}, from layer {result.start_layer}"
    return f"layer {layer}, " + ("mean of heads" if head is None else f"head {head}")


overlays = []
st.subheader(VIEWS[view])
for start in range(0, len(results), 3):
    for col, (name, label, result) in zip(st.columns(3), results[start:start + 3]):
        with col:
            try:
                picture = O.blend(O.upscale(result.image), _shown(result), colormap, opacity, clip)
            except VitdashError as e:
                st.error(f"{name}: {e}")
                continue
            overlays.append(picture)
            st.image(picture, caption=f"{name}" + (f" (true class: {label})" if label else "")
                     + f" - {_describe(result)}")
            st.caption(f"{result.grid[0]}x{result.grid[1]} patches at {result.input_size[0]}x{result.input_size[1]} "
                       f"px; {result.prefix_share:.1%} of the rollout flow ends in prefix tokens")
            if result.target_class is not None:
                st.caption(f"gradients of class {result.target_class}"
                           + (f" ({result.target_label})" if result.target_label else ""))
            if result.top5:
                st.plotly_chart(top5_figure(result.top5), key=f"top5_{start}_{name}")

if overlays:
    st.download_button("Download PNG", O.to_png(O.side_by_side(overlays)), file_name="attention.png",
                       mime="image/png", key="attn_download")

if view == "heads":
    for i, (name, _label, result) in enumerate(results):
        st.markdown(f"**{name}**")
        st.plotly_chart(heads_figure(result.source_attention[layer], layer, colormap), key=f"heads_{i}")

with st.expander("Values on the patch grid"):
    for i, (name, _label, result) in enumerate(results):
        st.plotly_chart(map_figure(_shown(result), name, colormap), key=f"map_{i}")
        st.json(result.to_dict(), expanded=False)
