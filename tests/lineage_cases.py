"""Real relatives for the lineage tests, built by training, never by editing numbers to look related.

Two families, each a library folder (the references) and queries (files whose true lineage is known):
- digits: the demo pair (a ViT trained on digits from a seeded init, and that init) is the root. Built on it: a
  fine-tune on another digits task (parity: the head resized to 2 classes), a second fine-tune (labels shifted),
  its last block dropped and the rest fine-tuned, a training from the saved init file with another data order,
  the trained model re-saved in fp16 and bf16 and
  in torchvision's layout, its position embedding resampled to a 6x6 grid and fine-tuned there, two independent
  trainings from other seeds and a fresh init of the same architecture.
- dinov2: the shared DINOv2-S (Hugging Face layout) fine-tuned for a few dozen steps on the shared images at 56 px
  (position embedding interpolated 37x37 -> 4x4), once with a probe that is discarded and once with a new head
  kept; re-saved in timm's layout in fp16; and a fresh init of its architecture.
Everything is built once per machine into pytest's cache, keyed by this file's and the demo's code, so the suite
pays for the training once (about a minute on 2 cores).
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch.nn import functional as F

from tests.demo_utils import demo_cache_dir
from tests.test_compare import to_torchvision

# (query, library entry) -> (relation, ancestor): 'it' = the library entry is the ancestor, 'query' = the query is.
DIGITS_LIBRARY = ("digits-vit-trained", "digits-vit-init", "twin-seed1.safetensors", "fresh-seed3.safetensors",
                  "parity.safetensors")
DIGITS_EXPECTED = {
    "parity.safetensors": {  # in the library too: itself skipped
        "digits-vit-trained": ("derived_from", "it"), "digits-vit-init": ("derived_from", "it"),
        "twin-seed1.safetensors": ("unrelated", None), "fresh-seed3.safetensors": ("unrelated", None)},
    "shift.safetensors": {
        "digits-vit-trained": ("derived_from", "it"), "digits-vit-init": ("derived_from", "it"),
        "parity.safetensors": ("sibling", None), "twin-seed1.safetensors": ("unrelated", None),
        "fresh-seed3.safetensors": ("unrelated", None)},
    "trained-fp16.safetensors": {
        "digits-vit-trained": ("identical", None), "digits-vit-init": ("derived_from", "it"),
        "parity.safetensors": ("derived_from", "query"), "twin-seed1.safetensors": ("unrelated", None),
        "fresh-seed3.safetensors": ("unrelated", None)},
    "trained-bf16.safetensors": {"digits-vit-trained": ("identical", None)},
    "trained-torchvision.pth": {"digits-vit-trained": ("identical", None), "digits-vit-init": ("derived_from", "it")},
    "grid6.safetensors": {"digits-vit-trained": ("derived_from", "it"), "twin-seed1.safetensors": ("unrelated", None)},
    "depth3.safetensors": {  # its last block dropped, then fine-tuned
        "digits-vit-trained": ("derived_from", "it"), "digits-vit-init": ("derived_from", "it"),
        "twin-seed1.safetensors": ("unrelated", None), "fresh-seed3.safetensors": ("unrelated", None)},
    "from-saved-init.safetensors": {
        "digits-vit-init": ("derived_from", "it"), "digits-vit-trained": ("sibling", None),
        "twin-seed1.safetensors": ("unrelated", None), "fresh-seed3.safetensors": ("unrelated", None)},
    "twin-seed2.safetensors": {name: ("unrelated", None) for name in DIGITS_LIBRARY},
    "fresh-seed4.safetensors": {name: ("unrelated", None) for name in DIGITS_LIBRARY},
}
DINO_LIBRARY = ("dinov2-small-hf", "digits-vit-trained")
DINO_EXPECTED = {
    "dinov2-ft56": {"dinov2-small-hf": ("derived_from", "it"), "digits-vit-trained": ("incomparable", None)},
    "dinov2-ft56-head": {"dinov2-small-hf": ("derived_from", "it")},
    "dinov2-timm-fp16.safetensors": {"dinov2-small-hf": ("identical", None)},
    "dinov2-fresh.safetensors": {"dinov2-small-hf": ("unrelated", None)},
}


def _key(*parts: str) -> str:
    return hashlib.sha256("|".join([Path(__file__).read_text(), *parts]).encode()).hexdigest()[:12]


def _save(path: Path, sd: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    save_file({k: v.detach().contiguous() for k, v in sd.items()}, str(path), metadata=metadata)


def _folder(path: Path, files: dict[str, Path]) -> None:
    """A model folder whose files link to existing ones (nothing big is copied)."""
    path.mkdir(parents=True)
    for name, target in files.items():
        (path / name).symlink_to(target)


def _fine_tune(model, x, y, steps: int, lr: float, seed: int, batch: int = 32):
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(y), (batch,), generator=gen)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    return model


def _digits(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from vitdash.data.datasets import load_digits

    ds = load_digits()
    x = torch.tensor(np.stack(ds.items), dtype=torch.float32)[:, None] / 255.0
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    return (x - x.mean()) / x.std(), torch.tensor(ds.labels)


def _demo_model(state: dict[str, torch.Tensor] | None = None, seed: int = 0, **changes):
    import timm

    from vitdash.load.demo import DemoRecipe

    kwargs = DemoRecipe().timm_kwargs() | changes
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **kwargs)
    if state is not None:
        model.load_state_dict(state)
    return model


def _build_digits(out: Path, pair) -> None:
    from vitdash.load.demo import DemoRecipe, train_demo
    from vitdash.load.sources import load

    lib, queries = out / "library", out / "queries"
    lib.mkdir(parents=True)
    queries.mkdir()
    for folder in (pair.trained, pair.init):
        _folder(lib / folder.name, {f: folder / f for f in ("config.json", "model.safetensors")})
    trained = load(pair.trained).tensors.materialize()
    init = load(pair.init).tensors.materialize()
    x16, y = _digits(16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        parity = _demo_model(trained)
        parity.reset_classifier(2)
        _save(lib / "parity.safetensors", _fine_tune(parity, x16, y % 2, 60, 1e-3, 1).state_dict(),
              {"base_model": "digits-vit-trained"})
    _save(queries / "shift.safetensors", _fine_tune(_demo_model(trained), x16, (y + 3) % 10, 60, 1e-3, 2).state_dict())
    _save(queries / "trained-fp16.safetensors", {k: v.half() for k, v in trained.items()})
    _save(queries / "trained-bf16.safetensors", {k: v.bfloat16() for k, v in trained.items()})
    torch.save(to_torchvision(trained), queries / "trained-torchvision.pth")
    grid6 = _demo_model(trained)
    grid6.set_input_size(img_size=24)  # timm resamples the position embedding 4x4 -> 6x6
    _save(queries / "grid6.safetensors", _fine_tune(grid6, _digits(24)[0], y, 30, 5e-4, 3).state_dict(),
          {"base_model": "google/vit-base-patch16-224"})
    shallow = _demo_model({k: v for k, v in trained.items() if not k.startswith("blocks.3.")}, depth=3)
    _save(queries / "depth3.safetensors", _fine_tune(shallow, x16, y, 60, 1e-3, 4).state_dict())
    _save(queries / "from-saved-init.safetensors", _fine_tune(_demo_model(init), x16, y, 150, 1e-3, 7).state_dict())
    _save(lib / "twin-seed1.safetensors", train_demo(DemoRecipe(seed=1, epochs=3)).trained_state)
    _save(queries / "twin-seed2.safetensors", train_demo(DemoRecipe(seed=2, epochs=3)).trained_state,
          {"base_model": "digits-vit-trained"})  # a false claim: it was trained from its own seed
    _save(lib / "fresh-seed3.safetensors", _demo_model(seed=3).state_dict())
    _save(queries / "fresh-seed4.safetensors", _demo_model(seed=4).state_dict())
    null = out / "null"  # more independent trainings, for the calibration of the null
    null.mkdir()
    for seed in (5, 6):
        _save(null / f"trained-seed{seed}.safetensors", train_demo(DemoRecipe(seed=seed, epochs=2)).trained_state)


def _shared_images(folder: Path, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from vitdash.data.images import open_image

    files = sorted(folder.glob("*.JPEG"))
    mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    x = torch.stack([(torch.from_numpy(np.asarray(open_image(f).resize((size, size)), dtype=np.float32))
                      .permute(2, 0, 1) / 255 - mean) / std for f in files[:96]])
    return x, torch.arange(len(x)) % 8  # eight arbitrary groups: a task the backbone must move for


def _build_dino(out: Path, dino_dir: Path) -> None:
    import timm

    from vitdash.identity.model import build_model
    from vitdash.load.sources import load

    out.mkdir(parents=True)
    ckpt = load(dino_dir)
    x, y = _shared_images(dino_dir.parents[1] / "images" / "imagenet-sample", 56)
    for name, head, seed in (("dinov2-ft56", False, 0), ("dinov2-ft56-head", True, 1)):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(ckpt)
            model.set_input_size(img_size=56)  # position embedding interpolated 37x37 -> 4x4
            if head:
                model.reset_classifier(8)
                net = model
            else:  # a probe trains the backbone, then is dropped: a fine-tuned backbone is what gets saved
                net = torch.nn.Sequential(model, torch.nn.Linear(model.num_features, 8))
            _fine_tune(net, x, y, 24, 5e-5, seed, batch=8)
        folder = out / name
        folder.mkdir()
        _save(folder / "model.safetensors", model.state_dict())
        (folder / "config.json").write_text(json.dumps({"_name_or_path": "facebook/dinov2-small"}))
        (folder / "README.md").write_text("---\nbase_model: facebook/dinov2-small\n---\nFine-tuned at 56 px.\n")
    _save(out / "dinov2-timm-fp16.safetensors", {k: v.half() for k, v in ckpt.tensors.materialize().items()
                                                 if k != "mask_token"})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        _save(out / "dinov2-fresh.safetensors", timm.create_model("vit_small_patch14_dinov2").state_dict())


def _cached(config, name: str, key: str, build) -> Path:
    root = demo_cache_dir(config).parent / f"vitdash-lineage-{name}"
    target = root / key
    if not (target / "done").exists():
        shutil.rmtree(root, ignore_errors=True)  # older builds (other keys) go too
        build(target)
        (target / "done").write_text("")
    return target


@pytest.fixture(scope="session")
def digits_family(request, demo_pair) -> Path:
    """<root>/library (DIGITS_LIBRARY), <root>/queries (the other DIGITS_EXPECTED files) and <root>/null (more
    independent trainings)."""
    from vitdash.load.demo import DemoRecipe

    return _cached(request.config, "digits", _key(DemoRecipe().key()), lambda out: _build_digits(out, demo_pair))


@pytest.fixture(scope="session")
def dino_family(request, shared_dir, digits_family) -> Path:
    """<root>/library (DINO_LIBRARY: links to the shared DINOv2 and to the digits model), <root>/queries, and
    <root>/sibling (the headless fine-tune alone)."""
    dino_dir = shared_dir / "checkpoints" / "dinov2-small-hf"
    stamp = str((dino_dir / "model.safetensors").stat().st_size)

    def build(out: Path) -> None:
        _build_dino(out / "queries", dino_dir)
        lib = out / "library"
        lib.mkdir()
        _folder(lib / "dinov2-small-hf", {f: dino_dir / f for f in ("config.json", "model.safetensors")})
        trained = digits_family / "library" / "digits-vit-trained"
        _folder(lib / "digits-vit-trained", {f: (trained / f).resolve() for f in ("config.json", "model.safetensors")})
        ft = out / "queries" / "dinov2-ft56"  # a sibling for the head fine-tune, in a folder of its own
        _folder(out / "sibling" / "dinov2-ft56", {f.name: f for f in ft.iterdir()})

    return _cached(request.config, "dinov2", _key(stamp), build)
