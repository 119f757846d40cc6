"""Plotly figures for the Architecture page: the model among the ViT family, and where its parameters go."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import median
from typing import Any

import plotly.express as px
import plotly.graph_objects as go

_LABELS = {"patch_embed": "patch embedding", "tokens": "class/dist/register tokens", "pos_embed": "position embedding",
           "attention": "attention (q/k/v, out; scores)", "mlp": "MLP", "norms": "norms", "layer_scale": "LayerScale",
           "head": "head", "other": "other", "attention_proj": "attention projections",
           "attention_matrix": "attention scores + mixing (N^2)", "attn_pool": "attention pooling (MAP)"}


def family_scatter(rows: Sequence[Mapping[str, Any]], params_m: float, gflops: float, label: str,
                   nearest: str | None = None) -> go.Figure:
    """Parameters against GFLOPs for every family member (one trace per family), the model as a star,
    its nearest member ringed. Log axes: the family spans three orders of magnitude. A colour and a symbol per
    family (the table has about twenty), the legend beside the plot so it never scrolls."""
    fig = go.Figure()
    colors, symbols = px.colors.qualitative.Dark24, ("circle", "square", "diamond", "triangle-up")
    for i, family in enumerate(dict.fromkeys(r["family"] for r in rows)):
        members = [r for r in rows if r["family"] == family]
        fig.add_trace(go.Scatter(
            x=[r["params_m"] for r in members], y=[r["gflops"] for r in members], mode="markers", name=family,
            text=[r["label"] for r in members],
            marker=dict(size=9, opacity=0.8, color=colors[i % len(colors)], symbol=symbols[i % len(symbols)]),
            hovertemplate="%{text}<br>%{x:.1f} M params<br>%{y:.2f} GFLOPs<extra></extra>"))
    near = [r for r in rows if r["label"] == nearest]
    if near:
        fig.add_trace(go.Scatter(
            x=[near[0]["params_m"]], y=[near[0]["gflops"]], mode="markers", name=f"nearest: {nearest}",
            marker=dict(size=20, color="rgba(0,0,0,0)", line=dict(width=2.5, color="black")),
            hovertemplate=f"{nearest}<extra>nearest</extra>"))
    fig.add_trace(go.Scatter(
        x=[params_m], y=[gflops], mode="markers+text", name=label, text=[label],
        # The label grows towards the middle of the family, so that it stays inside the plot.
        textposition="top right" if not rows or params_m < median(r["params_m"] for r in rows) else "top left",
        marker=dict(symbol="star", size=18, color="crimson", line=dict(width=1, color="black")),
        hovertemplate=f"{label}<br>%{{x:.3g}} M params<br>%{{y:.3g}} GFLOPs<extra>this checkpoint</extra>"))
    # One label a decade, written out ("0.0001", not plotly's "100µ").
    axis = dict(type="log", dtick=1, tickformat="~g")
    fig.update_layout(xaxis=dict(title="parameters (M)", **axis), yaxis=dict(title="GFLOPs", **axis),
                      margin=dict(l=10, r=10, t=30, b=10), height=560, legend=dict(orientation="v", x=1.02, y=1))
    return fig


# Compute splits attention into its projections and the N^2 score/mixing products; the chart shows both
# measures on the parameters' components, so each bar pair compares like with like.
_MERGED = {"attention_proj": "attention", "attention_matrix": "attention"}


def breakdown_figure(params: Mapping[str, int], gflops: Mapping[str, float]) -> go.Figure:
    """Where the parameters and the compute go: each component's share of both, side by side on the same
    components (attention's projections and its N^2 products add up to 'attention'; the split is on hover)."""
    compute: dict[str, float] = {}
    for k, v in gflops.items():
        compute[_MERGED.get(k, k)] = compute.get(_MERGED.get(k, k), 0.0) + v
    detail = {"attention": "<br>".join(f"{_LABELS[k]}: {gflops.get(k, 0):,.4g} GFLOPs" for k in _MERGED)}
    components = [k for k in dict.fromkeys([*params, *compute]) if params.get(k) or compute.get(k)]
    labels = [_LABELS.get(k, k) for k in components]
    fig = go.Figure()
    for values, name, unit, color in ((params, "parameters", "params", "#1f77b4"),
                                      (compute, "GFLOPs at native resolution", "GFLOPs", "#9ecae1")):
        total = sum(values.values()) or 1
        shares = [values.get(k, 0) / total for k in components]
        extra = [("<br>" + detail[k]) if unit == "GFLOPs" and k in detail else "" for k in components]
        fig.add_trace(go.Bar(
            x=shares, y=labels, orientation="h", name=name, marker_color=color,
            customdata=[[values.get(k, 0), e] for k, e in zip(components, extra)],
            text=[f"{v:.1%}" if v else "" for v in shares], textposition="outside", cliponaxis=False,
            hovertemplate="%{y}: %{customdata[0]:,.4g} " + unit + " (%{x:.1%})%{customdata[1]}<extra></extra>"))
    fig.update_layout(barmode="group", margin=dict(l=10, r=40, t=10, b=10), height=60 + 42 * len(components),
                      xaxis=dict(title="share of the total", tickformat=".0%", range=[0, 1.05]),
                      yaxis=dict(autorange="reversed"), legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0))
    return fig
