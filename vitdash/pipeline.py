"""The shared, cached sequence behind every page, the report, the history and the CLI.

Loading, building, auditing: each result is kept once per content in the process-wide byte-bounded cache
(`vitdash.cache`), so sessions opening the same file share one copy and a page rerun costs nothing.
`run_pipeline` is the audit -> architecture -> accuracy sequence that the report, the History page and the
CLI all record.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from vitdash.cache import ByteLRU, or_shared, pickled_size
from vitdash.common.memory import page_out_mapped_files
from vitdash.common.results import Progress, ProgressFn
from vitdash.errors import VitdashError
from vitdash.identity.architecture import infer_architecture
from vitdash.identity.family import ArchitectureReport, report
from vitdash.identity.model import build_model
from vitdash.identity.preprocessing import resolve_preprocessing
from vitdash.load.sources import load, load_bytes
from vitdash.perform.engine import EngineOptions
from vitdash.perform.evaluate import EvalResult, evaluate
from vitdash.perform.memory import estimate_forward
from vitdash.trained.verdict import Audit, audit, audit_bytes


def cached_checkpoint(source: str, fingerprint: str = "", cache: ByteLRU | None = None):
    """`load(source)` through the cache; `fingerprint` (size/mtime) makes a rewritten file reload."""
    return or_shared(cache).get_or_load(("checkpoint", source, fingerprint), lambda: load(source))


def cached_upload(data: bytes, filename: str, digest: str, cache: ByteLRU | None = None):
    """An upload through the cache, keyed by its own sha256: only a session holding the same bytes can ask for it."""
    return or_shared(cache).get_or_load(("upload", digest, filename), lambda: load_bytes(data, filename))


def _then_page_out(read_all: Callable[[], Any]) -> Any:
    """Run a pass that reads every tensor, then hand back the mapped files' pages it left resident: eight
    sessions opening eight ViT-Bs at once would otherwise hold all their pages (1.7 GB) until the next job ends."""
    try:
        return read_all()
    finally:
        page_out_mapped_files()


def cached_model(ckpt, cache: ByteLRU | None = None):
    """`build_model(ckpt)` once per content hash, shared by sessions (eval mode; do not mutate)."""
    if not ckpt.sha256:
        return _then_page_out(lambda: build_model(ckpt))
    return or_shared(cache).get_or_load(("model", ckpt.sha256), lambda: _then_page_out(lambda: build_model(ckpt)))


def audit_is_cached(ckpt, cache: ByteLRU | None = None) -> bool:
    """Whether `cached_audit` would answer at once (nothing to queue)."""
    return ("audit", ckpt.sha256, ckpt.source) in or_shared(cache)


def cached_audit(ckpt, progress: ProgressFn | None = None, cache: ByteLRU | None = None) -> Audit:
    """`audit(ckpt)` once per content and source, shared by sessions and pages (`progress` is reported only
    by the call that runs it)."""
    if not ckpt.sha256:
        return _then_page_out(lambda: audit(ckpt, progress))
    return or_shared(cache).get_or_load(("audit", ckpt.sha256, ckpt.source),
                                        lambda: _then_page_out(lambda: audit(ckpt, progress)), size=pickled_size)


@dataclass
class PipelineResult:
    """What the shared sequence found; a step that does not apply is None, one that failed is None with its
    reason in `errors` (keyed 'audit', 'architecture', 'accuracy')."""

    audit: Audit | None = None
    architecture: ArchitectureReport | None = None
    accuracy: EvalResult | None = None
    errors: dict[str, str] = field(default_factory=dict)


def pipeline_steps(ckpt, data: str | None = None, accuracy: EvalResult | None = None) -> list[tuple[str, str]]:
    """(key, words) of the steps `run_pipeline` takes: the architecture only for a ViT, the accuracy only for a
    ViT with data and no accuracy measured yet."""
    steps = [("audit", "auditing the weights")]
    if ckpt.is_vit:
        steps.append(("architecture", "reading the architecture"))
        if data and accuracy is None:
            steps.append(("accuracy", f"measuring accuracy on {data}"))
    return steps


def pipeline_bytes(ckpt, data: str | None = None, options: EngineOptions | None = None) -> int:
    """The job queue's reservation for `run_pipeline`: its largest step, since they run one after the other
    (the audit; the accuracy check when there is data)."""
    steps = [audit_bytes(ckpt)]
    if ckpt.is_vit and data:
        arch = infer_architecture(ckpt)
        steps.append(estimate_forward(arch, resolve_preprocessing(ckpt, arch).input_size, options or EngineOptions()))
    return max(steps)


def run_pipeline(ckpt, data: str | None = None, *, accuracy: EvalResult | None = None,
                 options: EngineOptions | None = None, measure_throughput: bool = True,
                 progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None
                 ) -> PipelineResult:
    """Audit -> architecture -> accuracy on `data` (or the `accuracy` already measured): the sequence the report,
    the History page and the CLI record. Progress: each step's start (its words as `stage` and `message`), then
    the step's own reports with that `stage`. A failing step does not stop the next ones."""
    runs: dict[str, Callable[[ProgressFn | None], Any]] = {
        "audit": lambda p: cached_audit(ckpt, progress=p),
        "architecture": lambda p: report(ckpt),
        "accuracy": lambda p: evaluate(ckpt, data, options or EngineOptions(), progress=p,
                                       measure_throughput=measure_throughput, should_stop=should_stop)}
    result = PipelineResult(accuracy=accuracy)
    steps = pipeline_steps(ckpt, data, accuracy)
    for i, (key, words) in enumerate(steps):
        relay = None
        if progress is not None:
            progress(Progress(i, len(steps), words, stage=words))
            relay = lambda p, words=words: progress(replace(p, stage=words))  # noqa: E731
        try:
            setattr(result, key, runs[key](relay))
        except VitdashError as e:
            result.errors[key] = str(e)
    return result
