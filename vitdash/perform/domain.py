"""Is the data the model's domain? An accuracy measured on images the model was never meant to see (8x8
digits blown up for a 28x28 Fashion-MNIST model) is a number about nothing, and must say so before it is shown
or saved.

What the model was trained on is read from what it carries: a dataset named in its metadata, its own class
names, its file name ("fmnist_vit.pth"), checked against the input size and class count the named set has.
The data's domain is what `discover` found (scikit-learn's digits, ImageNet synsets) or a known set named by
its folder, and its images' size. The two plainly differ when both are known and are different sets, when the
model's classes are named and none of the data's classes is among them, or when the images are blown up at
least UPSCALE_LIMIT times to the model's input (the model never saw images that blurry).
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vitdash.data.datasets import Dataset, load_digits
from vitdash.data.labels import LabelMapping, class_names
from vitdash.load.checkpoint import Checkpoint

UPSCALE_LIMIT = 2.0


@dataclass(frozen=True)
class KnownSet:
    """A data set people train small and large ViTs on: how to recognize its name, and its images."""

    name: str
    pattern: str  # regex on lower-cased names (file, folder, metadata)
    size: tuple[int, int] | None  # native image size (None: photographs of any size)
    channels: int
    classes: int
    labels: tuple[str, ...] = ()

    def describe(self) -> str:
        colour = "grayscale" if self.channels == 1 else "colour"
        return f"{self.size[0]}x{self.size[1]} {colour} {self.name}" if self.size else f"{self.name} photographs"


_DIGITS = tuple(str(i) for i in range(10))
KNOWN_SETS = (
    KnownSet("scikit-learn digits", r"sklearn\.datasets\.load_digits|^digits$|sklearn[ _-]?digits", (8, 8), 1, 10,
             _DIGITS),
    KnownSet("Fashion-MNIST", r"f(ashion)?[ _-]?mnist", (28, 28), 1, 10,
             ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
              "Ankle boot")),
    KnownSet("KMNIST", r"kmnist|kuzushiji", (28, 28), 1, 10),
    KnownSet("EMNIST", r"emnist", (28, 28), 1, 47),
    KnownSet("MNIST", r"(?<![a-z])mnist", (28, 28), 1, 10, _DIGITS),
    KnownSet("CIFAR-100", r"cifar[ _-]?100", (32, 32), 3, 100),
    KnownSet("CIFAR-10", r"cifar[ _-]?10(?!\d)", (32, 32), 3, 10,
             ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")),
    KnownSet("SVHN", r"svhn", (32, 32), 3, 10, _DIGITS),
    KnownSet("STL-10", r"stl[ _-]?10", (96, 96), 3, 10),
    KnownSet("Tiny ImageNet", r"tiny[ _-]?imagenet", (64, 64), 3, 200),
    KnownSet("ImageNet", r"imagenet|ilsvrc|in1k|in21k|in22k", None, 3, 1000),
)


@dataclass
class DomainCheck:
    """Whether the data is the model's domain; `message` says why not, in words, when it plainly is not."""

    mismatch: bool
    message: str
    model_set: str | None  # what the model was trained on, when it says so
    model_evidence: str
    data_set: str | None
    data_size: tuple[int, int] | None
    model_size: tuple[int, int]
    reasons: list[str] = field(default_factory=list)

    @property
    def short(self) -> str:
        """A caption's worth: '' when in its domain, else what the model is for against what the data is."""
        if not self.mismatch:
            return ""
        model = self.model_set or f"{self.model_size[0]}x{self.model_size[1]} px"
        return f"not this model's domain ({model} model, {self.data_set or 'other'} images)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _norm(label: str) -> str:
    return re.sub(r"[\s_\-/]+", " ", str(label)).strip().lower()


def _strings(value: Any, key: str = "") -> list[tuple[str, str]]:
    """(key, text) for every string in nested metadata whose key names a data set."""
    if isinstance(value, Mapping):
        return [pair for k, v in value.items() for pair in _strings(v, str(k))]
    if isinstance(value, (list, tuple)):
        return [pair for v in value for pair in _strings(v, key)]
    return [(key, value)] if isinstance(value, str) and re.search(r"data", key, re.I) else []


def _named(text: str) -> list[KnownSet]:
    low = text.lower()
    return [k for k in KNOWN_SETS if re.search(k.pattern, low)]


def _by_name(text: str) -> KnownSet | None:
    return next(iter(_named(text)), None)


def _by_labels(labels: Sequence[str] | None) -> KnownSet | None:
    if not labels:
        return None
    wanted = [_norm(v) for v in labels]
    return next((k for k in KNOWN_SETS if k.labels and k.labels != _DIGITS and [_norm(v) for v in k.labels] == wanted),
                None)


def training_set(ckpt: Checkpoint, num_classes: int, img_size: tuple[int, int], in_chans: int
                 ) -> tuple[KnownSet | None, str]:
    """The data set the checkpoint says it was trained on, and how it says so; a name only counts when the
    model's head and input fit that set (a 'mnist' file with a 1000-way colour head is something else)."""
    labels = class_names(num_classes, ckpt.metadata) if num_classes else None
    found = _by_labels(labels)
    if found is not None:
        return found, f"its {num_classes} class names are {found.name}'s"
    parts = Path(ckpt.source).parts[-2:] if ckpt.source else ()  # the file and its folder, not a whole path
    named = [(text, f"its metadata says {key} = {text!r}") for key, text in _strings(ckpt.metadata)]
    names = dict.fromkeys([ckpt.name, *parts[-1:]])
    named += [(text, f"its name {text!r} says so") for text in names if text]
    named += [(text, f"its folder {text!r} says so") for text in parts[:-1] if text not in names]
    for text, why in named:
        found = next((k for k in _named(text) if _fits(k, num_classes, img_size, in_chans)), None)
        if found is not None:
            return found, why
    return None, ""


def head_names(ckpt: Checkpoint, num_classes: int, img_size: Sequence[int], in_chans: int) -> list[str] | None:
    """Names of the head's outputs: the checkpoint's own (or ImageNet's), else those of the data set it says it
    was trained on when that set names its classes in a standard order (Fashion-MNIST, CIFAR-10)."""
    names = class_names(num_classes, ckpt.metadata)
    if names or not num_classes:
        return names
    known, _ = training_set(ckpt, num_classes, (int(img_size[0]), int(img_size[1])), in_chans)
    return list(known.labels) if known is not None and len(known.labels) == num_classes else None


def _fits(known: KnownSet, num_classes: int, img_size: tuple[int, int], in_chans: int) -> bool:
    if in_chans != known.channels:
        return False
    if known.size is None:  # ImageNet: a head of one of its subsets (1k, 21k, ...) or none
        from timm.data import infer_imagenet_subset

        return not num_classes or infer_imagenet_subset({"num_classes": num_classes}) is not None
    return (not num_classes or num_classes == known.classes) and max(img_size) <= 4 * max(known.size)


def data_set(ds: Dataset) -> KnownSet | None:
    if ds.kind.startswith("digits"):
        return KNOWN_SETS[0]
    if ds.synset_classes:
        return KNOWN_SETS[-1]
    return _by_name(ds.name) or _by_labels(ds.class_names())


def _data_words(known: KnownSet | None, ds: Dataset, size: tuple[int, int] | None) -> str:
    what = known.name if known is not None else f"images from {ds.name}"
    return f"{what}, {size[0]}x{size[1]} px" if size else what


def domain_check(ckpt: Checkpoint, ds: Dataset, num_classes: int, img_size: Sequence[int], in_chans: int,
                 mapping: LabelMapping | None = None) -> DomainCheck:
    """Compare what the model was trained on with the data it is about to be scored on."""
    model_hw = (int(img_size[0]), int(img_size[1]))
    model_set, evidence = training_set(ckpt, num_classes, model_hw, in_chans)
    data_known = data_set(ds)
    data_hw = ds.image_size()
    reasons = []
    if model_set is not None and data_known is not None and model_set.name != data_known.name:
        reasons.append(f"the model was trained on {model_set.name} ({evidence}), the data is {data_known.name}")
    if data_known is not None and data_known.channels != in_chans:
        reasons.append(f"the data is {'grayscale' if data_known.channels == 1 else 'colour'}, the model takes "
                       f"{'grayscale' if in_chans == 1 else 'colour'} images")
    names = class_names(num_classes, ckpt.metadata) if num_classes else None
    if names and mapping is not None and mapping.guess:
        reasons.append(f"the model names its classes ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''}) "
                       f"and the data's ({', '.join(ds.class_names()[:4])}, ...) are not among them")
    if data_hw is not None and model_set is None:
        factor = min(model_hw[0] / data_hw[0], model_hw[1] / data_hw[1])
        if factor >= UPSCALE_LIMIT:
            reasons.append(f"the {data_hw[0]}x{data_hw[1]} images are blown up {factor:.1f}x to the model's "
                           f"{model_hw[0]}x{model_hw[1]} input, which it never saw at that blur")
    if not reasons:
        return DomainCheck(False, "", model_set and model_set.name, evidence, data_known and data_known.name, data_hw,
                           model_hw)
    data_words = _data_words(data_known, ds, data_hw)
    if model_set is not None:
        head = f"This model was trained on {model_set.describe()} ({evidence}); these are {data_words}"
    else:
        colour = "grayscale" if in_chans == 1 else "colour"
        head = (f"This model takes {model_hw[0]}x{model_hw[1]} {colour} images and does not say what it was trained "
                f"on; these are {data_words}")
    message = f"{head}: the number says nothing about it. Check it on data from its own domain."
    return DomainCheck(True, message, model_set and model_set.name, evidence, data_known and data_known.name, data_hw,
                       model_hw, reasons)


def sample_domain(ckpt: Checkpoint, arch, origin: str) -> DomainCheck:
    """Whether a sample image shown without a score (a rollout) is from the model's domain. Only the built-in
    digits are judged (what a grayscale model is shown when nothing else is at hand); photographs offered to a
    colour model are not evidence either way."""
    if origin != "digits":  # an ImageRef's origin
        return DomainCheck(False, "", None, "", None, None, (int(arch.img_size[0]), int(arch.img_size[1])))
    return domain_check(ckpt, load_digits(), arch.num_classes, arch.img_size, arch.in_chans)
