"""What a format reader returns, and the byte-level helpers readers share (naming non-checkpoint files by
their magic bytes, hashing file contents)."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitdash.load.checkpoint import TensorStore


@dataclass
class RawCheckpoint:
    """What a reader found: tensors under the file's own names, plus metadata and wrappers unwrapped."""

    tensors: TensorStore
    format: str
    metadata: dict[str, Any] = field(default_factory=dict)
    wrappers: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def describe_magic(head: bytes, default: str = "unrecognized content (not safetensors, a torch zip/pickle, "
                                                 "npz or ONNX)") -> str:
    """Name common non-checkpoint files so the message says what the file really is."""
    kinds = {
        b"\xff\xd8\xff": "it is a JPEG image",
        b"\x89PNG": "it is a PNG image",
        b"GIF8": "it is a GIF image",
        b"RIFF": "it is a RIFF file (WebP image or WAV audio)",
        b"BM": "it is a BMP image",
        b"%PDF": "it is a PDF document",
        b"\x1f\x8b": "it is gzip-compressed (unpack it first)",
        b"BZh": "it is bzip2-compressed (unpack it first)",
        b"\xfd7zXZ": "it is xz-compressed (unpack it first)",
        b"7z\xbc\xaf": "it is a 7-Zip archive (unpack it first)",
        b"\x89HDF": "it is an HDF5 file (Keras .h5 weights are not supported)",
        b"\x93NUMPY": "it is a single numpy .npy array, not a checkpoint",
        b"version https://git-lfs": "it is a Git LFS pointer, not the weights (run `git lfs pull`)",
        b"<": "it looks like an HTML/XML page (a failed download?)",
        b"{": "it looks like a JSON file",
        b"[": "it looks like a JSON file",
    }
    stripped = head.lstrip()
    for magic, text in kinds.items():
        if head.startswith(magic) or (magic in (b"<", b"{", b"[") and stripped.startswith(magic)):
            return text
    return default


def sha256_files(paths: Iterable[Path]) -> str:
    """sha256 over the files' bytes in order (a sharded checkpoint is one content): `hashlib.file_digest` feeds
    the one hash object file by file, in bounded memory."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            hashlib.file_digest(f, lambda: h)
    return h.hexdigest()
