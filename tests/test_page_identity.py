"""The Architecture page under AppTest: a timm model, a custom real file, and a file that is no ViT."""
from __future__ import annotations

import torch

from tests.apptest_utils import errors, page_test


def test_timm_model_is_an_exact_family_member():
    at = page_test("identity.py", source="timm:vit_tiny_patch16_224").run()
    assert errors(at) == []
    assert any(s.value.startswith("exact match: ViT-Ti/16 @224") for s in at.success)
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Width"], metrics["Depth"], metrics["Heads"]) == ("192", "12", "3")
    assert (metrics["Parameters"], metrics["FLOPs"]) == ("5.72 M", "1.25 G")  # GMACs, timm's convention
    assert len(at.get("plotly_chart")) == 2


def test_custom_file_shows_inferred_heads_and_differences(shared_dir):
    at = page_test("identity.py", source=str(shared_dir / "checkpoints" / "fmnist_vit_custom.pth")).run()
    assert errors(at) == []
    assert any(w.value.startswith("custom ViT: 128 wide, 6 deep, patch 4 at 28 px; closest known: ViT-Ti/16")
               for w in at.warning)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Heads"] == "4*" and metrics["Parameters"].endswith(" k")  # 0.8 M would read 0.80 M
    assert any("single out 4 heads" in i.value for i in at.info)
    assert any("Differences" in md.value for md in at.markdown)
    # a custom network is not ViT-Ti/16: its published ImageNet accuracy is not offered as this model's
    assert any("say nothing about this network" in c.value for c in at.caption)
    assert not any("not identified as a published checkpoint" in c.value for c in at.caption)


def test_not_a_vit_is_a_message_not_a_crash(tmp_path):
    path = tmp_path / "resnetish.pth"
    torch.save({"layer1.0.conv1.weight": torch.zeros(8, 3, 3, 3), "layer1.0.bn1.weight": torch.ones(8)}, path)
    at = page_test("identity.py", source=str(path)).run()
    assert not at.exception
    assert any("Not a recognized ViT" in w.value for w in at.warning)


def test_a_family_of_another_timm_class_shows_its_class_attributes_and_row():
    """EVA-02 is timm's Eva: the page says so, with RoPE beside its table, the MLP, q/v biases and tokens, and
    highlights the matched row among its family's."""
    at = page_test("identity.py", source="timm:eva02_tiny_patch14_224").run()
    assert errors(at) == []
    assert any(s.value == "exact match: EVA-02-Ti/14 @224" for s in at.success)
    captions = [c.value for c in at.caption]
    assert ("timm Eva · learned position table + axial RoPE · SwiGLU (gate and value in one fc1) · LayerNorm · "
            "q and v biases · 1 class token") in captions
    assert any(c.startswith("The EVA-02 members, EVA-02-Ti/14 @224 highlighted") for c in captions)
