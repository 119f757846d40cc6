"""Overview: what was loaded, from where, in which layout, and what the mapping did with every key."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from ui.report import report_button
from ui.state import current_checkpoint
from vitdash.common.ordering import natural_sorted

st.title("Overview")
ckpt = current_checkpoint()
info = ckpt.to_dict()

cols = st.columns(4)
cols[0].metric("Parameters", f"{ckpt.num_params / 1e6:.2f} M")
cols[1].metric("Tensors", info["num_tensors"])
cols[2].metric("Layout", ckpt.layout)
cols[3].metric("Format", ckpt.format)

if ckpt.is_vit:
    st.success(f"Recognized as a Vision Transformer: timm's {ckpt.metadata.get('timm_class', 'VisionTransformer')} "
               f"({ckpt.layout} layout, mapped to its names).")
else:
    st.warning(f"Not recognized as a ViT: it looks like {ckpt.looks_like}.")
for w in ckpt.warnings:
    st.warning(w)

st.subheader("Source")
st.table(pd.DataFrame({
    "": ["name", "source", "size", "dtypes", "wrappers unwrapped"],
    "value": [ckpt.name, ckpt.source, f"{ckpt.size_bytes:,} bytes" if ckpt.size_bytes else "in memory",
              ", ".join(info["dtypes"]), ", ".join(ckpt.wrappers) or "none"],
}).set_index(""))
st.markdown("sha256 (the content's identity: the history finds a file again by it)")
st.code(ckpt.sha256, language=None)
report_button(ckpt, key="overview_report")

st.subheader("Metadata found")
meta = info["metadata"]
if meta:
    for key, value in meta.items():
        with st.expander(key, expanded=key in ("mapping_notes", "config")):
            st.json(value, expanded=1)
else:
    st.caption("No metadata in this checkpoint (no config.json, safetensors header metadata, or training args).")

st.subheader("Mapping report")
left, right = st.columns([3, 2])
with left:
    st.markdown(f"**{len(ckpt.tensors)} tensors**: " + ("the file's key -> its canonical timm name" if ckpt.canonical
                                                       else "under the file's own names (generic tensor set)"))
    mapping = pd.DataFrame(ckpt.mapping())
    st.dataframe(mapping if ckpt.canonical else mapping.drop(columns="canonical name"), hide_index=True, height=360)
with right:
    left_over = len(ckpt.unmapped_keys)
    st.markdown(f"**{left_over} {'key' if left_over == 1 else 'keys'} left over**")
    if ckpt.unmapped_keys:
        keys = natural_sorted(ckpt.unmapped_keys)
        st.dataframe(pd.DataFrame({"key": keys, "why": [ckpt.unmapped_reasons.get(k, "not recognized") for k in keys]}),
                     hide_index=True)
    else:
        st.caption("Every key of the file is accounted for.")
