"""The "Is it trained?" page under AppTest: a real trained file, a fresh init, an unrecognized tensor
set, a file with nothing to audit, and the interactive parts (tensor picker, statistic, spectrum space)."""
from __future__ import annotations

import torch

from tests.apptest_utils import errors, page_test


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_trained_real_file_with_every_section(shared_dir):
    at = page_test("trained.py", source=str(shared_dir / "checkpoints" / "mnist_vit_torchvision_layout.pth"),
                   timeout=180).run()
    assert errors(at) == []
    assert _metrics(at)["Verdict"] == "trained" and _metrics(at)["Tensors at init"] == "0"
    assert any("TRAINED" in md.value for md in at.markdown)
    titles = [s.value for s in at.subheader]
    assert {"Which blocks look trained?", "One tensor", "Position embedding", "Patch-embedding filters",
            "Every tensor"} <= set(titles)
    # heatmap, per-layer histograms, histogram, spectrum, position grid, filters
    assert len(at.get("plotly_chart")) == 6
    assert "Per-layer histograms" in titles
    assert any(m.label == "Page ready in" and m.value.endswith(" s") for m in at.metric)

    at.selectbox(key="tensor_pick").set_value("blocks.1.mlp.fc1.weight")
    at.selectbox[0].set_value("verdict")
    at.radio[0].set_value("normal scores (what the verdict uses)")
    at.run()
    assert errors(at) == []
    assert any("**trained**" in md.value and "normal-score spectrum" in md.value for md in at.markdown)
    assert any("normal-score spectrum" in str(c.proto.spec) for c in at.get("plotly_chart"))


def test_fresh_init_reads_init(tmp_path):
    from timm.models.vision_transformer import VisionTransformer

    sd = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, num_classes=10).state_dict()
    path = tmp_path / "fresh.pth"
    torch.save(sd, path)
    at = page_test("trained.py", source=str(path), timeout=120).run()
    assert errors(at) == []
    assert _metrics(at)["Verdict"] == "init"
    assert _metrics(at)["Tensors at init"] == str(len(sd))
    assert any("INIT" in md.value for md in at.markdown)
    assert any("timm" in c.value for c in at.caption)  # the init scheme it matches


def test_unrecognized_layout_still_gets_a_verdict(tmp_path):
    g = torch.Generator().manual_seed(0)
    sd = {f"stack.{i}.{p}.weight": torch.randn(48, 48, generator=g) * 0.1 for i in range(3) for p in ("a", "b")}
    sd.update({f"stack.{i}.{p}.bias": torch.zeros(48) for i in range(3) for p in ("a", "b")})
    path = tmp_path / "mlp.pth"
    torch.save(sd, path)
    at = page_test("trained.py", source=str(path), timeout=120).run()
    assert errors(at) == []
    assert any("Layout not recognized" in i.value for i in at.info)
    assert _metrics(at)["Verdict"] == "init"
    assert len(at.get("plotly_chart")) >= 2  # depth x role over the found blocks, and the histogram


def test_nothing_to_audit_is_a_message(tmp_path):
    path = tmp_path / "ints.pth"
    torch.save({"step": torch.tensor([3]), "counts": torch.arange(10)}, path)
    at = page_test("trained.py", source=str(path), timeout=60).run()
    assert not at.exception
    assert len(at.error) == 1 and "floating-point" in at.error[0].value, [e.value for e in at.error]


def _layers_chart(at) -> dict:
    import json

    return json.loads(next(c for c in at.get("plotly_chart") if c.key == "layers_chart").proto.spec)


def test_per_layer_histograms_with_log_density_and_an_overlay(demo_pair, request, monkeypatch):
    """The demo's trained model: qkv in every block against its prior, then the tails, then its init twin on the
    same bins."""
    from tests.demo_utils import demo_cache_dir
    from ui.state import library_changed

    monkeypatch.setenv("VITDASH_CACHE_DIR", str(demo_cache_dir(request.config)))  # the library lists this pair
    library_changed()
    at = page_test("trained.py", source=str(demo_pair.trained), timeout=180).run()
    assert errors(at) == []
    assert at.selectbox(key="layers_slot").value == "attn.qkv.weight"
    spec = _layers_chart(at)
    panels = [k for k in spec["layout"] if k.startswith("yaxis")]
    assert len(panels) == 4  # one per block, block 0 on top
    assert all("KS" in a["text"] and "std ratio" in a["text"] for a in spec["layout"]["annotations"])
    at.checkbox(key="layers_log").check().run()
    assert errors(at) == []
    assert all(spec_axis.get("type") == "log" for k, spec_axis in _layers_chart(at)["layout"].items()
               if k.startswith("yaxis"))
    at.selectbox(key="layers_other").set_value(str(demo_pair.init)).run()
    assert errors(at) == []
    overlay = _layers_chart(at)
    init = [t for t in overlay["data"] if t.get("legendgroup") == "digits-vit-init"]
    assert len(init) == 4 and sum(t.get("showlegend", True) for t in init) == 1  # a trace per block, one legend
    assert "(matches)" in overlay["layout"]["annotations"][0]["text"]  # the init twin matches its prior
