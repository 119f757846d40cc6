"""Natural order for names with numbers in them: blocks.2 before blocks.10, as people count, not as text sorts.

Every table and bar chart of the app and the report orders tensor names, groups, model names and paths with
this one key, so the same checkpoint reads in the same order everywhere.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

# A decimal number ('lr0.001') unless its first digits follow a dot: 'blocks.0.10' is two indices, 0 and 10.
_NUMBER = re.compile(r"((?<![.\d])\d+\.\d+|\d+)")


def natural_key(name: Any) -> tuple:
    """Sort key: numbers compare as numbers ('blocks.2' < 'blocks.10', 'lr0.0001' < 'lr0.001'); text parts
    case-insensitively, then exactly, so two names never tie unless they are equal."""
    text = str(name)
    parts = tuple((0, float(p) if "." in p else int(p), "") if p[0].isdigit() else (1, 0, p.lower())
                  for p in _NUMBER.split(text) if p)
    return parts, text


def natural_sorted(names: Iterable[Any]) -> list:
    return sorted(names, key=natural_key)
