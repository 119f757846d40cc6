"""The parameters of an eval transform, with where each came from, and the timm transform they build."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Preprocessing:
    """The eval transform's parameters, with where each came from, so the page can show and override them."""

    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float
    interpolation: str
    crop_mode: str
    source: str
    notes: list[str] = field(default_factory=list)

    def transform(self):
        from timm.data import create_transform

        return create_transform(input_size=self.input_size, is_training=False, interpolation=self.interpolation,
                                mean=self.mean, std=self.std, crop_pct=self.crop_pct, crop_mode=self.crop_mode)

    @property
    def pil_mode(self) -> str:
        return "L" if self.input_size[0] == 1 else "RGB"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d
