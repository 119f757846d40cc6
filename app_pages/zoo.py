"""Model zoo: audit a population of checkpoints (a ViT Model Zoo folder or any folder of checkpoints)."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from ui.access import server_path
from ui.jobs import run_job
from ui.state import configured_dirs
from vitdash.common.compute import cpu_count
from vitdash.errors import VitdashError
from vitdash.figures.population import (
    embedding_figure,
    layer_profile_figure,
    numeric_columns,
    prediction_figure,
    scatter_axes,
    stat_scatter,
    zoo_frame,
)
from vitdash.load.library import holds_population, population_candidates
from vitdash.population.discover import discover
from vitdash.population.zoo import LAYER_FEATURES, audit_zoo, zoo_bytes

st.title("Model zoo")
st.caption("A population of checkpoints: the ViT Model Zoo layout (`pretraining/<model>`, "
           "`finetuning/<parent>/<model>` with `config.json`, `result.json`, `checkpoint_0000XY/checkpoints`) "
           "or any folder of checkpoint files and model folders.")


@st.cache_data(ttl=30, show_spinner=False)
def _suggested(candidates: tuple[str, ...]) -> list[str]:
    """The library folders that hold a population (walked at most every 30 s, like the sidebar's library)."""
    return [c for c in candidates if holds_population(Path(c))]


suggested = _suggested(tuple(map(str, population_candidates(configured_dirs()))))
folder = st.text_input("Population folder", value=suggested[0] if suggested else "", key="zoo_dir",
                       placeholder="/data/vit-model-zoo")
if suggested:
    st.caption("Library folders: " + " · ".join(f"`{p}`" for p in suggested))
left, right = st.columns(2)
workers = left.number_input("Worker processes", min_value=1, max_value=cpu_count(), value=1,
                            key="zoo_workers")
ray_address = right.text_input("Ray cluster address (optional)", key="zoo_ray", placeholder="auto")

if folder and st.button("Audit population", key="zoo_run", type="primary"):
    try:
        population = discover(server_path(folder))
        bar = st.progress(0.0, text=f"Auditing {len(population.models)} models...")

        def progress(p):
            bar.progress(p.fraction, text=f"{p.done}/{p.total} · {p.message}")

        report = run_job("zoo", zoo_bytes(population, int(workers)), lambda stop: audit_zoo(
            population, workers=int(workers), ray=ray_address.strip() or None, progress=progress, should_stop=stop),
            label=f"the scan of {len(population.models)} models")
        bar.empty()  # done (or stopped): the table below says what came back
        if report is not None:
            st.session_state["zoo_report"] = report
    except VitdashError as e:
        st.error(str(e))

report = st.session_state.get("zoo_report")
if report is None:
    st.info("Enter the folder that holds the population and press Audit population.")
    st.stop()

pred = report.accuracy_prediction
cols = st.columns(4)
cols[0].metric("Models", len(report.models))
cols[1].metric("Unreadable", sum(a.error is not None for a in report.models))
cols[2].metric(f"R² predicting {pred.target}" if pred else "R² (no prediction)", f"{pred.r2:.2f}" if pred else "-")
cols[3].metric("Baseline R² (the mean)", f"{pred.baseline_r2:.2f}" if pred else "-")
st.caption(f"{report.root} · {report.layout} layout · {report.seconds:.1f} s · {report.backend}")
for note in report.notes:
    st.warning(note)

df = zoo_frame(report)
st.subheader("Population")
st.dataframe(df, hide_index=True, height=min(320, 35 * (len(df) + 1) + 3))  # no filler rows under the last

numeric = numeric_columns(df)
factors = [f for f in report.varying_factors if f in df] + ["group", "verdict", "parent"]
richest = max(range(len(factors)), key=lambda i: df[factors[i]].nunique())  # default colour: most levels
scatter, embedding, prediction, layers = st.tabs(["Statistic against metric", "Embedding", "Accuracy prediction",
                                                  "Per layer"])
with scatter:
    if len(numeric) >= 2:
        c1, c2, c3 = st.columns(3)
        default_x, default_y = scatter_axes(numeric, report.target)
        x = c1.selectbox("x", numeric, index=numeric.index(default_x), key="zoo_x")
        y = c2.selectbox("y", numeric, index=numeric.index(default_y), key="zoo_y")
        color = c3.selectbox("colour", factors, index=richest, key="zoo_color")
        st.plotly_chart(stat_scatter(df, x, y, color), key="zoo_scatter")
    else:
        st.caption("Fewer than two statistics vary across the population: nothing to plot one against.")
with embedding:
    color = st.selectbox("colour", factors, index=richest, key="zoo_embed_color")
    st.plotly_chart(embedding_figure(df, color), key="zoo_embedding")
with prediction:
    if pred is None:
        st.caption("Nothing to predict: see the notes above.")
    else:
        extra = f"; the generating factors alone give R² {pred.factors_r2:.2f}" if pred.factors_r2 is not None else ""
        st.markdown(f"{pred.method}, over the {pred.n_models} models of the *{pred.group or 'population'}* group: "
                    f"R² **{pred.r2:.2f}** against **{pred.baseline_r2:.2f}** for always predicting the mean{extra}.")
        st.plotly_chart(prediction_figure(report), key="zoo_prediction")
with layers:
    c1, c2 = st.columns(2)
    stat = c1.selectbox("Statistic", ("norm",) + LAYER_FEATURES, key="zoo_layer_stat")
    color = c2.selectbox("colour", [None] + report.varying_factors, key="zoo_layer_color")
    st.plotly_chart(layer_profile_figure(report, stat, color), key="zoo_layers")
