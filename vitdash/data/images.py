"""Images to look at: safe opening of uploads and files, and samples that work offline.

Opening refuses, with a message naming the problem, what is not an image, a format other than JPEG/PNG/WebP,
a broken or truncated file, and an image whose pixel count could exhaust memory once decoded (checked from
the header before any pixel is read; PIL's own DecompressionBombError/Warning are turned into the same
message). Samples: the two photographs scikit-learn ships, and a folder of images (`VITDASH_SAMPLE_DIR`,
else `../shared/images/imagenet-sample` beside the repository when present).
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from vitdash.errors import VitdashError

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP")


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


MAX_PIXELS = 50_000_000


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


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in `folder` (by suffix, hidden files skipped), sorted by name."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise VitdashError(f"{root} is not a folder")
    return sorted(p for p in root.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
