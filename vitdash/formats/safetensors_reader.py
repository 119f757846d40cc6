"""`.safetensors`: header validated by hand first (so a lying header costs nothing), tensors read lazily."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from vitdash.checkpoint import TensorInfo, TensorStore
from vitdash.errors import VitdashError
from vitdash.formats import RawCheckpoint

MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit
_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}


def looks_like(head: bytes) -> bool:
    return len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < MAX_HEADER


def read_header(path: Path) -> tuple[dict, int]:
    """Parse and check the JSON header; returns (header, offset of the data section)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise VitdashError(f"{path.name}: truncated safetensors file ({size} bytes, no header length)")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER or n > size - 8:
            raise VitdashError(
                f"{path.name}: safetensors header claims {n:,} bytes but the file has {size:,}: "
                "truncated or not a safetensors file")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise VitdashError(f"{path.name}: safetensors header is not valid JSON ({e}): corrupt file") from None
    if not isinstance(header, dict):
        raise VitdashError(f"{path.name}: safetensors header is not a JSON object")
    data_len = size - 8 - n
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            start, end = entry["data_offsets"]
            dtype = entry["dtype"]
            shape = entry["shape"]
        except (TypeError, KeyError, ValueError):
            raise VitdashError(f"{path.name}: malformed header entry for tensor {name!r}") from None
        if end > data_len or start > end:
            raise VitdashError(
                f"{path.name}: tensor {name!r} lies at bytes {start}-{end} but the data section has only "
                f"{data_len:,} bytes: the file is truncated")
        if dtype not in _DTYPES:
            raise VitdashError(f"{path.name}: tensor {name!r} has unsupported dtype {dtype}")
        numel = 1
        for d in shape:
            numel *= d
        if numel * torch.empty((), dtype=_DTYPES[dtype]).element_size() != end - start:
            raise VitdashError(f"{path.name}: tensor {name!r} byte length does not match its shape {shape}")
    return header, 8 + n


def read(path: Path) -> RawCheckpoint:
    from safetensors import safe_open

    header, _ = read_header(path)
    try:
        handle = safe_open(str(path), framework="pt", device="cpu")
    except Exception as e:  # SafetensorError and OS errors alike: the file is unusable
        raise VitdashError(f"{path.name}: safetensors could not open it: {e}") from None
    infos = {
        k: TensorInfo(tuple(v["shape"]), _DTYPES[v["dtype"]]) for k, v in header.items() if k != "__metadata__"
    }
    loaders = {k: (lambda k=k: handle.get_tensor(k)) for k in infos}
    meta = header.get("__metadata__") or {}
    return RawCheckpoint(
        tensors=TensorStore(loaders, infos),
        format="safetensors",
        metadata={"safetensors_metadata": meta} if meta else {},
        files=[path],
    )


def scan(path: Path, chunk: int = 8 << 20) -> tuple[str, list[str]]:
    """One sequential read: the file's sha256 and the tensors holding NaN/Inf, in bounded memory.

    Plain reads (no mmap) keep resident memory at one chunk even for multi-GB files.
    """
    import hashlib

    header, data_start = read_header(path)
    entries = sorted(
        ((v["data_offsets"][0], v["data_offsets"][1], k, _DTYPES[v["dtype"]]) for k, v in header.items()
         if k != "__metadata__"))
    h = hashlib.sha256()
    bad: list[str] = []
    with open(path, "rb") as f:
        h.update(f.read(data_start))
        pos = 0
        for start, end, name, dtype in entries:
            if start > pos:
                h.update(f.read(start - pos))
            finite = True
            remaining = end - start
            item = torch.empty((), dtype=dtype).element_size()
            while remaining:
                buf = f.read(min(chunk - chunk % item, remaining))
                remaining -= len(buf)
                h.update(buf)
                if dtype.is_floating_point and finite and buf:
                    finite = bool(torch.isfinite(torch.frombuffer(bytearray(buf), dtype=dtype)).all())
            if not finite:
                bad.append(name)
            pos = end
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest(), bad
