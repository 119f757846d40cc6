"""Format readers: bytes on disk -> named tensors (lazy) + whatever metadata the file carries.

A reader knows file formats, never naming conventions; `vitdash.load.layouts` maps names afterwards.
The format is decided by content (magic bytes, zip members), not by the extension: downloads and
uploads are often misnamed, and a misnamed file must still get a specific answer.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

from vitdash.errors import VitdashError
from vitdash.load.files import SUFFIX_FORMATS
from vitdash.load.formats import npz, onnx_reader, safetensors_reader, torch_pickle
from vitdash.load.formats.raw import RawCheckpoint, describe_magic


def read_file(path: Path) -> RawCheckpoint:
    """Pick the reader by content (magic bytes), not only by extension: downloads are often misnamed."""

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
            kind = SUFFIX_FORMATS[suffix]  # its own parser gives the most specific reason (truncated, bad header...)
        else:
            raise VitdashError(f"{path.name} is not a checkpoint vitdash can read: {describe_magic(head)}")
    readers = {"safetensors": safetensors_reader.read, "npz": npz.read, "onnx": onnx_reader.read,
               "torch": torch_pickle.read}
    raw = readers[kind](path)
    expected = SUFFIX_FORMATS.get(suffix)
    if expected and expected != kind:
        raw.warnings.insert(0, f"{path.name} is named like a {expected} file but holds a {kind} checkpoint; "
                               f"read as {kind}")
    return raw


def sniff(path: Path, head: bytes) -> str | None:
    """The format the bytes say, or None when they say nothing this package reads."""

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
