"""Compare: the session's checkpoint (A) against another (B), tensor by tensor on canonical names."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from ui.state import current_checkpoint, library_entries, load_source
from vitdash.errors import VitdashError
from vitdash.figures.population import group_changes_figure, tensor_changes_figure, verdict_change_figure
from vitdash.load.library import TIMM_ARCHITECTURES, prepare
from vitdash.population.compare import VERDICT_STATS, compare

st.title("Compare")
a = current_checkpoint()
st.caption(f"A (the checkpoint chosen in the sidebar): **{a.name}** · {a.layout} layout")

kind = st.radio("Checkpoint B", ("Library", "Path on server", "timm architecture (init)"), key="compare_kind",
                horizontal=True)
b_source = b_entry = None
if kind == "Library":
    entries = {e.source: e for e in library_entries()}  # listed as the sidebar lists them: name first
    choice = st.selectbox("Model", list(entries), index=None, placeholder="Choose a checkpoint", key="compare_library",
                          format_func=lambda s: entries[s].label)
    b_entry = entries.get(choice)
elif kind == "Path on server":
    b_source = (st.text_input("File or folder path", key="compare_path") or "").strip() or None
else:
    b_source = "timm:" + st.selectbox("Architecture", TIMM_ARCHITECTURES, key="compare_timm")
verdicts = st.checkbox("Compare the verdict statistics too (audits both checkpoints: slower)", value=True,
                       key="compare_verdicts")

a_key = (a.source, a.sha256)
if (b_source or b_entry) and st.button("Compare", key="compare_run", type="primary"):
    try:
        if b_entry is not None:
            with st.spinner(f"Preparing {b_entry.name}..."):
                b_source = prepare(b_entry)  # the demo pair is trained on first use
        b = load_source(b_source)
        with st.spinner(f"Comparing {a.name} with {b.name}..."):
            st.session_state["comparison"] = (a_key, compare(a, b, verdicts=verdicts))
    except VitdashError as e:
        st.error(str(e))

stored = st.session_state.get("comparison")
if stored is None or stored[0] != a_key:
    st.info("Choose checkpoint B and press Compare.")
    st.stop()
cmp = stored[1]

cols = st.columns(4)
cols[0].metric("Same weights", "yes" if cmp.same_weights else "no")
cols[1].metric("Overall relative change", "n/a" if cmp.architectures else
               "-" if cmp.rel_change is None else f"{cmp.rel_change:.3g}",
               help=f"different architectures: {cmp.architectures}" if cmp.architectures else "||B - A|| / ||A||")
cols[2].metric("Head", cmp.head.status)
cols[3].metric("Only in A / only in B", f"{len(cmp.only_in_a)} / {len(cmp.only_in_b)}")
(st.success if cmp.same_weights else st.warning if cmp.architectures else st.info)(cmp.summary())
for note in cmp.notes:
    st.warning(note)

if not cmp.same_weights and not cmp.architectures:  # unrelated weights: no chart of "what moved"
    st.plotly_chart(group_changes_figure(cmp), key="compare_groups")
    st.plotly_chart(tensor_changes_figure(cmp), key="compare_tensors")
if cmp.model_verdict_a is not None:
    st.subheader("Change in the verdict statistics")
    st.markdown(f"Model verdict: A **{cmp.model_verdict_a}**, B **{cmp.model_verdict_b}**.")
    stat = st.selectbox("Statistic", VERDICT_STATS, index=VERDICT_STATS.index("structure"), key="compare_stat")
    st.plotly_chart(verdict_change_figure(cmp, stat), key="compare_verdict")

st.subheader("Per tensor")
rows = []
for t in cmp.tensors:
    row = {"tensor": t.name, "block": t.group, "shape A": str(tuple(t.shape_a)), "shape B": str(tuple(t.shape_b)),
           "relative change": t.rel_change, "cosine": t.cosine, "max |diff|": t.max_abs_diff, "equal": t.equal}
    if t.verdict_a or t.verdict_b:
        row.update({"verdict A": t.verdict_a.get("verdict"), "verdict B": t.verdict_b.get("verdict"),
                    **{f"Δ {s}": t.stat_change(s) for s in VERDICT_STATS}})
    rows.append(row)
st.dataframe(pd.DataFrame(rows), hide_index=True, height=360)
for label, names in (("Only in A", cmp.only_in_a), ("Only in B", cmp.only_in_b)):
    if names:
        with st.expander(f"{label} ({len(names)})"):
            st.dataframe(pd.DataFrame({"tensor": names}), hide_index=True)
