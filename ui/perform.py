"""The "Does it perform?" page's preview before Run (time estimate, data off the model's domain) and its results."""
from __future__ import annotations

import streamlit as st

from vitdash.figures import perform as F
from vitdash.identity.architecture import ArchSpec
from vitdash.load.checkpoint import Checkpoint
from vitdash.perform.estimate import QUICK_SECONDS
from vitdash.perform.evaluate import EvalResult
from vitdash.perform.setup import RunPreview, preview_run
from vitdash.pipeline import cached_model


@st.cache_data(max_entries=16, show_spinner="Timing one batch to estimate the run...")
def _preview(sha: str, data: str, probe: bool, coarse: bool, limit: int | None, _ckpt: Checkpoint,
             _arch: ArchSpec) -> RunPreview:
    return preview_run(_ckpt, _arch, data, cached_model(_ckpt), probe=probe, coarse=coarse, limit=limit)


def preview(ckpt: Checkpoint, arch: ArchSpec, data: str, *, probe: bool, coarse: bool, limit: int | None) -> RunPreview:
    return _preview(ckpt.sha256, data.strip(), probe, coarse, limit, ckpt, arch)


def show_preview(found: RunPreview, size: int, probe: bool, domain: bool = True) -> None:
    """The estimate, and (`domain`: unless a result below says it already) whether the data is the model's."""
    if found.off_domain and domain:
        st.warning(f"**Not this model's domain.** {found.off_domain}", icon=":material/block:")
    if found.estimate is not None:
        est = found.estimate
        at = est.describe(tuple(dict.fromkeys((est.native, size, est.quick))))
        text = f"Estimated from {est.measured_images} images timed at {est.measured_at} px: {at} for {est.n_images} images."
        if probe and size != est.native:
            why = ("it answers in about a minute" if est.seconds.get(size, 0) <= 1.5 * QUICK_SECONDS else
                   "the smallest that keeps the features meaningful; limit the images under Engine to answer sooner")
            text += (f" The probe runs at {size} px by default ({why}; timm interpolates the position embedding); "
                     "change 'Input size' under Preprocessing for another.")
        st.caption(text)


def show_result(result) -> None:
    """The measured run: what it says first (a number off the model's domain says nothing), then the numbers."""
    off = getattr(result, "off_domain", "")
    if off:
        st.warning(f"**Not this model's domain.** {off}", icon=":material/block:")
    for w in result.warnings:
        if w != off:
            st.warning(w)
    if isinstance(result, EvalResult):
        for col, (label, value, detail) in zip(st.columns(5), result.headline()):
            col.metric(label, value, help=detail)
        st.caption(f"Labels: {result.label_mapping['method']} · {result.n_classes} classes, "
                   f"{result.num_outputs} head outputs · chance top-1 {result.chance_top1:.2%}")
        a, b = st.columns(2)
        a.plotly_chart(F.accuracy_figure(result), key="benchmark_accuracy")
        b.plotly_chart(F.throughput_figure(result), key="benchmark_throughput")
        st.plotly_chart(F.per_class_figure(result), key="benchmark_per_class")
        confusion = F.confusion_figure(result)
        if confusion is not None:
            st.plotly_chart(confusion, key="benchmark_confusion")
        else:
            st.caption(f"No confusion matrix above {result.n_classes} > 50 classes.")
    else:
        st.caption(f"{result.n_classes} classes, {result.n_images} images ({result.n_skipped} skipped), "
                   f"features of width {result.feature_dim}; probe: {result.probe}")
        if result.results:
            st.plotly_chart(F.fewshot_figure(result), key="benchmark_fewshot")
            st.dataframe(result.rows(), hide_index=True)
        if result.skipped_shots:
            st.caption(f"Shot counts the data does not allow: {result.skipped_shots}")
    if result.n_skipped:
        with st.expander(f"{result.n_skipped} skipped files"):
            st.write(result.skipped)
    with st.expander("Preprocessing used and full result (JSON)"):
        st.json(result.to_dict(), expanded=1)
