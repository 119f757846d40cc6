"""Charts for "where does it come from?": relatedness per library checkpoint, per-block similarity to one
relative, and the library's family tree."""
from __future__ import annotations

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


def block_heatmap(rel: Relation) -> go.Figure:
    """Correlation with the relative per group (rows, model order) and tensor (columns): 1 is the same values,
    0 unrelated; hover for the permutation z and the relative change."""
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
                z[i, j] = t.r
                change = "n/a" if t.rel_change is None else f"{t.rel_change:.3g}"
                text[i][j] = f"{t.name}<br>r {t.r:.4f}, z {t.z:.1f}<br>relative change {change}" + (
                    "<br>(resampled to the query's grid)" if t.resampled else "")
    fig = go.Figure(go.Heatmap(z=z, x=columns, y=groups, zmin=-1, zmax=1, colorscale="RdBu", text=text,
                               hovertemplate="%{text}<extra></extra>", colorbar=dict(title="correlation")))
    fig.update_layout(title=f"Per-block similarity to {rel.name} ({rel.relation})",
                      yaxis=dict(autorange="reversed"), height=max(320, 22 * len(groups) + 140))
    return fig


def _layout(tree: FamilyTree) -> dict[str, tuple[float, float]]:
    """Generations top to bottom, each row spread evenly, children ordered by their parent's position."""
    parent = {e.target: e.source for e in tree.edges if e.nearest}
    rows: dict[int, list[str]] = defaultdict(list)
    for n in sorted(tree.nodes, key=lambda n: n["generation"]):
        rows[n["generation"]].append(n["name"])
    pos: dict[str, tuple[float, float]] = {}
    for gen in sorted(rows):
        names = sorted(rows[gen], key=lambda n: (pos.get(parent.get(n), (0.0, 0.0))[0], n))
        for k, name in enumerate(names):
            pos[name] = ((k + 1) / (len(names) + 1), -float(gen))
    return pos


def family_tree_figure(tree: FamilyTree, highlight: str | None = None) -> go.Figure:
    """Nodes are checkpoints, arrows run from ancestor to descendant (nearest ancestor solid, further back
    dotted); identical copies and siblings are joined by grey and purple dashes."""
    pos = _layout(tree)
    fig = go.Figure()
    styles = {"derived_from": dict(color=RELATION_COLORS["derived_from"], width=2),
              "identical": dict(color=RELATION_COLORS["identical"], width=2, dash="dash"),
              "sibling": dict(color=RELATION_COLORS["sibling"], width=1, dash="dash")}
    for e in tree.edges:
        if e.source not in pos or e.target not in pos:
            continue
        (x0, y0), (x1, y1) = pos[e.source], pos[e.target]
        line = dict(styles[e.relation]) | ({} if e.nearest or e.relation != "derived_from" else {"dash": "dot"})
        fig.add_trace(go.Scatter(x=[x0, x1], y=[y0, y1], mode="lines", line=line, hoverinfo="skip",
                                 showlegend=False))
        if e.relation == "derived_from":
            fig.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", showarrow=True,
                               arrowhead=2, arrowsize=1.2, arrowcolor=line["color"], standoff=10, text="")
    names = [n["name"] for n in tree.nodes]
    fig.add_trace(go.Scatter(
        x=[pos[n][0] for n in names], y=[pos[n][1] for n in names], mode="markers+text", text=names,
        textposition="bottom center", customdata=[[n["origin"], n["path"]] for n in tree.nodes],
        marker=dict(size=[18 if n == highlight else 12 for n in names],
                    color=["#cf222e" if n == highlight else "#24292f" for n in names]),
        hovertemplate="%{text}<br>%{customdata[0]}<br>%{customdata[1]}<extra></extra>", showlegend=False))
    depth = max((n["generation"] for n in tree.nodes), default=0)
    fig.update_layout(title=f"Family tree of the library ({len(names)} checkpoints, "
                            f"{sum(e.nearest for e in tree.edges)} derived-from edges)",
                      xaxis=dict(visible=False, range=[0, 1]), yaxis=dict(visible=False, range=[-depth - 0.6, 0.4]),
                      height=max(320, 150 * (depth + 1) + 100))
    return fig
