"""Images to look at: safe opening of uploads and files, and samples that work offline.

Opening refuses, with a message naming the problem, what is not an image, a format other than JPEG/PNG/WebP,
a broken or truncated file, and an image whose pixel count could exhaust memory once decoded (checked from
the header before any pixel is read; PIL's own DecompressionBombError/Warning are turned into the same
message). Samples: the two photographs scikit-learn ships, and a folder of images (`VITDASH_SAMPLE_DIR`,
else `../shared/images/imagenet-sample` beside the repository when present).
"""
from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from vitdash.errors import VitdashError

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MAX_PIXELS = 50_000_000
SAMPLE_DIR_ENV = "VITDASH_SAMPLE_DIR"
_REPO = Path(__file__).resolve().parents[1]
DEFAULT_SAMPLE_DIR = _REPO.parent / "shared" / "images" / "imagenet-sample"


def open_image(source: bytes | str | Path, name: str | None = None, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode `source` (file bytes or a path) into an RGB image, or raise VitdashError saying why not."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "uploaded file"
        if not len(source):
            raise VitdashError(f"{label}: the file is empty")
        fp: io.BytesIO | Path = io.BytesIO(bytes(source))
    else:
        fp = Path(source)
        label = name or fp.name
        if not fp.is_file():
            raise VitdashError(f"{fp}: no such image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp)
            fmt = img.format
            if fmt not in SUPPORTED_FORMATS:
                raise VitdashError(f"{label}: {fmt} images are not supported; use JPEG, PNG or WebP")
            w, h = img.size
            if w * h > max_pixels:
                raise VitdashError(_too_big(label, w * h, max_pixels))
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise VitdashError(f"{label}: refused as a possible decompression bomb ({e})") from e
    except UnidentifiedImageError as e:
        raise VitdashError(f"{label}: not an image (or not a JPEG, PNG or WebP file PIL can read)") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise VitdashError(f"{label}: the image data is broken or truncated ({e})") from e
    return ImageOps.exif_transpose(img).convert("RGB")


def _too_big(label: str, pixels: int, limit: int) -> str:
    return (f"{label}: {pixels / 1e6:.0f} megapixels is over the limit of {limit / 1e6:.0f} megapixels "
            "(decoding it could exhaust memory); downscale it first")


@dataclass(frozen=True)
class ImageRef:
    """A sample image not yet decoded: what to call it, where it is, and its class when the name says so."""

    name: str
    origin: str  # 'sklearn' | 'folder' | 'data' (a file), or 'digits' (path is the index in sklearn's digits)
    path: str
    label: str | None = None

    def load(self) -> Image.Image:
        if self.origin == "digits":
            from vitdash.data import load_digits

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


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in `folder` (by suffix, hidden files skipped), sorted by name."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise VitdashError(f"{root} is not a folder")
    return sorted(p for p in root.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def label_from_name(path: str | Path) -> str | None:
    """The ImageNet class named by a file name that starts with a WordNet synset id (n01440764_tench.JPEG)."""
    from vitdash.data import SYNSET_RE, imagenet_lemma

    m = SYNSET_RE.match(Path(path).name)
    return imagenet_lemma(m.group(1)) if m else None


def folder_samples(folder: str | Path | None = None) -> list[ImageRef]:
    """Images of `folder` (default: `sample_dir()`; none when it is absent), labeled from their names."""
    folder = folder if folder is not None else sample_dir()
    if folder is None:
        return []
    return [ImageRef(p.stem, "folder", str(p), label_from_name(p)) for p in list_images(folder)]


def data_samples(data: str | Path, limit: int | None = None) -> list[ImageRef]:
    """Images of an accuracy-check data set (`vitdash.data.discover`: a folder, or 'digits'), with class names."""
    from vitdash.data import discover

    ds = discover(data)
    names = ds.class_names()
    refs = [ImageRef(item.stem, "data", str(item), names[lab]) if isinstance(item, Path)
            else ImageRef(f"{ds.name} #{i}", "digits", str(i), names[lab])
            for i, (item, lab) in enumerate(zip(ds.items, ds.labels))]
    return refs[:limit] if limit is not None else refs


def samples() -> list[ImageRef]:
    """Every built-in sample: scikit-learn's photographs, then the sample folder's images."""
    return sklearn_samples() + folder_samples()
