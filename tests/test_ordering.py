"""Natural order: what every table and bar chart of the app and the report sorts names with."""
from __future__ import annotations

from vitdash.common.ordering import natural_sorted


def test_indices_sort_as_numbers_and_decimals_as_decimals():
    assert natural_sorted(["blocks.10.attn", "blocks.2.attn", "blocks.1.mlp", "cls_token"]) == [
        "blocks.1.mlp", "blocks.2.attn", "blocks.10.attn", "cls_token"]
    # learning rates in model names; but indices after a dot stay indices (layers.0.10 is block 0, module 10)
    assert natural_sorted(["ft_lr0.01", "ft_lr0.0001", "ft_lr0.001"]) == ["ft_lr0.0001", "ft_lr0.001", "ft_lr0.01"]
    assert natural_sorted(["layers.0.10", "layers.0.9", "layers.1.0"]) == ["layers.0.9", "layers.0.10", "layers.1.0"]


def test_ties_only_between_equal_names():
    assert natural_sorted(["Head", "head", "b", "a1", "a01"]) == ["a01", "a1", "b", "Head", "head"]
