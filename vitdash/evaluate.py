"""Does it perform? Run a checkpoint over labeled images and score its own head, fast and honestly.

The engine (`run_images`) is shared with the few-shot probe: batched `torch.inference_mode`, on CUDA bf16
autocast, channels_last, optional `torch.compile`, DataLoader workers with pinned memory and non-blocking
copies; on CPU all cores for the duration of the call. Throughput is reported twice: end to end (decode,
transform, copy, forward) and model only (a synthetic batch, after warm-up, with synchronized timing), so a
slow input pipeline is visible as the gap between the two.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from vitdash.checkpoint import Checkpoint
from vitdash.data import Dataset, LabelMapping, discover, map_labels
from vitdash.errors import VitdashError

CONFUSION_MAX_CLASSES = 50
INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "lanczos", "box", "hamming")
_PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
_PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# ----------------------------------------------------------------------------------------------- preprocessing

@dataclass
class Preprocessing:
    """The eval transform's parameters, with where each came from, so the page can show and override them."""

    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float
    interpolation: str
    crop_mode: str
    source: str
    notes: list[str] = field(default_factory=list)

    def transform(self):
        from timm.data import create_transform

        return create_transform(input_size=self.input_size, is_training=False, interpolation=self.interpolation,
                                mean=self.mean, std=self.std, crop_pct=self.crop_pct, crop_mode=self.crop_mode)

    @property
    def pil_mode(self) -> str:
        return "L" if self.input_size[0] == 1 else "RGB"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d


def _cfg_from_hf(config: Mapping[str, Any] | None, pre: Mapping[str, Any] | None) -> dict[str, Any]:
    """A timm pretrained_cfg from Hugging Face config.json / preprocessor_config.json fields."""
    cfg: dict[str, Any] = {}
    if isinstance(config, Mapping):
        size = config.get("image_size")
        if isinstance(size, int):
            cfg["input_size"] = (3, size, size)
        elif isinstance(size, (list, tuple)) and len(size) == 2:
            cfg["input_size"] = (3, int(size[0]), int(size[1]))
    if not isinstance(pre, Mapping):
        return cfg
    if pre.get("image_mean") and pre.get("image_std"):
        cfg["mean"], cfg["std"] = tuple(pre["image_mean"]), tuple(pre["image_std"])
    if pre.get("resample") in _PIL_RESAMPLE:
        cfg["interpolation"] = _PIL_RESAMPLE[pre["resample"]]

    def hw(v):
        if isinstance(v, int):
            return v, v
        if isinstance(v, Mapping) and "height" in v and "width" in v:
            return int(v["height"]), int(v["width"])
        return None

    size, crop = pre.get("size"), hw(pre.get("crop_size"))
    if pre.get("do_center_crop", crop is not None) and crop:
        cfg["input_size"] = (3, *crop)
        shortest = size.get("shortest_edge") if isinstance(size, Mapping) else size if isinstance(size, int) else None
        cfg["crop_pct"] = float(pre.get("crop_pct") or (min(crop) / shortest if shortest else 1.0))
    elif hw(size):
        cfg["input_size"], cfg["crop_pct"], cfg["crop_mode"] = (3, *hw(size)), 1.0, "squash"
    return cfg


def _own_cfg(meta: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The preprocessing the checkpoint itself declares, and which file said so."""
    if isinstance(meta.get("pretrained_cfg"), Mapping):
        return dict(meta["pretrained_cfg"]), "checkpoint pretrained_cfg"
    hf = _cfg_from_hf(meta.get("config"), meta.get("preprocessor_config"))
    if hf:
        return hf, " + ".join(k for k in ("config", "preprocessor_config") if isinstance(meta.get(k), Mapping))
    args = meta.get("args")
    if isinstance(args, Mapping):
        keys = ("input_size", "mean", "std", "crop_pct", "interpolation", "crop_mode")
        cfg = {k: args[k] for k in keys if args.get(k) is not None}
        if isinstance(args.get("img_size"), int) and "input_size" not in cfg:
            cfg["input_size"] = (3, args["img_size"], args["img_size"])
        if cfg:
            return cfg, "checkpoint training args"
    return {}, ""


def resolve_preprocessing(ckpt: Checkpoint, arch, overrides: Mapping[str, Any] | None = None) -> Preprocessing:
    """The checkpoint's own preprocessing through timm's `resolve_data_config`, then the user's overrides.

    The model's channel count always wins (a 1-channel MNIST model gets grayscale input); where nothing
    states the size, the model's own image size is used rather than timm's 224.
    """
    cfg, source = _own_cfg(ckpt.metadata)
    notes: list[str] = []
    own_hw = tuple(int(v) for v in arch.img_size)
    if "input_size" not in cfg:
        cfg["input_size"] = (arch.in_chans, *own_hw)
        notes.append(f"input size {own_hw[0]}x{own_hw[1]} from the position embedding")
    elif source == "checkpoint pretrained_cfg" and tuple(int(v) for v in cfg["input_size"][1:]) != own_hw:
        # timm's input_size is the size the position embedding was made for; a model built with another
        # img_size keeps the old cfg, so the tensors are the better witness.
        notes.append(f"pretrained_cfg says {cfg['input_size'][1]}x{cfg['input_size'][2]} but the position "
                     f"embedding is for {own_hw[0]}x{own_hw[1]}: using the latter")
        cfg["input_size"] = (arch.in_chans, *own_hw)
    if not any(k in cfg for k in ("mean", "std")):
        notes.append("mean/std not stated by the checkpoint: timm's ImageNet defaults")
    c = arch.in_chans
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in (overrides or {}).items()
            if v not in (None, "", [])}
    if isinstance(args.get("img_size"), tuple):
        h, w = args.pop("img_size")
        args["input_size"] = (c, int(h), int(w))
    for key in ("mean", "std"):
        if key in args and len(args[key]) not in (1, c):
            raise VitdashError(f"{key} override has {len(args[key])} values; the model takes {c} channel(s)")
    from timm.data import resolve_data_config

    dc = resolve_data_config(args={**args, "in_chans": c}, pretrained_cfg=cfg)
    mean, std = tuple(float(v) for v in dc["mean"]), tuple(float(v) for v in dc["std"])
    if len(mean) != c:
        notes.append(f"mean/std given for {len(mean)} channels, model takes {c}: "
                     + ("averaged" if c == 1 else "repeated"))
        mean, std = _fit_channels(mean, c), _fit_channels(std, c)
    if dc["interpolation"] not in INTERPOLATIONS:
        raise VitdashError(f"unknown interpolation {dc['interpolation']!r}; use one of {', '.join(INTERPOLATIONS)}")
    if not 0 < float(dc["crop_pct"]) <= 1.5:
        raise VitdashError(f"crop_pct {dc['crop_pct']} is out of range (0, 1.5]")
    if args:
        source = (source + " + " if source else "") + "overrides (" + ", ".join(sorted(args)) + ")"
    return Preprocessing((c, int(dc["input_size"][1]), int(dc["input_size"][2])), mean, std, float(dc["crop_pct"]),
                         dc["interpolation"], dc["crop_mode"], source or "timm defaults", notes)


def _fit_channels(values: tuple[float, ...], c: int) -> tuple[float, ...]:
    if c == 1:
        return (float(np.mean(values)),)
    if len(values) == 1:
        return values * c
    raise VitdashError(f"cannot fit {len(values)} normalization values to a {c}-channel model")


# ------------------------------------------------------------------------------------------------------ engine

@dataclass
class EngineOptions:
    """How to run: 'auto' picks CUDA with bf16 autocast when there is a GPU, else fp32 on all CPU cores."""

    device: str = "auto"
    batch_size: int = 64
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    channels_last: bool = True  # CUDA only: the patch-embedding conv is faster in NHWC
    compile: bool = False
    num_workers: int | None = None  # None: min(8, cores) on CUDA, 0 on CPU (workers would steal the cores)
    limit: int | None = None

    def resolve(self) -> tuple[torch.device, torch.dtype]:
        name = self.device.lower()
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise VitdashError("--device cuda was asked for but no CUDA GPU is available (use auto or cpu)")
        if name not in ("cpu",) and not name.startswith("cuda"):
            raise VitdashError(f"unknown device {self.device!r}: use auto, cpu or cuda")
        if self.batch_size < 1:
            raise VitdashError(f"batch size must be at least 1, got {self.batch_size}")
        device = torch.device(name)
        prec = self.precision.lower()
        if prec == "auto":
            prec = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
        if prec not in _PRECISIONS:
            raise VitdashError(f"unknown precision {self.precision!r}: use auto, fp32, bf16 or fp16")
        return device, _PRECISIONS[prec]

    def workers(self, device: torch.device) -> int:
        if self.num_workers is not None:
            return max(0, self.num_workers)
        return min(8, cpu_count()) if device.type == "cuda" else 0


def cpu_count() -> int:
    """Cores this process may use (the affinity mask, which containers set), not the host's total."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cpu_threads(device: torch.device):
    """All cores for the duration of one evaluation on CPU, then back to what the caller had."""
    return torch_threads(cpu_count() if device.type == "cpu" else torch.get_num_threads())


def dtype_name(dtype: torch.dtype) -> str:
    return "float32" if dtype == torch.float32 else f"{str(dtype).removeprefix('torch.')} autocast"


def prepare_forward(model: nn.Module, device: torch.device, dtype: torch.dtype, opts: EngineOptions,
                    features: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model moved, laid out and optionally compiled, wrapped in autocast; `features` gives pre-logits."""
    model = model.eval().to(device)
    if device.type == "cuda" and opts.channels_last:
        model = model.to(memory_format=torch.channels_last)

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            if features:
                return model.forward_head(model.forward_features(x), pre_logits=True)
            return model(x)

    return torch.compile(forward) if opts.compile else forward


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_model_throughput(forward: Callable[[torch.Tensor], torch.Tensor], input_size: tuple[int, int, int],
                             batch_size: int, device: torch.device, channels_last: bool = True, warmup: int = 2,
                             iters: int = 5, max_seconds: float = 2.0) -> float:
    """Images/s of the forward alone on a synthetic batch: warm-up (allocator, autotune, compile), then
    synchronized timing over `iters` batches, stopping early after `max_seconds` (at least one batch)."""
    x = torch.randn((batch_size, *input_size), device=device)
    if device.type == "cuda" and channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for _ in range(warmup):
            forward(x)
        _synchronize(device)
        n, start = 0, time.perf_counter()
        while n < iters:
            forward(x)
            n += 1
            _synchronize(device)
            if time.perf_counter() - start >= max_seconds:
                break
        elapsed = time.perf_counter() - start
    return n * batch_size / elapsed


@dataclass
class Progress:
    done: int
    total: int
    skipped: int
    elapsed_s: float

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    @property
    def eta_s(self) -> float | None:
        return self.elapsed_s / self.done * (self.total - self.done) if self.done else None


class _Images(torch.utils.data.Dataset):
    """Decoded, transformed images; an unreadable file yields None plus the reason instead of an exception."""

    def __init__(self, ds: Dataset, prep: Preprocessing):
        self.ds, self.transform, self.mode = ds, prep.transform(), prep.pil_mode

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        try:
            return self.transform(self.ds.load(i, self.mode)), self.ds.labels[i], ""
        except VitdashError as e:
            return None, self.ds.labels[i], str(e)


def _collate(batch):
    ok = [b for b in batch if b[0] is not None]
    bad = [b[2] for b in batch if b[0] is None]
    x = torch.stack([b[0] for b in ok]) if ok else None
    return x, torch.tensor([b[1] for b in ok], dtype=torch.long), bad


@dataclass
class RunStats:
    n_images: int
    skipped: list[str]
    elapsed_s: float
    cancelled: bool
    num_workers: int

    @property
    def images_per_s(self) -> float:
        return self.n_images / self.elapsed_s if self.elapsed_s > 0 else 0.0


def run_images(ds: Dataset, prep: Preprocessing, step: Callable[[torch.Tensor, torch.Tensor], None],
               device: torch.device, opts: EngineOptions, progress: Callable[[Progress], None] | None = None,
               should_stop: Callable[[], bool] | None = None) -> RunStats:
    """Feed every image through `step(x_on_device, labels)`, batch by batch, under inference_mode.

    `should_stop` is polled before each batch (the page's cancel button sets it); a stopped run returns
    the statistics of what was done, flagged `cancelled`.
    """
    workers = opts.workers(device)
    cuda = device.type == "cuda"
    loader = torch.utils.data.DataLoader(
        _Images(ds, prep), batch_size=opts.batch_size, shuffle=False, num_workers=workers, collate_fn=_collate,
        pin_memory=cuda, prefetch_factor=4 if workers else None, persistent_workers=False)
    done, failed = 0, []
    batches = iter(loader)
    start = time.perf_counter()
    with torch.inference_mode():
        while not (cancelled := should_stop is not None and should_stop()):
            # Without workers the transforms' small tensor ops run here; with intra-op threads they spend far
            # more time synchronizing than computing (10x slower on a busy 2-core machine), so load on one.
            with torch_threads(1) if workers == 0 else nullcontext():
                batch = next(batches, None)
            if batch is None:
                break
            x, y, bad = batch
            failed += bad
            if x is not None:
                x = x.to(device, non_blocking=True)
                if cuda and opts.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                step(x, y)
                done += len(y)
            if progress is not None:
                progress(Progress(done + len(failed), len(ds), len(failed), time.perf_counter() - start))
    _synchronize(device)
    skipped = [f"{f}: {r}" for f, r in ds.skipped] + failed  # unlabeled at discovery, then undecodable
    return RunStats(done, skipped, time.perf_counter() - start, cancelled, workers)


# -------------------------------------------------------------------------------------------------- evaluation

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score(top_k: np.ndarray, labels: np.ndarray, mapping: LabelMapping, class_names: list[str]) -> dict[str, Any]:
    """Top-1/top-k, per-class accuracy and confusion from the head's top-k outputs and the data labels."""
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
        to_data = {h: c for c, h in enumerate(mapping.head_index)}
        pred = np.array([to_data.get(int(p), n_cls) for p in top_k[:, 0]], dtype=int)
        matrix = np.zeros((n_cls, n_cls + 1), dtype=int)
        np.add.at(matrix, (labels, pred), 1)
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
             overrides: Mapping[str, Any] | None = None, progress: Callable[[Progress], None] | None = None,
             should_stop: Callable[[], bool] | None = None, measure_throughput: bool = True) -> EvalResult:
    """Score the checkpoint's own head on `data` (a folder, 'digits', or a `Dataset`)."""
    from vitdash.architecture import infer_architecture
    from vitdash.family import reference_top1
    from vitdash.model import build_model

    opts = options or EngineOptions()
    device, dtype = opts.resolve()
    ds = (data if isinstance(data, Dataset) else discover(data)).limited(opts.limit)
    arch = infer_architecture(ckpt)
    mapping = map_labels(ds, ckpt.metadata, arch.num_classes)
    prep = resolve_preprocessing(ckpt, arch, overrides)
    k = min(5, arch.num_classes)
    tops: list[np.ndarray] = []
    labels: list[np.ndarray] = []

    with cpu_threads(device):
        forward = prepare_forward(build_model(ckpt, arch), device, dtype, opts)

        def step(x: torch.Tensor, y: torch.Tensor) -> None:
            tops.append(forward(x).float().topk(k, dim=1).indices.cpu().numpy())
            labels.append(y.numpy())

        stats = run_images(ds, prep, step, device, opts, progress, should_stop)
        model_ips = (measure_model_throughput(forward, prep.input_size, opts.batch_size, device, opts.channels_last)
                     if measure_throughput and not stats.cancelled else None)

    top_k = np.concatenate(tops) if tops else np.zeros((0, k), dtype=int)
    y = np.concatenate(labels) if labels else np.zeros(0, dtype=int)
    if not len(y) and not stats.cancelled:
        raise VitdashError(f"none of the {len(ds)} files in {ds.root} could be read as an image")
    scores = score(top_k, y, mapping, ds.class_names())
    reference = reference_top1(ckpt, arch)
    warnings = ([mapping.warning] if mapping.warning else []) + prep.notes + ds.notes
    if stats.cancelled:
        warnings.insert(0, f"cancelled after {stats.n_images} of {len(ds)} images: partial result")
    return EvalResult(
        checkpoint=ckpt.name or ckpt.source, data=ds.to_dict(), top1=scores["top1"],
        top1_ci95=wilson_interval(scores["top1_hits"], len(y)), top5=scores["top5"],
        top5_k=k, n_images=stats.n_images, n_skipped=len(stats.skipped), skipped=stats.skipped[:50],
        n_classes=len(ds.classes), num_outputs=arch.num_classes, chance_top1=1 / arch.num_classes,
        chance_top5=k / arch.num_classes, reference_top1=None if reference is None else reference / 100,
        label_mapping=mapping.to_dict(), per_class=scores["per_class"], confusion=scores["confusion"],
        preprocessing=prep.to_dict(), device=str(device), dtype=dtype_name(dtype), batch_size=opts.batch_size,
        num_workers=stats.num_workers, compiled=opts.compile, images_per_s=stats.images_per_s,
        model_images_per_s=model_ips, elapsed_s=stats.elapsed_s, cancelled=stats.cancelled, warnings=warnings)
