"""Natural order for names with numbers in them: blocks.2 before blocks.10, as people count, not as text sorts.

Every table and bar chart of the app and the report orders tensor names, groups, model names and paths with
this one key, so the same checkpoint reads in the same order everywhere.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_PARTS = re.compile(r"(\d+)")


def natural_key(name: Any) -> tuple:
    """Sort key: digit runs compare as numbers ('blocks.2' < 'blocks.10'); text parts case-insensitively,
    then exactly, so two names never tie unless they are equal."""
    text = str(name)
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in _PARTS.split(text) if p)
    return parts, text


def natural_sorted(names: Iterable[Any]) -> list:
    return sorted(names, key=natural_key)
