"""The built-in demo pair: a digits ViT that really is trained, an init twin that really is not, saved so the
accuracy check reproduces the held-out accuracy exactly, and builds that are reused and safe when concurrent."""
from __future__ import annotations

import json
import threading

import pytest
import torch

from vitdash.errors import VitdashError
from vitdash.load import demo
from vitdash.load.sources import load

TINY = demo.DemoRecipe(embed_dim=16, depth=1, num_heads=2, epochs=1)  # seconds to train: plumbing tests only


def test_pair_loads_as_described_timm_vits(demo_pair):
    from vitdash.identity.architecture import infer_architecture

    trained, init = load(demo_pair.trained), load(demo_pair.init)
    for ckpt in (trained, init):
        assert ckpt.layout == "timm" and ckpt.is_vit and ckpt.format == "safetensors"
        arch = infer_architecture(ckpt)
        assert (arch.in_chans, arch.img_size, arch.patch_size, arch.embed_dim, arch.depth, arch.num_classes) == \
            (1, (16, 16), 4, 64, 4, 10)
        assert arch.num_heads == 4 and not arch.heads_inferred
        cfg = ckpt.metadata["pretrained_cfg"]
        assert list(cfg["input_size"]) == [1, 16, 16] and len(cfg["mean"]) == 1 and cfg["crop_pct"] == 1.0
        assert ckpt.metadata["config"]["class_to_idx"] == {str(i): i for i in range(10)}
        header = ckpt.metadata["safetensors_metadata"]
        assert json.loads(header["pretrained_cfg"]) == cfg  # the weights file alone still says how to preprocess
    assert trained.sha256 != init.sha256


def test_trained_beats_chance_on_held_out_digits_and_twin_is_at_chance(demo_pair):
    assert demo_pair.test_accuracy > 0.85
    assert demo_pair.train_accuracy >= demo_pair.test_accuracy - 0.05
    assert demo_pair.init_test_accuracy < 0.25
    assert demo_pair.n_test >= 300 and demo_pair.n_train + demo_pair.n_test == 1797


def test_accuracy_check_reproduces_the_recorded_held_out_accuracy(demo_pair):
    """evaluate() rebuilds preprocessing from the saved pretrained_cfg: same tensors as training, same score."""
    from vitdash.data.datasets import load_digits
    from vitdash.perform.engine import EngineOptions
    from vitdash.perform.evaluate import evaluate

    trained = load(demo_pair.trained)
    held_out = load_digits().subset(trained.metadata["config"]["vitdash_demo"]["test_indices"])
    opts = EngineOptions(device="cpu")
    result = evaluate(trained, held_out, opts, measure_throughput=False)
    assert result.top1 == pytest.approx(demo_pair.test_accuracy, abs=1e-6)
    assert result.label_mapping["guess"] is False
    twin = evaluate(load(demo_pair.init), held_out, opts, measure_throughput=False)
    assert twin.top1 == pytest.approx(demo_pair.init_test_accuracy, abs=1e-6)


def test_init_twin_is_timms_seeded_init_and_training_moved_every_tensor(demo_pair):
    import timm

    recipe = demo.DemoRecipe()
    torch.manual_seed(recipe.seed)
    reference = timm.create_model("vit_tiny_patch16_224", **recipe.timm_kwargs()).state_dict()
    init, trained = load(demo_pair.init), load(demo_pair.trained)
    assert set(init.tensors) == set(reference)
    for name, tensor in reference.items():
        assert torch.equal(init.tensors[name], tensor), name
        assert not torch.equal(trained.tensors[name], tensor), f"{name} did not train"


def test_second_call_reuses_without_training(demo_pair, request):
    from tests.demo_utils import demo_cache_dir

    def no_training(_):
        raise AssertionError("the cached pair was retrained")

    again = demo.ensure_demo(cache_dir=demo_cache_dir(request.config), progress=no_training)
    assert not again.built_now and again.trained == demo_pair.trained


def test_concurrent_builds_train_once_and_report_progress(tmp_path, monkeypatch):
    calls, reports = [], []
    real = demo.train_demo

    def counting(recipe, progress):
        calls.append(1)
        return real(recipe, progress)

    monkeypatch.setattr(demo, "train_demo", counting)
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        demo.ensure_demo(TINY, cache_dir=tmp_path, progress=reports.append))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 3
    assert len({r.trained for r in results}) == 1
    assert sum(r.built_now for r in results) == 1
    fractions = [r.fraction for r in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert "epoch 1/1" in reports[-1].message
    leftovers = [p.name for p in (tmp_path / "demo").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_builds_are_byte_identical(tmp_path):
    """Same recipe, same bytes: the demo's sha256 (what the audit history keys on) is the same everywhere."""
    for where in ("a", "b"):
        demo.ensure_demo(TINY, cache_dir=tmp_path / where)
    for name in (demo.TRAINED_NAME, demo.INIT_NAME):
        a, b = (demo.pair_dir(TINY, tmp_path / w) / name for w in "ab")
        assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
        assert (a / "config.json").read_text() == (b / "config.json").read_text()
    assert load(a).metadata["safetensors_metadata"]["format"] == "pt"


def test_losing_a_rename_race_keeps_the_winners_pair(tmp_path):
    """Two processes finishing together: the second rename finds the pair in place and keeps it intact."""
    result = demo.train_demo(TINY)
    target = demo.pair_dir(TINY, tmp_path)
    demo._save_pair(result, TINY, target)
    first = (target / demo.TRAINED_NAME / "model.safetensors").read_bytes()
    demo._save_pair(result, TINY, target)
    assert (target / demo.TRAINED_NAME / "model.safetensors").read_bytes() == first
    assert demo.find_demo(TINY, tmp_path) is not None
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_unwritable_cache_fails_before_training(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(demo, "train_demo", lambda *a: pytest.fail("trained before checking the cache folder"))
    with pytest.raises(VitdashError, match="VITDASH_CACHE_DIR"):
        demo.ensure_demo(TINY, cache_dir=blocker)


def test_cache_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("VITDASH_CACHE_DIR", str(tmp_path / "c"))
    assert demo.pair_dir().parent == tmp_path / "c" / "demo"
    monkeypatch.delenv("VITDASH_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert demo.pair_dir().parent == tmp_path / "x" / "vitdash" / "demo"


def test_cli_demo_prints_the_pair(demo_pair, request, capsys):
    from tests.demo_utils import demo_cache_dir
    from vitdash.cli import main

    assert main(["demo", "--cache-dir", str(demo_cache_dir(request.config)), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["trained"] == str(demo_pair.trained) and out["test_accuracy"] == demo_pair.test_accuracy


def test_audit_calls_the_demo_trained_and_its_twin_random(demo_pair):
    """The pair every fresh install shows first is a ground truth for the verdict: all of it trained, or none."""
    from vitdash.trained.verdict import audit

    trained, init = audit(load(demo_pair.trained)), audit(load(demo_pair.init))
    assert trained.verdict == "trained" and not trained.at_init, trained.summary
    assert init.verdict == "init", init.summary
