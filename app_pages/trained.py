"""Is it trained? The model verdict with its evidence, which blocks look trained, and any tensor's
histogram against the init priors and spectrum against its shuffled twin."""
from __future__ import annotations

import json
import time

import pandas as pd
import streamlit as st

from ui.state import current_audit, current_checkpoint, or_stop
from ui.trained import per_layer_histograms
from vitdash.figures.colors import VERDICT_COLORS
from vitdash.figures.trained import (
    HEATMAP_STATS,
    depth_role_heatmap,
    histogram_figure,
    patch_filters_figure,
    pos_embed_figure,
    prior_table,
    spectrum_figure,
)
from vitdash.load.checkpoint import Checkpoint
from vitdash.trained.pos_embed import split_pos_embed
from vitdash.trained.spectra import FullSpectrum, full_spectrum
from vitdash.trained.verdict import spectral_matrix, tensor_fits


@st.cache_data(max_entries=32, show_spinner="Computing the full spectrum...")
def _spectrum(sha: str, source: str, name: str, role: str, scores: bool, _ckpt: Checkpoint) -> FullSpectrum:
    return full_spectrum(spectral_matrix(_ckpt.read(name), role), scores=scores)


started = time.perf_counter()
st.title("Is it trained?")
ckpt = current_checkpoint()
result = or_stop(lambda: current_audit(ckpt))

# ---- verdict card --------------------------------------------------------------------------------------------
with st.container(border=True):
    st.markdown(f"### :{VERDICT_COLORS[result.verdict]}[{result.verdict.upper()}]\n{result.summary}")
    cols = st.columns(4)
    cols[0].metric("Verdict", result.verdict)
    cols[1].metric("Confidence", f"{result.confidence:.2f}")
    cols[2].metric("Tensors at init", len(result.at_init))
    waited = cols[3].empty()  # filled at the end: the time this page took, not the analysis alone
    st.markdown("\n".join(f"- {e}" for e in result.evidence))
    if result.likely_init:
        st.caption(f"The at-init values match **{result.likely_init}**'s initialization.")
    if result.at_init:
        with st.expander(f"At init: {len(result.at_init)} tensor(s) in {', '.join(result.at_init_groups)}"):
            st.write(", ".join(result.at_init))
if not ckpt.canonical:
    st.info("Layout not recognized: roles and blocks are guessed from names and shapes; histograms, spectra and "
            "the verdict still apply to every tensor.")

# ---- depth x role ------------------------------------------------------------------------------------------
st.subheader("Which blocks look trained?")
c1, c2 = st.columns([3, 1])
stat = c1.selectbox("Colour by", list(HEATMAP_STATS), format_func=lambda k: HEATMAP_STATS[k][0])
weights_only = c2.checkbox("Weight matrices only", value=True)
if any(t.block is not None for t in result.tensors):
    st.plotly_chart(depth_role_heatmap(result, stat, weights_only), width="stretch")
else:
    st.info("No repeated blocks found in the tensor names: the table below lists every tensor.")

per_layer_histograms(ckpt, result)

# ---- one tensor --------------------------------------------------------------------------------------------
st.subheader("One tensor")
names = [t.name for t in result.tensors]
name = st.selectbox("Tensor", names, index=names.index(result.most_telling()), key="tensor_pick",
                    format_func=lambda n: f"{n}  [{result.tensor(n).verdict}]")
rep = result.tensor(name)
st.markdown(f":{VERDICT_COLORS[rep.verdict]}[**{rep.verdict}**]: {rep.reason}")
mom, best, kurtosis, ratio = (rep.stats.moments, rep.stats.best_fit, rep.stats.scalar("excess_kurtosis"),
                              rep.stats.scalar("std_ratio"))
mcols = st.columns(5)
mcols[0].metric("mean", f"{mom.mean:.3g}")
mcols[1].metric("std", f"{mom.std:.3g}")
mcols[2].metric("excess kurtosis", "n/a" if kurtosis is None else f"{kurtosis:.2f}")
mcols[3].metric("KS to best prior", f"{best.ks:.3f}" if best else "n/a", help=best.prior.label if best else None)
mcols[4].metric("std / prior std", f"{ratio:.3f}" if ratio else "n/a")
tensor = ckpt.read(name)
fits = tensor_fits(ckpt, name)
st.plotly_chart(histogram_figure(tensor.reshape(-1), fits, name), width="stretch")
if fits:
    st.dataframe(pd.DataFrame(prior_table(fits)), hide_index=True)
spec = rep.stats.spectrum
if spec is not None:
    space = st.radio("Spectrum of", ["raw values", "normal scores (what the verdict uses)"], horizontal=True)
    scores = space.startswith("normal")
    full = _spectrum(ckpt.sha256, ckpt.source, name, rep.role, scores, ckpt)
    st.plotly_chart(spectrum_figure(full.eigenvalues, full.twin, full.shape, full.variance, name,
                                    "normal-score" if scores else "raw"), width="stretch")
    alpha = rep.stats.scalar("tail_alpha")
    st.caption(f"Verdict statistic on the {spec.block[0]}x{spec.block[1]} {spec.method} reading: "
               f"top eigenvalue {spec.top_over_edge:.2f}x the MP edge, {spec.top_over_twin:.2f}x the "
               f"shuffled twin's, z = {spec.structure:.1f}, {spec.n_outliers} outlier(s), tail exponent "
               f"{alpha if alpha is None else round(alpha, 2)}.")

# ---- position embedding and patch filters ------------------------------------------------------------------
pos = next((t for t in result.tensors if t.role == "pos_embed" and t.stats.pos_embed is not None), None)
if pos is not None:
    st.subheader("Position embedding")
    p = pos.stats.pos_embed
    split = split_pos_embed(ckpt.read(pos.name), p.num_prefix, tuple(p.grid))
    pc = st.columns(3)
    pc[0].metric("similarity vs distance (corr)", f"{p.corr:.2f}", help=f"z = {p.corr_z:.1f}")
    pc[1].metric("neighbours vs all (contrast)", f"{p.neighbour_contrast:.2f}", help=f"z = {p.neighbour_z:.1f}")
    pc[2].metric("structure z", f"{p.z:.1f}")
    if split is not None:
        st.plotly_chart(pos_embed_figure(split[0], split[1]), width="stretch")

patch = next((t for t in result.tensors if t.role == "patch_embed" and len(t.shape) == 4), None)
if patch is not None:
    st.subheader("Patch-embedding filters")
    f = patch.stats.filters
    if f is not None:
        st.caption(f"Neighbouring-pixel correlation {f.smoothness:.2f} against {f.null_mean:.2f} for "
                   f"shuffled pixels: z = {f.z:.1f}.")
    pca = st.radio("Show", ["principal components", "first filters"], horizontal=True) == "principal components"
    st.plotly_chart(patch_filters_figure(ckpt.read(patch.name), pca=pca), width="stretch")

# ---- every tensor ------------------------------------------------------------------------------------------
st.subheader("Every tensor")
table = pd.DataFrame([{
    "name": t.name, "role": t.role, "block": t.block, "shape": "x".join(map(str, t.shape)), "verdict": t.verdict,
    "structure": t.stats.scalar("structure"), "std": t.stats.scalar("std"),
    "kurtosis": t.stats.scalar("excess_kurtosis"),
    "closest prior": t.stats.best_fit.prior.label if t.stats.best_fit else None, "reason": t.reason}
    for t in result.tensors])
st.dataframe(table, hide_index=True)
st.download_button("Download the audit (JSON)", json.dumps(result.to_dict(), indent=2, default=str),
                   file_name=f"{ckpt.name or 'checkpoint'}.audit.json", mime="application/json")
waited.metric("Page ready in", f"{time.perf_counter() - started:.1f} s",
              help=f"What you waited for this page: loading, the audit and every figure. The audit's analysis alone "
                   f"took {result.seconds:.1f} s when it ran (it is kept for every later visit).")
