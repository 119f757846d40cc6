"""One member of a population audited on its own: the verdict's per-tensor statistics and its distance to its
first checkpoint and to its parent. Any failure becomes the member's `error`."""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

from vitdash.common.results import finite_float
from vitdash.errors import VitdashError
from vitdash.load.sources import load
from vitdash.population.compare import compare
from vitdash.population.discover import ZooModel
from vitdash.trained.roles import MATRIX_ROLES
from vitdash.trained.verdict import audit


@dataclass
class ModelAudit:
    """A member with its weight-space statistics (or the reason it could not be read).

    `peak_rss_mb`: the high-water mark of the process that audited it, so far (Linux; None elsewhere):
    flat across the models one worker audits when memory is bounded by one checkpoint at a time.
    """

    model: ZooModel
    stats: dict[str, Any] | None
    error: str | None = None
    seconds: float = 0.0
    peak_rss_mb: float | None = None

    def summary(self) -> dict[str, Any]:
        return dict(self.stats["summary"]) if self.stats else {}

    def to_dict(self) -> dict[str, Any]:
        return {**self.model.to_dict(), "stats": self.stats, "error": self.error, "seconds": self.seconds,
                "peak_rss_mb": self.peak_rss_mb}


def peak_rss_mb() -> float | None:
    """This process's resident-memory high-water mark (VmHWM: unlike getrusage, not inherited at fork)."""
    try:
        with open("/proc/self/status") as f:
            line = next((x for x in f if x.startswith("VmHWM:")), None)
    except OSError:
        return None
    return round(int(line.split()[1]) / 1024, 1) if line else None


def _distances(reference: str | None, ckpt) -> tuple[dict[str, float | None], float | None, str | None]:
    """Per-tensor and overall relative distance to a reference checkpoint, and what its head did."""
    if reference is None:
        return {}, None, None

    cmp = compare(load(reference), ckpt, verdicts=False)
    return {t.name: t.rel_change for t in cmp.tensors}, cmp.rel_change, cmp.head.status


def _model_stats(model: ZooModel) -> dict[str, Any]:
    ckpt = load(model.path)
    aud = audit(ckpt)
    to_init, dist_init, _ = _distances(model.init, ckpt)
    to_parent, dist_parent, head = _distances(model.parent_checkpoint or model.parent, ckpt)
    layers = []
    for t in aud.tensors:
        m = t.stats.moments
        mean, std = finite_float(m.mean), finite_float(m.std)
        mu, sd = mean or 0.0, std or 0.0
        layers.append({
            "name": t.name, "role": t.role, "group": t.group, "shape": t.shape, "verdict": t.verdict,
            "norm": math.sqrt(m.numel * (sd * sd + mu * mu)), "mean": mean, "std": std,
            "excess_kurtosis": finite_float(m.excess_kurtosis), "structure": finite_float(t.stats.structure),
            "rel_to_init": finite_float(to_init.get(t.name)), "rel_to_parent": finite_float(to_parent.get(t.name))})
    matrices = [x for x in layers if x["role"] in MATRIX_ROLES and len(x["shape"]) >= 2]
    structures = [x["structure"] for x in layers if x["structure"] is not None]
    pos = next((x["structure"] for x in layers if x["role"] == "pos_embed"), None)

    def mean_of(key: str) -> float | None:
        vals = [x[key] for x in matrices if finite_float(x[key]) is not None]
        return statistics.fmean(vals) if vals else None

    summary = {
        "verdict": aud.verdict, "num_params": ckpt.num_params, "layout": ckpt.layout,
        "norm": math.sqrt(sum(x["norm"] ** 2 for x in layers)),
        "matrix_std": mean_of("std"), "matrix_kurtosis": mean_of("excess_kurtosis"),
        "structure_median": statistics.median(structures) if structures else None,
        "structure_max": max(structures) if structures else None, "pos_structure": pos,
        "trained_share": sum(x["verdict"] == "trained" for x in layers) / len(layers),
        "dist_init": finite_float(dist_init), "dist_parent": finite_float(dist_parent), "head_vs_parent": head,
    }
    return {"summary": summary, "layers": layers}


def audit_model(model: ZooModel) -> ModelAudit:
    """Statistics of one member; any failure becomes its `error`, so one bad file never stops a population."""
    start = time.perf_counter()
    try:
        stats, error = _model_stats(model), None
    except VitdashError as e:
        stats, error = None, str(e)
    except Exception as e:  # noqa: BLE001 - a corrupt file can raise anything from torch; report, go on
        stats, error = None, f"{type(e).__name__}: {e}"
    return ModelAudit(model, stats, error, round(time.perf_counter() - start, 3), peak_rss_mb())
