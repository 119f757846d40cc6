"""The attention page under AppTest, on tiny checkpoints saved to disk (fast on 2 cores)."""
from __future__ import annotations

import io
import json
import re

import pytest
import timm
import torch
from apptest_utils import errors, page_test
from PIL import Image
from safetensors.torch import save_file


def _save(tmp_path_factory, name: str, **kwargs) -> str:
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, img_size=32, patch_size=8, depth=2, embed_dim=48,
                              num_heads=3, **kwargs)
    path = tmp_path_factory.mktemp("ckpt") / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return str(path)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> str:
    return _save(tmp_path_factory, "vit_tiny_patch16_224", num_classes=1000)


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> str:
    return _save(tmp_path_factory, "vit_tiny_patch16_224", num_classes=0, reg_tokens=2)


def captions(at) -> list[str]:
    return [c for image in at.image for c in image.captions]


def run(at):
    at.run()
    assert not at.exception, [str(e.value) for e in at.exception]
    return at


def test_without_checkpoint_shows_a_hint():
    at = run(page_test("attention.py"))
    assert not errors(at) and at.info


def test_rollout_of_two_samples_with_top5_and_download(classifier):
    at = run(page_test("attention.py", classifier))
    assert not errors(at)
    assert len(at.image) == 2  # the two scikit-learn photographs by default
    assert at.get("download_button")
    top5 = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if '"orientation":"h"' in c.proto.spec]
    assert len(top5) == 2
    labels = top5[0]["data"][0]["y"]  # "ImageNet class name (index)" for a 1000-way head
    assert len(labels) == 5 and all(re.fullmatch(r"\S.* \(\d+\)", y) for y in labels)  # name (index)
    assert any("of the rollout ends in prefix tokens" in c.value for c in at.caption)
    assert any("4x4 patches at 32x32 px" in c.value for c in at.caption)


def test_views_and_controls(classifier):
    at = run(page_test("attention.py", classifier))
    at.selectbox(key="attn_fusion").set_value("max")
    at.slider(key="attn_discard").set_value(0.9)
    at.slider(key="attn_start").set_value(1)
    run(at)
    assert not errors(at)
    assert any("max, discard 0.9, from layer 1" in c for c in captions(at))

    at.radio(key="attn_view").set_value("raw")
    run(at)
    last = len(at.selectbox(key="attn_head").options) - 2  # options: mean of heads, head 0, ... (heads as inferred)
    at.selectbox(key="attn_head").set_value(last)
    run(at)
    assert not errors(at) and any(f"layer 1, head {last}" in c for c in captions(at))
    assert any(f"of layer 1's attention (head {last}) goes to prefix tokens" in c.value for c in at.caption)
    assert not any("rollout" in c.value for c in at.caption)  # raw attention is not a rollout

    at.radio(key="attn_view").set_value("heads")
    run(at)
    heads = [c for c in at.get("plotly_chart") if f"head {last}" in c.proto.spec and "per head" in c.proto.spec]
    assert not errors(at) and len(heads) == 2

    at.radio(key="attn_view").set_value("grad")
    run(at)
    assert sum("gradients of class " in c.value for c in at.caption) == 2  # each image's top-1
    at.selectbox(key="attn_class").set_value(7)
    run(at)
    assert not errors(at)
    assert sum("gradients of class 7 (" in c.value for c in at.caption) == 2

    at.checkbox(key="attn_other_size").check()
    run(at)
    at.number_input(key="attn_h").set_value(48)
    at.number_input(key="attn_w").set_value(24)
    run(at)
    assert not errors(at) and any("6x3 patches at 48x24 px" in c.value for c in at.caption)


def _png(size=(40, 30), color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_uploads_good_and_bad(classifier):
    at = run(page_test("attention.py", classifier))
    at.multiselect(key="attn_samples").set_value([])
    at.file_uploader(key="attn_uploads").set_value([
        ("red.png", _png(), "image/png"),
        ("cut.png", _png()[:60], "image/png"),
        ("notes.png", b"just some text, not pixels", "image/png"),
    ])
    run(at)
    messages = errors(at)
    assert len(at.image) == 1
    assert any(m.startswith("cut.png:") and "broken or truncated" in m for m in messages)
    assert any(m.startswith("notes.png:") and "not an image" in m for m in messages)


def test_data_folder_images(classifier):
    at = run(page_test("attention.py", classifier))
    at.text_input(key="attn_data_folder").set_value("digits")
    run(at)
    digits = [o for o in at.multiselect(key="attn_samples").options if o.startswith("digits #")]
    assert digits
    at.multiselect(key="attn_samples").set_value([digits[0]])
    run(at)
    assert not errors(at) and len(at.image) == 1 and "(true class: " in captions(at)[0]

    at.text_input(key="attn_data_folder").set_value("/no/such/folder")
    run(at)
    assert any("does not exist" in m for m in errors(at))


def test_data_folder_starts_from_the_accuracy_check(classifier):
    at = page_test("attention.py", classifier)
    at.session_state["benchmark_data"] = "digits"
    run(at)
    assert at.text_input(key="attn_data_folder").value == "digits"
    assert any(o.startswith("digits #") for o in at.multiselect(key="attn_samples").options)


def test_backbone_without_head_registers_and_no_grad(backbone):
    at = run(page_test("attention.py", backbone))
    assert not errors(at)
    assert "mean of registers" in at.selectbox(key="attn_source").options
    at.selectbox(key="attn_source").set_value("registers")
    run(at)
    assert not errors(at) and len(at.image) == 2
    assert not [c for c in at.get("plotly_chart") if '"orientation":"h"' in c.proto.spec]  # no top-5
    at.radio(key="attn_view").set_value("grad")
    run(at)
    assert any("no classification head" in i.value for i in at.info)


def test_not_a_vit_is_refused_with_a_message(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file({"encoder.weight": torch.randn(4, 4)}, str(path))
    at = run(page_test("attention.py", str(path)))
    assert any("not in a recognized ViT layout" in m for m in errors(at))


def test_outlier_patches_of_the_shared_dinov2_are_saturated_marked_and_said(shared_dir):
    """DINOv2's class token pours its attention into a few patches: by default they are capped at the others'
    maximum and outlined, and the page says what they are (here not high-norm tokens: ViT-S has none)."""
    at = page_test("attention.py", str(shared_dir / "checkpoints" / "dinov2-small-hf"), timeout=240)
    at.session_state["attn_other_size"] = True  # 224 px: the same outliers, a fifth of the compute of 518 px
    at.session_state["attn_h"] = at.session_state["attn_w"] = 224
    run(at)
    notices = [w.value for w in at.warning if "patch(es) hold" in w.value]
    assert len(notices) == 2 and all("Marked with white boxes" in n and "colour range" in n for n in notices)
    assert all("token norms are ordinary" in n for n in notices)
    assert at.selectbox(key="attn_outliers").value == "saturate"
    at.selectbox(key="attn_outliers").set_value("show")
    run(at)
    assert all("shown as they are" in w.value for w in at.warning if "patch(es) hold" in w.value)
    assert at.get("download_button")
