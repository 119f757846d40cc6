"""The canonical checkpoint: every source and format ends here, so analyses see one shape of data.

Tensors are held lazily (`TensorStore`): shapes and dtypes are known up front, values are read
only when an analysis asks for them. When the layout is recognized the names are timm's
`VisionTransformer` state-dict keys; otherwise they are the file's own names (a generic tensor set).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from vitdash.common.ordering import natural_key
from vitdash.common.results import jsonable
from vitdash.load.buffers import Buffer, find_buffers

LAYOUTS = ("timm", "torchvision", "hf", "open_clip", "mae", "model_zoo", "supergradients", "structure", "unknown")


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


class TensorStore(Mapping[str, torch.Tensor]):
    """Read-only mapping name -> tensor whose values are produced on demand.

    Each entry is a zero-argument loader plus its `TensorInfo`, so a 1 GB file can be listed,
    counted and mapped without reading it; `store[name]` runs the loader (no caching: callers
    that reuse a tensor keep it themselves, which keeps peak memory at one tensor).
    """

    def __init__(self, loaders: Mapping[str, Callable[[], torch.Tensor]], infos: Mapping[str, TensorInfo]):
        self._loaders = dict(loaders)
        self._infos = dict(infos)

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor]) -> TensorStore:
        loaders = {k: (lambda t=t: t) for k, t in tensors.items()}
        infos = {k: TensorInfo(tuple(t.shape), t.dtype) for k, t in tensors.items()}
        return cls(loaders, infos)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._loaders[name]()

    def __contains__(self, name: object) -> bool:  # (Mapping's default would load the tensor to find out)
        return name in self._loaders

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)

    def info(self, name: str) -> TensorInfo:
        return self._infos[name]

    def shape(self, name: str) -> tuple[int, ...]:
        return self._infos[name].shape

    @property
    def num_params(self) -> int:
        return sum(i.numel for i in self._infos.values())

    @property
    def nbytes(self) -> int:
        """Bytes the tensors take once read (what a cache holding this store is charged)."""
        return sum(i.numel * i.dtype.itemsize for i in self._infos.values())

    @property
    def dtypes(self) -> list[str]:
        return sorted({str(i.dtype).removeprefix("torch.") for i in self._infos.values()})

    def loader(self, name: str) -> Callable[[], torch.Tensor]:
        return self._loaders[name]

    def derive(self, name: str, info: TensorInfo, fn: Callable[[], torch.Tensor]) -> None:
        """Add a tensor computed from others (layout mappers use this, e.g. q/k/v -> qkv)."""
        self._loaders[name] = fn
        self._infos[name] = info

    def materialize(self) -> dict[str, torch.Tensor]:
        return {k: self[k] for k in self}


@dataclass
class Checkpoint:
    """One checkpoint as vitdash sees it, whatever it came from.

    `tensors` uses canonical timm names when `canonical` is true; `unmapped_keys` are the source's
    keys that the layout mapping left over (for example an auxiliary head), kept out of `tensors`.
    """

    tensors: TensorStore
    source: str
    format: str
    layout: str = "unknown"
    canonical: bool = False
    wrappers: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    unmapped_keys: list[str] = field(default_factory=list)
    unmapped_reasons: dict[str, str] = field(default_factory=dict)  # why, for the left-over keys set aside knowingly
    load_warnings: list[str] = field(default_factory=list)
    # (sha256, names of tensors holding NaN/Inf), or the function that computes them on first use.
    integrity: tuple[str, list[str]] | Callable[[], tuple[str, list[str]]] = ("", [])
    size_bytes: int = 0
    name: str = ""
    is_vit: bool = False
    looks_like: str = ""
    origins: dict[str, list[str]] = field(default_factory=dict)  # canonical name -> the file's keys it came from
    # The file's own tensors (lazy), and the canonical tensors whose values are not the file's own (products, block
    # diagonals, synthesized zeros): an audit reads the file's tensors behind those, and every tensor left over.
    source_tensors: TensorStore | None = None
    derived: list[str] = field(default_factory=list)
    _buffers: list[Buffer] | None = field(default=None, repr=False)

    @property
    def num_params(self) -> int:
        """Elements of every tensor in the file (buffers included; see `num_learned_params`)."""
        return (self.source_tensors if self.source_tensors is not None else self.tensors).num_params

    def read(self, name: str) -> torch.Tensor:
        """A tensor an audit names: canonical, or the file's own (`file:<key>` when a canonical name shadows it)."""
        if name in self.tensors:
            return self.tensors[name]
        key = name.removeprefix("file:")
        if self.source_tensors is not None and key in self.source_tensors:
            return self.source_tensors[key]
        raise KeyError(name)

    @property
    def buffers(self) -> list[Buffer]:
        """The file's deterministic tables (sin-cos position tables, masks, constant and index tables)."""
        if self._buffers is None:
            self._buffers = find_buffers(self.source_tensors if self.source_tensors is not None else self.tensors)
        return self._buffers

    @property
    def num_learned_params(self) -> int:
        store = self.source_tensors if self.source_tensors is not None else self.tensors
        return self.num_params - sum(store.info(b.name).numel for b in self.buffers)

    @property
    def nbytes(self) -> int:
        return self.tensors.nbytes

    def _integrity(self) -> tuple[str, list[str]]:
        """Hashing and scanning every byte costs several times a load, and building a model or running one
        analysis needs neither, so both run on the first read of `sha256` or `warnings`, once."""
        if callable(self.integrity):
            self.integrity = self.integrity()
        return self.integrity

    @property
    def sha256(self) -> str:
        return self._integrity()[0]

    @property
    def warnings(self) -> list[str]:
        bad = self._integrity()[1]
        nonfinite = [f"non-finite values (NaN/Inf) in {len(bad)} tensor(s): {', '.join(bad[:10])}"] if bad else []
        return nonfinite + list(self.load_warnings)

    def mapping(self) -> list[dict[str, Any]]:
        """What the layout mapping did, one row per tensor: the file's key(s) -> the name analyses use, in
        natural order of the file's keys (a generic tensor set keeps its own names)."""
        rows = []
        for name in self.tensors:
            info = self.tensors.info(name)
            origin = " + ".join(self.origins.get(name, [name])) or "(none: made by the mapping, e.g. a zero bias)"
            rows.append({"original key": origin, "canonical name": name,
                         "shape": "x".join(map(str, info.shape)), "dtype": str(info.dtype).removeprefix("torch."),
                         "params": info.numel})
        return sorted(rows, key=lambda r: natural_key(r["original key"]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "format": self.format,
            "layout": self.layout,
            "canonical": self.canonical,
            "num_tensors": len(self.tensors),
            "num_params": self.num_params,
            "num_learned_params": self.num_learned_params,
            "buffers": [b.to_dict() for b in self.buffers],
            "dtypes": self.tensors.dtypes,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "wrappers": list(self.wrappers),
            "metadata": jsonable(self.metadata),
            "unmapped_keys": list(self.unmapped_keys),
            "unmapped_reasons": dict(self.unmapped_reasons),
            "warnings": list(self.warnings),
            "is_vit": self.is_vit,
            "looks_like": self.looks_like,
        }

