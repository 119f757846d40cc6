"""Comparing two checkpoints on canonical names: same weights across layouts, what moved, what the head did."""
from __future__ import annotations

import json
import re

import pytest
import torch

from vitdash.common.ordering import natural_key
from vitdash.errors import VitdashError
from vitdash.load.sources import checkpoint_from_state_dict, load, load_timm
from vitdash.population.compare import compare

# timm -> torchvision names: the inverse of vitdash/layouts/torchvision_layout.py's rules.
_TO_TORCHVISION = [
    (r"cls_token", "class_token"),
    (r"patch_embed\.proj\.(weight|bias)", r"conv_proj.\1"),
    (r"pos_embed", "encoder.pos_embedding"),
    (r"blocks\.(\d+)\.norm1\.(weight|bias)", r"encoder.layers.encoder_layer_\1.ln_1.\2"),
    (r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)", r"encoder.layers.encoder_layer_\1.self_attention.in_proj_\2"),
    (r"blocks\.(\d+)\.attn\.proj\.(weight|bias)", r"encoder.layers.encoder_layer_\1.self_attention.out_proj.\2"),
    (r"blocks\.(\d+)\.norm2\.(weight|bias)", r"encoder.layers.encoder_layer_\1.ln_2.\2"),
    (r"blocks\.(\d+)\.mlp\.fc1\.(weight|bias)", r"encoder.layers.encoder_layer_\1.mlp.linear_1.\2"),
    (r"blocks\.(\d+)\.mlp\.fc2\.(weight|bias)", r"encoder.layers.encoder_layer_\1.mlp.linear_2.\2"),
    (r"norm\.(weight|bias)", r"encoder.ln.\1"),
    (r"head\.(weight|bias)", r"heads.head.\1"),
]


def to_torchvision(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in sd.items():
        pattern, repl = next((p, r) for p, r in _TO_TORCHVISION if re.fullmatch(p, key))
        out[re.sub(pattern, repl, key)] = value.clone()
    return out


def tiny_state(num_classes: int = 10, seed: int = 0) -> dict[str, torch.Tensor]:
    """A tiny timm ViT's state dict (canonical names), different per seed."""
    import timm

    torch.manual_seed(seed)
    model = timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=2,
                              num_heads=2, num_classes=num_classes)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_a_timm_file_and_its_torchvision_twin_are_the_same_weights():
    a = load_timm("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2)
    b = checkpoint_from_state_dict(to_torchvision(a.tensors.materialize()), source="torchvision twin")
    assert b.layout == "torchvision" and b.canonical
    cmp = compare(a, b, verdicts=False)
    assert cmp.same_weights and cmp.canonical and not cmp.same_file
    assert cmp.only_in_a == [] and cmp.only_in_b == [] and cmp.head.status == "unchanged"
    assert all(t.equal and t.rel_change == 0 and t.max_abs_diff == 0 for t in cmp.tensors)
    # Cosine is 1 wherever it is defined (zero-initialized biases have none).
    assert all(t.cosine == pytest.approx(1.0) for t in cmp.tensors if t.norm_a)
    assert sum(t.cosine is None for t in cmp.tensors) == sum(not t.norm_a for t in cmp.tensors) > 0
    d = json.loads(json.dumps(cmp.to_dict()))
    assert d["same_weights"] is True and {"name", "rel_change", "cosine"} <= set(d["tensors"][0])
    assert {t["name"] for t in d["tensors"]} == set(a.tensors)  # canonical names, whatever B's layout
    assert "different layouts" in cmp.summary()


def test_same_values_in_another_dtype_are_the_same_weights_but_half_precision_is_not():
    sd = tiny_state()
    a = checkpoint_from_state_dict(sd)
    wide = compare(a, checkpoint_from_state_dict({k: v.double() for k, v in sd.items()}), verdicts=False)
    assert wide.same_weights and any("different dtypes" in n for n in wide.notes)
    half = compare(a, checkpoint_from_state_dict({k: v.half() for k, v in sd.items()}), verdicts=False)
    assert not half.same_weights and 0 < half.rel_change < 1e-3


def test_what_moved_and_a_replaced_head():
    sd = tiny_state()
    tuned = {k: v.clone() for k, v in sd.items()}
    tuned["blocks.1.mlp.fc1.weight"] *= 1.1
    torch.manual_seed(123)
    tuned["head.weight"] = torch.randn_like(sd["head.weight"]) * sd["head.weight"].std()
    cmp = compare(checkpoint_from_state_dict(sd), checkpoint_from_state_dict(tuned), verdicts=False)
    assert not cmp.same_weights
    fc1 = next(t for t in cmp.tensors if t.name == "blocks.1.mlp.fc1.weight")
    assert fc1.rel_change == pytest.approx(0.1) and fc1.cosine == pytest.approx(1.0)
    assert all(t.equal for t in cmp.tensors if t.group == "blocks.0")
    assert [g.group for g in cmp.most_moved[:2]] == ["head", "blocks.1"]
    blocks = {g.group: g.rel_change for g in cmp.groups}
    assert blocks["blocks.0"] == 0 and 0 < blocks["blocks.1"] < 0.1
    assert cmp.head.status == "replaced" and abs(cmp.head.cosine) < 0.2


def test_head_resized_and_removed():
    a = checkpoint_from_state_dict(tiny_state(10))
    resized = compare(a, checkpoint_from_state_dict(tiny_state(5)), verdicts=False)
    assert resized.head.status == "resized" and (resized.head.classes_a, resized.head.classes_b) == (10, 5)
    assert resized.resized == ["head.bias", "head.weight"]  # natural order, as every table lists them
    head = next(t for t in resized.tensors if t.name == "head.weight")
    assert head.rel_change is None and head.cosine is None
    assert {g.group: g.rel_change for g in resized.groups}["head"] is None  # nothing comparable in the head
    # Another seed: random matrices drawn afresh are as far apart as two independent draws (sqrt(2), orthogonal),
    # while the norms' constant init is identical.
    qkv = next(t for t in resized.tensors if t.name == "blocks.0.attn.qkv.weight")
    assert qkv.rel_change == pytest.approx(2 ** 0.5, rel=0.05) and abs(qkv.cosine) < 0.1
    assert next(t for t in resized.tensors if t.name == "blocks.0.norm1.weight").equal

    headless = {k: v for k, v in tiny_state(10).items() if not k.startswith("head.")}
    removed = compare(a, checkpoint_from_state_dict(headless), verdicts=False)
    assert removed.head.status == "removed" and removed.only_in_a == ["head.bias", "head.weight"]
    assert not removed.same_weights and removed.rel_change == 0  # everything it kept is identical


def test_verdict_statistics_change_from_init_to_trained():
    """The tiny zoo's pretrained parent, before training and after: the verdict's readings move."""
    from tests.test_zoo import PARENT, tiny_zoo

    folder = tiny_zoo() / "pretraining" / PARENT
    init, trained = load(folder / "checkpoint_000000" / "checkpoints"), load(folder)
    cmp = compare(init, trained)
    assert cmp.model_verdict_a == "init" and cmp.model_verdict_b != "init"
    assert trained.layout == "model_zoo" and cmp.head.status == "fine-tuned"
    qkv = next(t for t in cmp.tensors if t.name == "blocks.0.attn.qkv.weight")
    assert qkv.verdict_a["verdict"] != "trained" and qkv.stat_change("structure") > 0
    d = qkv.to_dict()
    assert set(d["verdict_change"]) == {"std", "excess_kurtosis", "structure"}


def test_generic_tensor_sets_compare_by_their_own_names():
    a = checkpoint_from_state_dict({"layer1.0.conv1.weight": torch.ones(4, 3, 3, 3), "fc.weight": torch.ones(2, 4)})
    b = checkpoint_from_state_dict({"layer1.0.conv1.weight": torch.ones(4, 3, 3, 3), "fc.weight": -torch.ones(2, 4)})
    cmp = compare(a, b, verdicts=False)
    assert not a.canonical and not cmp.canonical and not cmp.same_weights
    fc = next(t for t in cmp.tensors if t.name == "fc.weight")
    assert fc.cosine == pytest.approx(-1.0) and fc.rel_change == pytest.approx(2.0)
    vit = checkpoint_from_state_dict(tiny_state())
    mixed = compare(a, vit, verdicts=False)
    assert mixed.tensors == [] and any("not in a recognized ViT layout" in n for n in mixed.notes)


def test_cli_compare(tmp_path, capsys):
    from vitdash.cli import main

    sd = tiny_state()
    torch.save(sd, tmp_path / "timm.pth")
    torch.save(to_torchvision(sd), tmp_path / "torchvision.pth")
    assert main(["compare", str(tmp_path / "timm.pth"), str(tmp_path / "torchvision.pth"), "--json",
                 "--no-verdict"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["same_weights"] is True and out["only_in_a"] == [] and out["only_in_b"] == []
    assert all({"name", "rel_change", "cosine"} <= set(t) for t in out["tensors"])
    assert out["layout_a"] == "timm" and out["layout_b"] == "torchvision"

    assert main(["compare", str(tmp_path / "timm.pth"), str(tmp_path / "missing.pth")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_empty_checkpoint_is_refused():
    with pytest.raises(VitdashError, match="no tensors"):
        compare(checkpoint_from_state_dict(tiny_state()), checkpoint_from_state_dict({}))


def test_comparison_figures():
    from vitdash.figures.population import group_changes_figure, tensor_changes_figure, verdict_change_figure

    sd = tiny_state()
    tuned = {k: v * 1.2 if k.startswith("blocks.1.") else v.clone() for k, v in sd.items()}
    cmp = compare(checkpoint_from_state_dict(sd), checkpoint_from_state_dict(tuned))
    bars = dict(zip(group_changes_figure(cmp).data[0].x, group_changes_figure(cmp).data[0].y))
    assert bars["blocks.1"] == pytest.approx(0.2) and bars["blocks.0"] == 0
    assert len(tensor_changes_figure(cmp).data[0].x) == sum(t.rel_change is not None for t in cmp.tensors)
    assert len(verdict_change_figure(cmp, "std").data[0].x) > 0


def test_different_architectures_say_so_and_give_no_overall_number(shared_dir):
    """Two MNIST ViTs of other widths and depths share a few tensor shapes (the class token): those are compared
    one by one, but nothing pretends the two are one model moved."""
    ck = shared_dir / "checkpoints"
    cmp = compare(load(ck / "mnist_vit_lucidrains_layout.pt"), load(ck / "mnist_vit_torchvision_layout.pth"),
                  verdicts=False)
    assert cmp.architectures and "depth 6 vs 2" in cmp.architectures
    assert cmp.rel_change is None and cmp.to_dict()["rel_change"] is None
    text = cmp.summary()
    assert text.startswith("Different architectures") and "Moved most" not in text and "Overall" not in text
    assert cmp.matched and all(t.rel_change is not None for t in cmp.matched)
    assert all(t.rel_change is None for t in cmp.tensors if t.resized)
    assert [t.name for t in cmp.tensors] == sorted((t.name for t in cmp.tensors), key=natural_key)
