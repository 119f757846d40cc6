"""How long a run will take, measured before it starts: one small batch of the data through the model at one
resolution, scaled to the others by their compute (the analytic multiply-accumulates, attention's N^2 included).

A quick check should answer in about a minute. Large backbones at their native resolution do not on a laptop's
CPU (DINOv2 at 518 px: ~1370 tokens, seconds an image for the model and its random twin), so the few-shot probe
defaults to the largest resolution that fits QUICK_SECONDS; timm interpolates the position embedding to it
(`dynamic_img_size`), as it does for any input size.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from vitdash.data.datasets import Dataset
from vitdash.identity.architecture import ArchSpec
from vitdash.identity.complexity import macs_by_component
from vitdash.identity.preprocessing import resolve_preprocessing
from vitdash.load.checkpoint import Checkpoint
from vitdash.perform.engine import EngineOptions, cpu_threads, duration, prepare_forward

QUICK_SECONDS = 60.0
MEASURE_IMAGES = 2
# The quick default never goes below this (or the native size): at 56 px a 14-px-patch model sees 4x4 patches,
# and its features say nothing. Where even this takes longer than QUICK_SECONDS, the estimate says so.
QUICK_FLOOR = 224
# Resolutions offered below the native one (rounded down to whole patches): the common fine-tuning sizes.
SMALLER_SIZES = (448, 384, 336, 288, 256, 224, 192, 160, 128, 112, 96, 64, 32)
MEASURE_AT = 224  # measured here (or at the native size when that is smaller): cheap, and near the quick size


@dataclass
class RunEstimate:
    """Seconds a run over `n_images` will take at each square resolution, from one measured batch."""

    n_images: int
    models: int  # forwards per image (the checkpoint, plus its random twin for the probe)
    native: int
    measured_at: int
    measured_images: int
    measured_s: float  # the measured batch: decode, transform and forward of every model
    seconds: dict[int, float]  # resolution -> whole run
    quick: int  # the largest resolution that answers within QUICK_SECONDS, not below QUICK_FLOOR

    def describe(self, sizes: tuple[int, ...] | None = None) -> str:
        """'about 4 min at 518 px, 40 s at 224 px' (native and quick by default)."""
        shown = sizes or tuple(dict.fromkeys((self.native, self.quick)))
        return "about " + ", ".join(f"{duration(self.seconds[s])} at {s} px" for s in shown if s in self.seconds)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def candidate_sizes(arch: ArchSpec) -> list[int]:
    """The native resolution and the common smaller ones, in whole patches, largest first."""
    native, p = int(arch.img_size[0]), arch.patch_size
    smaller = [s - s % p for s in SMALLER_SIZES if p <= s - s % p < native]
    return list(dict.fromkeys([native, *smaller]))


def estimate_run(ckpt: Checkpoint, arch: ArchSpec, ds: Dataset, model: nn.Module, *, models: int = 1,
                 options: EngineOptions | None = None, target_s: float = QUICK_SECONDS) -> RunEstimate:
    """Time MEASURE_IMAGES of the data (decoded, transformed, a forward of `model` for pre-logit features,
    counted `models` times) at min(native, MEASURE_AT) px, after a warm-up forward, and scale to every size."""
    opts = options or EngineOptions()
    device, dtype = opts.resolve()
    sizes = candidate_sizes(arch)
    at = min(sizes, key=lambda s: (abs(s - MEASURE_AT), s)) if sizes[0] > MEASURE_AT else sizes[0]
    prep = resolve_preprocessing(ckpt, arch, {"img_size": (at, at)})
    transform, n = prep.transform(), min(MEASURE_IMAGES, len(ds))
    with cpu_threads(device), torch.inference_mode():
        forward = prepare_forward(model, device, dtype, opts, features=True)
        start = time.perf_counter()
        x = torch.stack([transform(ds.load(i, prep.pil_mode)) for i in range(n)]).to(device)
        decode = time.perf_counter() - start
        forward(x)  # warm-up: allocator, first-call paths
        start = time.perf_counter()
        forward(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        took = decode + models * (time.perf_counter() - start)
    per_image = took / max(n, 1)
    macs = {s: sum(macs_by_component(arch, (s, s)).values()) for s in sizes}
    seconds = {s: per_image * len(ds) * macs[s] / macs[at] for s in sizes}
    floor = min(sizes[0], QUICK_FLOOR)
    usable = [s for s in sizes if s >= floor] or sizes[:1]
    quick = next((s for s in usable if seconds[s] <= target_s), usable[-1])
    return RunEstimate(len(ds), models, sizes[0], at, n, took, seconds, quick)
