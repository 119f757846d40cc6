"""Format readers: bytes on disk -> named tensors (lazy) + whatever metadata the file carries.

A reader knows file formats, never naming conventions; `vitdash.layouts` maps names afterwards.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitdash.checkpoint import TensorStore
from vitdash.errors import VitdashError


@dataclass
class RawCheckpoint:
    """What a reader found: tensors under the file's own names, plus metadata and wrappers unwrapped."""

    tensors: TensorStore
    format: str
    metadata: dict[str, Any] = field(default_factory=dict)
    wrappers: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def read_file(path: Path) -> RawCheckpoint:
    """Pick the reader by content (magic bytes), not only by extension: downloads are often misnamed."""
    from vitdash.formats import npz, onnx_reader, safetensors_reader, torch_pickle

    size = path.stat().st_size
    if size == 0:
        raise VitdashError(f"{path.name} is empty (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(16)
    suffix = path.suffix.lower()
    if suffix == ".safetensors" or safetensors_reader.looks_like(head):
        return safetensors_reader.read(path)
    if head.startswith(b"PK\x03\x04") and suffix == ".npz":
        return npz.read(path)
    if suffix == ".onnx":
        return onnx_reader.read(path)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return torch_pickle.read(path)
    raise VitdashError(f"{path.name} is not a checkpoint vitdash can read: {describe_magic(head)}")


def describe_magic(head: bytes) -> str:
    """Name common non-checkpoint files so the message says what the file really is."""
    kinds = {
        b"\xff\xd8\xff": "it is a JPEG image",
        b"\x89PNG": "it is a PNG image",
        b"GIF8": "it is a GIF image",
        b"RIFF": "it is a RIFF file (WebP image or WAV audio)",
        b"%PDF": "it is a PDF document",
        b"\x1f\x8b": "it is gzip-compressed (unpack it first)",
        b"version https://git-lfs": "it is a Git LFS pointer, not the weights (run `git lfs pull`)",
        b"<": "it looks like an HTML/XML page (a failed download?)",
        b"{": "it looks like a JSON file",
    }
    for magic, text in kinds.items():
        if head.startswith(magic):
            return text
    return "unrecognized content (not safetensors, a torch zip/pickle, npz or ONNX)"
