"""Population audits on a real (tiny) model zoo, built here in the ViT Model Zoo's layout.

One pretrained parent (digits 0-4, 5 classes) and six fine-tuned children (all ten digits, a new
10-class head) with three learning rates x two seeds, trained for a few dozen steps each, saved as
`checkpoint_0000XY/checkpoints` beside `config.json` and a Ray Tune `result.json` (JSON lines).
"""
from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from vitdash.errors import VitdashError
from vitdash.population.discover import discover
from vitdash.population.member import ModelAudit
from vitdash.population.runners import iter_audit
from vitdash.population.zoo import ZooReport, audit_zoo, build_report, pick_target

PARENT = "vit_digits04_lr3e-3_s0"
CHILD_LRS = (1e-4, 1e-3, 1e-2)
SEEDS = (0, 1)


def _tiny_vit(num_classes: int, seed: int) -> torch.nn.Module:
    import timm

    torch.manual_seed(seed)
    return timm.create_model("vit_tiny_patch16_224", img_size=8, patch_size=4, in_chans=1, embed_dim=32, depth=2,
                             num_heads=2, mlp_ratio=2, num_classes=num_classes)


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 8 - 1
    y = torch.tensor(d.target)
    p = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    return x[p[:1200]], y[p[:1200]], x[p[1200:]], y[p[1200:]]


def _save_ray_trial(folder: Path, model: torch.nn.Module, config: dict, data, lr: float, seed: int,
                    epochs: int = 2, steps: int = 20) -> None:
    """Train like a Ray Tune trainable: a checkpoint before training and after every epoch, one result line each."""
    x, y, xt, yt = data
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    lines = []
    for epoch in range(epochs + 1):
        if epoch:
            model.train()
            for _ in range(steps):
                i = torch.randint(0, len(y), (64,), generator=g)
                loss = torch.nn.functional.cross_entropy(model(x[i]), y[i])
                opt.zero_grad()
                loss.backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                acc = float((model(xt).argmax(1) == yt).float().mean())
                train_acc = float((model(x).argmax(1) == y).float().mean())
            lines.append(json.dumps({"test_acc": acc, "train_acc": train_acc, "loss_train": loss.item(),
                                     "training_iteration": epoch, "time_this_iter_s": 0.1, "timestamp": 1700000000,
                                     "trial_id": "abc", "done": epoch == epochs, "config": config}))
        ckpt = folder / f"checkpoint_{epoch:06d}"
        ckpt.mkdir()
        torch.save({f"vit.{k}": v.detach().clone() for k, v in model.state_dict().items()}, ckpt / "checkpoints")
    (folder / "result.json").write_text("\n".join(lines) + "\n")


def build_zoo(root: Path) -> Path:
    """The tiny zoo under root (returned). About three seconds on one core."""
    torch.set_num_threads(1)
    x, y, xt, yt = _digits()
    pre_data = (x[y < 5], y[y < 5], xt[yt < 5], yt[yt < 5])
    base = {"model::type": "vit_tiny_digits", "optim::optimizer": "adamw", "optim::weight_decay": 0.0,
            "training::batchsize": 64, "training::epochs_train": 2, "dataset::dump": "/data/digits.pt"}
    parent = _tiny_vit(5, 0)
    _save_ray_trial(root / "pretraining" / PARENT, parent,
                    {**base, "dataset::name": "digits0-4", "model::o_dim": 5, "optim::lr": 3e-3, "seed": 0},
                    pre_data, 3e-3, 0, steps=40)
    backbone = {k: v for k, v in parent.state_dict().items() if not k.startswith("head.")}
    for lr in CHILD_LRS:
        for seed in SEEDS:
            child = _tiny_vit(10, seed)
            child.load_state_dict(backbone, strict=False)  # the head is new: 10 classes instead of 5
            config = {**base, "dataset::name": "digits", "model::o_dim": 10, "optim::lr": lr, "seed": seed,
                      "pretrained::model::path": f"/cluster/zoo/pretraining/{PARENT}/checkpoint_000002/checkpoints"}
            _save_ray_trial(root / "finetuning" / PARENT / f"ft_lr{lr:g}_s{seed}", child, config,
                            (x, y, xt, yt), lr, seed)
    return root


@functools.cache
def tiny_zoo() -> Path:
    """Built once per test process, removed at exit. Other test files import this module under another name
    (`tests.test_zoo` beside pytest's `test_zoo`), so the folder, not the cache, is what they share."""
    root = Path(tempfile.gettempdir()) / f"vitdash-test-zoo-{os.getpid()}"
    if not (root / "complete").exists():
        shutil.rmtree(root, ignore_errors=True)
        build_zoo(root / "zoo")
        (root / "complete").touch()
        atexit.register(shutil.rmtree, root, True)
    return root / "zoo"


@pytest.fixture(scope="module")
def zoo_dir() -> Path:
    return tiny_zoo()


@pytest.fixture(scope="module")
def report(zoo_dir):
    seen = []
    rep = audit_zoo(zoo_dir, progress=lambda p: seen.append((p.done, p.total, p.item.model.name)))
    assert [s[0] for s in seen] == list(range(1, 8)) and all(s[1] == 7 for s in seen)
    return rep


def _by_name(rep: ZooReport) -> dict[str, ModelAudit]:
    return {a.model.name: a for a in rep.models}


def _assert_same_stats(summaries: dict[str, dict], reference: ZooReport) -> None:
    """Another backend computed the same numbers as the in-process run (up to float noise across threads)."""
    assert set(summaries) == {a.model.path for a in reference.models}
    for a in reference.models:
        for key in ("dist_parent", "dist_init", "norm", "matrix_kurtosis", "structure_median"):
            want = a.summary()[key]
            assert summaries[a.model.path][key] == (None if want is None else pytest.approx(want, rel=1e-6)), key


def test_discover_reads_the_model_zoo_layout(zoo_dir):
    pop = discover(zoo_dir)
    assert pop.layout == "model_zoo" and len(pop.models) == 7
    parent = next(m for m in pop.models if m.group == "pretraining")
    children = [m for m in pop.models if m.group == "finetuning"]
    assert parent.name == f"pretraining/{PARENT}" and parent.parent is None
    assert len(children) == 6 and all(c.parent == parent.path for c in children)
    # The config names the epoch each child started from (a path on the machine that trained the zoo).
    assert all(c.parent_checkpoint == f"{parent.path}/checkpoint_000002/checkpoints" for c in children)
    assert all(m.init and m.init.endswith("checkpoint_000000/checkpoints") for m in pop.models)
    assert all(m.epochs == 2 for m in pop.models)
    # The generating factors are what varies; the final epoch's metrics without Ray's bookkeeping.
    assert set(pop.varying_factors) >= {"optim::lr", "seed", "dataset::name", "model::o_dim"}
    assert "training::batchsize" not in pop.varying_factors
    assert set(children[0].result) == {"test_acc", "train_acc", "loss_train", "training_iteration"}
    assert pick_target(pop.models) == "test_acc"


def test_population_statistics(report):
    models = _by_name(report)
    parent = models[f"pretraining/{PARENT}"]
    assert report.layout == "model_zoo" and not any(a.error for a in report.models)
    assert parent.summary()["dist_parent"] is None and parent.summary()["dist_init"] > 0
    for lr in CHILD_LRS:
        for seed in SEEDS:
            s = models[f"finetuning/{PARENT}/ft_lr{lr:g}_s{seed}"].summary()
            assert s["dist_parent"] > 0 and s["dist_init"] > 0
            assert s["head_vs_parent"] == "resized"  # 5 -> 10 classes
            assert s["num_params"] > 0 and s["matrix_std"] > 0 and s["norm"] > 0
    # A larger learning rate moves the weights further from the parent, for every seed.
    for seed in SEEDS:
        d = [models[f"finetuning/{PARENT}/ft_lr{lr:g}_s{seed}"].summary()["dist_parent"] for lr in CHILD_LRS]
        assert d[0] < d[1] < d[2], d
    layers = models[f"finetuning/{PARENT}/ft_lr0.01_s0"].stats["layers"]
    qkv = next(x for x in layers if x["name"] == "blocks.0.attn.qkv.weight")
    assert qkv["rel_to_parent"] > 0 and qkv["std"] > 0 and qkv["norm"] > 0 and qkv["structure"] is not None
    assert next(x for x in layers if x["name"] == "head.weight")["rel_to_parent"] is None  # resized: no distance


def test_accuracy_prediction_beats_the_mean(report):
    pred = report.accuracy_prediction
    assert pred is not None and pred.target == "test_acc" and pred.group == "finetuning"
    assert pred.n_models == 6 and pred.folds == 5 and pred.n_features > 10
    assert pred.baseline_r2 <= 0 < pred.r2, (pred.r2, pred.baseline_r2)
    assert pred.factors_r2 is not None
    assert len(report.embedding) == 7
    table = report.table()
    assert {"name", "parent", "optim::lr", "test_acc", "dist_parent", "embed_x"} <= set(table[1])
    assert table[1]["parent"] == f"pretraining/{PARENT}"
    json.dumps(report.to_dict())  # JSON-able as it stands


def test_cli_with_two_worker_processes_matches_in_process(zoo_dir, report, capsys):
    from vitdash.cli import main

    assert main(["zoo", str(zoo_dir), "--workers", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["backend"] == "2 worker processes" and len(out["models"]) == 7
    first = out["models"][0]
    assert {"path", "parent", "factors", "result", "stats"} <= set(first)
    assert {"r2", "baseline_r2"} <= set(out["accuracy_prediction"])
    _assert_same_stats({m["path"]: m["stats"]["summary"] for m in out["models"]}, report)
    assert out["accuracy_prediction"]["r2"] == pytest.approx(report.accuracy_prediction.r2, rel=1e-6)


def test_ray_backend_on_a_local_instance(zoo_dir, report):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install -r requirements-dev.txt)")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        streamed = []
        rep = audit_zoo(zoo_dir, ray="auto", progress=lambda p: streamed.append(p.done))
    finally:
        ray.shutdown()
    assert streamed == list(range(1, 8)) and rep.backend == "ray (auto)"
    assert not any(a.error for a in rep.models)
    _assert_same_stats({a.model.path: a.summary() for a in rep.models}, report)


def test_ray_requested_without_ray_installed(zoo_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(VitdashError, match="pip install ray"):
        audit_zoo(zoo_dir, ray="auto")


def test_plain_folder_with_a_family_and_a_broken_file(tmp_path):
    base = _tiny_vit(10, 0)
    (tmp_path / "base").mkdir()
    torch.save(base.state_dict(), tmp_path / "base" / "model.pth")
    (tmp_path / "base" / "config.json").write_text(json.dumps({"lr": 0.0}))
    with torch.no_grad():
        for p in base.parameters():
            p.add_(0.01 * torch.randn_like(p))
    (tmp_path / "tuned").mkdir()
    torch.save(base.state_dict(), tmp_path / "tuned" / "model.pth")
    (tmp_path / "tuned" / "config.json").write_text(json.dumps({"lr": 0.1, "pretrained_from": "../base/model.pth"}))
    torch.save(_tiny_vit(10, 1).state_dict(), tmp_path / "loose.pth")
    (tmp_path / "broken.pth").write_bytes(b"\x80\x02 not really a pickle")

    rep = audit_zoo(tmp_path)
    models = _by_name(rep)
    assert rep.layout == "folder" and set(models) == {"base", "tuned", "loose.pth", "broken.pth"}
    assert models["tuned"].model.parent == str(tmp_path / "base") and models["tuned"].model.parent_checkpoint is None
    assert 0 < models["tuned"].summary()["dist_parent"] < 1
    assert models["tuned"].summary()["head_vs_parent"] == "fine-tuned"
    assert models["broken.pth"].stats is None and "broken.pth" in models["broken.pth"].error
    assert models["loose.pth"].summary()["dist_parent"] is None
    assert rep.target is None and rep.accuracy_prediction is None
    assert any("could not be read" in n for n in rep.notes) and any("nothing to predict" in n for n in rep.notes)


def test_bad_inputs(tmp_path, zoo_dir):
    with pytest.raises(VitdashError, match="not a folder"):
        discover(tmp_path / "missing")
    with pytest.raises(VitdashError, match="no checkpoints found"):
        discover(tmp_path)
    with pytest.raises(VitdashError, match="single model"):
        discover(zoo_dir / "pretraining" / PARENT)
    with pytest.raises(VitdashError, match="at least 1"):
        list(iter_audit([], workers=0))
    pop = discover(zoo_dir)
    with pytest.raises(VitdashError, match="no model reports 'top1'"):
        build_report(pop, [], target="top1")


def test_population_figures(report):
    from vitdash.figures import population as figs

    df = figs.zoo_frame(report)
    assert {"dist_parent", "test_acc", "optim::lr"} <= set(figs.numeric_columns(df))
    scatter = figs.stat_scatter(df, "dist_parent", "test_acc", "optim::lr")
    assert [t.name for t in scatter.data] == ["0.0001", "0.001", "0.01"]  # the parent has no parent distance
    assert sum(len(t.x) for t in figs.embedding_figure(df, "group").data) == 7
    pred = figs.prediction_figure(report)
    assert len(pred.data[0].x) == 6 and "R^2" in pred.layout.title.text
    profile = figs.layer_profile_figure(report, "rel_to_parent", "seed")
    assert {t.name for t in profile.data} == {"0", "1"}


def test_a_folder_is_shown_as_typed_and_other_depths_get_their_own_panel(tmp_path):
    """A symlinked folder keeps the name the user typed; models with other tensor lists do not share an x-axis;
    the default scatter never plots a column against itself."""
    import timm

    from vitdash.figures import population as figs

    real = tmp_path / "real"
    real.mkdir()
    torch.save(_tiny_vit(10, 0).state_dict(), real / "a.pth")
    torch.save(_tiny_vit(10, 1).state_dict(), real / "b.pth")
    torch.manual_seed(2)
    deeper = timm.create_model("vit_tiny_patch16_224", img_size=8, patch_size=4, in_chans=1, embed_dim=32, depth=3,
                               num_heads=2, mlp_ratio=2, num_classes=10)
    torch.save(deeper.state_dict(), real / "c.pth")
    typed = tmp_path / "typed"
    typed.symlink_to(real)
    rep = audit_zoo(typed)
    assert rep.root == str(typed) and all(a.model.path.startswith(str(typed)) for a in rep.models)
    profile = figs.layer_profile_figure(rep, "std")
    panels = {ann.text for ann in profile.layout.annotations}
    assert len(panels) == 2 and all(p.endswith("tensors") for p in panels)
    numeric = figs.numeric_columns(figs.zoo_frame(rep))
    x, y = figs.scatter_axes(numeric, rep.target)
    assert x != y and {x, y} <= set(numeric)
    assert figs.scatter_axes(["num_params"]) == ("num_params", "num_params")  # one column: nothing else to show
