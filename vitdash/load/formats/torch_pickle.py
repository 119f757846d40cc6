"""`.pth`/`.pt`/`.bin`/`.pth.tar`/no extension: `torch.load(weights_only=True)`, never anything that runs code.

Training checkpoints hold more than tensors (epoch, `args` as an `argparse.Namespace`, optimizer
state); a short list of benign globals is allowed so they load, and the non-tensor objects are
reported as metadata. Any other global is refused by torch's restricted unpickler; the refusal names
it, read from the pickle's opcodes (nothing is executed to find it).
"""
from __future__ import annotations

import argparse
import io
import pathlib
import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitdash.errors import VitdashError
from vitdash.load.checkpoint import TensorStore
from vitdash.load.formats.raw import RawCheckpoint, describe_magic


def _benign_globals() -> list:
    """Plain data types that timm/DeiT/MAE training scripts pickle beside the weights.

    Each one only builds a value when unpickled: no callable here can reach the OS or import code.
    """
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
    allowed: list = [argparse.Namespace, np.dtype, np.ndarray, scalar, _reconstruct,
                     pathlib.PosixPath, pathlib.PurePosixPath, pathlib.PureWindowsPath]
    allowed += [type(np.dtype(t)) for t in ("float64", "float32", "float16", "int64", "int32", "int8",
                                            "uint8", "bool")]
    return allowed


# Where training scripts put the weights, in order of preference (raw weights before EMA; DINO's teacher
# is the model it evaluates).
WRAPPER_KEYS = ("state_dict", "model", "model_state", "model_state_dict", "module", "net", "network",
                "params", "weights", "state_dict_ema", "model_ema", "teacher", "student")


def _load(path: Path, zipped: bool) -> Any:
    with torch.serialization.safe_globals(_benign_globals()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "pickle protocol 4 ...": the outcome is reported, not warned
        if path.name.lower().endswith(".safetensors"):  # torch.load would hand the name to safetensors
            with open(path, "rb") as f:
                return torch.load(f, map_location="cpu", weights_only=True)
        # Zip archives are memory-mapped (tensors read on demand); legacy pickles cannot be.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)


def read(path: Path) -> RawCheckpoint:
    with open(path, "rb") as f:
        head = f.read(64)
    zipped = head.startswith(b"PK\x03\x04")
    if not zipped and head[:1] != b"\x80":
        raise VitdashError(f"{path.name}: not a torch checkpoint: {describe_magic(head)}")
    try:
        obj = _load(path, zipped)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise VitdashError(f"{path.name}: corrupt torch checkpoint (the pickle inside is damaged: {e})") from None
        raise VitdashError(_refusal(path, str(e))) from None
    except (EOFError, RuntimeError, ValueError, OSError, KeyError, IndexError, TypeError, AttributeError,
            zipfile.BadZipFile) as e:
        raise VitdashError(f"{path.name}: corrupt or truncated torch checkpoint ({type(e).__name__}: "
                           f"{str(e).splitlines()[0][:300] if str(e) else 'no detail'})") from None
    return from_object(obj, path)


def _refusal(path: Path, message: str) -> str:
    """Say which globals made the restricted unpickler stop, and why that matters."""
    allowed = _allowed_names()
    named = [g for g in pickle_globals(path) if g not in allowed] or re.findall(r"GLOBAL ([\w.]+)", message)
    if named:
        what = f"it references {', '.join(dict.fromkeys(named))}, which could run code when loaded"
    else:
        detail = next((ln.strip() for ln in reversed(message.splitlines()) if "Unsupported" in ln), "")
        what = f"it uses pickle features the safe loader does not accept ({detail or 'see torch.load'})"
    return (f"{path.name}: refused to unpickle: {what}. vitdash only loads plain tensors and data "
            "(torch.load weights_only=True) and never runs code from a file. If you trust the file, re-save its "
            "state_dict with safetensors.")


def _allowed_names() -> set[str]:
    names = {f"{g.__module__}.{g.__qualname__}" for g in _benign_globals()}
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        names |= set(_get_allowed_globals())
    except ImportError:  # private API moved: torch's own globals get named too (over-naming beats hiding)
        pass
    return names | {"collections.OrderedDict"}


def pickle_globals(path: Path, limit: int = 64 << 20) -> list[str]:
    """Every `module.name` the file's pickle(s) would import, read from opcodes without executing anything."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            streams = [z.read(n) for n in z.namelist() if n.endswith(".pkl") and z.getinfo(n).file_size < limit]
    else:
        with open(path, "rb") as f:
            streams = [f.read(limit)]
    found: list[str] = []
    for data in streams:
        stream = io.BytesIO(data)
        for _ in range(5):  # legacy torch.save writes several pickles back to back, then raw storage bytes
            try:
                found += _globals_in(stream)
            except Exception:  # noqa: BLE001 - raw bytes after the pickles, or a damaged stream: stop reading
                break
    # Protocol <= 2 pickles name builtins by their Python 2 module, which unpickling maps back.
    return list(dict.fromkeys(g.replace("__builtin__.", "builtins.", 1) for g in found))


def _globals_in(stream: io.BytesIO) -> list[str]:
    """GLOBAL/INST name their target inline; STACK_GLOBAL pops the two strings pushed just before it."""
    found: list[str] = []
    memo: dict[int, str | None] = {}
    pushed: list[str | None] = [None, None]  # the last two values pushed (None: not a string)
    for op, arg, _ in pickletools.genops(stream):
        if op.name in ("GLOBAL", "INST"):
            found.append(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL" and all(isinstance(s, str) for s in pushed):
            found.append(".".join(pushed))
        if op.name in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
            memo[len(memo) if op.name == "MEMOIZE" else arg] = pushed[-1]
        elif op.name not in ("PROTO", "FRAME", "MARK", "STOP"):
            value = memo.get(arg) if op.name in ("GET", "BINGET", "LONG_BINGET") else arg
            pushed = [pushed[-1], value if isinstance(value, str) and op.name not in ("GLOBAL", "INST") else None]
    return found


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
                f"{name}: no tensors found (top-level keys: {', '.join(map(str, list(state)[:12])) or 'none'})")
        wrappers.append(key)
        metadata.update(_describe_extras(state, key))
        state = state[key]
    tensors = {str(k): t for k, v in state.items() if (t := _as_tensor(v)) is not None}
    skipped = [str(k) for k, v in state.items() if _as_tensor(v) is None]
    warnings_ = [f"non-tensor entries beside the weights ignored: {', '.join(skipped[:10])}"] if skipped else []
    return RawCheckpoint(TensorStore.from_tensors(tensors), "torch", metadata, wrappers, warnings_,
                         [path] if path else [])


def _as_tensor(v: Any) -> torch.Tensor | None:
    """Tensors, and numeric numpy arrays (some exporters pickle those), as tensors; anything else None."""
    if isinstance(v, torch.Tensor):
        return v
    if isinstance(v, np.ndarray) and v.dtype.kind in "fiub" and v.ndim:
        return torch.from_numpy(np.ascontiguousarray(v))
    return None


def _has_tensors(m: Mapping) -> bool:
    return any(_as_tensor(v) is not None for v in m.values()) or any(
        isinstance(v, Mapping) and _has_tensors(v) for v in m.values())


def _is_state_dict(m: Mapping) -> bool:
    values = list(m.values())
    return bool(values) and sum(_as_tensor(v) is not None for v in values) >= max(1, len(values) // 2)


def _describe_extras(container: Mapping, chosen: str) -> dict[str, Any]:
    """Non-weight entries of a training checkpoint, summarised (tensor collections are only sized)."""
    out: dict[str, Any] = {}
    for k, v in container.items():
        if k == chosen:
            continue
        if isinstance(v, argparse.Namespace):
            out[k] = {a: str(x) if isinstance(x, pathlib.PurePath) else x for a, x in vars(v).items()}
        elif isinstance(v, Mapping) and "param_groups" in v and "state" in v:
            out[k] = _describe_optimizer(v)
        elif isinstance(v, Mapping) and _has_tensors(v):
            out[k] = f"<{len(v)} entries with tensors, not loaded>"
        elif isinstance(v, (int, float, str, bool, list, tuple, dict, pathlib.PurePath)) or v is None:
            out[k] = str(v) if isinstance(v, pathlib.PurePath) else v
        else:
            out[k] = f"<{type(v).__name__}>"
    return out


def _describe_optimizer(state: Mapping) -> dict[str, Any]:
    """An optimizer state dict is large and mostly moments; its hyper-parameters are what people look for."""
    groups = [{k: v for k, v in g.items() if k != "params"} | {"num_params": len(g.get("params", []))}
              for g in state.get("param_groups", []) if isinstance(g, Mapping)]
    return {"param_groups": groups, "state_entries": len(state.get("state") or {})}
