"""What every layout proof shares: weights moved off the library's init, and the accounting of a file's elements."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from vitdash.identity.complexity import spec_params
from vitdash.load.checkpoint import Checkpoint


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fresh inits leave many tensors at constants (zeros, ones), which would hide a swapped mapping: every
    parameter gets noise (scales around 1, everything else around 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            scale_like = p.ndim == 1 and name.endswith(("weight", "gamma", "lambda1", "lambda_1", "lambda_2"))
            p.copy_(1 + 0.1 * noise if scale_like else 0.05 * noise)
    return model.eval()


def saved_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors a file holds, read independently of vitdash."""
    if path.suffix == ".safetensors":
        return load_file(path)
    with torch.serialization.safe_globals([argparse.Namespace]):  # training args beside the weights (MAE, timm)
        obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def assert_accounted(ckpt: Checkpoint, saved: dict[str, torch.Tensor], prefix: str = "") -> None:
    """Every element of the file is in the canonical model or in a left-over key that says why; none is made up.
    (`prefix`: a wrapper the loader strips from the file's names, as DDP's `module.`.)"""
    left = sum(saved[prefix + k].numel() for k in ckpt.unmapped_keys)
    assert ckpt.tensors.num_params + left == ckpt.num_params == sum(v.numel() for v in saved.values())
    assert set(ckpt.unmapped_keys) == set(ckpt.unmapped_reasons), set(ckpt.unmapped_keys) - set(ckpt.unmapped_reasons)
    assert not any("not part of the canonical" in w for w in ckpt.load_warnings)


def image(seed: int = 1, size: tuple[int, int] = (32, 32)) -> torch.Tensor:
    return torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(seed))


def assert_same(ours: torch.Tensor, theirs: torch.Tensor, label: str, atol: float = 1e-5) -> float:
    """Outputs equal within `atol`; the difference is printed (pytest -s) for the proof table."""
    diff = float((ours - theirs).abs().max())
    print(f"\n[proof] {label}: max abs diff {diff:.2e}")
    assert ours.shape == theirs.shape and diff <= atol, (label, diff)
    return diff


def assert_spec_complete(ckpt: Checkpoint, arch) -> None:
    """The architecture read from the tensors accounts for every one of them (its parameter count, computed from
    the hyper-parameters alone, is the canonical tensors')."""
    assert sum(spec_params(arch).values()) == ckpt.tensors.num_params
