"""Init, trained and fresh-head state dicts of every reproduction module, trained once per machine and cached.

For a module <name> (build(), EXPECTED and the optional TRAIN / HEAD / loss_fn / predict / evaluate hooks,
see common.py):
    init        the state dict right after build() under torch.manual_seed(0)
    trained     after TRAIN['steps'] Adam steps (batch 64) on scikit-learn's digits, upscaled to the module's
                image size and normalised to [-1, 1]
    fresh_head  the trained body with the HEAD keys taken from a fresh build() (seed 1): the module's own init
The cache key hashes the training code, common.py and the module's source (and the package modules it reuses), so
an edited module or recipe is retrained, never hidden by an older state.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import multiprocessing
import os
import shutil
import tempfile
import types
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tests.implementations.common import NORM_MEAN, NORM_STD

PACKAGE = "tests.implementations"
HERE = Path(__file__).resolve().parent
DEFAULT_STEPS = 300
DEFAULT_LR = 1e-3
BATCH = 64
_NOT_MODULES = {"__init__", "common", "states"}


def names() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.py") if p.stem not in _NOT_MODULES)


def module(name: str) -> types.ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


def _key(mod: types.ModuleType) -> str:
    """The training recipe (this file's training code and constants, common.py) and the module's source, with the
    package modules it reuses."""
    reused = sorted({v.__name__ for v in vars(mod).values()
                     if isinstance(v, types.ModuleType) and v.__name__.startswith(PACKAGE)} | {mod.__name__})
    recipe = "".join(inspect.getsource(f) for f in (_train, digits, images)) + repr((DEFAULT_STEPS, DEFAULT_LR, BATCH))
    h = hashlib.sha256(recipe.encode() + (HERE / "common.py").read_bytes())
    for name in reused:
        h.update(inspect.getsource(importlib.import_module(name)).encode())
    h.update(torch.__version__.encode())
    return h.hexdigest()[:16]


def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits in [0, 1], stratified 75/25 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.images.astype(np.float32) / 16.0
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.25, random_state=0, stratify=d.target)
    return (torch.from_numpy(xtr)[:, None], torch.from_numpy(ytr).long(),
            torch.from_numpy(xte)[:, None], torch.from_numpy(yte).long())


def images(x: torch.Tensor, size: int, in_chans: int) -> torch.Tensor:
    y = x if size == x.shape[-1] else F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    y = (y - NORM_MEAN) / NORM_STD
    return (y.repeat(1, in_chans, 1, 1) if in_chans != 1 else y).contiguous()


@dataclass
class States:
    init: dict[str, torch.Tensor]
    trained: dict[str, torch.Tensor]
    fresh_head: dict[str, torch.Tensor] | None
    head_keys: list[str]


def _train(mod: types.ModuleType) -> States:
    exp = mod.EXPECTED
    xtr, ytr, _, _ = digits()
    x = images(xtr, exp["img_size"], exp["in_chans"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = mod.build()
        init = {k: v.detach().clone() for k, v in model.state_dict().items()}
        cfg = {"lr": DEFAULT_LR, "steps": DEFAULT_STEPS, **getattr(mod, "TRAIN", {})}
        loss_fn = getattr(mod, "loss_fn", lambda m, a, b: F.cross_entropy(m(a), b))
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg["lr"])
        gen = torch.Generator().manual_seed(0)
        model.train()
        for _ in range(cfg["steps"]):
            idx = torch.randint(0, len(x), (BATCH,), generator=gen)
            loss = loss_fn(model, x[idx], ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
        fresh, head_keys = None, []
        if getattr(mod, "HEAD", []):
            torch.manual_seed(1)
            new = mod.build().state_dict()
            head_keys = [k for k in trained if any(k.startswith(p) for p in mod.HEAD)]
            fresh = {k: (new[k] if k in head_keys else v).detach().clone() for k, v in trained.items()}
    return States(init, trained, fresh, head_keys)


def _folder(name: str, cache_dir: Path) -> Path:
    return Path(cache_dir) / f"{name}-{_key(module(name))}"


def ensure(cache_dir: Path, wanted: list[str] | None = None) -> None:
    """Train every module not cached yet, one process per core (each trains on one thread): a fresh checkout
    trains the lot in about half the time one process would take."""
    missing = [n for n in (wanted or names()) if not (_folder(n, cache_dir) / "trained.pt").is_file()]
    workers = min(len(missing), os.cpu_count() or 1, 4)
    if workers < 2:
        for n in missing:
            states(n, cache_dir)
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(states, missing, [Path(cache_dir)] * len(missing)))


def states(name: str, cache_dir: Path) -> States:
    """The module's three states, from the cache or trained now (seconds per module, one thread)."""
    folder = _folder(name, cache_dir)
    files = {k: folder / f"{k}.pt" for k in ("init", "trained", "fresh_head", "head_keys")}
    if files["trained"].is_file():
        load = lambda p: torch.load(p, weights_only=True, map_location="cpu") if p.is_file() else None  # noqa: E731
        return States(load(files["init"]), load(files["trained"]), load(files["fresh_head"]),
                      load(files["head_keys"]) or [])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        st = _train(module(name))
    finally:
        torch.set_num_threads(threads)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name, dir=cache_dir))
    for k in ("init", "trained", "fresh_head", "head_keys"):
        value = getattr(st, k)
        if value is not None:
            torch.save(value, tmp / f"{k}.pt")
    try:
        tmp.rename(folder)
    except OSError:  # another process cached it first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    for stale in Path(cache_dir).glob(f"{name}-*"):  # states of an older recipe or module source
        if stale.is_dir() and stale != folder and len(stale.name) == len(folder.name):
            shutil.rmtree(stale, ignore_errors=True)
    return st
