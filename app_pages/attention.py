"""Where does it look? Attention rollout, raw attention per layer/head and gradient rollout on chosen images."""
from __future__ import annotations

import streamlit as st

from ui.attention import domain_note, overlay_grid
from ui.images import choose_images
from ui.state import current_checkpoint, current_model, or_stop
from vitdash.attention import overlay as O
from vitdash.attention.artifacts import TREATMENTS
from vitdash.attention.explain import AttentionResult, anatomy, explain_images
from vitdash.attention.rollout import HEAD_FUSIONS
from vitdash.errors import VitdashError
from vitdash.figures.attention import heads_figure, map_figure

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


st.title("Where does it look?")
ckpt = current_checkpoint()
if not ckpt.canonical:
    st.error(f"{ckpt.name} is not in a recognized ViT layout ({ckpt.layout}), so its attention cannot be computed.")
    st.stop()
model = or_stop(lambda: current_model(ckpt))
shape = or_stop(lambda: anatomy(model, ckpt))
depth, layout, (gh, gw), (ph, pw) = shape.depth, shape.layout, shape.layout.grid, shape.patch
st.caption(f"{shape.describe()}. Maps are computed on a weight-sharing copy with unfused attention; the shared "
           "model is not changed.")

st.subheader("Images")
chosen = choose_images(shape.in_chans, MAX_IMAGES)
domain_note(ckpt, chosen)

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
        if not shape.num_classes:
            st.info("This checkpoint has no classification head, so there is no class score to take gradients "
                    "of. Use the attention rollout instead.")
            st.stop()
        names = shape.class_names
        options = [None, *range(shape.num_classes)]
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
        head = c2.selectbox("Head", [None, *range(shape.num_heads)], key="attn_head",
                            format_func=lambda h: "mean of heads" if h is None else f"head {h}")

c1, c2, c3, c4 = st.columns(4)
colormap = c1.selectbox("Colormap", O.COLORMAPS, key="attn_colormap")
opacity = c2.slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="attn_opacity")
clip = c3.slider("Saturate above quantile", 0.5, 1.0, 1.0, 0.01, key="attn_clip",
                 help="below 1, the strongest patches saturate, so one outlier does not hide the rest")
outliers = c4.selectbox("Outlier patches", TREATMENTS, key="attn_outliers",
                        help="patches that swamp the map (high-norm artifact tokens of ViTs without registers, or a few "
                             "patches drawing most of the attention): capped at the others' maximum, left out, or shown "
                             "as they are; marked in every case")

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


at = (None, None) if view in ("rollout", "grad") else (layer, head)  # the rollout, or one layer's raw attention
st.subheader(VIEWS[view])
overlay_grid(results, at, VIEWS[view], ckpt.name, colormap=colormap, opacity=opacity, clip=clip, artifacts=outliers)

if view == "heads":
    for i, (name, _label, result) in enumerate(results):
        st.markdown(f"**{name}**")
        st.plotly_chart(heads_figure(result.source_attention[layer], layer, colormap), key=f"heads_{i}")

with st.expander("Values on the patch grid"):
    for i, (name, _label, result) in enumerate(results):
        st.plotly_chart(map_figure(result.shown(*at), name, colormap), key=f"map_{i}")
        st.json(result.to_dict(), expanded=False)
