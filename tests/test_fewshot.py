"""Linear few-shot probe: the probe itself, the shot bookkeeping, DINOv2 against its random twin, the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from vitdash.data.datasets import load_digits
from vitdash.errors import VitdashError
from vitdash.perform.engine import EngineOptions
from vitdash.perform.fewshot import feasible_shots, fewshot, probe


def _blobs(separation: float, n_per_class: int = 30, classes: int = 4, dim: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim)) * separation
    y = np.repeat(np.arange(classes), n_per_class)
    return centers[y] + rng.normal(size=(len(y), dim)), y


def test_probe_separates_informative_features_and_not_noise():
    x, y = _blobs(separation=1.0)
    accs, n_test = probe(x, y, shots=5, n_splits=4)
    assert len(accs) == 4 and n_test == 120 - 4 * 5
    assert np.mean(accs) > 0.9
    noise, _ = probe(np.random.default_rng(1).normal(size=x.shape), y, shots=5, n_splits=20)
    assert abs(np.mean(noise) - 0.25) < 0.1  # chance for 4 classes
    with pytest.raises(VitdashError, match="more than 30 images"):
        probe(x, y, shots=30)


def test_probe_splits_are_reproducible_and_seeded():
    x, y = _blobs(separation=0.3)
    assert probe(x, y, 1, 3, seed=7) == probe(x, y, 1, 3, seed=7)
    assert probe(x, y, 1, 3, seed=7) != probe(x, y, 1, 3, seed=8)


def test_feasible_shots_leave_a_test_image_per_class():
    ds = load_digits().limited(60)
    smallest = min(ds.class_counts())
    ok, skipped = feasible_shots(ds, [1, 5, smallest, 100])
    assert ok == [1, 5] if smallest > 5 else ok == [1]
    assert smallest in skipped and 100 in skipped


def test_one_image_per_class_asks_for_coarse_groups(shared_dir, tiny_vit_ckpt):
    with pytest.raises(VitdashError, match="--coarse"):
        fewshot(tiny_vit_ckpt, shared_dir / "images" / "imagenet-sample", shots=(1, 5))


def test_dinov2_backbone_beats_its_random_twin_on_coarse_imagenet_groups(shared_dir):
    """Frozen DINOv2 features separate coarse WordNet groups of the shared images far better than a twin at init.

    At 112 px (8x8 patches of 14 px, position embeddings interpolated by timm) to keep this under a minute
    of CPU; measured on this data: 10-shot about 40% against 14% for the twin (chance 14%, 7 groups).
    """
    from vitdash.load.sources import load

    ckpt = load(shared_dir / "checkpoints" / "dinov2-small-hf")
    r = fewshot(ckpt, shared_dir / "images" / "imagenet-sample", shots=(1, 10), n_splits=5, coarse=True,
                options=EngineOptions(device="cpu", batch_size=50), overrides={"img_size": 112})
    assert r.n_images == 200 and r.n_classes == 7 and r.feature_dim == 384
    assert r.preprocessing["input_size"] == [3, 112, 112]
    ten = {s.shots: s for s in r.results}[10]
    assert ten.n_test == 200 - 70
    assert ten.accuracy_mean > ten.random_init_accuracy_mean + 0.15
    assert ten.accuracy_mean > r.chance + 0.15
    assert {s.shots: s for s in r.results}[1].accuracy_mean < ten.accuracy_mean  # more shots, better probe


def test_fewshot_on_digits_and_cli_json(tmp_path, tiny_vit_ckpt, capsys):
    from safetensors.torch import save_file

    from vitdash.cli import main

    r = fewshot(tiny_vit_ckpt, "digits", shots=(1, 5), n_splits=2,
                options=EngineOptions(device="cpu", batch_size=100, limit=200))
    assert [s.shots for s in r.results] == [1, 5] and r.n_images == 200 and r.chance == pytest.approx(0.1)
    assert all(0 <= s.accuracy_mean <= 1 and s.random_init_accuracy_mean is not None for s in r.results)
    json.dumps(r.to_dict())

    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_vit_ckpt.tensors.materialize().items()}, str(path))
    assert main(["fewshot", str(path), "--data", "digits", "--shots", "1", "5", "--splits", "2",
                 "--limit", "150", "--device", "cpu", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [p["shots"] for p in out["results"]] == [1, 5]
    for p in out["results"]:
        assert {"shots", "accuracy_mean", "accuracy_std", "random_init_accuracy_mean"} <= set(p)


def test_run_estimate_is_measured_on_one_batch_and_scales_by_compute(shared_dir):
    """DINOv2 at its native 518 px costs ~8x its 224 px compute: the quick default is the largest size that answers
    in about a minute, never below 224 px (a 4x4-patch input tells nothing), and the estimate says so in words."""
    from vitdash.data.datasets import discover, group_coarse
    from vitdash.identity.architecture import infer_architecture
    from vitdash.identity.model import build_model
    from vitdash.load.sources import load
    from vitdash.perform.estimate import QUICK_FLOOR, candidate_sizes, estimate_run

    ckpt = load(shared_dir / "checkpoints" / "dinov2-small-hf")
    arch = infer_architecture(ckpt)
    ds = group_coarse(discover(shared_dir / "images" / "imagenet-sample"))
    sizes = candidate_sizes(arch)
    assert sizes[0] == 518 and all(s % 14 == 0 for s in sizes) and sizes == sorted(sizes, reverse=True)
    est = estimate_run(ckpt, arch, ds, build_model(ckpt, arch), models=2, target_s=1e9)
    assert est.measured_at == 224 and est.measured_images == 2 and est.n_images == 200
    assert est.quick == 518  # everything fits an unbounded budget
    assert 6 < est.seconds[518] / est.seconds[224] < 10  # the N^2 attention of 1370 tokens
    tight = estimate_run(ckpt, arch, ds, build_model(ckpt, arch), models=2, target_s=1e-3)
    assert tight.quick == QUICK_FLOOR
    text = tight.describe()
    assert text.startswith("about ") and "at 518 px" in text and "at 224 px" in text


def test_fewshot_reports_before_building_the_models(tiny_vit_ckpt):
    seen = []
    fewshot(tiny_vit_ckpt, "digits", shots=(1,), n_splits=1, options=EngineOptions(device="cpu", limit=100),
            progress=seen.append)
    assert seen[0].done == 0 and "random-init twin" in seen[0].message


def test_the_checkpoint_and_its_twin_are_never_in_memory_together(tiny_vit_ckpt, monkeypatch):
    """The twin of a ViT-L weighs as much as the checkpoint: it is built only once the checkpoint's pass is over
    and its model freed; one progress bar runs over both passes."""
    import gc
    import weakref

    import vitdash.perform.fewshot as F

    built, seen = [], []
    real_build, real_twin = F.build_model, F.build_random_twin

    def build_model(*args, **kwargs):
        model = real_build(*args, **kwargs)
        built.append(weakref.ref(model))
        return model

    def build_random_twin(*args, **kwargs):
        gc.collect()
        assert built and built[0]() is None, "the checkpoint's model is still alive when the twin is built"
        assert seen[-1].done == seen[-1].total // 2 and "random-init twin" in seen[-1].message
        return real_twin(*args, **kwargs)

    monkeypatch.setattr(F, "build_model", build_model)
    monkeypatch.setattr(F, "build_random_twin", build_random_twin)
    r = fewshot(tiny_vit_ckpt, "digits", shots=(1,), n_splits=1, progress=seen.append,
                options=EngineOptions(device="cpu", batch_size=50, limit=100))
    assert r.results[0].random_init_accuracy_mean is not None and r.n_images == 100
    done = [p.done for p in seen]
    assert done == sorted(done) and seen[-1].done == seen[-1].total == 200 and len(built) == 1


def test_a_stop_during_the_checkpoint_pass_skips_the_twin(tiny_vit_ckpt):
    seen = []
    r = fewshot(tiny_vit_ckpt, "digits", shots=(1,), progress=seen.append,
                should_stop=lambda: any(p.done for p in seen), options=EngineOptions(device="cpu", limit=100))
    done = max(p.done for p in seen)
    assert r.cancelled and r.results == [] and 0 < done < 100
    assert not any("twin" in p.message for p in seen[1:])  # never built
    assert r.warnings[0] == f"cancelled after {done} of 200 image passes: no probe was fitted"


# The probe reads what each family pools: DINOv3 (timm's definition) the mean of its patch tokens after the
# final norm, SigLIP its attention pool's output, CLIP its class token, AIMv2 the mean of its tokens (no class
# token), a Perception Encoder its (Eva) attention pool.
POOLED = [("vit_small_patch16_dinov3", dict(img_size=32, embed_dim=48, num_heads=3), "avg"),
          ("vit_base_patch16_siglip_224", dict(img_size=32, embed_dim=48, num_heads=3), "map"),
          ("vit_base_patch16_clip_224", dict(img_size=32, embed_dim=48, num_heads=3), "token"),
          ("aimv2_large_patch14_224", dict(img_size=28, embed_dim=48, num_heads=3), "avg"),
          ("vit_pe_core_tiny_patch16_384", dict(img_size=32), "map")]


@pytest.mark.parametrize("name,kwargs,pool", POOLED, ids=[p[0] for p in POOLED])
def test_probe_features_are_the_familys_pooled_feature(name, kwargs, pool):
    import torch

    from vitdash.identity.architecture import infer_architecture
    from vitdash.identity.model import build_model
    from vitdash.load.sources import load_timm
    from vitdash.perform.engine import prepare_forward

    ckpt = load_timm(name, depth=2, **kwargs)
    arch = infer_architecture(ckpt)
    assert arch.global_pool == pool
    model = build_model(ckpt, arch)
    x = torch.randn(3, 3, *arch.img_size)
    features = prepare_forward(model, torch.device("cpu"), torch.float32, EngineOptions(), features=True)(x)
    with torch.no_grad():
        tokens = model.forward_features(x)
        expected = {"token": lambda: tokens[:, 0], "avg": lambda: tokens[:, model.num_prefix_tokens:].mean(1),
                    "map": lambda: model.attn_pool(tokens)}[pool]()
    torch.testing.assert_close(features, expected)
    if name.endswith("dinov3"):  # and the same engine runs the probe on it and on its random twin
        r = fewshot(ckpt, "digits", shots=(1,), n_splits=1, options=EngineOptions(device="cpu", limit=100))
        assert r.feature_dim == 48 and r.results[0].random_init_accuracy_mean is not None
