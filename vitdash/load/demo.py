"""The built-in demo pair: a small ViT trained on scikit-learn's digits, and its untrained twin.

Every page needs a checkpoint whose truth is known to have something honest to show on a fresh machine
with no network and no files. vitdash trains one itself (seeded, well under a minute on 2 CPU cores)
and keeps the weights at initialization from the same seed, so "trained" and "at init" can be told apart
on a pair that differs only by training.

Inputs go through vitdash's own eval transform (`vitdash.data.transforms.Preprocessing`) built from the same
`pretrained_cfg` that is saved with the weights, so the accuracy check on 'digits' sees exactly the
tensors the model was trained on. Each model is saved as a Hugging Face style folder (`model.safetensors`
+ `config.json` with `pretrained_cfg`, `id2label`, `class_to_idx`, the accuracies and the held-out
indices) in the user's cache; the pair is written to a temporary folder and renamed into place, so two
sessions building at once never leave a half-written pair behind.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import struct
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitdash.common.compute import one_thread
from vitdash.common.results import Progress, ProgressFn
from vitdash.data.datasets import load_digits
from vitdash.data.transforms import Preprocessing
from vitdash.errors import VitdashError

FORMAT_VERSION = 1  # bump when the saved files change shape (the code hash in the key covers the rest)
TRAINED_NAME = "digits-vit-trained"
INIT_NAME = "digits-vit-init"
_BUILD_LOCK = threading.Lock()  # one build per process; other sessions wait and then reuse it


@dataclass(frozen=True)
class DemoRecipe:
    """Everything that decides the demo weights; its hash names the cache folder."""

    img_size: int = 16
    patch_size: int = 4
    embed_dim: int = 64
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 2.0
    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    # Adam's step is the same size for every weight, and a 16-input patch embedding starts at U(+-0.25), ten
    # times the scale of the rest: at the base rate it ends training almost where it started, which no
    # analysis (nor MoCo v3's deliberately frozen patch embedding) can tell from an untouched init.
    patch_lr_mult: float = 3.0
    weight_decay: float = 0.05
    test_fraction: float = 0.2
    seed: int = 0

    def key(self) -> str:
        """Recipe + this module's source: a vitdash whose training code changed never reuses older weights."""
        text = json.dumps({"format": FORMAT_VERSION, "code": _code_hash(), **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def timm_kwargs(self) -> dict[str, Any]:
        return dict(img_size=self.img_size, patch_size=self.patch_size, in_chans=1, num_classes=10,
                    embed_dim=self.embed_dim, depth=self.depth, num_heads=self.num_heads, mlp_ratio=self.mlp_ratio)


@functools.cache
def _code_hash() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


@dataclass
class DemoPair:
    """Where the pair lies and how good the trained one is (held-out digits the model never saw)."""

    trained: Path
    init: Path
    train_accuracy: float
    test_accuracy: float
    init_test_accuracy: float
    n_train: int
    n_test: int
    built_now: bool
    build_s: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["trained"], d["init"] = str(self.trained), str(self.init)
        return d


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """vitdash's cache folder: the argument, else $VITDASH_CACHE_DIR, else $XDG_CACHE_HOME/vitdash (~/.cache)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("VITDASH_CACHE_DIR"):
        return Path(os.environ["VITDASH_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vitdash"


def pair_dir(recipe: DemoRecipe | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    recipe = recipe or DemoRecipe()
    return cache_root(cache_dir) / "demo" / f"digits-vit-{recipe.key()}"


def find_demo(recipe: DemoRecipe | None = None, cache_dir: str | os.PathLike | None = None) -> DemoPair | None:
    """The cached pair if it is complete, else None (nothing is trained here)."""
    folder = pair_dir(recipe, cache_dir)
    trained, init = folder / TRAINED_NAME, folder / INIT_NAME
    files = [d / f for d in (trained, init) for f in ("model.safetensors", "config.json")]
    if not all(f.is_file() for f in files):
        return None
    try:
        info = json.loads((trained / "config.json").read_text())["vitdash_demo"]
    except (OSError, json.JSONDecodeError, KeyError):
        return None
    return DemoPair(trained, init, info["train_accuracy"], info["test_accuracy"], info["init_test_accuracy"],
                    info["n_train"], info["n_test"], built_now=False, build_s=0.0)


def ensure_demo(recipe: DemoRecipe | None = None, cache_dir: str | os.PathLike | None = None,
                progress: ProgressFn | None = None) -> DemoPair:
    """Reuse the cached pair, or train and save it (progress reported while training)."""
    recipe = recipe or DemoRecipe()
    found = find_demo(recipe, cache_dir)
    if found is not None:
        return found
    with _BUILD_LOCK:
        found = find_demo(recipe, cache_dir)  # another session may have finished while we waited
        if found is not None:
            return found
        target = pair_dir(recipe, cache_dir)
        _check_writable(target.parent)  # before training, not after: fail in a second, not in a minute
        start = time.perf_counter()
        result = train_demo(recipe, progress)
        _save_pair(result, recipe, target)
    pair = find_demo(recipe, cache_dir)
    if pair is None:
        raise VitdashError(f"the demo pair was written to {pair_dir(recipe, cache_dir)} but cannot be read back")
    pair.built_now, pair.build_s = True, time.perf_counter() - start
    return pair


# ------------------------------------------------------------------------------------------------ training


@dataclass
class TrainResult:
    init_state: dict[str, torch.Tensor]
    trained_state: dict[str, torch.Tensor]
    pretrained_cfg: dict[str, Any]
    train_accuracy: float
    test_accuracy: float
    init_test_accuracy: float
    train_indices: list[int]
    test_indices: list[int]


def preprocessing(recipe: DemoRecipe, mean: float, std: float):
    """The eval transform the accuracy check will rebuild from the saved `pretrained_cfg`."""

    return Preprocessing(input_size=(1, recipe.img_size, recipe.img_size), mean=(mean,), std=(std,), crop_pct=1.0,
                         interpolation="bicubic", crop_mode="center", source="vitdash demo")


def train_demo(recipe: DemoRecipe | None = None,
               progress: ProgressFn | None = None) -> TrainResult:
    """Train the digits ViT from a seeded init; returns both states and held-out accuracies."""
    import timm
    from sklearn.model_selection import train_test_split

    recipe = recipe or DemoRecipe()
    ds = load_digits()
    labels = np.asarray(ds.labels)
    raw = np.stack(ds.items).astype(np.float32) / 255.0
    mean, std = round(float(raw.mean()), 4), round(float(raw.std()), 4)
    prep = preprocessing(recipe, mean, std)
    transform = prep.transform()
    x = torch.stack([transform(ds.load(i, prep.pil_mode)) for i in range(len(ds))])
    y = torch.from_numpy(labels)
    train_idx, test_idx = train_test_split(np.arange(len(ds)), test_size=recipe.test_fraction,
                                           random_state=recipe.seed, stratify=labels)
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)

    with one_thread():  # matrices this small gain nothing from more threads, and lose a lot on a busy machine
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.seed)
            model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **recipe.timm_kwargs())
            init_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            init_acc = _accuracy(model, x[test_idx], y[test_idx])
            _fit(model, x[train_idx], y[train_idx], recipe, progress)
        trained_state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        train_acc = _accuracy(model, x[train_idx], y[train_idx])
        test_acc = _accuracy(model, x[test_idx], y[test_idx])
    keep = ("input_size", "mean", "std", "crop_pct", "interpolation", "crop_mode")
    cfg = {k: v for k, v in prep.to_dict().items() if k in keep}
    cfg.update(num_classes=10, label_names=list(ds.classes))
    return TrainResult(init_state, trained_state, cfg, train_acc, test_acc, init_acc,
                       train_idx.tolist(), test_idx.tolist())


def _fit(model, x, y, recipe: DemoRecipe, progress) -> None:
    """AdamW with a one-cycle schedule and gradient clipping: stable for a ViT on 1.4k tiny images."""
    from torch.nn import functional as F

    patch = list(model.patch_embed.parameters())
    rest = [p for p in model.parameters() if all(p is not q for q in patch)]
    rates = [recipe.lr, recipe.lr * recipe.patch_lr_mult]
    opt = torch.optim.AdamW([{"params": rest, "lr": rates[0]}, {"params": patch, "lr": rates[1]}],
                            weight_decay=recipe.weight_decay)
    per_epoch = len(y) // recipe.batch_size
    steps = per_epoch * recipe.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=rates, total_steps=steps, pct_start=0.15)
    start = time.perf_counter()
    step = 0
    model.train()
    for epoch in range(recipe.epochs):
        order = torch.randperm(len(y))
        for b in range(per_epoch):
            idx = order[b * recipe.batch_size:(b + 1) * recipe.batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            if progress is not None and (step % 5 == 0 or step == steps):
                elapsed = time.perf_counter() - start
                progress(Progress(step, steps, f"training the demo ViT on digits: epoch {epoch + 1}/{recipe.epochs}, "
                                  f"step {step}/{steps}, loss {loss.item():.3f}, {elapsed:.0f} s",
                                  stage=f"epoch {epoch + 1}" if step < steps else "trained", elapsed_s=elapsed))
    model.eval()


@torch.inference_mode()
def _accuracy(model, x: torch.Tensor, y: torch.Tensor) -> float:
    was_training = model.training
    model.eval()
    acc = float((model(x).argmax(1) == y).float().mean())
    model.train(was_training)
    return acc


# ------------------------------------------------------------------------------------------------ saving


def _config(result: TrainResult, recipe: DemoRecipe, state: str) -> dict[str, Any]:
    """timm Hub style config.json (model_args + pretrained_cfg) with the label maps and the demo's truth."""
    labels = result.pretrained_cfg["label_names"]
    trained = state == "trained"
    return {
        "model_args": recipe.timm_kwargs(),
        "num_classes": 10,
        "num_features": recipe.embed_dim,
        "global_pool": "token",
        "num_heads": recipe.num_heads,
        "image_size": recipe.img_size,
        "pretrained_cfg": result.pretrained_cfg,
        "label_names": labels,
        "id2label": {str(i): name for i, name in enumerate(labels)},
        "class_to_idx": {name: i for i, name in enumerate(labels)},
        "vitdash_demo": {
            "state": state,
            "description": ("small ViT trained by vitdash on scikit-learn's digits (8x8 upsampled to "
                            f"{recipe.img_size} px)" if trained else
                            "the same ViT at initialization (same seed, before training): its untrained twin"),
            "dataset": "sklearn.datasets.load_digits",
            "recipe": asdict(recipe),
            "train_accuracy": result.train_accuracy,
            "test_accuracy": result.test_accuracy,
            "init_test_accuracy": result.init_test_accuracy,
            "accuracy_of_this_checkpoint": result.test_accuracy if trained else result.init_test_accuracy,
            "n_train": len(result.train_indices),
            "n_test": len(result.test_indices),
            "test_indices": result.test_indices,
        },
    }


def _save_model(folder: Path, state_dict: dict[str, torch.Tensor], config: dict[str, Any]) -> None:
    from safetensors.torch import save

    folder.mkdir(parents=True)
    header = {"format": "pt"}
    header.update({k: json.dumps(config[k]) for k in ("pretrained_cfg", "class_to_idx", "model_args")})
    blob = save({k: v.contiguous() for k, v in state_dict.items()}, metadata=header)
    (folder / "model.safetensors").write_bytes(_sorted_header(blob))
    (folder / "config.json").write_text(json.dumps(config, indent=2))


def _sorted_header(blob: bytes) -> bytes:
    """The same file with its JSON header keys sorted: safetensors writes them in hash-map order, which changes
    from run to run, and the demo's sha256 must be the same on every machine (the audit history keys on it)."""
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.dumps(json.loads(blob[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # safetensors keeps the data section 8-byte aligned
    return struct.pack("<Q", len(header)) + header + blob[8 + n:]


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as e:
        raise VitdashError(f"cannot write the demo models under {folder}: {e.strerror or e}. "
                           "Set VITDASH_CACHE_DIR to a writable folder.") from None


def _save_pair(result: TrainResult, recipe: DemoRecipe, target: Path) -> None:
    """Write both models into a temporary sibling folder, then rename it into place in one step."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        _save_model(tmp / TRAINED_NAME, result.trained_state, _config(result, recipe, "trained"))
        _save_model(tmp / INIT_NAME, result.init_state, _config(result, recipe, "init"))
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # not a lost race with another process: a real failure
                raise
    except OSError as e:
        raise VitdashError(f"could not save the demo models under {target.parent}: {e}. "
                           "Set VITDASH_CACHE_DIR to a writable folder.") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
