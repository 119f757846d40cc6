"""Tiny models and exact comparisons shared by the format, source and layout tests."""
from __future__ import annotations

import torch


def tiny_vit(**kw):
    """A tiny timm ViT with every parameter moved off its init (constants at init hide swapped mappings)."""
    import timm

    model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, num_classes=5, **kw)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def assert_same_tensors(actual, expected) -> None:
    """Same names, bit-identical values."""
    assert set(actual) == set(expected)
    for k in expected:
        torch.testing.assert_close(actual[k], expected[k], rtol=0, atol=0, msg=k)
