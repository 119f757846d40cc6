"""Plotly figures for "is it trained?": depth x role heatmap, histogram against priors, spectrum
against its shuffled twin and Marchenko-Pastur, position-embedding similarity grid, patch filters."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from vitdash.figures.colors import verdict_hex
from vitdash.trained.moments import histogram
from vitdash.trained.pos_embed import cosine_grid
from vitdash.trained.priors import PriorFit
from vitdash.trained.spectra import mp_edge, mp_pdf
from vitdash.trained.verdict import Audit

# Heatmap statistics: key -> (label, signed-log colour scale?). Keys are TensorStats.scalar names.
HEATMAP_STATS = {
    "verdict": ("verdict (trained 1, unclear 0.5, init 0)", False),
    "structure": ("structure z (spectral / spatial; signed log scale)", True),
    "top_over_twin": ("normal-score top eigenvalue / shuffled twin's", False),
    "tail_alpha": ("spectral tail exponent alpha", False),
    "excess_kurtosis": ("excess kurtosis of the entries", False),
    "std": ("std of the entries", False),
    "std_ratio": ("std / best prior's std", False),
    "ks": ("KS distance to the best prior", False),
}
_VERDICT_VALUE = {"trained": 1.0, "unclear": 0.5, "init": 0.0}


def _slog(v: float) -> float:
    return math.copysign(math.log10(1 + abs(v)), v)


def depth_role_heatmap(audit: Audit, stat: str = "structure", weights_only: bool = False) -> go.Figure:
    """Blocks (rows, block 0 on top) x slots inside a block (columns), coloured by one statistic.

    Empty when the checkpoint has no blocks (a generic tensor set without repeated indexed names)."""
    label, slog = HEATMAP_STATS[stat]
    rows = [t for t in audit.tensors if t.block is not None and (not weights_only or len(t.shape) >= 2)]
    blocks = sorted({t.block for t in rows})
    slots: list[str] = []
    for t in rows:
        if t.slot not in slots:
            slots.append(t.slot)
    z = np.full((len(blocks), len(slots)), np.nan)
    text = np.full(z.shape, "", dtype=object)
    hover = np.full(z.shape, "", dtype=object)
    bi, si = {b: i for i, b in enumerate(blocks)}, {s: j for j, s in enumerate(slots)}
    for t in rows:
        i, j = bi[t.block], si[t.slot]
        v = _VERDICT_VALUE[t.verdict] if stat == "verdict" else t.stats.scalar(stat)
        if v is not None and math.isfinite(v):
            z[i, j] = _slog(v) if slog else v
        text[i, j] = t.verdict[0].upper()
        shown = "n/a" if v is None else f"{v:.4g}"
        hover[i, j] = f"{t.name}<br>{stat} = {shown}<br><b>{t.verdict}</b>: {_wrap(t.reason)}"
    if stat == "verdict":
        colorscale = [[value, verdict_hex(v)] for v, value in sorted(_VERDICT_VALUE.items(), key=lambda kv: kv[1])]
        zrange = dict(zmin=0, zmax=1)
    else:
        colorscale, zrange = "Viridis", {}
    fig = go.Figure(go.Heatmap(
        z=z, x=slots, y=[f"block {b}" for b in blocks], text=text, texttemplate="%{text}", hovertext=hover,
        hoverinfo="text", colorscale=colorscale, colorbar=dict(title="log10" if slog else ""), xgap=1, ygap=1,
        **zrange))
    fig.update_layout(title=f"{label} by depth and role (letters: T trained, I init, U unclear)",
                      yaxis=dict(autorange="reversed"), height=max(260, 28 * len(blocks) + 140),
                      margin=dict(l=10, r=10, t=50, b=10))
    return fig


def _wrap(text: str, width: int = 90) -> str:
    words, lines, cur = text.split(), [], ""
    for w in words:
        if len(cur) + len(w) > width:
            lines.append(cur)
            cur = ""
        cur += (" " if cur else "") + w
    return "<br>".join(lines + [cur])


def histogram_figure(values, fits: Sequence[PriorFit], name: str = "", top: int = 3, bins: int = 80) -> go.Figure:
    """The entries' density with the pdf of the best-fitting priors overlaid (constants as lines)."""
    import torch

    dens, edges = histogram(torch.as_tensor(values), bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(go.Bar(x=centers, y=dens, width=edges[1] - edges[0], name="entries",
                           marker_color="#9ecae1", opacity=0.9))
    x = np.linspace(edges[0], edges[-1], 400)
    for f in list(fits)[:top]:
        label = f"{f.prior.label} [{', '.join(f.prior.schemes)}] KS {f.ks:.3f}" + (" (matches)" if f.matches else "")
        if f.prior.family == "constant":
            fig.add_vline(x=f.prior.scale, line_dash="dash", annotation_text=label, annotation_position="top")
        else:
            fig.add_trace(go.Scatter(x=x, y=f.prior.pdf(x), mode="lines", name=label))
    fig.update_layout(title=f"{name}: histogram against init priors", xaxis_title="value", yaxis_title="density",
                      bargap=0, legend=dict(orientation="h", y=-0.25), margin=dict(l=10, r=10, t=50, b=10))
    return fig


def spectrum_figure(eigs: np.ndarray, twin: np.ndarray, shape: tuple[int, int], variance: float,
                    name: str = "", space: str = "raw") -> go.Figure:
    """Left: eigenvalue density of the matrix, its shuffled twin and the Marchenko-Pastur law.
    Right: eigenvalues by rank (log scale) with the MP edge: outliers stand above it."""
    m, n = shape
    edge = mp_edge(m, n, variance)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("eigenvalue density", "eigenvalues by rank"))
    hi = float(max(eigs.max(), twin.max(), edge)) * 1.02
    nb = max(20, min(120, len(eigs) // 4))
    for vals, label, color in ((eigs, "matrix", "#1f77b4"), (twin, "shuffled twin", "#ff7f0e")):
        fig.add_trace(go.Histogram(x=vals, histnorm="probability density", nbinsx=nb, name=label,
                                   marker_color=color, opacity=0.55, xbins=dict(start=0, end=hi, size=hi / nb)),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=np.arange(1, len(vals) + 1), y=np.maximum(vals, 1e-12), mode="lines",
                                 name=f"{label} (rank)", line=dict(color=color), showlegend=False), row=1, col=2)
    x = np.linspace(0, hi, 600)
    fig.add_trace(go.Scatter(x=x, y=mp_pdf(x, m, n, variance), mode="lines", name="Marchenko-Pastur",
                             line=dict(color="black", dash="dot")), row=1, col=1)
    fig.add_hline(y=edge, line_dash="dot", annotation_text="MP edge", row=1, col=2)
    fig.update_xaxes(type="log", title_text="rank", row=1, col=2)
    fig.update_yaxes(type="log", row=1, col=2)
    fig.update_xaxes(title_text="eigenvalue of the Gram matrix", row=1, col=1)
    fig.update_layout(title=f"{name}: {space} spectrum ({m}x{n}) against its shuffled twin", barmode="overlay",
                      legend=dict(orientation="h", y=-0.2), margin=dict(l=10, r=10, t=60, b=10), height=380)
    return fig


def pos_embed_figure(patches, grid: tuple[int, int], max_tiles: int = 10) -> go.Figure:
    """ViT paper figure 7: for each patch position (a tile), its embedding's cosine similarity to every
    position. Big grids show every k-th position so the mosaic stays readable."""
    h, w = grid
    sim = cosine_grid(patches).numpy().reshape(h, w, h, w)
    step = max(1, math.ceil(max(h, w) / max_tiles))
    rows, cols = list(range(0, h, step)), list(range(0, w, step))
    gap = 1
    mosaic = np.full((len(rows) * (h + gap) - gap, len(cols) * (w + gap) - gap), np.nan)
    for a, r in enumerate(rows):
        for b, c in enumerate(cols):
            mosaic[a * (h + gap): a * (h + gap) + h, b * (w + gap): b * (w + gap) + w] = sim[r, c]
    fig = go.Figure(go.Heatmap(z=mosaic, colorscale="Viridis", zmin=-1, zmax=1, colorbar=dict(title="cos"),
                               hoverongaps=False))
    every = f", every {step}th position" if step > 1 else ""
    fig.update_layout(title=f"position-embedding similarity ({h}x{w} grid{every})",
                      yaxis=dict(autorange="reversed", scaleanchor="x", showticklabels=False),
                      xaxis=dict(showticklabels=False), margin=dict(l=10, r=10, t=50, b=10),
                      height=520)
    return fig


def patch_filters_figure(weight, count: int = 28, pca: bool = True, columns: int = 7) -> go.Figure:
    """Patch-embedding filters as images: the top principal components of the filters (as in the ViT
    paper) or the first filters; each scaled to its own range, RGB for 3 input channels."""
    import torch

    w = torch.as_tensor(weight).detach().double()
    d, c, kh, kw = w.shape
    flat = w.reshape(d, -1)
    if pca:
        centered = flat - flat.mean(0, keepdim=True)
        _, _, vh = torch.linalg.svd(centered, full_matrices=False)
        tiles = vh[:count]
    else:
        tiles = flat[:count]
    tiles = tiles.reshape(-1, c, kh, kw).numpy()
    k = len(tiles)
    cols = min(columns, k)
    rows_n = math.ceil(k / cols)
    gap = 1
    img = np.ones((rows_n * (kh + gap) - gap, cols * (kw + gap) - gap, 3))
    for i, t in enumerate(tiles):
        t = t[:3] if c >= 3 else np.repeat(t[:1], 3, axis=0)
        lo, hi = t.min(), t.max()
        t = (t - lo) / (hi - lo) if hi > lo else np.full_like(t, 0.5)
        r, col = divmod(i, cols)
        img[r * (kh + gap): r * (kh + gap) + kh, col * (kw + gap): col * (kw + gap) + kw] = t.transpose(1, 2, 0)
    fig = go.Figure(go.Image(z=(img * 255).astype(np.uint8)))
    what = f"top {k} principal components" if pca else f"first {k} filters"
    fig.update_layout(title=f"patch-embedding filters ({kh}x{kw}, {c} channel{'s' if c > 1 else ''}): {what}",
                      xaxis=dict(showticklabels=False), yaxis=dict(showticklabels=False),
                      margin=dict(l=10, r=10, t=50, b=10), height=max(240, 60 * rows_n + 80))
    return fig


def prior_table(fits: Sequence[PriorFit]) -> list[dict]:
    """Rows for a table of every prior's distances (the numbers behind the histogram)."""
    return [{"prior": f.prior.label, "schemes": ", ".join(f.prior.schemes), "KS": round(f.ks, 4),
             "Wasserstein": f.wasserstein,
             "std / prior std": None if math.isnan(f.std_ratio) else round(f.std_ratio, 4),
             "matches": f.matches} for f in fits]
