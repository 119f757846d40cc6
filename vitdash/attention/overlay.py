"""Heatmaps blended on images, as PIL images and PNG bytes (no matplotlib: colors come from plotly's scales).

A map on the patch grid is min-max normalized (its shape matters, not its scale, which differs between
rollout and raw attention), upsampled bilinearly to the image, colored through a 256-entry lookup table
sampled from a plotly colorscale, and alpha-blended with `opacity`.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vitdash.errors import VitdashError

COLORMAPS = ("Jet", "Turbo", "Viridis", "Inferno", "Magma", "Plasma", "Hot", "Cividis", "Greys")


@cache
def colormap_lut(name: str) -> np.ndarray:
    """(256, 3) uint8 colors of a plotly colorscale, low to high."""
    from plotly.colors import get_colorscale, sample_colorscale

    try:
        scale = get_colorscale(name)
    except Exception as e:  # plotly raises PlotlyError with its own list of names
        raise VitdashError(f"unknown colormap {name!r}; try one of {', '.join(COLORMAPS)}") from e
    colors = sample_colorscale(scale, list(np.linspace(0.0, 1.0, 256)), colortype="tuple")
    return np.round(np.asarray(colors, dtype=np.float64) * 255).astype(np.uint8)


def normalize(values: np.ndarray, clip: float = 1.0) -> np.ndarray:
    """Min-max to [0, 1]; a constant map becomes all zeros (nothing stands out).

    `clip` < 1 saturates values above that quantile, so one outlier patch (e.g. a DINOv2 "artifact" token
    that soaks up attention) does not wash out the rest of the map.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or not values.size:
        raise VitdashError(f"a heatmap must be a non-empty 2-D grid, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise VitdashError("the heatmap holds NaN or infinite values")
    if not 0.0 < clip <= 1.0:
        raise VitdashError(f"clip quantile must be in (0, 1], got {clip}")
    lo, hi = values.min(), np.quantile(values, clip)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(values)


def heatmap_image(values: np.ndarray, size: tuple[int, int], colormap: str = "Jet", clip: float = 1.0
                  ) -> Image.Image:
    """A grid map as an RGB image of `size` (width, height), bilinearly upsampled."""
    grid = Image.fromarray(normalize(values, clip).astype(np.float32))
    smooth = np.clip(np.asarray(grid.resize(size, Image.Resampling.BILINEAR)), 0.0, 1.0)
    return Image.fromarray(colormap_lut(colormap)[np.round(smooth * 255).astype(np.uint8)])


def blend(image: Image.Image, values: np.ndarray, colormap: str = "Jet", opacity: float = 0.5, clip: float = 1.0
          ) -> Image.Image:
    """`values` colored and laid over `image` with weight `opacity` (0: image only, 1: heatmap only)."""
    if not 0.0 <= opacity <= 1.0:
        raise VitdashError(f"opacity must be in [0, 1], got {opacity}")
    base = image.convert("RGB")
    return Image.blend(base, heatmap_image(values, base.size, colormap, clip), opacity)


def upscale(image: Image.Image, min_side: int = 224) -> Image.Image:
    """Enlarge small inputs (28-px MNIST models) so a patch grid is visible; nearest keeps pixels honest."""
    factor = -(-min_side // min(image.size))  # ceil
    if factor <= 1:
        return image
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def side_by_side(images: Sequence[Image.Image], gap: int = 4, background: tuple[int, int, int] = (255, 255, 255)
                 ) -> Image.Image:
    """Images in one row, top-aligned, `gap` pixels apart."""
    if not images:
        raise VitdashError("no images to put side by side")
    width = sum(im.width for im in images) + gap * (len(images) - 1)
    canvas = Image.new("RGB", (width, max(im.height for im in images)), background)
    x = 0
    for im in images:
        canvas.paste(im.convert("RGB"), (x, 0))
        x += im.width + gap
    return canvas


@cache
def _font(size: int = 12):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def mark_patches(image: Image.Image, patches: Sequence[tuple[int, int]], grid: tuple[int, int],
                 color: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Outline patches (row, column) of a `grid` laid over `image`: where the map was saturated or left out."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    ph, pw = out.height / grid[0], out.width / grid[1]
    for r, c in patches:
        box = (c * pw, r * ph, (c + 1) * pw - 1, (r + 1) * ph - 1)
        draw.rectangle(box, outline=(0, 0, 0), width=3)
        draw.rectangle(box, outline=color, width=1)
    return out


def with_colorbar(image: Image.Image, colormap: str, low: str, high: str, width: int = 14) -> Image.Image:
    """`image` with a vertical colour bar on its right, labelled with what its ends mean."""
    font = _font()
    labels = max(ImageDraw.Draw(image).textlength(t, font=font) for t in (low, high))
    canvas = Image.new("RGB", (image.width + 8 + width + 4 + int(labels) + 4, image.height), (255, 255, 255))
    canvas.paste(image.convert("RGB"), (0, 0))
    ramp = colormap_lut(colormap)[np.linspace(255, 0, image.height).round().astype(np.uint8)]  # high on top
    bar = Image.fromarray(np.repeat(ramp[:, None, :], width, axis=1))
    x = image.width + 8
    canvas.paste(bar, (x, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((x + width + 4, 0), high, fill=(0, 0, 0), font=font)
    draw.text((x + width + 4, image.height - 14), low, fill=(0, 0, 0), font=font)
    return canvas


def captioned(image: Image.Image, lines: Sequence[str], width: int | None = None) -> Image.Image:
    """`image` with text lines under it (file name and settings travel with a downloaded picture)."""
    font = _font()
    width = width or image.width
    wrapped: list[str] = []
    for line in lines:
        words, cur = line.split(), ""
        for w in words:
            if cur and ImageDraw.Draw(image).textlength(cur + " " + w, font=font) > width - 8:
                wrapped.append(cur)
                cur = w
            else:
                cur = f"{cur} {w}".strip()
        wrapped.append(cur)
    canvas = Image.new("RGB", (max(width, image.width), image.height + 6 + 16 * len(wrapped)), (255, 255, 255))
    canvas.paste(image.convert("RGB"), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(wrapped):
        draw.text((4, image.height + 4 + 16 * i), line, fill=(0, 0, 0), font=font)
    return canvas


def overlay_picture(image: Image.Image, values: np.ndarray, *, colormap: str = "Jet", opacity: float = 0.5,
                    clip: float = 1.0, marked: Sequence[tuple[int, int]] = (), caption: Sequence[str] = ()
                    ) -> Image.Image:
    """The overlay as people see and download it: `values` blended on `image`, `marked` patches outlined, a
    colour bar with the values at its ends, and `caption` lines (file name, settings) under it."""
    values = np.asarray(values, dtype=np.float64)
    picture = blend(image, values, colormap, opacity, clip)
    if marked:
        picture = mark_patches(picture, marked, values.shape)
    top = np.quantile(values, clip)
    picture = with_colorbar(picture, colormap, f"{values.min():.3g}",
                            f"{top:.3g}" + ("+" if top < values.max() else ""))
    return captioned(picture, caption) if caption else picture


def to_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
