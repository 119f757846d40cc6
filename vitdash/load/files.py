"""Which files are checkpoints and which folders are one model: one list, used by the reader of folders
(`sources.read_dir`), the library and population scans, and the format check of a file's name."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

# What each extension promises (the reader still decides by content: downloads are often misnamed).
SUFFIX_FORMATS = {".safetensors": "safetensors", ".npz": "npz", ".onnx": "onnx", ".pth": "torch", ".pt": "torch",
                  ".bin": "torch", ".tar": "torch", ".ckpt": "torch"}
CHECKPOINT_SUFFIXES = tuple(SUFFIX_FORMATS)
# Weights a folder is read from by name, in this order (Hugging Face, timm, open_clip exports).
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pth", "model.pt", "checkpoint.pth",
                "open_clip_model.safetensors", "open_clip_pytorch_model.bin")
SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
METADATA_FILES = ("config.json", "preprocessor_config.json", "result.json", "params.json", "open_clip_config.json")
ZOO_EPOCH_PREFIX = "checkpoint_"  # ViT Model Zoo: checkpoint_0000XY/checkpoints (no extension)


def is_checkpoint_file(name: str) -> bool:
    return name.endswith(CHECKPOINT_SUFFIXES) and not name.startswith(".")


def zoo_epochs(folder: Path) -> list[Path]:
    """A ViT Model Zoo run's per-epoch checkpoints, first epoch first."""
    return sorted(p / "checkpoints" for p in folder.glob(f"{ZOO_EPOCH_PREFIX}*") if (p / "checkpoints").is_file())


def is_model_folder(path: Path, filenames: Iterable[str], dirnames: Iterable[str]) -> bool:
    """A folder `read_dir` opens as one model, where opening the folder says more than its file would: a config,
    shards, a Model Zoo run, or a single checkpoint that is a known weights name or comes with metadata."""
    names = set(filenames)
    if names & {"config.json", "result.json", *SHARD_INDEXES}:
        return True
    if any(d.startswith(ZOO_EPOCH_PREFIX) and (path / d / "checkpoints").is_file() for d in dirnames):
        return True
    checkpoints = [n for n in names if is_checkpoint_file(n)]
    return len(checkpoints) == 1 and (checkpoints[0] in WEIGHT_FILES or bool(names & set(METADATA_FILES)))
