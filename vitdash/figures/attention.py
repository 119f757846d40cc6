"""Plotly figures for the attention page: a map with hover values, all heads of a layer, the top-5 bars."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.express as px
import plotly.graph_objects as go

from vitdash.attention.explain import Prediction


def map_figure(values: np.ndarray, title: str = "", colormap: str = "Jet") -> go.Figure:
    """A patch-grid map as a heatmap (row 0 at the top, like the image), hover shows each patch's value."""
    fig = px.imshow(np.asarray(values), color_continuous_scale=colormap, aspect="equal",
                    labels={"x": "patch column", "y": "patch row", "color": "weight"})
    fig.update_layout(title=title, margin=dict(l=10, r=10, t=40 if title else 10, b=10))
    return fig


def heads_figure(maps: np.ndarray, layer: int, colormap: str = "Jet", columns: int = 6) -> go.Figure:
    """All heads of one layer (heads, h, w) side by side, each on its own color range (shape, not scale)."""
    maps = np.asarray(maps)
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    scaled = np.divide(maps - lo, span, out=np.zeros_like(maps, dtype=np.float64), where=span > 0)
    cols = min(columns, len(maps))
    rows = -(-len(maps) // cols)
    fig = px.imshow(scaled, facet_col=0, facet_col_wrap=cols, color_continuous_scale=colormap,
                    aspect="equal", facet_col_spacing=0.01, facet_row_spacing=0.04 if rows > 1 else 0.0)
    for ann in fig.layout.annotations:  # "facet_col=3" -> "head 3"
        ann.text = f"head {ann.text.split('=')[-1]}"
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    # Square panels: the height follows the rows (about 1100 px of page width over `cols` panels), so a row of
    # heads does not float in a tall empty figure.
    panel = 1100 / cols
    fig.update_layout(title=f"layer {layer}: attention of the source token, per head (each min-max scaled)",
                      coloraxis_showscale=False, margin=dict(l=10, r=10, t=50, b=10),
                      height=int(60 + rows * panel * maps.shape[1] / maps.shape[2]))
    return fig


def top5_figure(predictions: Sequence[Prediction], title: str = "top-5 predictions") -> go.Figure:
    """Horizontal bars of class probabilities, the most likely on top."""
    labels = [(p.label if p.label == str(p.index) else f"{p.label} ({p.index})") if p.label else f"class {p.index}"
              for p in predictions]
    fig = go.Figure(go.Bar(x=[p.probability for p in predictions], y=labels, orientation="h",
                           text=[f"{p.probability:.1%}" for p in predictions], textposition="auto"))
    fig.update_layout(title=title, xaxis=dict(title="probability", range=[0, 1]),  # unnamed classes are numbers:
                      yaxis=dict(type="category", autorange="reversed"),  # five rows, not a number line
                      margin=dict(l=10, r=10, t=40, b=10), height=260)
    return fig
