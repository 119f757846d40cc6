"""Where does it come from? The checkpoint's relatives in the library, from its weights alone."""
from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from ui.access import server_path
from ui.jobs import run_job
from ui.state import current_checkpoint, library_entries, or_stop
from vitdash.figures.lineage import block_heatmap, family_tree_figure, relations_figure
from vitdash.population.lineage import library_in, lineage, lineage_bytes
from vitdash.population.lineage_tree import family_tree

st.title("Where does it come from?")
ckpt = current_checkpoint()
st.caption(f"**{ckpt.name}** against every checkpoint of the library: the same weights saved again (any format, "
           "layout or precision), fine-tuned from one of them, a sibling of one, or unrelated. Only the weights are "
           "read; what the file claims is checked against them.")

scope = st.radio("Library", ("Configured library", "Folders on server"), key="lineage_scope", horizontal=True)
folders = ""
if scope == "Folders on server":
    folders = st.text_input(f"Folders ({os.pathsep}-separated)", key="lineage_folders").strip()


def _entries():
    if scope == "Configured library":
        return library_entries()
    return library_in([server_path(f) for f in folders.split(os.pathsep) if f.strip()])


def _run(label: str, what: str, work):
    """`work(entries, progress, should_stop)` through the server's job queue under a progress bar; a VitdashError
    is shown and the page stops; None when the queue refused or cancelled it (run_job says why)."""
    entries = or_stop(_entries)
    bar = st.progress(0.0, text=label)
    try:
        return or_stop(lambda: run_job("lineage", lineage_bytes(ckpt, entries), lambda stop: work(
            entries, lambda p: bar.progress(min(p.fraction, 1.0), text=p.message), stop), label=what))
    finally:
        bar.empty()


key = (ckpt.source, ckpt.sha256, scope, folders)
ready = scope == "Configured library" or bool(folders)
if ready and st.button("Search the library", key="lineage_run", type="primary"):
    found = _run("Reading the library...", "the lineage search", lambda entries, progress, stop: lineage(
        ckpt, entries, progress=progress, should_stop=stop))
    if found is not None:
        st.session_state["lineage"] = (key, found)
stored = st.session_state.get("lineage")
if stored is None or stored[0] != key:
    st.info("Choose the library and press Search: checkpoints seen for the first time are fingerprinted once "
            "(one read each), later searches take a second.")
    st.stop()
lin = stored[1]

cols = st.columns(4)
cols[0].metric("Relatives found", sum(r.related for r in lin.relations))
cols[1].metric("Checkpoints compared", len(lin.relations))
cols[2].metric("Compared exactly", lin.candidates)
cols[3].metric("Search time", f"{sum(lin.timings.values()):.1f} s")
(st.success if any(r.related for r in lin.relations) else st.info)(lin.summary())
if lin.found_as:
    st.caption(f"This checkpoint is in the library as {lin.found_as} (skipped).")

st.subheader("What it claims, beside what the weights say")
if lin.claims:
    st.dataframe(pd.DataFrame([{"claim": f"{c.claim.kind} {c.claim.value}", "where": c.claim.where, "status": c.status,
                                "what the weights show": c.message} for c in lin.claims]), hide_index=True)
else:
    st.caption("The metadata claims no lineage (no `_name_or_path`, `base_model`, timm hub id, safetensors "
               "metadata or training arguments naming a parent).")

st.subheader("Relations")
st.dataframe(pd.DataFrame([{"library checkpoint": r.name, "relation": r.relation, "score (z)": r.score,
                            "checked": r.stage, "evidence": r.summary} for r in lin.relations]),
             hide_index=True, key="lineage_relations")
st.plotly_chart(relations_figure(lin), key="lineage_scores")

related = [r for r in lin.relations if r.related]
if related:
    st.subheader("Evidence against one relative")
    names = [r.name for r in related]
    rel = related[names.index(st.selectbox("Relative", names, key="lineage_relative"))]
    st.markdown(f"**{rel.relation}**: {rel.summary}")
    for cue in rel.direction.cues if rel.direction else []:
        st.markdown(f"- {cue}")
    st.plotly_chart(block_heatmap(rel), key="lineage_heatmap")
    with st.expander(f"Every tensor ({len(rel.tensors)})"):
        st.dataframe(pd.DataFrame([t.to_dict() for t in rel.tensors]), hide_index=True)

st.subheader("Family tree of the library")
st.caption("Every checkpoint against every other: arrows run from ancestor to descendant.")
if st.button("Draw the family tree", key="lineage_tree_run"):
    tree = _run("Reading the library...", "the family tree", lambda entries, progress, stop: family_tree(
        entries, progress=progress, should_stop=stop))
    if tree is not None:
        st.session_state["lineage_tree"] = (key[2:], tree)
tree_stored = st.session_state.get("lineage_tree")
if tree_stored is not None and tree_stored[0] == key[2:]:
    st.plotly_chart(family_tree_figure(tree_stored[1], highlight=lin.found_as), key="lineage_family")
