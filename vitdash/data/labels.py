"""Which output of a head is which class: the checkpoint's own id2label / class_to_idx, ImageNet's names,
and the mapping of a data set's classes onto a head's outputs."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from vitdash.data.datasets import Dataset
from vitdash.errors import VitdashError


@dataclass
class LabelMapping:
    """Which head output each data class is; `method` says how that was decided, `guess` if it was not known."""

    method: str
    head_index: list[int]  # per data class
    num_outputs: int
    guess: bool = False
    warning: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "guess": self.guess, "warning": self.warning,
                "num_outputs": self.num_outputs, "head_index": list(self.head_index)}


def _norm_name(s: str) -> str:
    return re.sub(r"[\s_\-]+", " ", str(s)).strip().lower()


def _match_names(classes: list[str], name_to_idx: dict[str, int]) -> list[int] | None:
    """Map data classes to head indices by name: exact, then case/underscore-insensitive, then first lemma."""
    norm = {}
    for name, i in name_to_idx.items():
        norm.setdefault(_norm_name(name), i)
        norm.setdefault(_norm_name(str(name).split(",")[0]), i)
    out = []
    for c in classes:
        i = name_to_idx.get(c, norm.get(_norm_name(c)))
        if i is None:
            return None
        out.append(int(i))
    return out


def _id2label(metadata: dict[str, Any]) -> dict[Any, Any] | None:
    """The checkpoint's own output index -> label map: its `id2label`, else its (Hugging Face) config's."""
    config = metadata.get("config") if isinstance(metadata.get("config"), dict) else {}
    raw = metadata.get("id2label") or config.get("id2label")
    return raw if isinstance(raw, dict) and raw else None


def _label_to_index(metadata: dict[str, Any]) -> dict[str, int] | None:
    try:
        return {str(v): int(k) for k, v in (_id2label(metadata) or {}).items()} or None
    except (TypeError, ValueError):
        return None


def map_labels(ds: Dataset, metadata: dict[str, Any], num_outputs: int) -> LabelMapping:
    """Tie each data class to a head output, from the most to the least trustworthy source.

    Order: the checkpoint's own `class_to_idx`; ImageNet synset ids through timm's `ImageNetInfo` when the
    head size is a known ImageNet subset; the checkpoint's `id2label`; otherwise folder order, flagged as a guess.
    """
    n = len(ds.classes)
    if num_outputs <= 0:
        raise VitdashError("this checkpoint has no classification head, so there is nothing to score directly; "
                           "run the few-shot probe (python -m vitdash fewshot) to measure its features")
    c2i = metadata.get("class_to_idx")
    if isinstance(c2i, dict) and c2i:
        mapped = _match_names(ds.classes, c2i) or (
            _match_names(ds.class_names(), c2i) if ds.synset_classes else None)
        if mapped is not None:
            return _checked(LabelMapping("checkpoint class_to_idx", mapped, num_outputs), ds)
    if ds.synset_classes:
        from timm.data import ImageNetInfo, infer_imagenet_subset

        subset = infer_imagenet_subset({"num_classes": num_outputs})
        if subset is not None:
            index = {s: i for i, s in enumerate(ImageNetInfo(subset).label_names())}
            missing = [c for c in ds.classes if c not in index]
            if missing:
                raise VitdashError(f"{len(missing)} data classes are not among the {subset} classes of this "
                                   f"{num_outputs}-way head (e.g. {', '.join(missing[:5])})")
            return _checked(LabelMapping(f"WordNet synset ids -> {subset} (timm ImageNetInfo)",
                                         [index[c] for c in ds.classes], num_outputs), ds)
    id2label = _label_to_index(metadata)
    if id2label:
        mapped = _match_names(ds.class_names(), id2label) or _match_names(ds.classes, id2label)
        if mapped is not None:
            return _checked(LabelMapping("checkpoint id2label", mapped, num_outputs), ds)
    if n > num_outputs:
        raise VitdashError(
            f"the head has {num_outputs} outputs but the data has {n} classes, and nothing in the checkpoint "
            "names its classes: the head cannot score this data (run the few-shot probe instead)")
    warning = (f"label mapping is a guess: data class i (folder order: {', '.join(ds.classes[:5])}"
               f"{', ...' if n > 5 else ''}) is taken as head output i; nothing in the checkpoint names its classes")
    return LabelMapping("folder order (guess)", list(range(n)), num_outputs, guess=True, warning=warning)


def _checked(mapping: LabelMapping, ds: Dataset) -> LabelMapping:
    bad = [c for c, i in zip(ds.classes, mapping.head_index) if not 0 <= i < mapping.num_outputs]
    if bad:
        raise VitdashError(f"{mapping.method} maps {', '.join(bad[:5])} outside the head's "
                           f"{mapping.num_outputs} outputs")
    return mapping


def class_names(num_classes: int, metadata: dict[str, Any] | None = None) -> list[str] | None:
    """Names for the head's outputs: the checkpoint's own labels first, else ImageNet's when the size matches."""
    metadata = metadata or {}
    id2label = _id2label(metadata)
    if id2label:
        names = _by_index(id2label, num_classes)
        if names:
            return names
    class_to_idx = metadata.get("class_to_idx")
    if isinstance(class_to_idx, dict):
        names = _by_index({v: k for k, v in class_to_idx.items()}, num_classes)
        if names:
            return names
    return _imagenet_names(num_classes)


def _by_index(index_to_name: dict[Any, Any], num_classes: int) -> list[str] | None:
    """The names in index order, if the indices are exactly 0..num_classes-1 (as ints or digit strings)."""
    try:
        named = {int(i): str(name) for i, name in index_to_name.items()}
    except (TypeError, ValueError):
        return None
    return [named[i] for i in range(num_classes)] if sorted(named) == list(range(num_classes)) else None


@cache
def _imagenet_names(num_classes: int) -> list[str] | None:
    """Descriptions of an ImageNet head (1k, 21k, ...) when the output count matches one of timm's subsets."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    subset = infer_imagenet_subset({"num_classes": num_classes})
    if subset is None:
        return None
    info = ImageNetInfo(subset)
    return [info.index_to_description(i) for i in range(num_classes)]
