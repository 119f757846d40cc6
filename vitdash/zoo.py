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

import json
import math
import os
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from vitdash.errors import VitdashError

# Ray Tune writes these beside the metrics in every result.json record; they are bookkeeping, not results.
RAY_BOOKKEEPING = {
    "timestamp", "time_this_iter_s", "time_total_s", "time_since_restore", "iterations_since_restore",
    "timesteps_total", "timesteps_since_restore", "episodes_total", "pid", "done", "date", "hostname",
    "node_ip", "trial_id", "experiment_id", "experiment_tag", "config", "checkpoint_dir_name",
    "should_checkpoint",
}
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

ProgressFn = Callable[[int, int, "ModelAudit"], None]


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


# ---- discovery ---------------------------------------------------------------------------------------------------

@dataclass
class ZooModel:
    """One member of the population, as found on disk (nothing read but JSON)."""

    path: str  # what `vitdash.sources.load` takes (absolute)
    name: str  # relative to the population's root
    group: str = ""  # 'pretraining' | 'finetuning' | '' (plain folder)
    parent: str | None = None  # the parent's `path`
    parent_checkpoint: str | None = None  # the parent's epoch named in the config, if not its last
    factors: dict[str, Any] = field(default_factory=dict)
    result: dict[str, float] = field(default_factory=dict)  # final epoch's metrics
    epochs: int = 0
    init: str | None = None  # the first of several checkpoints in the folder: the init when epoch 0 was saved

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "name": self.name, "group": self.group, "parent": self.parent,
                "parent_checkpoint": self.parent_checkpoint, "factors": dict(self.factors),
                "result": dict(self.result), "epochs": self.epochs, "init_checkpoint": self.init}


@dataclass
class Population:
    root: str
    layout: str  # 'model_zoo' | 'folder'
    models: list[ZooModel]
    notes: list[str] = field(default_factory=list)

    @property
    def varying_factors(self) -> list[str]:
        """The generating factors: config entries that differ between the models that have them (the
        constants are settings; a key only the children have, such as the parent's path, varies only
        when there are several parents)."""
        keys = list(dict.fromkeys(k for m in self.models for k in m.factors))
        return [k for k in keys if len({json.dumps(m.factors[k], sort_keys=True, default=str)
                                        for m in self.models if k in m.factors}) > 1]


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalar config entries; nested dicts joined with '::' (Ray Tune's own convention), lists as JSON."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "::"))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(v, default=str)
        elif isinstance(v, (str, int, float, bool)) or v is None:
            out[key] = v
    return out


def _final_metrics(result: Any) -> tuple[dict[str, float], int]:
    """(numeric metrics of the last record, number of records) from result.json (JSON lines or a dict)."""
    records = [r for r in result if isinstance(r, Mapping)] if isinstance(result, list) else (
        [result] if isinstance(result, Mapping) else [])
    if not records:
        return {}, 0
    last = records[-1]
    metrics = {k: float(v) for k, v in last.items()
               if k not in RAY_BOOKKEEPING and _num(v) is not None}
    return metrics, len(records)


def _zoo_checkpoints(folder: Path) -> list[Path]:
    return sorted(p / "checkpoints" for p in folder.glob("checkpoint_*") if (p / "checkpoints").is_file())


def _model_from(path: Path, root: Path) -> ZooModel:
    from vitdash.sources import folder_metadata

    rel = path.relative_to(root)
    parts = rel.parts
    group = ("pretraining" if len(parts) >= 2 and parts[-2] == "pretraining" else
             "finetuning" if len(parts) >= 3 and parts[-3] == "finetuning" else "")
    model = ZooModel(path=str(path), name=str(rel), group=group)
    if path.is_dir():
        meta = folder_metadata(path)
        config = meta.get("config") if isinstance(meta.get("config"), Mapping) else meta.get("params")
        if isinstance(config, Mapping):
            model.factors = _flatten(config)
        model.result, model.epochs = _final_metrics(meta.get("result"))
        ckpts = _zoo_checkpoints(path)
        if len(ckpts) >= 2:
            model.init = str(ckpts[0])
    return model


def _pretrained_refs(model: ZooModel) -> list[Path]:
    """Config values naming the checkpoint a model was fine-tuned from (keys that mention 'pretrain')."""
    return [Path(v).expanduser() for k, v in model.factors.items()
            if isinstance(v, str) and v and "pretrain" in k.lower()]


def _epoch_checkpoint(parent: Path, ref: Path) -> str | None:
    """The parent's epoch a child started from, when its config names one that exists here
    (`.../checkpoint_000049/checkpoints`); None means the parent's last checkpoint."""
    if len(ref.parts) < 2 or not ref.parts[-2].startswith("checkpoint_"):
        return None
    found = parent / ref.parts[-2] / ref.name
    return str(found) if found.is_file() else None


def _link_parents(models: list[ZooModel], root: Path, notes: list[str]) -> None:
    """Zoo layout: finetuning/<parent>/<model> belongs to pretraining/<parent>. Otherwise a config entry
    naming a pretrained checkpoint (e.g. `pretrained::model::path`) inside another member: by path, or,
    for absolute paths from the machine that trained the zoo, by a member's (unique) folder name."""
    by_path = {Path(m.path) for m in models}
    names = Counter(p.name for p in by_path)
    for m in models:
        here, refs, parent = Path(m.path), _pretrained_refs(m), None
        parts = Path(m.name).parts
        if m.group == "finetuning":
            want = root.joinpath(*parts[:-3], "pretraining", parts[-2])
            if want in by_path:
                parent = want
            else:
                notes.append(f"{m.name}: its parent pretraining/{parts[-2]} is not in this folder")
        for ref in refs:
            if parent is not None:
                break
            base_dir = here if here.is_dir() else here.parent
            tries = [ref] if ref.is_absolute() else [base_dir / ref, root / ref]
            candidates = [Path(os.path.normpath(c)) for c in tries]
            parent = next((p for c in candidates for p in (c, *c.parents) if p in by_path and p != here), None)
            if parent is None:
                parent = next((p for p in sorted(by_path) if p != here and names[p.name] == 1 and p.name in ref.parts),
                              None)
        if parent is not None:
            m.parent = str(parent)
            m.parent_checkpoint = next((c for r in refs if (c := _epoch_checkpoint(parent, r))), None)


def discover(root: str | os.PathLike) -> Population:
    """The models under `root`: the ViT Model Zoo layout (`pretraining/<model>`, `finetuning/<parent>/<model>`)
    or any folder of checkpoint files and model folders (found like the library finds them)."""
    from vitdash.library import scan_folder

    base = Path(root).expanduser().resolve()
    if not base.is_dir():
        raise VitdashError(f"{base} is not a folder: give the folder that holds the population")
    paths = [Path(e.source) for e in scan_folder(base)]
    if paths == [base]:
        raise VitdashError(f"{base} is a single model, not a population: give the folder that holds several")
    if not paths:
        raise VitdashError(f"no checkpoints found under {base} (looked for model folders with config.json "
                           "and for .safetensors/.pth/.pt/.bin/.npz/.onnx files)")
    rank = {"pretraining": 0, "finetuning": 1}
    models = sorted((_model_from(p, base) for p in paths), key=lambda m: (rank.get(m.group, 2), m.name))
    notes: list[str] = []
    _link_parents(models, base, notes)
    layout = "model_zoo" if any(m.group for m in models) else "folder"
    return Population(str(base), layout, models, notes)


# ---- one model ---------------------------------------------------------------------------------------------------

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
    from vitdash.compare import compare
    from vitdash.sources import load

    cmp = compare(load(reference), ckpt, verdicts=False)
    return {t.name: t.rel_change for t in cmp.tensors}, cmp.rel_change, cmp.head.status


def _model_stats(model: ZooModel) -> dict[str, Any]:
    from vitdash.roles import MATRIX_ROLES
    from vitdash.sources import load
    from vitdash.verdict import audit

    ckpt = load(model.path)
    aud = audit(ckpt)
    to_init, dist_init, _ = _distances(model.init, ckpt)
    to_parent, dist_parent, head = _distances(model.parent_checkpoint or model.parent, ckpt)
    layers = []
    for t in aud.tensors:
        m = t.stats["moments"]
        numel, mean, std = m["numel"], m["mean"] or 0.0, m["std"] or 0.0
        layers.append({
            "name": t.name, "role": t.role, "group": t.group, "shape": t.shape, "verdict": t.verdict,
            "norm": math.sqrt(numel * (std * std + mean * mean)), "mean": m["mean"], "std": m["std"],
            "excess_kurtosis": m["excess_kurtosis"], "structure": _num(t.stats.get("structure")),
            "rel_to_init": _num(to_init.get(t.name)), "rel_to_parent": _num(to_parent.get(t.name))})
    matrices = [x for x in layers if x["role"] in MATRIX_ROLES and len(x["shape"]) >= 2]
    structures = [x["structure"] for x in layers if x["structure"] is not None]
    pos = next((x["structure"] for x in layers if x["role"] == "pos_embed"), None)

    def mean_of(key: str) -> float | None:
        vals = [x[key] for x in matrices if _num(x[key]) is not None]
        return statistics.fmean(vals) if vals else None

    summary = {
        "verdict": aud.verdict, "num_params": ckpt.num_params, "layout": ckpt.layout,
        "norm": math.sqrt(sum(x["norm"] ** 2 for x in layers)),
        "matrix_std": mean_of("std"), "matrix_kurtosis": mean_of("excess_kurtosis"),
        "structure_median": statistics.median(structures) if structures else None,
        "structure_max": max(structures) if structures else None, "pos_structure": pos,
        "trained_share": sum(x["verdict"] == "trained" for x in layers) / len(layers),
        "dist_init": _num(dist_init), "dist_parent": _num(dist_parent), "head_vs_parent": head,
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


# ---- running many ------------------------------------------------------------------------------------------------

def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _local(models: list[ZooModel], workers: int) -> Iterator[ModelAudit]:
    if workers == 1:
        for m in models:
            yield audit_model(m)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                               initializer=_set_threads, initargs=(threads,))
    try:
        futures = [pool.submit(audit_model, m) for m in models]
        for f in as_completed(futures):
            yield f.result()
    except BrokenProcessPool:
        raise VitdashError("a worker process died (killed for memory?): try fewer --workers") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise VitdashError("--ray needs the 'ray' package, which is not installed: pip install ray "
                           "(or run without --ray to use local worker processes)") from None
    return ray


def _ray(models: list[ZooModel], address: str) -> Iterator[ModelAudit]:
    """One Ray task per model (1 CPU each) on an existing cluster; an already-connected session is reused.

    The checkpoints are read by the tasks, so they must lie on a filesystem every node sees. vitdash
    itself travels with the job (`py_modules`) when this function connects, so nodes need not install it.
    """
    ray = _import_ray()
    package = Path(__file__).resolve().parent
    owns = not ray.is_initialized()
    if owns:
        try:
            ray.init(address=address, runtime_env={"py_modules": [str(package)]}, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise VitdashError(f"could not connect to the Ray cluster at {address!r}: {str(e).splitlines()[0]} "
                               "(start one with `ray start --head`, or pass its address)") from None
        task = ray.remote(num_cpus=1)(audit_model)
    else:  # the caller's session: make vitdash importable on its workers from this checkout
        env = {"PYTHONPATH": os.pathsep.join(p for p in (str(package.parent), os.environ.get("PYTHONPATH")) if p)}
        task = ray.remote(num_cpus=1)(audit_model).options(runtime_env={"env_vars": env})
    pending = [task.remote(m) for m in models]
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                yield ray.get(done[0])
            except ray.exceptions.RayError as e:  # the task itself died: a worker lost, vitdash not importable
                raise VitdashError(f"a Ray task failed: {str(e).strip().splitlines()[-1][:300]}") from None
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if owns:
            ray.shutdown()


def iter_audit(models: Iterable[ZooModel], *, workers: int = 1, ray: str | None = None) -> Iterator[ModelAudit]:
    """Audit every model, yielding each as it finishes (completion order, not input order).

    `workers=1` runs here; more spawn that many processes; `ray` (an address or 'auto') sends one
    task per model to a Ray cluster instead.
    """
    models = list(models)
    if workers < 1:
        raise VitdashError(f"workers must be at least 1 (got {workers})")
    if ray:
        yield from _ray(models, ray)
    else:
        yield from _local(models, min(workers, max(len(models), 1)))


# ---- the population ----------------------------------------------------------------------------------------------

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
    v = _num(value)
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

    usable = [a for a in audits if a.stats is not None and _num(a.model.result.get(target)) is not None]
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


def audit_zoo(root: str | os.PathLike | Population, *, workers: int = 1, ray: str | None = None,
              target: str | None = None, progress: ProgressFn | None = None) -> ZooReport:
    """Discover, audit every model (streaming `progress(done, total, audit)`), and put the population together."""
    population = root if isinstance(root, Population) else discover(root)
    start = time.perf_counter()
    audits = []
    for a in iter_audit(population.models, workers=workers, ray=ray):
        audits.append(a)
        if progress is not None:
            progress(len(audits), len(population.models), a)
    backend = f"ray ({ray})" if ray else ("in-process" if workers == 1 else f"{workers} worker processes")
    return build_report(population, audits, target=target, backend=backend, seconds=time.perf_counter() - start)
