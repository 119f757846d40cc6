"""What every result shares on its way out: strict JSON (no NaN/inf, no tensors), and progress reports.

Results are dataclasses with a `to_dict()`; the CLI prints that dict, the report embeds it and the pages
lay it out, so all three show the same numbers from the same call.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def finite_float(x: Any) -> float | None:
    """A number as a float, or None when it is missing, not a number, or NaN/inf (strict JSON has none)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def jsonable(obj: Any) -> Any:
    """Any result or metadata as strict JSON: NaN/inf become null, tuples lists, tensors their value (one
    element) or their shape, and what JSON cannot hold its repr, so structure is never lost."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if hasattr(obj, "shape") and hasattr(obj, "numel"):  # a torch tensor (torch is not imported for this)
        return jsonable(obj.item()) if obj.numel() == 1 else f"tensor{tuple(obj.shape)}"
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # a numpy scalar
        return jsonable(obj.item())
    return repr(obj)
