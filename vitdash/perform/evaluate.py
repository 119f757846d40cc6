"""Does it perform? Run a checkpoint over labeled images and score its own head, fast and honestly.

The engine (`run_images`) is shared with the few-shot probe: batched `torch.inference_mode`, on CUDA bf16
autocast, channels_last, optional `torch.compile`, DataLoader workers with pinned memory and non-blocking
copies; on CPU all cores for the duration of the call. Throughput is reported twice: end to end (decode,
transform, copy, forward) and model only (a synthetic batch, after warm-up, with synchronized timing), so a
slow input pipeline is visible as the gap between the two.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from vitdash.common.results import Progress, ProgressFn
from vitdash.data.datasets import Dataset, discover
from vitdash.data.labels import LabelMapping, map_labels
from vitdash.errors import VitdashError
from vitdash.identity.architecture import ArchSpec, infer_architecture
from vitdash.identity.family import reference_top1
from vitdash.identity.model import build_model
from vitdash.identity.preprocessing import resolve_preprocessing
from vitdash.load.checkpoint import Checkpoint
from vitdash.perform.domain import domain_check
from vitdash.perform.engine import (
    EngineOptions,
    cpu_threads,
    dtype_name,
    measure_model_throughput,
    prepare_forward,
    run_images,
)
from vitdash.perform.memory import activation_bytes

CONFUSION_MAX_CLASSES = 50


@dataclass
class EvalResult:
    """Own-head accuracy of a checkpoint on labeled images, with how it was measured."""

    checkpoint: str
    data: dict[str, Any]
    top1: float
    top1_ci95: tuple[float, float]
    top5: float
    top5_k: int
    n_images: int
    n_skipped: int
    skipped: list[str]
    n_classes: int
    num_outputs: int
    chance_top1: float
    chance_top5: float
    reference_top1: float | None  # published ImageNet-1k top-1 of these weights, as a fraction like top1
    label_mapping: dict[str, Any]
    per_class: list[dict[str, Any]]
    confusion: dict[str, Any] | None
    preprocessing: dict[str, Any]
    device: str
    dtype: str
    batch_size: int
    num_workers: int
    compiled: bool
    images_per_s: float
    model_images_per_s: float | None
    elapsed_s: float
    cancelled: bool
    warnings: list[str]
    domain: dict[str, Any] | None = None  # `DomainCheck.to_dict()`: is the data the model's domain?

    @property
    def off_domain(self) -> str:
        """Why the number says nothing about the model (the data is not its domain), or ''."""
        return self.domain["message"] if self.domain and self.domain.get("mismatch") else ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def headline(self) -> list[tuple[str, str, str | None]]:
        """The numbers a summary leads with, formatted: (label, value, detail)."""
        lo, hi = self.top1_ci95
        published = "unknown" if self.reference_top1 is None else f"{self.reference_top1:.1%}"
        return [("Top-1", f"{self.top1:.2%}", f"95% interval {lo:.1%} to {hi:.1%}"),
                (f"Top-{self.top5_k}", f"{self.top5:.2%}", None), ("Published top-1", published, None),
                ("Images", str(self.n_images), f"{self.n_skipped} skipped"),
                ("Images/s", f"{self.images_per_s:.1f}",
                 f"end to end; model only: {self.model_images_per_s or 0:.1f}")]


def score(top_k: np.ndarray, labels: np.ndarray, mapping: LabelMapping, class_names: list[str]) -> dict[str, Any]:
    """Top-1/top-k, per-class accuracy and confusion from the head's top-k outputs and the data labels. (Top-k is
    read off the kept indices: sklearn's top_k_accuracy_score needs every image's full scores, 1000 floats each
    for an ImageNet head.)"""
    target = np.asarray(mapping.head_index)[labels]
    hit1 = top_k[:, 0] == target
    hitk = (top_k == target[:, None]).any(axis=1)
    n_cls = len(class_names)
    per_class = []
    for c in range(n_cls):
        m = labels == c
        per_class.append({"class": class_names[c], "head_index": int(mapping.head_index[c]), "n": int(m.sum()),
                          "top1": float(hit1[m].mean()) if m.any() else None,
                          "top5": float(hitk[m].mean()) if m.any() else None})
    confusion = None
    if n_cls <= CONFUSION_MAX_CLASSES:
        from sklearn.metrics import confusion_matrix  # (heavy: imported where a confusion is counted)

        to_data = {h: c for c, h in enumerate(mapping.head_index)}
        pred = np.array([to_data.get(int(p), n_cls) for p in top_k[:, 0]], dtype=int)
        matrix = confusion_matrix(labels, pred, labels=np.arange(n_cls + 1))[:n_cls]
        confusion = {"labels": list(class_names), "matrix": matrix[:, :n_cls].tolist(),
                     "other": matrix[:, n_cls].tolist()}  # predictions of head outputs no data class maps to
    n = len(labels)
    return {"top1": float(hit1.mean()) if n else 0.0, "top1_hits": int(hit1.sum()),
            "top5": float(hitk.mean()) if n else 0.0, "per_class": per_class, "confusion": confusion}


def wilson_interval(hits: int, n: int) -> tuple[float, float]:
    """95% interval of an accuracy measured on n images: 200 images cannot tell 80% from 84%."""
    if n == 0:
        return (0.0, 1.0)
    from scipy.stats import binomtest

    ci = binomtest(hits, n).proportion_ci(confidence_level=0.95, method="wilson")
    return (float(ci.low), float(ci.high))


def evaluate(ckpt: Checkpoint, data: str | Dataset, options: EngineOptions | None = None,
             overrides: Mapping[str, Any] | None = None, progress: ProgressFn | None = None,
             should_stop: Callable[[], bool] | None = None, measure_throughput: bool = True,
             arch: ArchSpec | None = None) -> EvalResult:
    """Score the checkpoint's own head on `data` (a folder, 'digits', or a `Dataset`); `arch`: the checkpoint's
    architecture when the caller has read it already."""

    opts = options or EngineOptions()
    device, dtype = opts.resolve()
    ds = (data if isinstance(data, Dataset) else discover(data)).limited(opts.limit)
    arch = arch or infer_architecture(ckpt)
    mapping = map_labels(ds, ckpt.metadata, arch.num_classes)
    domain = domain_check(ckpt, ds, arch.num_classes, arch.img_size, arch.in_chans, mapping)
    prep = resolve_preprocessing(ckpt, arch, overrides)
    k = min(5, arch.num_classes)
    tops: list[np.ndarray] = []
    labels: list[np.ndarray] = []

    batch = opts.batch_for(device, activation_bytes(arch, prep.input_size))
    if progress is not None:
        progress(Progress(0, len(ds), "building the model"))
    with cpu_threads(device):
        forward = prepare_forward(build_model(ckpt, arch), device, dtype, opts)

        def step(x: torch.Tensor, y: torch.Tensor) -> None:
            tops.append(forward(x).float().topk(k, dim=1).indices.cpu().numpy())
            labels.append(y.numpy())

        stats = run_images(ds, prep, step, device, opts, progress, should_stop, batch_size=batch)
        model_ips = (measure_model_throughput(forward, prep.input_size, batch, device, opts.channels_last)
                     if measure_throughput and not stats.cancelled else None)

    top_k = np.concatenate(tops) if tops else np.zeros((0, k), dtype=int)
    y = np.concatenate(labels) if labels else np.zeros(0, dtype=int)
    if not len(y) and not stats.cancelled:
        raise VitdashError(f"none of the {len(ds)} files in {ds.root} could be read as an image")
    scores = score(top_k, y, mapping, ds.class_names())
    reference = reference_top1(ckpt, arch)
    warnings = ([domain.message] if domain.mismatch else []) + ([mapping.warning] if mapping.warning else []) \
        + prep.notes + ds.notes  # the domain first: it decides whether the number means anything
    if stats.cancelled:
        warnings.insert(0, f"cancelled after {stats.n_images} of {len(ds)} images: partial result")
    return EvalResult(
        checkpoint=ckpt.name or ckpt.source, data=ds.to_dict(), top1=scores["top1"],
        top1_ci95=wilson_interval(scores["top1_hits"], len(y)), top5=scores["top5"],
        top5_k=k, n_images=stats.n_images, n_skipped=len(stats.skipped), skipped=stats.skipped[:50],
        n_classes=len(ds.classes), num_outputs=arch.num_classes, chance_top1=1 / arch.num_classes,
        chance_top5=k / arch.num_classes, reference_top1=None if reference is None else reference / 100,
        label_mapping=mapping.to_dict(), per_class=scores["per_class"], confusion=scores["confusion"],
        preprocessing=prep.to_dict(), device=str(device), dtype=dtype_name(dtype), batch_size=batch,
        num_workers=stats.num_workers, compiled=opts.compile, images_per_s=stats.images_per_s,
        model_images_per_s=model_ips, elapsed_s=stats.elapsed_s, cancelled=stats.cancelled, warnings=warnings,
        domain=domain.to_dict())
