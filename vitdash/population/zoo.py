"""Populations of checkpoints: a model zoo (pretrained parents, fine-tuned children) or any folder of checkpoints.

Discovery reads only the small JSON files (generating factors in `config.json`, per-epoch metrics in
`result.json`), so listing a zoo is instant. Each model is then audited on its own (`audit_model`: the
verdict's per-tensor statistics, distance to its first checkpoint and to its parent), in this process,
in spawned worker processes, or as Ray tasks; results stream back as they finish. A task audits one
model, reading its tensors one at a time from the memory-mapped file and comparing it with its parent
tensor pair by tensor pair: a worker holds one checkpoint (plus, while comparing, the reference's
mapped pages) and returns a few kilobytes, so its memory does not grow with the population. Finally
the population is put together: a table, a 2-D embedding, and how well the weight statistics predict
accuracy under cross-validation, beside a baseline, as in the model-zoo literature (Unterthiner et al.
2020; Schürholt et al. 2022).
"""
from __future__ import annotations

import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vitdash.common.results import Progress, ProgressFn, finite_float
from vitdash.errors import VitdashError
from vitdash.population.discover import Population, ZooModel, discover
from vitdash.population.member import ModelAudit
from vitdash.population.runners import iter_audit

# Which result key is "the accuracy", in order of preference (test before validation, never training).
TARGET_PATTERNS = (r"^test[_:/\-\s]*acc", r"test.*acc", r"^val(idation)?[_:/\-\s]*acc", r"val.*acc", r"acc")


MIN_MODELS_FOR_PREDICTION = 5


SUMMARY_STATS = ("norm", "matrix_std", "matrix_kurtosis", "structure_median", "structure_max", "pos_structure",
                 "trained_share", "dist_init", "dist_parent")


LAYER_FEATURES = ("std", "excess_kurtosis", "structure", "rel_to_init", "rel_to_parent")


# Distances enter the predictor as log10: they span decades across learning rates, and accuracy follows
# their logarithm (it saturates), which a linear model then sees. Below the floor a change is float noise.
LOG_FEATURES = ("rel_to_init", "rel_to_parent", "dist_init", "dist_parent")


LOG_FLOOR = 1e-6


@dataclass
class AccuracyPrediction:
    """Cross-validated R^2 of predicting the target from weight statistics, beside two baselines: the
    population mean (what R^2 = 0 means) and the generating factors alone (what the recipe already says)."""

    target: str
    group: str
    n_models: int
    folds: int
    n_features: int
    r2: float
    baseline_r2: float
    factors_r2: float | None
    method: str
    predictions: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "group": self.group, "n_models": self.n_models, "folds": self.folds,
                "n_features": self.n_features, "r2": self.r2, "baseline_r2": self.baseline_r2,
                "factors_r2": self.factors_r2, "method": self.method, "predictions": self.predictions}


@dataclass
class ZooReport:
    root: str
    layout: str
    models: list[ModelAudit]
    varying_factors: list[str]
    target: str | None
    accuracy_prediction: AccuracyPrediction | None
    embedding: list[dict[str, Any]]
    backend: str
    seconds: float
    notes: list[str] = field(default_factory=list)

    def table(self) -> list[dict[str, Any]]:
        """One flat row per model: name, family, generating factors, final metrics, summary statistics."""
        names = {m.model.path: m.model.name for m in self.models}
        coords = {e["path"]: (e["x"], e["y"]) for e in self.embedding}
        rows = []
        for a in self.models:
            m = a.model
            row: dict[str, Any] = {"name": m.name, "group": m.group, "parent": names.get(m.parent, m.parent)}
            for k in self.varying_factors:
                row[k] = m.factors.get(k)
            for k, v in {**m.result, **a.summary()}.items():
                row[k if k not in row else f"{k} (stat)"] = v
            if m.path in coords:
                row["embed_x"], row["embed_y"] = coords[m.path]
            row["error"] = a.error
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "layout": self.layout, "backend": self.backend, "seconds": self.seconds,
                "n_models": len(self.models), "errors": sum(a.error is not None for a in self.models),
                "varying_factors": self.varying_factors, "target": self.target,
                "accuracy_prediction": self.accuracy_prediction.to_dict() if self.accuracy_prediction else None,
                "embedding": self.embedding, "notes": list(self.notes),
                "models": [a.to_dict() for a in self.models]}


def pick_target(models: list[ZooModel]) -> str | None:
    """The accuracy key most models report (test before validation, never a training accuracy)."""
    counts = Counter(k for m in models for k in m.result)
    keys = [k for k, c in counts.items() if c * 2 >= len(models) and "train" not in k.lower()]
    for pattern in TARGET_PATTERNS:
        hits = [k for k in keys if re.search(pattern, k, re.IGNORECASE)]
        if hits:
            return sorted(hits, key=lambda k: (-counts[k], len(k)))[0]
    return None


def _feature(key: str, value: Any) -> float | None:
    v = finite_float(value)
    return math.log10(max(v, LOG_FLOOR)) if v is not None and key in LOG_FEATURES else v


def feature_matrix(audits: list[ModelAudit]) -> tuple[np.ndarray, list[str]]:
    """Per-layer statistics (by tensor name) plus the model summaries; NaN where a model lacks one.
    Columns are named 'tensor|stat' or 'stat'; constant columns are dropped."""
    rows = []
    for a in audits:
        feats = {f"{x['name']}|{k}": _feature(k, x[k]) for x in a.stats["layers"] for k in LAYER_FEATURES}
        feats.update({k: _feature(k, a.stats["summary"].get(k)) for k in SUMMARY_STATS})
        rows.append(feats)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    x = np.array([[np.nan if r.get(c) is None else r[c] for c in columns] for r in rows], dtype=float)
    keep = ~np.all(np.isnan(x), axis=0)
    x, columns = x[:, keep], [c for c, k in zip(columns, keep) if k]
    spread = np.nanstd(x, axis=0) > 0
    return x[:, spread], [c for c, k in zip(columns, spread) if k]


def _factor_matrix(models: list[ZooModel], factors: list[str]) -> np.ndarray | None:
    """Generating factors as numbers: numeric ones (and log10 of positive ones, e.g. learning rates), one-hot
    for the rest."""
    import pandas as pd

    if not factors:
        return None
    df = pd.DataFrame([{k: m.factors.get(k) for k in factors} for m in models])
    parts = []
    for k in factors:
        col = pd.to_numeric(df[k], errors="coerce")
        if col.notna().all() and not df[k].map(lambda v: isinstance(v, bool)).any():
            parts.append(col.to_numpy(float)[:, None])
            if (col > 0).all():
                parts.append(np.log10(col.to_numpy(float))[:, None])
        else:
            parts.append(pd.get_dummies(df[k].astype(str)).to_numpy(float))
    return np.hstack(parts)


def _oof_r2(estimator, x: np.ndarray, y: np.ndarray, cv) -> tuple[float, np.ndarray]:
    from sklearn.metrics import r2_score
    from sklearn.model_selection import cross_val_predict

    pred = cross_val_predict(estimator, x, y, cv=cv)
    return float(r2_score(y, pred)), pred


def predict_accuracy(audits: list[ModelAudit], target: str, factors: list[str]) -> AccuracyPrediction | None:
    """Ridge on standardized weight statistics, out-of-fold predictions pooled over K folds (K <= 5).

    Models are compared within one group (pretrained parents and fine-tuned children solve different
    tasks): the largest group that reports the target. None with fewer than MIN_MODELS_FOR_PREDICTION.
    """
    from sklearn.dummy import DummyRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    usable = [a for a in audits if a.stats is not None and finite_float(a.model.result.get(target)) is not None]
    if not usable:
        return None
    group = Counter(a.model.group for a in usable).most_common(1)[0][0]
    usable = [a for a in usable if a.model.group == group]
    if len(usable) < MIN_MODELS_FOR_PREDICTION:
        return None
    y = np.array([a.model.result[target] for a in usable], dtype=float)
    x, columns = feature_matrix(usable)
    folds = min(5, len(usable))
    cv = KFold(n_splits=folds, shuffle=True, random_state=0)

    def ridge():
        return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                             RidgeCV(alphas=np.logspace(-2, 4, 13)))

    baseline, _ = _oof_r2(DummyRegressor(strategy="mean"), np.zeros((len(y), 1)), y, cv)
    r2, pred = _oof_r2(ridge(), x, y, cv) if columns else (baseline, np.full_like(y, y.mean()))
    fx = _factor_matrix([a.model for a in usable], factors)
    factors_r2 = _oof_r2(ridge(), fx, y, cv)[0] if fx is not None and fx.shape[1] else None
    return AccuracyPrediction(
        target=target, group=group, n_models=len(usable), folds=folds, n_features=len(columns), r2=r2,
        baseline_r2=baseline, factors_r2=factors_r2,
        method=f"RidgeCV on {len(columns)} standardized weight statistics, {folds}-fold cross-validation",
        predictions=[{"path": a.model.path, "name": a.model.name, "actual": float(t), "predicted": float(p)}
                     for a, t, p in zip(usable, y, pred)])


def embed(audits: list[ModelAudit]) -> list[dict[str, Any]]:
    """2-D PCA of the standardized weight statistics: who resembles whom, with no labels used."""
    from sklearn.decomposition import PCA
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ok = [a for a in audits if a.stats is not None]
    if len(ok) < 3:
        return []
    x, columns = feature_matrix(ok)
    if len(columns) < 2:
        return []
    xy = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), PCA(2, random_state=0)).fit_transform(x)
    return [{"path": a.model.path, "name": a.model.name, "x": float(p[0]), "y": float(p[1])}
            for a, p in zip(ok, xy)]


def build_report(population: Population, audits: list[ModelAudit], *, target: str | None = None,
                 backend: str = "local", seconds: float = 0.0) -> ZooReport:
    order = {m.path: i for i, m in enumerate(population.models)}
    audits = sorted(audits, key=lambda a: order.get(a.model.path, len(order)))
    notes = list(population.notes)
    if target is None:
        target = pick_target(population.models)
    elif not any(target in m.result for m in population.models):
        found = sorted({k for m in population.models for k in m.result})
        raise VitdashError(f"no model reports {target!r}; result.json has: {', '.join(found) or 'nothing'}")
    factors = population.varying_factors
    prediction = predict_accuracy(audits, target, factors) if target else None
    if target and prediction is None:
        notes.append(f"accuracy prediction needs at least {MIN_MODELS_FOR_PREDICTION} audited models of one group "
                     f"that report {target!r}")
    elif not target:
        notes.append("no model reports a test/validation accuracy (result.json), so there is nothing to predict")
    failed = [a for a in audits if a.error]
    if failed:
        notes.append(f"{len(failed)} model(s) could not be read: "
                     + "; ".join(f"{a.model.name}: {a.error}" for a in failed[:3]))
    return ZooReport(root=population.root, layout=population.layout, models=audits, varying_factors=factors,
                     target=target, accuracy_prediction=prediction, embedding=embed(audits), backend=backend,
                     seconds=round(seconds, 3), notes=notes)


WORKER_BYTES = 512 << 20  # a spawned worker's interpreter, torch and vitdash, before any checkpoint


def zoo_bytes(population: Population, workers: int = 1) -> int:
    """The job queue's reservation for `audit_zoo`: each worker (this process when `workers` is 1) holds one
    member, its first checkpoint and its parent at once, each read in full, plus the audit's scratch; spawned
    workers add their own interpreter. Worker processes are not this server's resident memory, but they are
    the machine's, which is what the budget protects."""
    largest = max((_on_disk(Path(m.path)) for m in population.models), default=0)
    per_worker = 3 * largest + (64 << 20)
    return per_worker if workers == 1 else workers * (per_worker + WORKER_BYTES)


def _on_disk(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        return 0


def audit_zoo(root: str | os.PathLike | Population, *, workers: int = 1, ray: str | None = None,
              target: str | None = None, progress: ProgressFn | None = None,
              should_stop: Callable[[], bool] | None = None) -> ZooReport:
    """Discover, audit every model (streaming a Progress per model, its ModelAudit as `item`), and put the
    population together. `should_stop` is polled after each model: a stopped scan reports the models done so
    far (the workers' pending models are cancelled)."""
    population = root if isinstance(root, Population) else discover(root)
    start = time.perf_counter()
    audits = []
    scan = iter_audit(population.models, workers=workers, ray=ray)
    for a in scan:
        audits.append(a)
        if progress is not None:
            progress(Progress(len(audits), len(population.models),
                              f"{a.model.name}: {'failed' if a.error else 'done'}", item=a))
        if should_stop is not None and should_stop():
            scan.close()  # shuts the workers down, pending models cancelled
            break
    backend = f"ray ({ray})" if ray else ("in-process" if workers == 1 else f"{workers} worker processes")
    report = build_report(population, audits, target=target, backend=backend, seconds=time.perf_counter() - start)
    if len(audits) < len(population.models):
        report.notes.insert(0, f"stopped after {len(audits)} of {len(population.models)} models")
    return report
