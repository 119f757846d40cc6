"""Overview: what was loaded, from where, in which layout, and what the mapping did with every key."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from ui.state import current_checkpoint

st.title("Overview")
ckpt = current_checkpoint()
info = ckpt.to_dict()

cols = st.columns(4)
cols[0].metric("Parameters", f"{ckpt.num_params / 1e6:.2f} M")
cols[1].metric("Tensors", info["num_tensors"])
cols[2].metric("Layout", ckpt.layout)
cols[3].metric("Format", ckpt.format)

if ckpt.is_vit:
    st.success(f"Recognized as a Vision Transformer ({ckpt.layout} layout, mapped to timm names).")
else:
    st.warning(f"Not recognized as a ViT: it looks like {ckpt.looks_like}.")
for w in ckpt.warnings:
    st.warning(w)

st.subheader("Source")
st.table(pd.DataFrame({
    "": ["name", "source", "size", "sha256", "dtypes", "wrappers unwrapped"],
    "value": [ckpt.name, ckpt.source, f"{ckpt.size_bytes:,} bytes" if ckpt.size_bytes else "in memory",
              ckpt.sha256, ", ".join(info["dtypes"]), ", ".join(ckpt.wrappers) or "none"],
}).set_index(""))

st.subheader("Metadata found")
meta = info["metadata"]
if meta:
    for key, value in meta.items():
        with st.expander(key, expanded=key in ("mapping_notes", "config")):
            st.json(value, expanded=1)
else:
    st.caption("No metadata in this checkpoint (no config.json, safetensors header metadata, or training args).")

st.subheader("Mapping report")
left, right = st.columns(2)
with left:
    st.markdown(f"**{len(ckpt.tensors)} tensors** " + ("under canonical timm names" if ckpt.canonical else
                                                      "under the file's own names (generic tensor set)"))
    st.dataframe(pd.DataFrame(
        [{"name": k, "shape": str(tuple(ckpt.tensors.shape(k))), "dtype": str(ckpt.tensors.info(k).dtype)[6:],
          "params": ckpt.tensors.info(k).numel} for k in ckpt.tensors]), hide_index=True, height=360)
with right:
    st.markdown(f"**{len(ckpt.unmapped_keys)} keys left over**")
    if ckpt.unmapped_keys:
        st.dataframe(pd.DataFrame({"key": ckpt.unmapped_keys,
                                   "why": [ckpt.unmapped_reasons.get(k, "not recognized") for k in ckpt.unmapped_keys]}),
                     hide_index=True)
    else:
        st.caption("Every key of the file is accounted for.")
