"""Sample images that work offline: the two photographs scikit-learn ships, a folder of images
(`VITDASH_SAMPLE_DIR`, else `../shared/images/imagenet-sample` beside the repository when present), and the
images of an accuracy-check data set."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from vitdash.common.paths import SHARED_DIR
from vitdash.data.datasets import SYNSET_RE, discover, imagenet_lemma, load_digits, suggested_data
from vitdash.data.images import list_images, open_image

SAMPLE_DIR_ENV = "VITDASH_SAMPLE_DIR"
DEFAULT_SAMPLE_DIR = SHARED_DIR / "images" / "imagenet-sample"


@dataclass(frozen=True)
class ImageRef:
    """A sample image not yet decoded: what to call it, where it is, and its class when the name says so."""

    name: str
    origin: str  # 'sklearn' | 'folder' | 'data' (a file), or 'digits' (path is the index in sklearn's digits)
    path: str
    label: str | None = None

    @property
    def title(self) -> str:
        """How a picker lists it: name, where it comes from, and its class when the name does not say it."""
        where = {"sklearn": "scikit-learn", "folder": "sample folder", "data": "data", "digits": "digits"}[self.origin]
        return f"{self.name} ({where})" + (f" - {self.label}" if self.label and self.label not in self.name else "")

    def load(self) -> Image.Image:
        if self.origin == "digits":

            return load_digits().load(int(self.path), "RGB")
        return open_image(self.path, self.name)

    def to_dict(self) -> dict[str, str | None]:
        return {"name": self.name, "origin": self.origin, "path": self.path, "label": self.label}


def sklearn_samples() -> list[ImageRef]:
    """The two photographs bundled with scikit-learn (china.jpg, flower.jpg): always there, no download."""
    from sklearn.datasets import load_sample_images

    return [ImageRef(Path(f).stem, "sklearn", str(f)) for f in load_sample_images().filenames]


def sample_dir() -> Path | None:
    """The configured sample folder (`VITDASH_SAMPLE_DIR`, else the shared ImageNet sample), if it exists."""
    configured = os.environ.get(SAMPLE_DIR_ENV)
    folder = Path(configured).expanduser() if configured else DEFAULT_SAMPLE_DIR
    return folder if folder.is_dir() else None


def label_from_name(path: str | Path) -> str | None:
    """The ImageNet class named by a file name that starts with a WordNet synset id (n01440764_tench.JPEG)."""

    m = SYNSET_RE.match(Path(path).name)
    return imagenet_lemma(m.group(1)) if m else None


def folder_samples(folder: str | Path | None = None) -> list[ImageRef]:
    """Images of `folder` (default: `sample_dir()`; none when it is absent), labeled from their names."""
    folder = folder if folder is not None else sample_dir()
    if folder is None:
        return []
    return [ImageRef(p.stem, "folder", str(p), label_from_name(p)) for p in list_images(folder)]


def data_samples(data: str | Path, limit: int | None = None) -> list[ImageRef]:
    """Images of an accuracy-check data set (`datasets.discover`: a folder, or 'digits'), with class names."""

    ds = discover(data)
    names = ds.class_names()
    refs = [ImageRef(item.stem, "data", str(item), names[lab]) if isinstance(item, Path)
            else ImageRef(f"{ds.name} #{i}", "digits", str(i), names[lab])
            for i, (item, lab) in enumerate(zip(ds.items, ds.labels))]
    return refs[:limit] if limit is not None else refs


def samples() -> list[ImageRef]:
    """Every built-in sample: scikit-learn's photographs, then the sample folder's images."""
    return sklearn_samples() + folder_samples()


def samples_for(in_chans: int) -> list[ImageRef]:
    """The built-in samples worth showing a model: colour photographs say little about a grayscale one."""
    return samples() if in_chans == 3 else []


def image_data_for(in_chans: int) -> str:
    """The data whose images to offer a model besides the built-in samples: none for a colour model (the
    photographs and the sample folder serve), digits-like data for the others."""
    return "" if in_chans == 3 else suggested_data(in_chans, None)


def merge_samples(*groups: list[ImageRef]) -> list[ImageRef]:
    """The groups in order, each file once."""
    merged: dict[str, ImageRef] = {}
    for ref in (r for g in groups for r in g):
        merged.setdefault(ref.path, ref)
    return list(merged.values())


def default_picks(refs: list[ImageRef], n: int = 2) -> list[ImageRef]:
    """What to show first: real photographs with a known class (the sample folder), else the first ones."""
    return ([r for r in refs if r.origin == "folder"] or refs)[:n]


def look_sample(in_chans: int) -> ImageRef | None:
    """One image to show where a model looks at a glance: a labelled photograph for a colour model, a digit
    for a grayscale one (what `image_data_for` offers it)."""
    refs = samples_for(in_chans) or (data_samples(image_data_for(in_chans), limit=8) if image_data_for(in_chans) else [])
    picks = default_picks(refs, 1)
    return picks[0] if picks else None
