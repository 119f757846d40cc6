"""Format readers: bytes on disk -> named tensors (lazy) + whatever metadata the file carries.

A reader knows file formats, never naming conventions; `vitdash.layouts` maps names afterwards.
The format is decided by content (magic bytes, zip members), not by the extension: downloads and
uploads are often misnamed, and a misnamed file must still get a specific answer.
"""
from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterable
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


# What each extension promises; a file whose content says otherwise is read by content, with a warning.
_EXPECTED = {".safetensors": "safetensors", ".npz": "npz", ".onnx": "onnx", ".pth": "torch", ".pt": "torch",
             ".bin": "torch", ".tar": "torch", ".ckpt": "torch", ".pkl": "torch"}


def read_file(path: Path) -> RawCheckpoint:
    """Pick the reader by content (magic bytes), not only by extension: downloads are often misnamed."""
    from vitdash.formats import npz, onnx_reader, safetensors_reader, torch_pickle

    if not path.is_file():
        raise VitdashError(f"{path.name} is missing (expected at {path})" if not path.exists() else
                           f"{path} is not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise VitdashError(f"{path.name} is empty (0 bytes): the download or copy did not finish")
    with open(path, "rb") as f:
        head = f.read(64)
    suffix = path.suffix.lower()
    kind = sniff(path, head)
    if kind is None:
        if suffix in (".safetensors", ".onnx") and not describe_magic(head, default=""):
            kind = _EXPECTED[suffix]  # its own parser gives the most specific reason (truncated, bad header...)
        else:
            raise VitdashError(f"{path.name} is not a checkpoint vitdash can read: {describe_magic(head)}")
    readers = {"safetensors": safetensors_reader.read, "npz": npz.read, "onnx": onnx_reader.read,
               "torch": torch_pickle.read}
    raw = readers[kind](path)
    expected = _EXPECTED.get(suffix)
    if expected and expected != kind:
        raw.warnings.insert(0, f"{path.name} is named like a {expected} file but holds a {kind} checkpoint; "
                               f"read as {kind}")
    return raw


def sniff(path: Path, head: bytes) -> str | None:
    """The format the bytes say, or None when they say nothing this package reads."""
    from vitdash.formats import safetensors_reader

    if safetensors_reader.looks_like(head):
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(path)
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:  # pickle PROTO opcode (torch legacy / raw)
        return "torch"
    if _looks_like_onnx(head):
        return "onnx"
    return None


def _zip_kind(path: Path) -> str:
    """torch.save archives hold `<name>/data.pkl`; numpy .npz archives hold only `.npy` members."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise VitdashError(f"{path.name}: corrupt or truncated zip archive (a torch checkpoint or .npz is a zip; "
                           f"this one cannot be opened: {e})") from None
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "torch"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    raise VitdashError(f"{path.name} is a zip archive but neither a torch checkpoint (no data.pkl) nor an .npz "
                       f"(members: {shown or 'none'}); unpack it and load the weights file inside")


def _looks_like_onnx(head: bytes) -> bool:
    """ONNX has no magic: a ModelProto starts with ir_version (field 1, varint) then another known field."""
    return (len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 30
            and head[2] in (0x12, 0x1A, 0x22, 0x2A, 0x32, 0x3A, 0x42))


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


def sha256_files(paths: Iterable[Path], chunk: int = 8 << 20) -> str:
    """sha256 over the files' bytes in order, in bounded memory (hashlib releases the GIL on big updates)."""
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while n := f.readinto(view):
                h.update(view[:n])
    return h.hexdigest()
