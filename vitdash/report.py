"""Reports: one self-contained HTML file (opens offline, figures embedded) plus the same results as JSON.

Each analysis has a section builder that takes that module's own result (`checkpoint_section(ckpt)`,
`verdict_section(Audit)`, `architecture_section(ArchitectureReport)`, `accuracy_section(EvalResult)`,
`fewshot_section(FewShotResult)`, `attention_section([(name, AttentionResult)])`, `lineage_section(Lineage)`,
`history_section(records)`),
so a page can export exactly what it shows and `generate` (the CLI) can run them all. plotly.js is
inlined once, in the first figure; the other figures reuse it, and images are PNG data URIs, so the file
needs no network and no companion files.
"""
from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vitdash import __version__
from vitdash.attention.explain import explain_images
from vitdash.attention.overlay import to_png
from vitdash.common.results import Progress, ProgressFn
from vitdash.data.samples import data_samples, samples
from vitdash.errors import VitdashError
from vitdash.figures.colors import verdict_hex
from vitdash.figures.identity import breakdown_figure, family_scatter
from vitdash.figures.lineage import block_heatmap, relations_figure
from vitdash.figures.perform import (
    accuracy_figure,
    confusion_figure,
    fewshot_figure,
    per_class_figure,
    throughput_figure,
)
from vitdash.figures.trained import depth_role_heatmap
from vitdash.identity.architecture import infer_architecture
from vitdash.identity.family_table import family_rows
from vitdash.identity.preprocessing import resolve_preprocessing
from vitdash.perform.engine import EngineOptions
from vitdash.perform.memory import activation_bytes, model_bytes, tokens
from vitdash.pipeline import PipelineResult, pipeline_bytes, run_pipeline
from vitdash.population.lineage import lineage

MAX_TENSOR_ROWS = 400


@dataclass
class Section:
    """One part of a report: `body` is HTML (already escaped), `data` the JSON-able result it shows."""

    key: str
    title: str
    body: str
    data: Any
    figures: list[Any] = field(default_factory=list)  # plotly figures, drawn after the body
    error: str | None = None


@dataclass
class Report:
    title: str
    sections: list[Section]
    checkpoint: dict[str, Any] | None = None
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @classmethod
    def for_checkpoint(cls, ckpt, sections: Sequence[Section], title: str | None = None) -> Report:
        """A report on `ckpt` that opens with its identity (name, hash, layout), then `sections`."""
        return cls(title or f"vitdash report: {ckpt.name or ckpt.source}", [checkpoint_section(ckpt), *sections],
                   ckpt.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "created_at": self.created_at, "vitdash_version": __version__,
                "checkpoint": self.checkpoint,
                "sections": {s.key: ({"error": s.error} if s.error else s.data) for s in self.sections}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def to_html(self) -> str:
        parts = []
        plotly_included = False
        for s in self.sections:
            figs = []
            for fig in s.figures:
                figs.append(fig.to_html(full_html=False, include_plotlyjs=not plotly_included,
                                        config={"displaylogo": False, "responsive": True}))
                plotly_included = True
            body = f'<p class="error">{html.escape(s.error)}</p>' if s.error else s.body
            parts.append(f'<section id="{_e(s.key)}"><h2>{_e(s.title)}</h2>{body}'
                         + "".join(f'<div class="figure">{f}</div>' for f in figs) + "</section>")
        toc = "".join(f'<li><a href="#{_e(s.key)}">{_e(s.title)}</a></li>' for s in self.sections)
        return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(self.title)}</title>"
                f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{_CSS}</style>"
                f"</head><body><header><h1>{_e(self.title)}</h1><p class=\"meta\">generated {_e(self.created_at)} "
                f"by vitdash {_e(__version__)}</p><nav><ol>{toc}</ol></nav></header>{''.join(parts)}</body></html>")

    def write(self, html_path: str | Path, json_path: str | Path | None = None) -> tuple[Path, Path]:
        """Write the HTML and the JSON (default: beside the HTML, same name, .json)."""
        html_path = Path(html_path)
        json_path = Path(json_path) if json_path else html_path.with_suffix(".json")
        try:
            html_path.write_text(self.to_html(), encoding="utf-8")
            json_path.write_text(self.to_json(), encoding="utf-8")
        except OSError as e:
            raise VitdashError(f"could not write the report: {e}") from None
        return html_path, json_path


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1200px;margin:0 auto;padding:1.5em;
color:#1f2328;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:2em}
.meta{color:#656d76;margin-top:0}table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #d0d7de;padding:.25em .6em;text-align:left;vertical-align:top}th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums}code{font-size:.9em;word-break:break-all}
.badge{display:inline-block;padding:.15em .7em;border-radius:1em;color:#fff;font-weight:600}
.error{color:#cf222e;font-weight:600}.warning{color:#9a6700}.figure{margin:1em 0}
.images{display:flex;flex-wrap:wrap;gap:1em}.images figure{margin:0;max-width:320px}
.images img{max-width:100%;image-rendering:pixelated;border:1px solid #d0d7de}details{margin:.6em 0}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _kv_table(rows: Sequence[tuple[str, Any]]) -> str:
    return "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "</table>"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f'<td class="num">{_e(v)}</td>' if isinstance(v, (int, float)) else f"<td>{_e(v)}</td>" for v in row)
        + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _list(items: Sequence[Any], cls: str = "") -> str:
    if not items:
        return ""
    return f'<ul class="{cls}">' + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def _png_data_uri(image) -> str:
    return "data:image/png;base64," + base64.b64encode(to_png(image)).decode("ascii")


# ---- sections, one per analysis ------------------------------------------------------------------------------


def checkpoint_section(ckpt) -> Section:
    """What was loaded: identity (sha256), format, layout, size and the loader's warnings."""
    rows = [("name", ckpt.name), ("source", ckpt.source), ("sha256", ckpt.sha256),
            ("size", f"{ckpt.size_bytes:,} bytes" if ckpt.size_bytes else "in memory"), ("format", ckpt.format),
            ("layout", ckpt.layout), ("recognized as a ViT", "yes" if ckpt.is_vit else f"no ({ckpt.looks_like})"),
            ("tensors", len(ckpt.tensors)), ("parameters", f"{ckpt.num_params:,}")]
    body = _kv_table(rows) + _list(ckpt.warnings, "warning")
    data = {k: v for k, v in ckpt.to_dict().items() if k != "metadata"}
    return Section("checkpoint", "Checkpoint", body, data)


def verdict_section(audit) -> Section:
    """Is it trained? The model verdict with its reasons, what is still at init, and every tensor's reading."""

    color = verdict_hex(audit.verdict)
    body = (f'<p><span class="badge" style="background:{color}">{_e(audit.verdict)}</span> '
            f"confidence {audit.confidence:.0%}</p><p>{_e(audit.summary)}</p>"
            "<h3>Evidence</h3>" + _list(audit.evidence))
    if audit.at_init_groups:
        body += "<h3>Still at initialization</h3>" + _list(audit.at_init_groups)
        if audit.likely_init:
            body += f"<p>Most likely init scheme: {_e(audit.likely_init)}</p>"
    body += "<p>Tensor verdicts: " + ", ".join(f"{_e(k)} {v}" for k, v in sorted(audit.counts.items())) + "</p>"
    rows = [(t.name, t.role, "x".join(map(str, t.shape)), t.verdict, t.reason) for t in audit.tensors]
    more = len(rows) - MAX_TENSOR_ROWS
    body += ("<details><summary>Every tensor's reading</summary>"
             + _table(("tensor", "role", "shape", "verdict", "reason"), rows[:MAX_TENSOR_ROWS])
             + (f"<p>... and {more} more (all in the JSON)</p>" if more > 0 else "") + "</details>")
    figures = [depth_role_heatmap(audit, stat) for stat in ("verdict", "structure")
               if any(t.block is not None for t in audit.tensors)]  # a generic tensor set has no blocks
    return Section("verdict", "Is it trained?", body, audit.to_dict(), figures)


def architecture_section(rep) -> Section:
    """What is it? The architecture read off the tensors and its place in the ViT family
    (`vitdash.identity.family.report(ckpt)`)."""

    arch, cx, found = rep.arch, rep.complexity, rep.match
    rows = [("family match", f"{found.kind}: {found.name}"), ("width", arch.embed_dim), ("depth", arch.depth),
            ("heads", f"{arch.num_heads}" + (" (inferred)" if arch.heads_inferred else "")),
            ("patch", arch.patch_size), ("image", f"{arch.img_size[0]}x{arch.img_size[1]}"),
            ("input channels", arch.in_chans), ("MLP hidden", arch.mlp_hidden), ("classes", arch.num_classes),
            ("parameters", f"{cx.num_params:,}"), ("GFLOPs", f"{cx.gflops:.3g}")]
    if found.reference_top1 is not None:
        rows.append(("published ImageNet-1k top-1", f"{found.reference_top1:.2f}%"))
    body = _kv_table(rows) + _list(found.differences) + _list(arch.notes + cx.notes + found.notes, "warning")
    figures = [family_scatter(family_rows(), cx.num_params / 1e6, cx.gflops, "this checkpoint", nearest=found.name),
               breakdown_figure(cx.params, {k: v / 1e9 for k, v in cx.macs.items()})]
    return Section("architecture", "What is it?", body, rep.to_dict(), figures)


def accuracy_section(result) -> Section:
    """Does it perform? Own-head accuracy (`vitdash.perform.evaluate.evaluate`) with how it was measured."""

    rows = [("data", f"{result.data.get('name')} ({result.data.get('kind')}, {result.n_images} images, "
                     f"{result.n_classes} classes)"),
            ("top-1", _pct(result.top1)), (f"top-{result.top5_k}", _pct(result.top5)),
            ("chance top-1", _pct(result.chance_top1)),
            ("published top-1", _pct(result.reference_top1)),
            ("label mapping", result.label_mapping.get("method")),
            ("preprocessing", f"{result.preprocessing.get('source')}: input {result.preprocessing.get('input_size')}, "
                              f"mean {result.preprocessing.get('mean')}, std {result.preprocessing.get('std')}, "
                              f"crop {result.preprocessing.get('crop_pct')} {result.preprocessing.get('interpolation')}"),
            ("run on", f"{result.device}, {result.dtype}, batch {result.batch_size}"),
            ("images/s", f"{result.images_per_s:,.1f}")]
    body = _kv_table(rows) + _list(result.warnings, "warning")
    figures = [accuracy_figure(result), per_class_figure(result)]
    confusion = confusion_figure(result)
    if confusion is not None:
        figures.append(confusion)
    figures.append(throughput_figure(result))
    return Section("accuracy", "Does it perform?", body, result.to_dict(), figures)


def fewshot_section(result) -> Section:
    """Few-shot probe of the features (`vitdash.perform.fewshot.fewshot`), against the random twin."""

    rows = [(r.shots, f"{r.accuracy_mean:.1%} ± {r.accuracy_std:.1%}",
             "n/a" if r.random_init_accuracy_mean is None else
             f"{r.random_init_accuracy_mean:.1%} ± {r.random_init_accuracy_std or 0:.1%}", r.n_splits)
            for r in result.results]
    body = (_kv_table([("data", result.data.get("name")), ("images", result.n_images), ("classes", result.n_classes),
                       ("probe", result.probe), ("chance", _pct(result.chance))])
            + _table(("shots per class", "checkpoint", "random twin", "splits"), rows)
            + _list(result.warnings, "warning"))
    return Section("fewshot", "Few-shot probe", body, result.to_dict(), [fewshot_figure(result)])


def attention_section(items: Sequence[tuple[str, Any]], colormap: str = "Jet", opacity: float = 0.5) -> Section:
    """Where does it look? Each image as the model saw it, with its attention map blended in, and the top-5."""

    if not items:
        raise VitdashError("no attention results to report")
    figures_html = []
    for name, result in items:
        caption = f"{name}: {result.method}, seen from the {result.source}"
        if result.top5:
            caption += "; top-5: " + ", ".join(f"{p.label or p.index} {p.probability:.0%}" for p in result.top5)
        img, found = result.picture(colormap=colormap, opacity=opacity)
        if found.found:
            caption += f". Marked: {found.describe()} (saturated, so the colour range shows the rest)"
        figures_html.append(f'<figure><img alt="{_e(name)}" src="{_png_data_uri(img)}">'
                            f"<figcaption>{_e(caption)}</figcaption></figure>")
    body = f'<div class="images">{"".join(figures_html)}</div>'
    return Section("attention", "Where does it look?", body, [{"image": n, **r.to_dict()} for n, r in items])


def lineage_section(lin) -> Section:
    """What was it made from? Its relatives in the library (`vitdash.population.lineage.lineage`), the evidence,
    and its metadata's claims checked against the weights."""
    related = [r for r in lin.relations if r.related]
    body = f"<p>{_e(lin.summary())}</p>"
    if lin.claims:
        body += "<h3>Claims beside the weights</h3>" + _table(
            ("claim", "where", "status", "what the weights show"),
            [(f"{c.claim.kind} {c.claim.value}", c.claim.where, c.status, c.message) for c in lin.claims])
    else:
        body += "<p>The metadata claims no lineage.</p>"
    body += _table(("library checkpoint", "relation", "score (z)", "evidence"),
                   [(r.name, r.relation, "" if r.score is None else round(r.score, 1), r.summary)
                    for r in lin.relations])
    figures = [relations_figure(lin)] + ([block_heatmap(related[0])] if related else [])
    return Section("lineage", "What was it made from?", body, lin.to_dict(), figures)


def history_section(records: Sequence[Any]) -> Section:
    """Earlier audits of the same content (`vitdash.history.AuditHistory.find_by_hash`)."""
    if not records:
        body = "<p>No earlier audit of this file (same sha256) in the history.</p>"
    else:
        body = _table(("when (UTC)", "file", "verdict", "family", "top-1", "reviewer", "note"),
                      [(r.created_at, r.file_name, r.verdict or "", r.family or "",
                        _pct(r.top1) if r.top1 is not None else "", r.reviewer, r.note) for r in records])
    return Section("history", "Audit history", body, [r.to_dict() for r in records])


# ---- everything at once (the CLI) ----------------------------------------------------------------------------


def _attempt(key: str, title: str, build: Callable[[], Section]) -> Section:
    """A section, or the reason it could not be made: one failing analysis does not sink the report."""
    try:
        return build()
    except VitdashError as e:
        return Section(key, title, "", None, error=str(e))


def _section(key: str, title: str, found: PipelineResult, step: str, build: Callable[[Any], Section]) -> Section:
    """A pipeline step's section, or why its step failed."""
    if step in found.errors:
        return Section(key, title, "", None, error=found.errors[step])
    return _attempt(key, title, lambda: build(getattr(found, step)))


def _attention_items(ckpt, n_images: int, data: str | None) -> list[tuple[str, Any]]:
    refs = data_samples(data, limit=n_images) if data else samples()[:n_images]
    loaded = [(ref.name + (f" ({ref.label})" if ref.label else ""), ref.load()) for ref in refs]
    results = explain_images(ckpt, [img for _, img in loaded])
    return [(name, r) for (name, _), r in zip(loaded, results)]


def report_bytes(ckpt, data: str | None = None, limit: int | None = None, attention_images: int = 3) -> int:
    """The job queue's reservation for `generate`: the largest of its steps, which run one after the other (the
    pipeline's; the attention maps, unfused, every layer's attention kept for the rollout)."""
    steps = [pipeline_bytes(ckpt, data, EngineOptions(limit=limit))]
    if ckpt.is_vit and attention_images > 0:
        arch = infer_architecture(ckpt)
        size = resolve_preprocessing(ckpt, arch).input_size
        kept = arch.depth * 4 * arch.num_heads * tokens(arch, size) ** 2  # every layer's attention, for the rollout
        steps.append(2 * model_bytes(arch) + attention_images * (activation_bytes(arch, size, fused=False) + kept))
    return max(steps)


def generate(ckpt, data: str | None = None, limit: int | None = None, attention_images: int = 3,
             history=None, progress: ProgressFn | None = None, lineage_library=None, accuracy=None) -> Report:
    """Run every analysis that applies to `ckpt` and gather the sections.

    `data` (a folder or 'digits') adds the accuracy check and takes the attention images from it; `accuracy` (an
    EvalResult a page already measured) is reported instead of measuring again; `history` (an AuditHistory) adds
    the earlier audits of the same content; `lineage_library` (library entries) adds the checkpoint's relatives
    among them.
    """

    found = run_pipeline(ckpt, data, accuracy=accuracy, options=EngineOptions(limit=limit), progress=progress)
    sections = [_section("verdict", "Is it trained?", found, "audit", verdict_section)]
    if ckpt.is_vit:
        sections.append(_section("architecture", "What is it?", found, "architecture", architecture_section))
        if data or accuracy is not None:
            sections.append(_section("accuracy", "Does it perform?", found, "accuracy", accuracy_section))
        if attention_images > 0:
            if progress is not None:
                progress(Progress(0, 1, "computing attention maps", stage="computing attention maps"))
            sections.append(_attempt("attention", "Where does it look?", lambda: attention_section(
                _attention_items(ckpt, attention_images, data))))
    if lineage_library is not None:
        if progress is not None:
            progress(Progress(0, 1, "searching the library for relatives", stage="searching the library"))
        sections.append(_attempt("lineage", "What was it made from?", lambda: lineage_section(
            lineage(ckpt, lineage_library, history=history))))
    if history is not None:
        sections.append(history_section(history.find_by_hash(ckpt.sha256)))
    return Report.for_checkpoint(ckpt, sections)
