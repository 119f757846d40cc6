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
from PIL import Image

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


def to_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
