"""Plotly figures for the Architecture page: the model among the ViT family, and where its parameters go."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

_LABELS = {"patch_embed": "patch embedding", "tokens": "class/dist/register tokens", "pos_embed": "position embedding",
           "attention": "attention (q/k/v, out)", "mlp": "MLP", "norms": "norms", "layer_scale": "LayerScale",
           "head": "head", "other": "other", "attention_proj": "attention projections",
           "attention_matrix": "attention scores + mixing (N^2)"}


def family_scatter(rows: Sequence[Mapping[str, Any]], params_m: float, gflops: float, label: str,
                   nearest: str | None = None) -> go.Figure:
    """Parameters against GFLOPs for every family member (one trace per family), the model as a star,
    its nearest member ringed. Log axes: the family spans three orders of magnitude."""
    fig = go.Figure()
    for family in dict.fromkeys(r["family"] for r in rows):
        members = [r for r in rows if r["family"] == family]
        fig.add_trace(go.Scatter(
            x=[r["params_m"] for r in members], y=[r["gflops"] for r in members], mode="markers", name=family,
            text=[r["label"] for r in members], marker=dict(size=9, opacity=0.75),
            hovertemplate="%{text}<br>%{x:.1f} M params<br>%{y:.2f} GFLOPs<extra></extra>"))
    near = [r for r in rows if r["label"] == nearest]
    if near:
        fig.add_trace(go.Scatter(
            x=[near[0]["params_m"]], y=[near[0]["gflops"]], mode="markers", name=f"nearest: {nearest}",
            marker=dict(size=20, color="rgba(0,0,0,0)", line=dict(width=2.5, color="black")),
            hovertemplate=f"{nearest}<extra>nearest</extra>"))
    fig.add_trace(go.Scatter(
        x=[params_m], y=[gflops], mode="markers+text", name=label, text=[label], textposition="top center",
        marker=dict(symbol="star", size=18, color="crimson", line=dict(width=1, color="black")),
        hovertemplate=f"{label}<br>%{{x:.3g}} M params<br>%{{y:.3g}} GFLOPs<extra>this checkpoint</extra>"))
    fig.update_layout(xaxis=dict(title="parameters (M)", type="log"), yaxis=dict(title="GFLOPs (GMACs)", type="log"),
                      margin=dict(l=10, r=10, t=30, b=10), height=460, legend=dict(orientation="h", y=-0.18))
    return fig


def breakdown_figure(params: Mapping[str, int], gflops: Mapping[str, float]) -> go.Figure:
    """Where the parameters and the compute go, component by component (zero components left out)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("parameters", "GFLOPs at native resolution"),
                        horizontal_spacing=0.25)
    for col, values, unit in ((1, params, "params"), (2, gflops, "GFLOPs")):
        items = [(k, v) for k, v in values.items() if v]
        total = sum(v for _, v in items) or 1
        fig.add_trace(go.Bar(
            x=[v for _, v in items], y=[_LABELS.get(k, k) for k, _ in items], orientation="h", showlegend=False,
            text=[f"{v / total:.1%}" for _, v in items], textposition="auto",
            hovertemplate="%{y}: %{x:,.4g} " + unit + "<extra></extra>"), row=1, col=col)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=10), height=340)
    return fig
