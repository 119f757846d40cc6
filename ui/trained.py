"""The "Is it trained?" page's per-layer histograms: one role in every block, optionally over a second checkpoint."""
from __future__ import annotations

import numpy as np
import streamlit as st

from ui.state import current_audit, library_entries, load_source
from vitdash.errors import VitdashError
from vitdash.figures.trained import layer_histograms_figure
from vitdash.load.checkpoint import Checkpoint
from vitdash.load.library import prepare
from vitdash.trained.layers import LayerHistograms, layer_histograms, layer_slots
from vitdash.trained.verdict import Audit

PREFERRED_SLOT = "attn.qkv.weight"


@st.cache_data(max_entries=32, show_spinner="Binning every block...")
def _histograms(sha: str, source: str, slot: str, tails: bool, edges: tuple | None, _ckpt: Checkpoint,
                _audit: Audit) -> LayerHistograms:
    return layer_histograms(_ckpt, _audit, slot, tails=tails, edges=None if edges is None else np.asarray(edges))


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else name[:width - 1] + "…"


def per_layer_histograms(ckpt: Checkpoint, audit: Audit) -> None:
    """Small multiples of one role (qkv, proj, fc1, norms...) down the depth, each with its best prior and the
    KS / std ratio the verdict read; log density for the tails; another checkpoint overlaid on the same bins."""
    slots = layer_slots(audit)
    if not slots:
        return
    st.subheader("Per-layer histograms")
    c1, c2, c3 = st.columns([2, 1, 2])
    slot = c1.selectbox("Role, in every block", slots, key="layers_slot",
                        index=slots.index(PREFERRED_SLOT) if PREFERRED_SLOT in slots else 0)
    log = c2.checkbox("Log density", key="layers_log", help="shows the tails: every entry, on a log scale")
    entries = {e.source: e for e in library_entries() if e.source != ckpt.source}
    other = c3.selectbox("Overlay another checkpoint", [None, *entries], key="layers_other",
                         format_func=lambda s: "none" if s is None else entries[s].label)
    a = _histograms(ckpt.sha256, ckpt.source, slot, log, None, ckpt, audit)
    b, names = None, (_short(ckpt.name), "")
    if other is not None:
        try:
            b_ckpt = load_source(prepare(entries[other]))
            b_audit = current_audit(b_ckpt)
            names = (_short(ckpt.name), _short(b_ckpt.name))
            if slot in layer_slots(b_audit):
                b = _histograms(b_ckpt.sha256, b_ckpt.source, slot, log, tuple(a.edges), b_ckpt, b_audit)
            else:
                st.info(f"{b_ckpt.name} has no {slot} in its blocks: nothing to overlay.")
        except VitdashError as e:
            st.error(str(e))
    st.plotly_chart(layer_histograms_figure(a, b, log=log, names=names), width="stretch", key="layers_chart")
    for note in a.notes:
        st.caption(note)
