"""Charts for comparing two checkpoints and for auditing a population of them."""
from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from vitdash.population.compare import Comparison
from vitdash.population.zoo import ZooReport

MOVED, SAME = "#d62728", "#7f7f7f"


def group_changes_figure(cmp: Comparison) -> go.Figure:
    """Relative change per block/unit in model order: where fine-tuning (or corruption) happened."""
    groups = [g for g in cmp.groups if g.rel_change is not None]
    fig = go.Figure(go.Bar(
        x=[g.group for g in groups], y=[g.rel_change for g in groups],
        marker_color=[MOVED if g.rel_change > 0 else SAME for g in groups], customdata=[g.tensors for g in groups],
        hovertemplate="%{x}<br>||dW|| / ||W|| = %{y:.4g}<br>%{customdata} tensors<extra></extra>"))
    fig.update_layout(title="Relative change per block (||B - A|| / ||A||)", height=360,
                      xaxis=dict(title=None), yaxis=dict(title="relative change"))
    return fig


def tensor_changes_figure(cmp: Comparison) -> go.Figure:
    """Every shared tensor: relative change (bar height) coloured by cosine similarity to A."""
    rows = [t for t in cmp.tensors if t.rel_change is not None]
    fig = go.Figure(go.Bar(
        x=[t.name for t in rows], y=[t.rel_change for t in rows],
        marker=dict(color=[t.cosine if t.cosine is not None else 0.0 for t in rows], colorscale="RdBu",
                    cmin=-1, cmax=1, colorbar=dict(title="cosine")),
        customdata=[t.cosine for t in rows],
        hovertemplate="%{x}<br>relative change %{y:.4g}<br>cosine %{customdata:.4f}<extra></extra>"))
    fig.update_layout(title="Relative change per tensor, coloured by cosine similarity", height=420,
                      xaxis=dict(showticklabels=len(rows) <= 60, title=None), yaxis=dict(title="relative change"))
    return fig


def verdict_change_figure(cmp: Comparison, stat: str = "structure") -> go.Figure:
    """A verdict statistic in A against B per tensor: points off the diagonal are tensors whose reading changed."""
    rows = [(t.name, t.verdict_a.get(stat), t.verdict_b.get(stat)) for t in cmp.tensors]
    rows = [r for r in rows if r[1] is not None and r[2] is not None]
    fig = go.Figure(go.Scatter(x=[r[1] for r in rows], y=[r[2] for r in rows], mode="markers",
                               text=[r[0] for r in rows],
                               hovertemplate="%{text}<br>A %{x:.4g}<br>B %{y:.4g}<extra></extra>"))
    if rows:
        lo = min(min(r[1], r[2]) for r in rows)
        hi = max(max(r[1], r[2]) for r in rows)
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(dash="dot", color=SAME),
                                 hoverinfo="skip", showlegend=False))
    fig.update_layout(title=f"{stat}: A against B per tensor", xaxis_title=f"{stat} in A", yaxis_title=f"{stat} in B",
                      showlegend=False, height=420)
    return fig


def zoo_frame(report: ZooReport) -> pd.DataFrame:
    """The population table as a DataFrame (the page shows it; the scatter builders take it)."""
    return pd.DataFrame(report.table())


def numeric_columns(df: pd.DataFrame) -> list[str]:
    """Columns a scatter can use: numeric with at least two distinct values."""
    return [c for c in df.columns if c not in ("embed_x", "embed_y") and pd.api.types.is_numeric_dtype(df[c])
            and not pd.api.types.is_bool_dtype(df[c]) and df[c].nunique(dropna=True) > 1]


def scatter_axes(numeric: list[str], target: str | None = None) -> tuple[str, str]:
    """Default (x, y) of the statistic-against-metric scatter: the accuracy against the distance to the parent
    when the population has them, else the first two statistics; never one column against itself."""
    y = target if target in numeric else numeric[0]
    rest = [c for c in numeric if c != y] or [y]
    x = next((c for c in ("dist_parent", "dist_init", "structure_median", "matrix_std") if c in rest), rest[0])
    return x, y


def _coloured(df: pd.DataFrame, color: str | None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Numeric factors with many levels keep a continuous scale; the rest become categories (as text)."""
    if not color or color not in df:
        return df, {}
    numeric = pd.api.types.is_numeric_dtype(df[color])
    if numeric and df[color].nunique() > 6:
        return df, {"color": color}
    levels = sorted(df[color].dropna().unique(), key=float if numeric else str)
    return (df.assign(**{color: df[color].astype(str)}),
            {"color": color, "category_orders": {color: [str(v) for v in levels]}})


def stat_scatter(df: pd.DataFrame, x: str, y: str, color: str | None = None) -> go.Figure:
    """Any statistic against any metric (e.g. distance to parent against test accuracy), coloured by a factor."""
    data, kwargs = _coloured(df.dropna(subset=[x, y]), color)
    fig = px.scatter(data, x=x, y=y, hover_name="name", **kwargs)
    fig.update_traces(marker=dict(size=11))
    fig.update_layout(title=f"{y} against {x}", height=440)
    return fig


def embedding_figure(df: pd.DataFrame, color: str | None = None) -> go.Figure:
    """The population in the plane of its first two principal components of weight statistics."""
    data, kwargs = _coloured(df.dropna(subset=["embed_x", "embed_y"]) if "embed_x" in df else df.iloc[0:0], color)
    fig = px.scatter(data, x="embed_x", y="embed_y", hover_name="name", **kwargs)
    fig.update_traces(marker=dict(size=11))
    fig.update_layout(title="Population embedding (PCA of weight statistics)", height=440,
                      xaxis_title="PC 1", yaxis_title="PC 2")
    return fig


def prediction_figure(report: ZooReport) -> go.Figure:
    """Out-of-fold predicted accuracy against the measured one, with the diagonal and the R^2 values."""
    p = report.accuracy_prediction
    fig = go.Figure()
    if p is None:
        fig.update_layout(title="No accuracy prediction (too few models with results)")
        return fig
    actual = [r["actual"] for r in p.predictions]
    predicted = [r["predicted"] for r in p.predictions]
    fig.add_trace(go.Scatter(x=actual, y=predicted, mode="markers", text=[r["name"] for r in p.predictions],
                             marker=dict(size=11), hovertemplate="%{text}<br>measured %{x:.4g}<br>"
                                                                 "predicted %{y:.4g}<extra></extra>"))
    lo, hi = min(actual + predicted), max(actual + predicted)
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(dash="dot", color=SAME),
                             hoverinfo="skip"))
    fig.update_layout(title=f"{p.target}: predicted from weights (R^2 {p.r2:.2f}; mean baseline {p.baseline_r2:.2f})",
                      xaxis_title=f"measured {p.target}", yaxis_title="predicted (out of fold)", showlegend=False,
                      height=440)
    return fig


def layer_profile_figure(report: ZooReport, stat: str = "std", color: str | None = None) -> go.Figure:
    """One line per model over its tensors (in model order): per-layer norms, std, kurtosis, structure, distances.
    Models with other tensor lists (another depth or layout) get a panel of their own: tensor i is not the same
    tensor in both, so they must not share an x-axis."""
    rows = []
    for a in report.models:
        if a.stats is None:
            continue
        layers = a.stats["layers"]
        shape = f"{len(layers)} tensors"
        for i, layer in enumerate(layers):
            if layer.get(stat) is not None:
                rows.append({"model": a.model.name, "index": i, "tensor": layer["name"], stat: layer[stat],
                             "architecture": shape, **({color: a.model.factors.get(color)} if color else {})})
    df = pd.DataFrame(rows)
    if df.empty:
        return go.Figure().update_layout(title=f"No per-layer {stat} to show")
    if color and color in df:
        df, kwargs = df.assign(**{color: df[color].astype(str)}), {"color": color, "line_group": "model"}
    else:
        kwargs = {"color": "model"}
    shapes = df["architecture"].nunique()
    if shapes > 1:
        kwargs.update(facet_row="architecture", facet_row_spacing=min(0.06, 0.25 / shapes))
    fig = px.line(df, x="index", y=stat, hover_name="tensor", hover_data=["model"], markers=True, **kwargs)
    if shapes > 1:
        fig.update_xaxes(matches=None, showticklabels=True)
        fig.update_yaxes(matches=None)  # other architectures, other scales
        fig.for_each_annotation(lambda ann: ann.update(text=ann.text.split("=", 1)[-1]))
    fig.update_layout(title=f"Per-layer {stat}" + (f" ({shapes} architectures, one panel each)" if shapes > 1 else ""),
                      xaxis_title="tensor (model order)", height=420 if shapes == 1 else 100 + 200 * shapes)
    return fig
