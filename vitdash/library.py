"""The model library: every checkpoint found in the configured folders, listed without reading weights."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".npz", ".onnx", ".tar")
MARKERS = ("config.json", "model.safetensors.index.json", "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class LibraryEntry:
    name: str
    source: str  # what `vitdash.sources.load` takes
    kind: str  # 'file', 'folder', 'timm'
    size_bytes: int = 0


def model_dirs() -> list[Path]:
    """$VITDASH_MODEL_DIRS (os.pathsep-separated), else ../shared/checkpoints beside the checkout if present."""
    env = os.environ.get("VITDASH_MODEL_DIRS")
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    shared = Path(__file__).resolve().parents[2] / "shared" / "checkpoints"
    return [shared] if shared.is_dir() else []


def scan_folder(root: Path) -> list[LibraryEntry]:
    """Checkpoint files and model folders (a folder with config.json or a shard index counts as one model)."""
    entries: list[LibraryEntry] = []
    if not root.is_dir():
        return entries
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here != root and any(m in filenames for m in MARKERS):
            size = sum((here / f).stat().st_size for f in filenames)
            entries.append(LibraryEntry(str(here.relative_to(root)), str(here), "folder", size))
            dirnames.clear()
            continue
        for f in sorted(filenames):
            if f.endswith(CHECKPOINT_SUFFIXES) or f.endswith(".pth.tar"):
                p = here / f
                entries.append(LibraryEntry(str(p.relative_to(root)), str(p), "file", p.stat().st_size))
        dirnames.sort()
    return entries


def list_library() -> list[LibraryEntry]:
    return [e for d in model_dirs() for e in scan_folder(d)]


# timm architectures offered at initialization: no download, always available.
TIMM_ARCHITECTURES = (
    "vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224", "vit_base_patch32_224",
    "vit_large_patch16_224", "deit_tiny_patch16_224", "deit_small_distilled_patch16_224",
    "vit_small_patch14_dinov2", "vit_small_patch14_reg4_dinov2", "vit_base_patch16_clip_224",
)
