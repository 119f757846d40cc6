"""Own-head accuracy: equal to a direct computation, skipped files counted, cancel, preprocessing, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vitdash.common.results import Progress
from vitdash.errors import VitdashError
from vitdash.identity.preprocessing import overrides_from, parse_channel_values, resolve_preprocessing
from vitdash.perform.engine import EngineOptions
from vitdash.perform.evaluate import evaluate, wilson_interval
from vitdash.perform.setup import run_defaults

DIGITS_CFG = {"input_size": (1, 8, 8), "mean": (0.5,), "std": (0.5,), "crop_pct": 1.0, "interpolation": "bilinear"}


def _digits_tensors():
    """Digits as the model sees them, computed here without vitdash: 17 gray levels as 8-bit pixels, normalized."""
    from sklearn.datasets import load_digits

    d = load_digits()
    pixels = np.round(d.images * 255 / 16) / 255
    return torch.tensor((pixels - 0.5) / 0.5, dtype=torch.float32)[:, None], torch.tensor(d.target)


@pytest.fixture(scope="module")
def digits_vit():
    """A tiny timm ViT trained here on digits for a few seconds: a small custom model with a real head."""
    from timm.models.vision_transformer import VisionTransformer

    x, y = _digits_tensors()
    torch.manual_seed(0)
    model = VisionTransformer(img_size=8, patch_size=2, in_chans=1, embed_dim=32, depth=1, num_heads=2,
                              mlp_ratio=2, num_classes=10)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(40):
        idx = torch.randint(0, len(x), (256,))
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def digits_ckpt(digits_vit):
    from vitdash.load.sources import checkpoint_from_state_dict

    return checkpoint_from_state_dict(digits_vit.state_dict(), source="digits-vit",
                                      metadata={"num_heads": 2, "pretrained_cfg": DIGITS_CFG})


def test_accuracy_equals_a_direct_computation(digits_vit, digits_ckpt):
    x, y = _digits_tensors()
    with torch.no_grad():
        logits = digits_vit(x)
    direct_top1 = (logits.argmax(1) == y).sum().item() / len(y)
    direct_top5 = (logits.topk(5, dim=1).indices == y[:, None]).any(1).sum().item() / len(y)
    assert direct_top1 > 0.3  # trained well above chance, so agreement is not agreement on noise

    r = evaluate(digits_ckpt, "digits", EngineOptions(device="cpu", batch_size=128))
    assert r.n_images == 1797 and r.n_skipped == 0 and r.n_classes == 10
    assert r.top1 == pytest.approx(direct_top1, abs=1e-9)
    assert r.top5 == pytest.approx(direct_top5, abs=1e-9)
    assert r.top1_ci95[0] < r.top1 < r.top1_ci95[1]
    assert r.chance_top1 == pytest.approx(0.1)
    assert r.label_mapping["guess"] and r.warnings[0].startswith("label mapping is a guess")
    assert r.preprocessing["source"] == "checkpoint pretrained_cfg" and r.preprocessing["input_size"] == [1, 8, 8]
    per_class = {p["class"]: p for p in r.per_class}
    for c in range(10):
        m = y == c
        assert per_class[str(c)]["n"] == int(m.sum())
        assert per_class[str(c)]["top1"] == pytest.approx((logits[m].argmax(1) == c).sum().item() / m.sum().item())
    confusion = np.array(r.confusion["matrix"])
    assert confusion.sum() == 1797 and np.trace(confusion) == round(direct_top1 * 1797)
    assert r.device == "cpu" and r.dtype == "float32"
    assert r.images_per_s > 0 and r.model_images_per_s > 0
    assert r.reference_top1 is None  # weights trained here are published nowhere
    json.dumps(r.to_dict())


def test_class_to_idx_overrides_folder_order(digits_vit):
    """With the checkpoint's own class names permuted, accuracy follows the names, not the folder order."""
    from vitdash.load.sources import checkpoint_from_state_dict

    x, y = _digits_tensors()
    with torch.no_grad():
        pred = digits_vit(x).argmax(1)
    perm = {str(c): (c + 1) % 10 for c in range(10)}  # claims digit c is output c+1
    ckpt = checkpoint_from_state_dict(digits_vit.state_dict(), source="digits-vit",
                                      metadata={"num_heads": 2, "pretrained_cfg": DIGITS_CFG, "class_to_idx": perm})
    r = evaluate(ckpt, "digits", EngineOptions(device="cpu", batch_size=512), measure_throughput=False)
    assert r.label_mapping["method"] == "checkpoint class_to_idx" and not r.label_mapping["guess"]
    assert r.top1 == pytest.approx((pred == (y + 1) % 10).sum().item() / len(y))


def _folder_with_junk(root):
    for cls, color in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 30), color).save(root / cls / f"{i}.png")
    (root / "red" / "notes.jpg").write_text("not an image at all")
    return root


@pytest.mark.parametrize("workers", [0, 1])  # in the main process, and in a DataLoader worker process
def test_a_file_that_is_not_an_image_is_counted_as_skipped(tmp_path, tiny_vit_ckpt, workers):
    data = _folder_with_junk(tmp_path / "data")
    r = evaluate(tiny_vit_ckpt, data, EngineOptions(device="cpu", batch_size=4, num_workers=workers),
                 measure_throughput=False)
    assert r.num_workers == workers
    assert r.n_images == 6 and r.n_skipped == 1
    assert "notes.jpg" in r.skipped[0]
    assert r.n_classes == 2 and sum(p["n"] for p in r.per_class) == 6


def test_progress_and_cancel(tmp_path, tiny_vit_ckpt):
    data = _folder_with_junk(tmp_path / "data")
    seen: list[Progress] = []
    r = evaluate(tiny_vit_ckpt, data, EngineOptions(device="cpu", batch_size=2), progress=seen.append,
                 measure_throughput=False)
    done = [p.done for p in seen]
    assert done == sorted(done) and done[-1] == 7 and seen[-1].fraction == 1.0 and seen[-1].eta_s == 0
    # it moves from the first second: before the model is built and before the first images are read
    assert done[:2] == [0, 0] and "building" in seen[0].message and "reading" in seen[1].message
    assert not r.cancelled
    calls = iter([False] + [True] * 20)
    r = evaluate(tiny_vit_ckpt, data, EngineOptions(device="cpu", batch_size=2), should_stop=lambda: next(calls))
    assert r.cancelled and 1 <= r.n_images <= 2 and r.model_images_per_s is None
    assert r.warnings[0].startswith(f"cancelled after {r.n_images} of 7")


def test_cpu_batches_are_fed_in_chunks_so_progress_moves_inside_a_batch(tmp_path, tiny_vit_ckpt):
    """A batch of large images takes minutes on a CPU: the first image of it is reported on its own."""
    data = _folder_with_junk(tmp_path / "data")
    seen: list[Progress] = []
    r = evaluate(tiny_vit_ckpt, data, EngineOptions(device="cpu", batch_size=64), progress=seen.append,
                 measure_throughput=False)
    assert r.n_images == 6 and any(0 < p.done < 7 for p in seen)  # one 7-file batch, yet reports inside it


def test_the_cpu_batch_shrinks_to_fit_its_activation_budget(tiny_vit_ckpt):
    from vitdash.identity.architecture import infer_architecture
    from vitdash.load.sources import load_timm
    from vitdash.perform.memory import activation_bytes

    cpu = torch.device("cpu")
    opts = EngineOptions(device="cpu", batch_size=64, batch_mb=512)
    arch = infer_architecture(load_timm("vit_small_patch14_dinov2"))
    at_518 = activation_bytes(arch, (3, 518, 518))
    assert at_518 > 5 * activation_bytes(arch, (3, 224, 224))  # 1,370 tokens against 257: the square of the size
    assert opts.batch_for(cpu, at_518) == (512 << 20) // at_518 < 64
    assert opts.batch_for(cpu, activation_bytes(infer_architecture(tiny_vit_ckpt), (3, 32, 32))) == 64
    assert opts.batch_for(torch.device("cuda"), at_518) == 64  # on a GPU the activations are not in RAM
    assert EngineOptions(batch_size=4, batch_mb=0.001).batch_for(cpu, at_518) == 1


def test_headless_checkpoint_is_refused(tmp_path):
    from vitdash.load.sources import load_timm

    ckpt = load_timm("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, num_classes=0)
    with pytest.raises(VitdashError, match="no classification head"):
        evaluate(ckpt, _folder_with_junk(tmp_path / "d"), EngineOptions(device="cpu"))


def test_bad_engine_options_are_refused(tiny_vit_ckpt):
    with pytest.raises(VitdashError, match="batch size"):
        evaluate(tiny_vit_ckpt, "digits", EngineOptions(batch_size=0))
    with pytest.raises(VitdashError, match="precision"):
        evaluate(tiny_vit_ckpt, "digits", EngineOptions(precision="int3"))
    if not torch.cuda.is_available():
        with pytest.raises(VitdashError, match="no CUDA GPU"):
            evaluate(tiny_vit_ckpt, "digits", EngineOptions(device="cuda"))


def test_preprocessing_from_hugging_face_configs_and_overrides(tiny_vit_ckpt):
    from dataclasses import replace

    from vitdash.identity.architecture import infer_architecture

    arch = infer_architecture(tiny_vit_ckpt)
    hf = replace(tiny_vit_ckpt, metadata={
        "config": {"image_size": 224},
        "preprocessor_config": {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2,
                                "do_center_crop": True, "crop_size": {"height": 224, "width": 224},
                                "size": {"shortest_edge": 256}}})
    p = resolve_preprocessing(hf, arch)
    assert p.input_size == (3, 224, 224) and p.mean == (0.5,) * 3 and p.interpolation == "bilinear"
    assert p.crop_pct == pytest.approx(224 / 256) and p.source == "config + preprocessor_config"
    p = resolve_preprocessing(hf, arch, {"img_size": 64, "crop_pct": 1.0, "interpolation": "bicubic"})
    assert p.input_size == (3, 64, 64) and p.crop_pct == 1.0 and p.interpolation == "bicubic"
    assert "overrides" in p.source
    bare = resolve_preprocessing(replace(tiny_vit_ckpt, metadata={}), arch)
    assert bare.input_size == (3, 32, 32) and bare.source == "timm defaults"  # the model's size, not 224
    # A cfg still saying 224 px (as timm's own does for a model built with img_size=32): the tensors win.
    stale_cfg = {**tiny_vit_ckpt.metadata["pretrained_cfg"], "input_size": (3, 224, 224)}
    stale = resolve_preprocessing(replace(tiny_vit_ckpt, metadata={"pretrained_cfg": stale_cfg}), arch)
    assert stale.input_size == (3, 32, 32) and any("position embedding is for 32x32" in n for n in stale.notes)
    with pytest.raises(VitdashError, match="interpolation"):
        resolve_preprocessing(hf, arch, {"interpolation": "magic"})
    with pytest.raises(VitdashError, match="mean override has 2 values"):
        resolve_preprocessing(hf, arch, {"mean": [0.5, 0.5]})


def test_one_channel_model_gets_one_channel_normalization(digits_ckpt):
    from dataclasses import replace

    from vitdash.identity.architecture import infer_architecture

    ckpt = replace(digits_ckpt, metadata={"num_heads": 2})
    p = resolve_preprocessing(ckpt, infer_architecture(ckpt))
    assert p.input_size == (1, 8, 8) and len(p.mean) == 1 and p.pil_mode == "L"
    assert p.mean[0] == pytest.approx(np.mean([0.485, 0.456, 0.406]))
    p = resolve_preprocessing(ckpt, infer_architecture(ckpt), {"mean": [0.1307], "std": [0.3081]})  # MNIST's
    assert p.mean == (0.1307,) and p.std == (0.3081,)


def test_wilson_interval():
    z, p, n = 1.959964, 0.8, 200  # Wilson score interval, written out
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert wilson_interval(160, 200) == pytest.approx((center - half, center + half), abs=1e-6)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_cli_eval_json(tmp_path, digits_vit, capsys):
    from safetensors.torch import save_file

    from vitdash.cli import main

    path = tmp_path / "digits_vit.safetensors"
    save_file({k: v.contiguous() for k, v in digits_vit.state_dict().items()}, str(path))
    assert main(["eval", str(path), "--data", "digits", "--device", "cpu", "--limit", "300", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("top1", "top5", "n_images", "n_skipped", "n_classes", "label_mapping", "device", "dtype",
                "images_per_s", "model_images_per_s", "reference_top1"):
        assert key in out
    assert out["n_images"] == 300 and out["n_classes"] == 10 and out["label_mapping"]["guess"]
    assert main(["eval", str(path), "--data", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_real_mnist_checkpoint_reads_digits_with_mnist_preprocessing(shared_dir):
    """A ViT trained on MNIST elsewhere (vit-pytorch layout) recognizes scikit-learn's digits once they are
    framed and normalized as MNIST was (digit in the middle 20 of 28 px, mean 0.1307, std 0.3081): layout
    mapping, preprocessing overrides and scoring working together on weights nobody here trained."""
    from vitdash.load.sources import load

    ckpt = load(shared_dir / "checkpoints" / "mnist_vit_lucidrains_layout.pt")
    opts = EngineOptions(device="cpu", batch_size=512)
    mnist = evaluate(ckpt, "digits", opts, {"crop_pct": 1.4, "mean": [0.1307], "std": [0.3081]},
                     measure_throughput=False)
    assert mnist.preprocessing["input_size"] == [1, 28, 28]
    assert mnist.top1 > 0.75  # measured 87%
    naive = evaluate(ckpt, "digits", opts, measure_throughput=False)  # digit filling the frame, ImageNet stats
    assert naive.top1 < mnist.top1 - 0.15  # measured 54%


def test_published_top1_sits_beside_the_measured_one(shared_dir):
    """When the metadata names published weights, the family table's top-1 (percent) comes back as a fraction."""
    from dataclasses import replace

    from vitdash.load.sources import load_timm

    ckpt = load_timm("vit_tiny_patch16_224")
    cfg = {**ckpt.metadata["pretrained_cfg"], "tag": "augreg_in21k_ft_in1k"}
    named = replace(ckpt, metadata={**ckpt.metadata, "pretrained": True, "pretrained_cfg": cfg})
    r = evaluate(named, shared_dir / "images" / "imagenet-sample", EngineOptions(device="cpu", limit=4),
                 measure_throughput=False)
    assert r.reference_top1 == pytest.approx(0.75454)  # timm's results-imagenet.csv, via vitdash/family.csv
    assert r.label_mapping["method"].startswith("WordNet synset ids -> imagenet-1k")


def test_class_axes_are_categories_so_digit_names_keep_their_order(digits_ckpt):
    from vitdash.figures.perform import confusion_figure, per_class_figure

    r = evaluate(digits_ckpt, "digits", EngineOptions(device="cpu", batch_size=256),
                 measure_throughput=False)
    per_class = per_class_figure(r)
    assert per_class.layout.xaxis.type == "category"  # '0'..'9' would otherwise be a number line, not worst first
    confusion = confusion_figure(r)
    assert confusion.layout.xaxis.type == confusion.layout.yaxis.type == "category"
    assert confusion.layout.xaxis.dtick == 1  # every class labelled


def test_only_values_that_differ_from_the_checkpoints_own_are_overrides(tiny_vit_ckpt):
    d = run_defaults(tiny_vit_ckpt)
    own = d.preprocessing
    same = dict(img_size=own.input_size[1], crop_pct=own.crop_pct, interpolation=own.interpolation)
    assert overrides_from(own, **same, mean=list(own.mean), std=None) == dict.fromkeys(same)
    changed = overrides_from(own, **{**same, "img_size": own.input_size[1] + 8}, mean=[0.25] * 3, std=list(own.std))
    assert changed == {"img_size": own.input_size[1] + 8, "crop_pct": None, "interpolation": None, "mean": [0.25] * 3}
    assert parse_channel_values("0.5, 0.4 0.3", "mean") == [0.5, 0.4, 0.3] and parse_channel_values(" ", "x") is None
    with pytest.raises(VitdashError, match="mean: give numbers"):
        parse_channel_values("a, b", "mean")
    assert d.probe == (not d.arch.num_classes) and not d.coarse("digits")
