"""Charts for "where does it come from?": relatedness per library checkpoint, per-block similarity to one
relative, and the library's family tree."""
from __future__ import annotations

import os
from collections import defaultdict

import numpy as np
import plotly.graph_objects as go

from vitdash.population.lineage import Lineage
from vitdash.population.lineage_null import RELATED_Z
from vitdash.population.lineage_relations import Relation
from vitdash.population.lineage_tree import FamilyTree

RELATION_COLORS = {"identical": "#1a7f37", "derived_from": "#0969da", "sibling": "#8250df",
                   "unrelated": "#8c959f", "incomparable": "#d0d7de"}
_FLOOR = 0.1  # scores at or below chance are drawn here on the log axis


def relations_figure(lin: Lineage) -> go.Figure:
    """Every compared checkpoint's combined z (log axis), coloured by relation, with the related threshold."""
    rows = [r for r in lin.relations if r.score is not None]
    fig = go.Figure()
    for relation, color in RELATION_COLORS.items():
        sel = [r for r in rows if r.relation == relation]
        if sel:
            fig.add_trace(go.Bar(
                y=[r.name for r in sel], x=[max(r.score, _FLOOR) for r in sel], orientation="h", name=relation,
                marker_color=color, customdata=[[r.score, r.stage] for r in sel],
                hovertemplate="%{y}<br>z %{customdata[0]:.1f} (%{customdata[1]})<extra></extra>"))
    fig.add_vline(x=RELATED_Z, line=dict(dash="dot", color="#cf222e"),
                  annotation_text=f"related above z {RELATED_Z:g}", annotation_position="top")
    fig.update_layout(title="Relatedness to each library checkpoint (combined z; chance level is about 1)",
                      xaxis=dict(type="log", title="combined z"), yaxis=dict(autorange="reversed", title=None),
                      height=max(260, 28 * len(rows) + 120), barmode="overlay")
    return fig


def _column(t) -> str:
    """A tensor's place in its group: the slot inside a block, else its name without the group prefix."""
    if t.group.startswith("blocks."):
        return t.slot
    return t.name.removeprefix(t.group + ".") if t.name != t.group else "value"


# Similarity drawn as digits of agreement, -log10(1 - r): 0 unrelated, 2 for r = 0.99, 4 for r = 0.9999; a
# fine-tune keeps r within 1e-3 of 1 and the plain correlation would be one flat colour.
_NINES = 7.0  # float32 agrees to about seven digits: identical tensors are drawn here


def _nines(r: float) -> float:
    return _NINES if r >= 1 - 10 ** -_NINES else float(-np.log10(1 - r))


def block_heatmap(rel: Relation) -> go.Figure:
    """Similarity to the relative per group (rows, model order) and tensor (columns); hover for the correlation,
    its permutation z and the relative change."""
    order = [g["group"] for g in rel.moved]
    columns = list(dict.fromkeys(_column(t) for t in rel.tensors if t.r is not None))
    cells: dict[tuple[str, str], object] = {(t.group, _column(t)): t for t in rel.tensors if t.r is not None}
    groups = [g for g in order if any((g, c) in cells for c in columns)]
    z = np.full((len(groups), len(columns)), np.nan)
    text = [["" for _ in columns] for _ in groups]
    for i, g in enumerate(groups):
        for j, c in enumerate(columns):
            t = cells.get((g, c))
            if t is not None:
                z[i, j] = _nines(t.r)
                change = "n/a" if t.rel_change is None else f"{t.rel_change:.3g}"
                text[i][j] = f"{t.name}<br>r {t.r:.6f}, z {t.z:.1f}<br>relative change {change}" + (
                    "<br>(resampled to the query's grid)" if t.resampled else "")
    ticks = list(range(int(_NINES) + 1))
    fig = go.Figure(go.Heatmap(
        z=z, x=columns, y=groups, zmin=0, zmax=_NINES, colorscale="Blues", text=text,
        hovertemplate="%{text}<extra></extra>",
        colorbar=dict(title="correlation", tickvals=ticks, ticktext=["0"] + [f"{1 - 10.0 ** -k:.{k}f}" for k in
                                                                              ticks[1:-1]] + ["same"])))
    fig.update_layout(title=f"Per-block similarity to {rel.name} ({rel.relation})",
                      yaxis=dict(autorange="reversed"), height=max(320, 22 * len(groups) + 140))
    return fig


def _layout(tree: FamilyTree) -> dict[str, tuple[float, float]]:
    """A tidy tree: generations top to bottom, leaves side by side, each parent above the middle of its children;
    families with descendants first, lone checkpoints after them."""
    parent = {e.target: e.source for e in tree.edges if e.nearest}
    children: dict[str, list[str]] = defaultdict(list)
    for child, p in parent.items():
        children[p].append(child)
    x: dict[str, float] = {}

    def place(name: str) -> None:
        x[name] = -1.0  # (placed: a cycle cannot recurse)
        kids = [k for k in sorted(children.get(name, [])) if k not in x]
        for k in kids:
            place(k)
        x[name] = float(np.mean([x[k] for k in kids])) if kids else float(sum(1 for v in x.values() if v >= 0))

    def size(name: str, seen: frozenset = frozenset()) -> int:
        return 1 + sum(size(k, seen | {name}) for k in children.get(name, []) if k not in seen)

    roots = [n["name"] for n in tree.nodes if n["name"] not in parent]
    for root in sorted(roots, key=lambda r: (-size(r), r)):
        place(root)
    for n in tree.nodes:  # (anything left: a cycle of "nearest" edges, which relate() does not produce)
        if n["name"] not in x:
            place(n["name"])
    width = max(x.values(), default=0.0) + 1
    gens = {n["name"]: n["generation"] for n in tree.nodes}
    return {name: ((v + 0.5) / width, -float(gens[name])) for name, v in x.items()}


def _short(names: list[str]) -> dict[str, str]:
    """Names without the folder prefix they all share (a library's folder name)."""
    prefix = os.path.commonprefix(names) if len(names) > 1 else ""
    prefix = prefix[: prefix.rfind("/") + 1]
    return {n: n[len(prefix):] or n for n in names}


def family_tree_figure(tree: FamilyTree, highlight: str | None = None) -> go.Figure:
    """Nodes are checkpoints (identical copies drawn as one, listed on hover), arrows run from a checkpoint's
    nearest ancestor to it; purple dashes join siblings whose common ancestor is not in the library."""
    pos = _layout(tree)
    fig = go.Figure()
    for e in tree.edges:
        if e.source not in pos or e.target not in pos or not (e.nearest or e.relation == "sibling"):
            continue
        (x0, y0), (x1, y1) = pos[e.source], pos[e.target]
        color = RELATION_COLORS[e.relation]
        dash = "dash" if e.relation == "sibling" else ("solid" if e.strength == "strong" else "dot")
        fig.add_trace(go.Scatter(x=[x0, x1], y=[y0, y1], mode="lines", line=dict(color=color, width=2, dash=dash),
                                 hoverinfo="skip", showlegend=False))
        if e.relation == "derived_from":
            fig.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", showarrow=True,
                               arrowhead=2, arrowsize=1.2, arrowcolor=color, standoff=9, text="")
    names = [n["name"] for n in tree.nodes]
    short = _short(names)
    hover = [f"{n['name']}<br>{n['origin']}" + (f"<br>identical copies: {', '.join(n['copies'])}" if n["copies"]
                                                 else "") for n in tree.nodes]
    labels = [short[n["name"]] + (f" (+{len(n['copies'])} copies)" if n["copies"] else "") for n in tree.nodes]
    rows: dict[float, int] = defaultdict(int)
    where = []
    for n in sorted(names, key=lambda n: pos[n][0]):  # alternate label sides along a row so neighbours do not collide
        rows[pos[n][1]] += 1
        where.append((n, "top center" if rows[pos[n][1]] % 2 else "bottom center"))
    side = dict(where)
    fig.add_trace(go.Scatter(
        x=[pos[n][0] for n in names], y=[pos[n][1] for n in names], mode="markers+text", text=labels,
        textposition=[side[n] for n in names], hovertext=hover, hoverinfo="text",
        marker=dict(size=[18 if n == highlight else 12 for n in names],
                    color=["#cf222e" if n == highlight else "#24292f" for n in names]), showlegend=False))
    depth = max((n["generation"] for n in tree.nodes), default=0)
    fig.update_layout(title=f"Family tree of the library ({len(names)} distinct checkpoints, "
                            f"{sum(e.nearest for e in tree.edges)} derived-from edges)",
                      xaxis=dict(visible=False, range=[-0.1, 1.1]), yaxis=dict(visible=False,
                                                                                 range=[-depth - 0.6, 0.5]),
                      height=max(320, 160 * (depth + 1) + 100))
    return fig
