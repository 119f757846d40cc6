"""Charts for 'does it perform?': accuracy against its references, per class, confusions, few-shot curves."""
from __future__ import annotations

import plotly.graph_objects as go

from vitdash.perform.evaluate import EvalResult
from vitdash.perform.fewshot import FewShotResult

MEASURED, REFERENCE, TWIN, CHANCE = "#1f77b4", "#2ca02c", "#d62728", "#7f7f7f"


def accuracy_figure(result: EvalResult) -> go.Figure:
    """Measured top-1/top-5 beside the published top-1 (when known) and chance: the card's claim, checked."""
    names = ["top-1", f"top-{result.top5_k}"]
    values = [result.top1, result.top5]
    colors = [MEASURED, MEASURED]
    if result.reference_top1 is not None:
        names.append("published top-1")
        values.append(result.reference_top1)
        colors.append(REFERENCE)
    fig = go.Figure(go.Bar(x=names, y=values, marker_color=colors, text=[f"{v:.1%}" for v in values],
                           textposition="outside", showlegend=False))
    _level_line(fig, result.chance_top1, f"chance top-1 {result.chance_top1:.2%}")
    fig.update_layout(title=f"Accuracy on {result.n_images} images", yaxis=dict(title="accuracy", range=[0, 1.1],
                      tickformat=".0%"), height=360)
    return fig


def _level_line(fig: go.Figure, y: float, label: str, color: str = CHANCE, dash: str = "dot") -> None:
    """A horizontal reference line named in the legend: a label on the line would sit on top of a bar's
    or a curve's own label whenever the data come near it (a model near chance: when it matters)."""
    fig.add_hline(y=y, line_dash=dash, line_color=color)
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=label, line=dict(dash=dash, color=color)))
    fig.update_layout(legend=dict(orientation="h", y=1.0, yanchor="bottom", x=1, xanchor="right"))


def per_class_figure(result: EvalResult) -> go.Figure:
    """Per-class top-1, worst first, so classes the model cannot do stand out."""
    rows = sorted((r for r in result.per_class if r["n"]), key=lambda r: r["top1"])
    fig = go.Figure(go.Bar(x=[r["class"] for r in rows], y=[r["top1"] for r in rows], marker_color=MEASURED,
                           customdata=[r["n"] for r in rows],
                           hovertemplate="%{x}<br>top-1 %{y:.1%} of %{customdata} images<extra></extra>",
                           showlegend=False))
    _level_line(fig, result.top1, f"overall top-1 {result.top1:.1%}", MEASURED, "dash")
    fig.update_layout(title="Top-1 per class (worst first)", yaxis=dict(title="top-1", range=[0, 1.05],
                      tickformat=".0%"), height=400,
                      xaxis=dict(title="class", type="category", showticklabels=len(rows) <= 60))
    return fig


OUTSIDE = "none of these (another head output)"


def confusion_figure(result: EvalResult) -> go.Figure | None:
    """Rows: true class; columns: predicted class. When the head has outputs no data class maps to (a 1000-way
    head on 10 classes) and the model picks them, one more column counts those predictions, named for what it is."""
    if result.confusion is None:
        return None
    labels = result.confusion["labels"]
    others = result.confusion["other"]
    outside = any(others)
    z = [row + [o] for row, o in zip(result.confusion["matrix"], others)] if outside else result.confusion["matrix"]
    fig = go.Figure(go.Heatmap(z=z, x=labels + [OUTSIDE] if outside else labels, y=labels, colorscale="Blues",
                               hovertemplate="true %{y}<br>predicted %{x}<br>%{z} images<extra></extra>"))
    every = len(labels) <= 60  # class names are categories: numeric names ('0'..'9') must not become a number line
    fig.update_layout(title="Confusion matrix" + (f" ({sum(others)} predictions outside the data's classes)"
                                                  if outside else ""),
                      xaxis=dict(title="predicted", type="category", tickangle=-45, dtick=1 if every else None),
                      yaxis=dict(title="true", type="category", autorange="reversed", dtick=1 if every else None),
                      height=max(360, 18 * len(labels) + 160))
    return fig


def throughput_figure(result: EvalResult) -> go.Figure:
    """End-to-end against model-only images/s: the gap is the input pipeline's cost."""
    names, values = ["end to end"], [result.images_per_s]
    if result.model_images_per_s:
        names.append("model only")
        values.append(result.model_images_per_s)
    fig = go.Figure(go.Bar(x=values, y=names, orientation="h", marker_color=[MEASURED, CHANCE][:len(values)],
                           text=[f"{v:,.1f}" for v in values], textposition="auto"))
    fig.update_layout(title=f"Images per second ({result.device}, {result.dtype}, batch {result.batch_size})",
                      xaxis_title="images/s", height=220, margin=dict(t=50, b=30))
    return fig


def fewshot_figure(result: FewShotResult) -> go.Figure:
    """Few-shot accuracy against shots per class, with the random twin: the gap is what pretraining bought."""
    shots = [r.shots for r in result.results]
    fig = go.Figure(go.Scatter(x=shots, y=[r.accuracy_mean for r in result.results], name="checkpoint",
                               mode="lines+markers", line_color=MEASURED,
                               error_y=dict(type="data", array=[r.accuracy_std for r in result.results])))
    if any(r.random_init_accuracy_mean is not None for r in result.results):
        fig.add_trace(go.Scatter(x=shots, y=[r.random_init_accuracy_mean for r in result.results],
                                 name="random-init twin", mode="lines+markers", line_color=TWIN,
                                 error_y=dict(type="data", array=[r.random_init_accuracy_std for r in result.results])))
    _level_line(fig, result.chance, f"chance {result.chance:.1%}")
    fig.update_layout(title=f"Linear few-shot probe, {result.n_classes} classes",
                      xaxis=dict(title="images per class (shots)", type="log", tickvals=shots),
                      yaxis=dict(title="mean per-class accuracy", range=[0, 1.05], tickformat=".0%"), height=380)
    return fig
