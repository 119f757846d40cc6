"""Evaluation data: find the images and their classes, and tie each class to an output of the model's head.

Four shapes of data are understood: an ImageNet-style folder (one subfolder per WordNet synset id), a flat
folder whose file names start with the synset id (``n01440764_tench.JPEG``), any folder of class subfolders
with its own class names, and scikit-learn's built-in ``digits`` (no download). Files that cannot be labeled
or decoded are skipped and counted, never fatal: a dataset found on someone's disk is rarely clean.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vitdash.data.images import open_image
from vitdash.errors import VitdashError

SYNSET_RE = re.compile(r"^(n\d{8})(?:$|[_\-.\s])")


DIGITS = "digits"


# Coarse groups of ImageNet-1k as ranges of class indices. The 1000 classes are the sorted WordNet 3.0 synset
# ids, and WordNet numbers noun synsets (the id is a byte offset into data.noun) file by file in its
# lexicographer order (animal, artifact, communication, food, object, person, plant ...) and, inside the animal
# file, taxon by taxon; so contiguous index ranges are WordNet subtrees. No WordNet hierarchy ships offline
# (timm carries only lemmas and glosses), so the ranges below were read off timm's lemma list
# (`timm.data.ImageNetInfo`) and are checked against it in tests/test_data.py.
IMAGENET_COARSE_GROUPS: dict[str, tuple[tuple[int, int], ...]] = {
    "fish, amphibian, reptile": ((0, 6), (25, 68), (389, 397)),
    "bird": ((7, 24), (80, 100), (127, 146)),
    "invertebrate": ((69, 79), (107, 126), (300, 329)),
    "dog": ((151, 268),),
    "other mammal": ((101, 106), (147, 150), (269, 299), (330, 388)),
    "artifact, sign": ((398, 921), (999, 999)),
    "food, plant, landscape, person": ((922, 998),),
}


@dataclass
class Dataset:
    """Labeled images as found on disk (or built in): what to load, and which class each item is.

    `items` are file paths, or 2-D uint8 arrays for built-in data; `labels[i]` indexes `classes`.
    `skipped` lists files left out at discovery (unlabeled), with the reason.
    """

    name: str
    kind: str  # 'imagenet-folders' | 'flat-synset' | 'class-folders' | 'digits' (+ ' (coarse)' when regrouped)
    root: str
    classes: list[str]
    labels: list[int]
    items: list[Any]
    synset_classes: bool = False
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def class_names(self) -> list[str]:
        """Readable names: WordNet lemmas for synset ids, the folder names otherwise."""
        return [imagenet_lemma(c) for c in self.classes] if self.synset_classes else list(self.classes)

    def load(self, i: int, mode: str) -> Image.Image:
        """The i-th image in PIL `mode` ('L' for one-channel models, else 'RGB').

        Files go through `vitdash.data.images.open_image` (format check, decompression-bomb guard, EXIF rotation),
        which raises VitdashError with the reason when a file is not a usable image.
        """
        item = self.items[i]
        if isinstance(item, np.ndarray):
            return Image.fromarray(item).convert(mode)  # 2-D uint8 -> mode L
        img = open_image(item, name=str(item))
        return img if mode == "RGB" else img.convert(mode)

    def subset(self, indices: list[int] | np.ndarray) -> Dataset:
        idx = [int(i) for i in indices]
        return Dataset(self.name, self.kind, self.root, list(self.classes), [self.labels[i] for i in idx],
                       [self.items[i] for i in idx], self.synset_classes, list(self.skipped), list(self.notes))

    def limited(self, limit: int | None, seed: int = 0) -> Dataset:
        """A reproducible random subset of `limit` items, so every class keeps its share."""
        if limit is None or limit >= len(self):
            return self
        if limit < 1:
            raise VitdashError(f"--limit must be at least 1, got {limit}")
        keep = np.sort(np.random.default_rng(seed).permutation(len(self))[:limit])
        out = self.subset(keep)
        out.notes.append(f"limited to {limit} of {len(self)} images (random subset, seed {seed})")
        return out

    def image_size(self, sample: int = 5) -> tuple[int, int] | None:
        """(height, width) of the images, the median of the first few (file headers only); None if unreadable."""
        sizes = []
        for item in self.items[:sample]:
            if isinstance(item, np.ndarray):
                sizes.append(item.shape[:2])
                continue
            try:
                with Image.open(item) as im:
                    sizes.append((im.height, im.width))
            except (OSError, ValueError):
                continue
        if not sizes:
            return None
        return int(np.median([s[0] for s in sizes])), int(np.median([s[1] for s in sizes]))

    def class_counts(self) -> list[int]:
        return np.bincount(np.asarray(self.labels, dtype=int), minlength=len(self.classes)).tolist()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "root": self.root,
            "n_images": len(self),
            "n_classes": len(self.classes),
            "classes": list(self.classes),
            "class_names": self.class_names(),
            "class_counts": self.class_counts(),
            "n_skipped_at_discovery": len(self.skipped),
            "notes": list(self.notes),
        }


def suggested_data(in_chans: int, sample_folder: str | Path | None) -> str:
    """What to check a model on when the user has not said: colour sample images suit 3-channel models, while
    grayscale ones (the small models people train themselves, the demo pair) get the built-in digits."""
    return str(sample_folder) if in_chans == 3 and sample_folder is not None else "digits"


def discover(data: str | Path) -> Dataset:
    """Find the images and classes under `data` ('digits' for the built-in set)."""
    if str(data).strip().lower() == DIGITS:
        return load_digits()
    root = Path(data).expanduser()
    if not root.exists():
        raise VitdashError(f"data folder {root} does not exist (give a folder of images, or 'digits')")
    if not root.is_dir():
        raise VitdashError(f"data path {root} is a file; give a folder of images (one subfolder per class, or "
                           "file names starting with a WordNet synset id), or 'digits'")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subdirs:
        return _class_folders(root, subdirs)
    return _flat_synset(root)


def _visible_files(folder: Path) -> list[Path]:
    """Every file below `folder` except hidden ones (.DS_Store, .ipynb_checkpoints/...), in a stable order."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _class_folders(root: Path, subdirs: list[Path]) -> Dataset:
    skipped = [(str(p), "file outside the class folders (no label)") for p in root.iterdir()
               if p.is_file() and not p.name.startswith(".")]
    synsets = [SYNSET_RE.match(d.name) for d in subdirs]
    synset_classes = all(synsets)
    classes, labels, items, empty = [], [], [], []
    for d, m in zip(subdirs, synsets):
        files = _visible_files(d)
        if not files:
            empty.append(d.name)
            continue
        classes.append(m.group(1) if synset_classes else d.name)
        labels += [len(classes) - 1] * len(files)
        items += files
    if not items:
        raise VitdashError(f"{root} has class subfolders but no files in them")
    if len(set(classes)) != len(classes):
        raise VitdashError(f"{root}: two class folders name the same synset id")
    notes = [f"empty class folders ignored: {', '.join(empty[:10])}"] if empty else []
    return Dataset(root.name, "imagenet-folders" if synset_classes else "class-folders", str(root), classes,
                   labels, items, synset_classes, skipped, notes)


def _flat_synset(root: Path) -> Dataset:
    files = _visible_files(root)
    if not files:
        raise VitdashError(f"{root} holds no files")
    found = [(f, SYNSET_RE.match(f.name)) for f in files]
    labeled = [(f, m.group(1)) for f, m in found if m]
    if not labeled:
        raise VitdashError(
            f"{root} has no class subfolders and no file name starts with a WordNet synset id (like "
            "n01440764_tench.JPEG), so the images have no labels")
    classes = sorted({s for _, s in labeled})
    index = {s: i for i, s in enumerate(classes)}
    skipped = [(str(f), "file name does not start with a synset id (no label)") for f, m in found if not m]
    return Dataset(root.name, "flat-synset", str(root), classes, [index[s] for _, s in labeled],
                   [f for f, _ in labeled], True, skipped)


def load_digits() -> Dataset:
    """scikit-learn's 8x8 digits (1797 images, bundled with the package): a check for small custom models.

    The 17 gray levels (0..16) become 8-bit pixels round(v * 255 / 16), so they pass through the same
    image transforms as files do.
    """
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    pixels = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    return Dataset(DIGITS, "digits", "sklearn.datasets.load_digits", [str(i) for i in range(10)],
                   d.target.astype(int).tolist(), list(pixels))


@cache
def _imagenet_info():
    from timm.data import ImageNetInfo

    return ImageNetInfo("imagenet-1k")


def imagenet_lemma(synset: str) -> str:
    """First WordNet lemma of a synset id (timm ships lemmas for all ImageNet-21k synsets)."""
    try:
        return _imagenet_info().label_name_to_description(synset).split(",")[0]
    except KeyError:
        return synset


def imagenet1k_index() -> dict[str, int]:
    return {s: i for i, s in enumerate(_imagenet_info().label_names())}


def coarse_imagenet_group(index: int) -> str:
    for name, ranges in IMAGENET_COARSE_GROUPS.items():
        if any(lo <= index <= hi for lo, hi in ranges):
            return name
    raise ValueError(f"ImageNet-1k index {index} out of range")


def group_coarse(ds: Dataset) -> Dataset:
    """Relabel ImageNet-1k classes into `IMAGENET_COARSE_GROUPS`, so a probe has several images per class."""
    if not ds.synset_classes:
        raise VitdashError("coarse grouping needs ImageNet classes named by WordNet synset id; "
                           f"{ds.name} has its own class names")
    idx = imagenet1k_index()
    outside = [c for c in ds.classes if c not in idx]
    if outside:
        raise VitdashError(f"coarse grouping covers ImageNet-1k only; not in it: {', '.join(outside[:5])}")
    groups = [g for g in IMAGENET_COARSE_GROUPS if any(coarse_imagenet_group(idx[c]) == g for c in ds.classes)]
    pos = {g: i for i, g in enumerate(groups)}
    labels = [pos[coarse_imagenet_group(idx[ds.classes[lab]])] for lab in ds.labels]
    return Dataset(ds.name, f"{ds.kind} (coarse)", ds.root, groups, labels, list(ds.items), False,
                   list(ds.skipped), ds.notes + [f"{len(ds.classes)} ImageNet classes grouped into {len(groups)} "
                                                 "coarse WordNet categories"])
