"""The batched forward engine: device and precision options, CPU threads, a data loader over a `Dataset`,
throughput measurement, and progress reports."""
from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace

import torch
from torch import nn

from vitdash.common.compute import cpu_count, one_thread, torch_threads
from vitdash.common.results import Progress, ProgressFn
from vitdash.data.datasets import Dataset
from vitdash.data.transforms import Preprocessing
from vitdash.errors import VitdashError

_PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


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
    batch_mb: float = 512.0  # CPU: the batch shrinks until one block's activations fit this (see `batch_for`)

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

    def batch_for(self, device: torch.device, bytes_per_image: int) -> int:
        """`batch_size`, shrunk on CPU so a batch's activations stay under `batch_mb`: 64 DINOv2 images at
        518 px (1,370 tokens each) need ~1.9 GB in every block, where 64 ViT-S images at 224 px need ~270 MB.
        On CUDA the activations live on the GPU and the batch is left as asked."""
        if device.type != "cpu" or bytes_per_image <= 0:
            return self.batch_size
        return max(1, min(self.batch_size, int(self.batch_mb * (1 << 20)) // bytes_per_image))

    def workers(self, device: torch.device) -> int:
        if self.num_workers is not None:
            return max(0, self.num_workers)
        return min(8, cpu_count()) if device.type == "cuda" else 0


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


def duration(seconds: float | None) -> str:
    """Seconds in words for progress and estimates: '42 s', '2.5 min' ("..." while unknown)."""
    if seconds is None:
        return "..."
    if seconds >= 5400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _progress(done: int, total: int, elapsed_s: float, skipped: int) -> Progress:
    """A run's progress in words: images done, rate, time left, files skipped."""
    p = Progress(done, total, elapsed_s=elapsed_s, skipped=skipped)
    rate = done / elapsed_s if elapsed_s else 0.0
    text = f"{done}/{total} images · {rate:.1f} images/s · ETA {duration(p.eta_s)}"
    return replace(p, message=text + (f" · {skipped} skipped" if skipped else ""))


# On CPU a batch of 64 large images takes minutes (DINOv2 at 518 px: ~3 s an image on 2 cores), so the batch is fed
# to the model in chunks sized to take about this long: the bar moves and a cancel is seen between chunks.
CPU_CHUNK_S = 1.0


def run_images(ds: Dataset, prep: Preprocessing, step: Callable[[torch.Tensor, torch.Tensor], None],
               device: torch.device, opts: EngineOptions, progress: ProgressFn | None = None,
               should_stop: Callable[[], bool] | None = None, batch_size: int | None = None) -> RunStats:
    """Feed every image through `step(x_on_device, labels)`, batch by batch, under inference_mode.

    `should_stop` is polled before each batch (and each CPU chunk; the page's cancel button sets it); a stopped
    run returns the statistics of what was done, flagged `cancelled`. Progress is reported before the first
    images are read and after every chunk, so it moves from the first second. `batch_size` overrides the
    options' (a caller that shrank it to fit memory: `EngineOptions.batch_for`); it also caps the CPU chunk.
    """
    workers = opts.workers(device)
    cuda = device.type == "cuda"
    batch_size = batch_size or opts.batch_size
    loader = torch.utils.data.DataLoader(
        _Images(ds, prep), batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_collate,
        pin_memory=cuda, prefetch_factor=4 if workers else None, persistent_workers=False)
    done, failed = 0, []
    batches = iter(loader)
    start = time.perf_counter()
    stop = should_stop or (lambda: False)
    chunk = 1  # CPU: images per step, grown to about CPU_CHUNK_S of work once one image was timed

    def report() -> None:
        if progress is not None:
            progress(_progress(done + len(failed), len(ds), time.perf_counter() - start, len(failed)))

    if progress is not None:
        progress(Progress(0, len(ds), f"reading the first {min(batch_size, len(ds))} images..."))
    with torch.inference_mode():
        while not (cancelled := stop()):
            # Without workers the transforms' small tensor ops run here; with intra-op threads they spend far
            # more time synchronizing than computing (10x slower on a busy 2-core machine), so load on one.
            with one_thread() if workers == 0 else nullcontext():
                batch = next(batches, None)
            if batch is None:
                break
            x, y, bad = batch
            failed += bad
            if x is not None:
                x = x.to(device, non_blocking=True)
                if cuda and opts.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                at = 0
                while at < len(y):
                    size = len(y) if cuda else chunk
                    t0 = time.perf_counter()
                    step(x[at:at + size], y[at:at + size])
                    took = time.perf_counter() - t0
                    done, at = done + len(y[at:at + size]), at + size
                    if not cuda:
                        chunk = max(1, min(batch_size, int(CPU_CHUNK_S * size / max(took, 1e-6))))
                    report()
                    if at < len(y) and (cancelled := stop()):
                        break
                if cancelled:
                    break
            else:
                report()
    _synchronize(device)
    skipped = [f"{f}: {r}" for f, r in ds.skipped] + failed  # unlabeled at discovery, then undecodable
    return RunStats(done, skipped, time.perf_counter() - start, cancelled, workers)
