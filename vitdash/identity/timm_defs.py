"""What timm's own definition of a named model says (on the meta device: no memory, no weights), and
which timm model the metadata names."""
from __future__ import annotations

import functools
from typing import Any

import torch


def timm_name(meta: dict[str, Any]) -> str | None:
    """The timm architecture the metadata names (load_timm, timm's Hub config.json, timm train.py args)."""
    cfg = meta.get("pretrained_cfg")
    config = meta.get("config")
    for name in (meta.get("timm_model"), cfg.get("architecture") if isinstance(cfg, dict) else None,
                 config.get("architecture") if isinstance(config, dict) else None):
        if isinstance(name, str) and name:
            return name.split(".")[0]
    return None


@functools.lru_cache(maxsize=16)
def timm_block(name: str) -> torch.nn.Module | None:
    """The first block of timm's definition of `name`, on the meta device (no memory, no weights)."""
    import timm

    if not timm.is_model(name):
        return None
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    return getattr(model, "blocks", [None])[0]
