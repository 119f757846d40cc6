"""What every result shares on its way out: strict JSON (no NaN/inf, no tensors), and progress reports.

Results are dataclasses with a `to_dict()`; the CLI prints that dict, the report embeds it and the pages
lay it out, so all three show the same numbers from the same call.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Progress:
    """One report from a long call (an audit, an evaluation, the demo's training, a population, a report):
    `done` of `total` steps and what is happening in words. Pages draw `fraction` and `message` as a bar;
    the CLI prints a line per `stage` (a coarse phase: an epoch, a report section). `item` is the step's own
    result where a caller shows it as it streams (the zoo's ModelAudit)."""

    done: int
    total: int
    message: str = ""
    stage: str = ""
    elapsed_s: float = 0.0
    skipped: int = 0
    item: Any = None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    @property
    def eta_s(self) -> float | None:
        return self.elapsed_s / self.done * (self.total - self.done) if self.done else None


ProgressFn = Callable[[Progress], None]
