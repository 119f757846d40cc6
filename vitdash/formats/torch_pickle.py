"""`.pth`/`.pt`/`.bin`/`.pth.tar`/no extension: `torch.load(weights_only=True)`, never anything that runs code.

Training checkpoints hold more than tensors (epoch, `args` as an `argparse.Namespace`, optimizer
state); a short list of benign globals is allowed so they load, and the non-tensor objects are
reported as metadata. Any other global is refused by torch's restricted unpickler and named here.
"""
from __future__ import annotations

import argparse
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vitdash.checkpoint import TensorStore
from vitdash.errors import VitdashError
from vitdash.formats import RawCheckpoint, describe_magic


def _benign_globals() -> list:
    """Plain data types that timm/DeiT/MAE training scripts pickle beside the weights."""
    import numpy as np

    allowed: list = [argparse.Namespace, np.dtype, np.ndarray]
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
    allowed += [scalar, _reconstruct]
    allowed += [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    return allowed


# Where training scripts put the weights, in order of preference (raw weights before EMA).
WRAPPER_KEYS = ("state_dict", "model", "model_state", "model_state_dict", "module", "net", "network",
                "params", "weights", "state_dict_ema", "model_ema", "teacher", "student")


def _load(path: Path) -> Any:
    with torch.serialization.safe_globals(_benign_globals()):
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e) and "zip" not in str(e).lower():
                raise
        # Legacy (non-zip) serialization cannot be memory-mapped.
        return torch.load(path, map_location="cpu", weights_only=True)


def read(path: Path) -> RawCheckpoint:
    try:
        obj = _load(path)
    except pickle.UnpicklingError as e:
        msg = str(e)
        found = re.search(r"(?:Unsupported global|GLOBAL)[: ]+(?:GLOBAL )?([\w.]+)", msg)
        what = found.group(1) if found else "an object outside the allowed list"
        raise VitdashError(
            f"{path.name}: refused to unpickle: it references {what}, which could run code when loaded. "
            "vitdash only loads plain tensors and data (torch.load weights_only=True). If you trust the file, "
            "re-save its state_dict with safetensors.") from None
    except (EOFError, RuntimeError, ValueError, OSError, KeyError, IndexError, TypeError) as e:
        with open(path, "rb") as f:
            head = f.read(16)
        if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
            raise VitdashError(f"{path.name}: corrupt or truncated torch checkpoint ({type(e).__name__}: {e})") from None
        raise VitdashError(f"{path.name}: not a torch checkpoint: {describe_magic(head)}") from None
    return from_object(obj, path)


def from_object(obj: Any, path: Path | None = None) -> RawCheckpoint:
    """Find the state dict inside whatever was pickled; everything else becomes metadata."""
    name = path.name if path else "object"
    if isinstance(obj, torch.nn.Module):  # impossible with weights_only, kept for in-memory callers
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise VitdashError(f"{name}: holds a {type(obj).__name__}, not a dict of tensors")
    wrappers: list[str] = []
    metadata: dict[str, Any] = {}
    state = obj
    while not _is_state_dict(state):
        key = next((k for k in WRAPPER_KEYS if isinstance(state.get(k), Mapping) and _has_tensors(state[k])), None)
        if key is None:
            raise VitdashError(
                f"{name}: no tensors found (top-level keys: {', '.join(map(str, list(state)[:12]))})")
        wrappers.append(key)
        metadata.update(_describe_extras(state, key))
        state = state[key]
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    skipped = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    warnings = [f"non-tensor entries beside the weights ignored: {', '.join(skipped[:10])}"] if skipped else []
    return RawCheckpoint(TensorStore.from_tensors(tensors), "torch", metadata, wrappers, warnings,
                         [path] if path else [])


def _has_tensors(m: Mapping) -> bool:
    return any(isinstance(v, torch.Tensor) for v in m.values()) or any(
        isinstance(v, Mapping) and _has_tensors(v) for v in m.values())


def _is_state_dict(m: Mapping) -> bool:
    values = list(m.values())
    return bool(values) and sum(isinstance(v, torch.Tensor) for v in values) >= max(1, len(values) // 2)


def _describe_extras(container: Mapping, chosen: str) -> dict[str, Any]:
    """Non-weight entries of a training checkpoint, summarised (optimizer state is only sized)."""
    out: dict[str, Any] = {}
    for k, v in container.items():
        if k == chosen:
            continue
        if isinstance(v, argparse.Namespace):
            out[k] = vars(v)
        elif isinstance(v, Mapping) and _has_tensors(v):
            out[k] = f"<{len(v)} entries with tensors, not loaded>"
        elif isinstance(v, (int, float, str, bool, list, tuple, dict)) or v is None:
            out[k] = v
        else:
            out[k] = f"<{type(v).__name__}>"
    return out
