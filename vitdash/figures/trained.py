"""Plotly figures for "is it trained?": depth x role heatmap, histogram against priors, spectrum
against its shuffled twin and Marchenko-Pastur, position-embedding similarity grid, patch filters."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from vitdash.figures.colors import verdict_hex
from vitdash.trained.layers import LayerHistogram, LayerHistograms
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


# Prior curves: colour, dash and width differ, so two curves that lie on top of each other stay visible.
PRIOR_STYLES = (("#d62728", "solid"), ("#2ca02c", "dash"), ("#9467bd", "dot"), ("#ff7f0e", "dashdot"))
ENTRIES, OTHER = "#6baed6", "#fd8d3c"


def _schemes(fit: PriorFit, per_line: int = 3) -> str:
    """The init schemes that share a distribution, a few per line (legend text)."""
    names = list(fit.prior.schemes)
    return "<br>".join(", ".join(names[i:i + per_line]) for i in range(0, len(names), per_line))


def histogram_figure(values, fits: Sequence[PriorFit], name: str = "", top: int = 3, bins: int = 80) -> go.Figure:
    """The entries' density with the pdf of the best-fitting priors overlaid (constants as lines). One legend
    entry per distribution: its label and KS, then the init schemes that draw it."""
    import torch

    dens, edges = histogram(torch.as_tensor(values), bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(go.Bar(x=centers, y=dens, width=edges[1] - edges[0], name="entries",
                           marker_color=ENTRIES, opacity=0.75))
    x = np.linspace(edges[0], edges[-1], 400)
    for f, (color, dash) in zip(list(fits)[:top], PRIOR_STYLES):
        label = f"<b>{f.prior.label}</b>, KS {f.ks:.3f}" + (" (matches)" if f.matches else "")
        label += f"<br><span style='font-size:11px'>{_schemes(f)}</span>"
        if f.prior.family == "constant":
            fig.add_vline(x=f.prior.scale, line=dict(color=color, dash=dash, width=2.5))
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=label,
                                     line=dict(color=color, dash=dash, width=2.5)))
        else:
            fig.add_trace(go.Scatter(x=x, y=f.prior.pdf(x), mode="lines", name=label,
                                     line=dict(color=color, dash=dash, width=2.5)))
    fig.update_layout(title=f"{name}: histogram against init priors", xaxis_title="value", yaxis_title="density",
                      bargap=0, legend=dict(title="init prior (schemes)", yanchor="top", y=1, x=1.02),
                      margin=dict(l=10, r=10, t=50, b=10))
    return fig


def layer_histograms_figure(hists: LayerHistograms, other: LayerHistograms | None = None, log: bool = False,
                            names: tuple[str, str] = ("A", "B")) -> go.Figure:
    """Small multiples, block 0 on top: each block's histogram of one slot with its best prior's density drawn
    over it and the KS distance / std ratio beside it; `other` (same bins) overlaid for a second checkpoint.
    `log`: log density, so the tails show (empty bins are left out, the prior is cut where the data end)."""
    n = len(hists.layers)
    fig = make_subplots(rows=n, cols=1, shared_xaxes=True, vertical_spacing=min(0.02, 0.3 / max(n, 1)))
    x, fine = hists.centers, np.linspace(hists.edges[0], hists.edges[-1], 300)
    priors = {h.fit.prior.label for h in hists.layers if h.fit is not None}
    for i, h in enumerate(hists.layers, start=1):
        first = i == 1
        b = other.block(h.block) if other is not None else None
        shown = [d for d in (h.density, None if b is None else b.density) if d is not None]
        floor = min((float(d[d > 0].min()) for d in shown if (d > 0).any()), default=1e-12) / 3
        for hist, color, label, fill in ((h, ENTRIES, names[0], not log), (b, OTHER, names[1], False)):
            if hist is None:
                continue
            y = np.where(hist.density > 0, hist.density, np.nan) if log else hist.density
            fig.add_trace(go.Scatter(
                x=x, y=y, mode="lines", line=dict(color=color, shape="hvh", width=1.5 if (log or hist is b) else 1),
                fill="tozeroy" if fill else None, connectgaps=False,
                name=f"{label}: entries" if other is not None else "entries", legendgroup=label, showlegend=first,
                hovertemplate=f"{hist.name}<br>%{{x:.3g}}: density %{{y:.3g}}<extra>{label}</extra>"), row=i, col=1)
        if h.fit is not None:
            prior = h.fit.prior
            style = dict(color=PRIOR_STYLES[0][0], width=1.8, dash="dash")
            if prior.family == "constant":
                fig.add_vline(x=prior.scale, line=style, row=i, col=1)
            else:
                pdf = prior.pdf(fine)
                fig.add_trace(go.Scatter(x=fine, y=np.where(pdf >= floor, pdf, np.nan) if log else pdf, mode="lines",
                                         line=style, name="best prior" if len(priors) > 1 else f"prior {prior.label}",
                                         legendgroup="prior", showlegend=first,
                                         hovertemplate=f"{prior.label}<extra>best prior</extra>"), row=i, col=1)
        fig.add_annotation(text=_layer_label(h, b, names if other is not None else None, len(priors) > 1),
                           xref="paper", x=1.0, xanchor="left", yref=f"y{'' if i == 1 else i} domain", y=0.5,
                           showarrow=False, align="left", font=dict(size=11))
        top = max(float(np.nanmax(d)) for d in shown) if shown else 1.0
        yaxis = dict(type="log", range=[math.log10(floor), math.log10(top * 2)]) if log else {}
        fig.update_yaxes(title_text=f"block {h.block}", title_font=dict(size=11), showticklabels=False, row=i, col=1,
                         **yaxis)
    fig.update_xaxes(title_text="value", row=n, col=1)
    scale = "log density" if log else "density"
    fig.update_layout(title=f"{hists.slot} in every block ({scale}, shared bins), best init prior dashed",
                      height=90 + 64 * n, margin=dict(l=10, r=200, t=50, b=10),
                      legend=dict(orientation="h", y=1.0, yanchor="bottom", x=0, xanchor="left"))
    return fig


def _layer_label(h: LayerHistogram, b: LayerHistogram | None, names: tuple[str, str] | None,
                 prior_names: bool = False) -> str:
    def stats(x: LayerHistogram) -> str:
        if x.fit is None:
            return "no prior applies"
        ratio = "" if x.std_ratio is None else f" · std ratio {x.std_ratio:.2f}"
        mark = " (matches)" if x.fit.matches else ""
        which = f"<br>{x.fit.prior.label}" if prior_names else ""
        return f"KS {x.ks:.3f}{ratio}{mark}{which}"
    if b is None or names is None:
        return stats(h)
    return f"{names[0]}: {stats(h)}<br>{names[1]}: {stats(b)}"


def spectrum_figure(eigs: np.ndarray, twin: np.ndarray, shape: tuple[int, int], variance: float,
                    name: str = "", space: str = "raw") -> go.Figure:
    """Left: eigenvalue density of the matrix, its shuffled twin and the Marchenko-Pastur law, on a log axis
    (outliers sit decades above the bulk). Right: eigenvalues by rank (log scale) with the MP edge: outliers
    stand above it."""
    m, n = shape
    edge = mp_edge(m, n, variance)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("eigenvalue density (per decade)", "eigenvalues by rank"))
    positive = np.concatenate([eigs[eigs > 0], twin[twin > 0]])
    lo = float(max(positive.min(), positive.max() * 1e-8)) * 0.98
    hi = float(max(positive.max(), edge)) * 1.02
    nb = max(20, min(120, len(eigs) // 4))
    bins = np.geomspace(lo, hi, nb + 1)
    centers = np.sqrt(bins[:-1] * bins[1:])
    for vals, label, color in ((eigs, "matrix", "#1f77b4"), (twin, "shuffled twin", "#ff7f0e")):
        counts = np.histogram(vals[vals > 0], bins=bins)[0]
        density = counts / max(len(vals), 1) / np.diff(np.log10(bins))  # share of eigenvalues per decade
        fig.add_trace(go.Bar(x=centers, y=density, width=np.diff(bins), name=label, marker_color=color,
                             opacity=0.55, hovertemplate="%{x:.3g}: %{y:.3g} per decade<extra>" + label + "</extra>"),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=np.arange(1, len(vals) + 1), y=np.maximum(vals, 1e-12), mode="lines",
                                 name=f"{label} (rank)", line=dict(color=color), showlegend=False), row=1, col=2)
    x = np.geomspace(lo, hi, 600)
    fig.add_trace(go.Scatter(x=x, y=mp_pdf(x, m, n, variance) * x * np.log(10), mode="lines",
                             name="Marchenko-Pastur", line=dict(color="black", dash="dot")), row=1, col=1)
    fig.add_vline(x=edge, line_dash="dot", line_color="gray", row=1, col=1)
    fig.add_hline(y=edge, line_dash="dot", annotation_text="MP edge", row=1, col=2)
    fig.update_xaxes(type="log", exponentformat="power", title_text="eigenvalue of the Gram matrix", row=1, col=1)
    fig.update_xaxes(type="log", title_text="rank", row=1, col=2)
    fig.update_yaxes(title_text="share per decade", row=1, col=1)
    fig.update_yaxes(type="log", exponentformat="power", title_text="eigenvalue", row=1, col=2)
    fig.update_layout(title=f"{name}: {space} spectrum ({m}x{n}) against its shuffled twin", barmode="overlay",
                      bargap=0, legend=dict(orientation="h", y=-0.2), margin=dict(l=10, r=10, t=60, b=10), height=400)
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
                               hoverongaps=False, hovertemplate="similarity %{z:.2f}<extra></extra>"))
    every = f", every {step}th position" if step > 1 else ""
    # One tile per position: its row and column on the axes, at the tile's centre.
    xticks = dict(tickvals=[b * (w + gap) + (w - 1) / 2 for b in range(len(cols))], ticktext=[str(c) for c in cols])
    yticks = dict(tickvals=[a * (h + gap) + (h - 1) / 2 for a in range(len(rows))], ticktext=[str(r) for r in rows])
    fig.update_layout(title=f"position-embedding similarity ({h}x{w} grid{every}): each tile is one position's "
                            "cosine similarity to every position",
                      yaxis=dict(autorange="reversed", scaleanchor="x", title="row of the position", showgrid=False,
                                 zeroline=False, **yticks),
                      xaxis=dict(title="column of the position", showgrid=False, zeroline=False, constrain="domain",
                                 **xticks),
                      margin=dict(l=10, r=10, t=50, b=10), height=560)
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
    tiles = tiles[:, :3] if c >= 3 else np.repeat(tiles[:, :1], 3, axis=1)
    lo, hi = tiles.min(axis=(1, 2, 3), keepdims=True), tiles.max(axis=(1, 2, 3), keepdims=True)
    scaled = np.where(hi > lo, (tiles - lo) / np.where(hi > lo, hi - lo, 1.0), 0.5)
    k = len(tiles)
    cols = min(columns, k)
    fig = px.imshow((scaled.transpose(0, 2, 3, 1) * 255).astype(np.uint8), facet_col=0, facet_col_wrap=cols,
                    facet_col_spacing=0.01, facet_row_spacing=0.02)
    names = [f"PC {i + 1}" if pca else f"filter {i}" for i in range(k)]
    fig.for_each_annotation(lambda a: a.update(text=names[int(a.text.split("=")[-1])]))
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    what = f"top {k} principal components" if pca else f"first {k} filters"
    fig.update_layout(title=f"patch-embedding filters ({kh}x{kw}, {c} channel{'s' if c > 1 else ''}): {what}",
                      margin=dict(l=10, r=10, t=50, b=10), height=max(240, 60 * math.ceil(k / cols) + 80))
    return fig


def prior_table(fits: Sequence[PriorFit]) -> list[dict]:
    """Rows for a table of every prior's distances (the numbers behind the histogram)."""
    return [{"prior": f.prior.label, "schemes": ", ".join(f.prior.schemes), "KS": round(f.ks, 4),
             "Wasserstein": f.wasserstein,
             "std / prior std": None if math.isnan(f.std_ratio) else round(f.std_ratio, 4),
             "matches": f.matches} for f in fits]
