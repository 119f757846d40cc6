"""Linear few-shot probe: is there learned structure in the features, whatever the head says?

For backbones whose head cannot score the data (DINOv2, MAE, in21k heads, fresh heads) the evidence of
pretraining is how well frozen pre-logit features separate classes from a few examples. The probe is the
closed-form regularized least-squares classifier of the ViT paper's few-shot evaluation, as big_vision's
`fewshot_lsr` runs it: features whitened with the training shots' statistics, targets in {-1, 1}^K, an
unregularized bias and a fixed L2 penalty of 2**10 (scikit-learn's `RidgeClassifier`). Accuracy is the mean
per-class accuracy on every image not drawn for training. The same probe on a random-init twin of the same
architecture runs on the same images and splits: the gap between the two is what pretraining bought.

The checkpoint and its twin run one after the other, each over every image, so only one model is in memory
at a time (decoding the images twice costs far less than a second ViT-L's weights).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from vitdash.common.results import Progress, ProgressFn
from vitdash.data.datasets import Dataset, discover, group_coarse
from vitdash.errors import VitdashError
from vitdash.identity.architecture import ArchSpec, infer_architecture
from vitdash.identity.model import build_model, build_random_twin
from vitdash.identity.preprocessing import resolve_preprocessing
from vitdash.load.checkpoint import Checkpoint
from vitdash.perform.engine import EngineOptions, cpu_threads, dtype_name, prepare_forward, run_images
from vitdash.perform.memory import activation_bytes

DEFAULT_SHOTS = (1, 5, 10, 25)
L2_REG = 2.0 ** 10  # big_vision's default l2_reg for few-shot linear evaluation


@dataclass
class ShotScore:
    shots: int
    accuracy_mean: float
    accuracy_std: float
    random_init_accuracy_mean: float | None
    random_init_accuracy_std: float | None
    n_splits: int
    n_test: int


@dataclass
class FewShotResult:
    """Few-shot accuracy (mean per-class accuracy over random splits) of the checkpoint and of its random twin."""

    checkpoint: str
    data: dict[str, Any]
    results: list[ShotScore]
    skipped_shots: list[int]
    n_images: int
    n_skipped: int
    skipped: list[str]
    n_classes: int
    classes: list[str]
    chance: float
    feature_dim: int
    probe: str
    preprocessing: dict[str, Any]
    device: str
    dtype: str
    images_per_s: float
    elapsed_s: float
    cancelled: bool
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rows(self) -> list[dict[str, Any]]:
        """One table row per shot count: the checkpoint's accuracy (mean ± std over splits) and its twin's."""
        return [{"shots": s.shots, "checkpoint": f"{s.accuracy_mean:.1%} ± {s.accuracy_std:.1%}",
                 "random twin": "-" if s.random_init_accuracy_mean is None else f"{s.random_init_accuracy_mean:.1%}",
                 "test images": s.n_test} for s in self.results]


def probe(features: np.ndarray, labels: np.ndarray, shots: int, n_splits: int = 5, seed: int = 0,
          l2_reg: float = L2_REG) -> tuple[list[float], int]:
    """Accuracy of the least-squares probe trained on `shots` images per class, once per random split.

    Features are standardized with the training shots' statistics; every image not drawn for training
    is a test image. Returns the per-split accuracies and the number of test images per split.
    """
    from sklearn.linear_model import RidgeClassifier
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classes = np.unique(labels)
    by_class = [np.flatnonzero(labels == c) for c in classes]
    if min(len(ix) for ix in by_class) <= shots:
        raise VitdashError(f"{shots}-shot needs more than {shots} images in every class")
    rng = np.random.default_rng(seed)
    accs, n_test = [], 0
    for _ in range(n_splits):
        train = np.concatenate([rng.choice(ix, shots, replace=False) for ix in by_class])
        test = np.setdiff1d(np.arange(len(labels)), train)
        clf = make_pipeline(StandardScaler(), RidgeClassifier(alpha=l2_reg))
        clf.fit(features[train], labels[train])
        # mean per-class accuracy: with unequal class sizes plain accuracy would reward the big class
        accs.append(float(balanced_accuracy_score(labels[test], clf.predict(features[test]))))
        n_test = len(test)
    return accs, n_test


def _collect(forward: Callable[[torch.Tensor], torch.Tensor], out: list[np.ndarray],
             labels: list[np.ndarray] | None) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """A `run_images` step keeping one model's features (and, on the first pass, the labels)."""

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        out.append(forward(x).float().cpu().numpy())
        if labels is not None:
            labels.append(y.numpy())

    return step


def feasible_shots(ds: Dataset, shots: Sequence[int]) -> tuple[list[int], list[int]]:
    """The shot counts the data allows (every class needs at least one test image beyond the shots)."""
    smallest = min(c for c in ds.class_counts() if c > 0)
    ok = sorted({int(k) for k in shots if 0 < k < smallest})
    return ok, sorted({int(k) for k in shots} - set(ok))


def fewshot(ckpt: Checkpoint, data: str | Dataset, shots: Sequence[int] = DEFAULT_SHOTS, n_splits: int = 5,
            seed: int = 0, coarse: bool = False, random_twin: bool = True, options: EngineOptions | None = None,
            overrides: Mapping[str, Any] | None = None, progress: ProgressFn | None = None,
            should_stop: Callable[[], bool] | None = None, arch: ArchSpec | None = None) -> FewShotResult:
    """Probe the checkpoint's frozen features (and its random twin's) on `data` with k images per class; `arch`:
    the checkpoint's architecture when the caller has read it already."""

    opts = options or EngineOptions()
    device, dtype = opts.resolve()
    ds = data if isinstance(data, Dataset) else discover(data)
    if coarse:
        ds = group_coarse(ds)
    ds = ds.limited(opts.limit)
    if len(ds.classes) < 2:
        raise VitdashError(f"a probe needs at least 2 classes; {ds.name} has {len(ds.classes)}")
    ok_shots, skipped_shots = feasible_shots(ds, shots)
    if not ok_shots:
        raise VitdashError(
            f"no requested shot count fits the data: the smallest class has {min(ds.class_counts())} images "
            + ("(for ImageNet images with one image per class, group them: --coarse)" if ds.synset_classes else ""))
    arch = arch or infer_architecture(ckpt)
    prep = resolve_preprocessing(ckpt, arch, overrides)
    batch = opts.batch_for(device, activation_bytes(arch, prep.input_size))
    builders = [lambda: build_model(ckpt, arch)] + ([lambda: build_random_twin(ckpt, arch)] if random_twin else [])
    feats: list[list[np.ndarray]] = [[] for _ in builders]
    labels: list[np.ndarray] = []

    def passes(i: int) -> ProgressFn | None:
        """One bar over both passes: the twin's pass continues where the checkpoint's ended."""
        if progress is None:
            return None
        return lambda p: progress(replace(p, done=p.done + i * len(ds), total=len(builders) * len(ds),
                                          elapsed_s=p.elapsed_s + elapsed,
                                          message=f"{('checkpoint', 'random twin')[i]}: {p.message}"))

    elapsed = 0.0
    runs = []
    with cpu_threads(device):
        # One model resident at a time, each over all images (the order is fixed, so the features line up):
        # the twin of a ViT-L is as large as the checkpoint, and only one needs to be in memory at once.
        for i, build in enumerate(builders):
            if progress is not None:
                progress(Progress(i * len(ds), len(builders) * len(ds), ("building the model" + (
                    " (then its random-init twin)" if random_twin else ""), "building its random-init twin")[i]))
            forward = prepare_forward(build(), device, dtype, opts, features=True)
            step = _collect(forward, feats[i], labels if i == 0 else None)
            runs.append(run_images(ds, prep, step, device, opts, passes(i), should_stop, batch_size=batch))
            del forward, step  # the only references to this pass's model: freed before the next one is built
            elapsed += runs[-1].elapsed_s
            if runs[-1].cancelled:
                break
    stats, cancelled = runs[0], any(r.cancelled for r in runs)  # the checkpoint's pass counts the images

    warnings = prep.notes + ds.notes
    y = np.concatenate(labels) if labels else np.zeros(0, dtype=int)
    results: list[ShotScore] = []
    if cancelled:
        done = sum(r.n_images for r in runs)
        warnings.insert(0, f"cancelled after {done} of {len(builders) * len(ds)} image passes: no probe was fitted")
    elif not len(y):
        raise VitdashError(f"none of the {len(ds)} files in {ds.root} could be read as an image")
    else:
        counts = np.bincount(y, minlength=len(ds.classes))
        if (counts == 0).any():
            warnings.append("classes with no readable image were left out: "
                            + ", ".join(c for c, n in zip(ds.classes, counts) if n == 0))
        present = counts[counts > 0]
        for k in ok_shots:
            if k >= present.min():
                skipped_shots.append(k)
                continue
            scores = [probe(np.concatenate(f), y, k, n_splits, seed) for f in feats]
            acc, n_test = scores[0]
            twin = scores[1][0] if random_twin else None
            results.append(ShotScore(k, float(np.mean(acc)), float(np.std(acc)),
                                     float(np.mean(twin)) if twin else None, float(np.std(twin)) if twin else None,
                                     n_splits, n_test))
    n_present = int((np.bincount(y, minlength=len(ds.classes)) > 0).sum()) if len(y) else len(ds.classes)
    return FewShotResult(
        checkpoint=ckpt.name or ckpt.source, data=ds.to_dict(), results=results,
        skipped_shots=sorted(skipped_shots), n_images=stats.n_images,
        n_skipped=len(stats.skipped), skipped=stats.skipped[:50],
        n_classes=len(ds.classes), classes=ds.class_names(), chance=1 / n_present,
        feature_dim=int(feats[0][0].shape[1]) if feats[0] else 0,
        probe=f"whitened features, least squares to {{-1,1}}^K with L2 {L2_REG:g} (RidgeClassifier), "
              f"{n_splits} random splits, mean per-class accuracy on the images not drawn",
        preprocessing=prep.to_dict(), device=str(device), dtype=dtype_name(dtype),
        images_per_s=sum(r.n_images for r in runs) / elapsed if elapsed > 0 else 0.0, elapsed_s=elapsed,
        cancelled=cancelled, warnings=warnings)
