"""The app shell and the Overview page under AppTest: picking sources, and bad files giving messages."""
from __future__ import annotations

import io
import os
import pickle
import struct

import torch
from safetensors.torch import save
from streamlit.testing.v1 import AppTest

from tests.apptest_utils import ROOT, errors, page_test, picker_test


def _app() -> AppTest:
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)


def _upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.radio(key="source_kind").set_value("Upload").run()
    at.file_uploader(key="uploader").upload(name, data).run()
    at.button(key="open_upload").click().run()
    return at


def test_the_first_screen_opens_on_the_demo_and_answers_the_four_questions(demo_pair, request, monkeypatch):
    """A new session opens on the demo's trained model: one line on what vitdash is, then four cards, each with
    its answer and a link to its page."""
    from tests.demo_utils import demo_cache_dir

    monkeypatch.setenv("VITDASH_CACHE_DIR", str(demo_cache_dir(request.config)))
    at = _app().run()
    assert not at.exception and errors(at) == []
    assert at.session_state["source"] == str(demo_pair.trained)
    assert at.title[0].value == "vitdash" and "Vision Transformer checkpoints" in at.markdown[0].value
    cards = [m.value for m in at.markdown if m.value.startswith("#### ")]
    assert cards == ["#### Is it trained?", "#### What is it?", "#### Does it perform?", "#### Where does it look?"]
    assert any(":green[TRAINED]" in m.value for m in at.markdown)  # the verdict
    assert any("nearest family member **ViT-Ti/16 @224**" in m.value for m in at.markdown)  # the family
    # its size in SI units, as on the identity page (a 0.14 M-parameter model is not "0.00239 GFLOPs")
    assert any(c.value.startswith("width 64, depth 4, 4 px patches of a 16 px image, ") and c.value.endswith(" M FLOPs")
               for c in at.caption)
    assert any("Not measured yet" in m.value for m in at.markdown)  # no accuracy was measured
    assert len(at.image) == 1  # the rollout thumbnail
    links = [el.proto.page for el in at.get("page_link")]
    assert links == ["trained", "identity", "perform", "attention"]  # the four pages


def test_a_checkpoint_that_cannot_be_opened_is_explained_once(tmp_path):
    at = picker_test().run()
    at.radio(key="source_kind").set_value("Path on server").run()
    at.text_input(key="server_path").input(str(tmp_path / "nothing.pth")).run()
    at.button(key="open_path").click().run()
    assert sum("does not exist" in e for e in errors(at)) == 1  # the page's message; the sidebar points to it
    assert any("the reason is on the page" in c.value for c in at.sidebar.caption)


class _RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bad_files(tmp_path):
    tensors = save({"w": torch.ones(4, 4)})
    huge = struct.pack("<Q", 2**62) + b"{}"
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 64
    evil = io.BytesIO()
    pickle.dump({"weights": _RunsCommand(tmp_path / "pwned")}, evil)
    return [
        ("empty.pth", b"", "empty"),
        ("cut.safetensors", tensors[: len(tensors) // 2], "truncated"),
        ("noise.safetensors", os.urandom(4096), "not a safetensors file"),
        ("huge.safetensors", huge, "header claims"),
        ("photo.pth", jpeg, "JPEG image"),
        ("evil.pt", evil.getvalue(), "could run code"),
    ]


def test_bad_uploads_give_specific_messages_and_the_app_keeps_running(tmp_path):
    at = picker_test().run()
    for name, data, expected in _bad_files(tmp_path):
        _upload(at, name, data)
        assert not at.exception, (name, at.exception)
        msgs = [e.value for e in at.error]
        assert any(expected in m for m in msgs), (name, msgs)
    assert not (tmp_path / "pwned").exists()
    # After all that, a good upload still works and becomes the session's checkpoint.
    sd = {k: v.contiguous() for k, v in torch.load(
        ROOT.parent / "shared" / "checkpoints" / "mnist_vit_torchvision_layout.pth", weights_only=True,
        map_location="cpu").items()} if (ROOT.parent / "shared").exists() else None
    if sd is None:
        import timm
        sd = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1).state_dict()
    assert any("still show" in i.value or "no checkpoint is open" in i.value for i in at.info)
    _upload(at, "good.safetensors", save(sd))
    assert not at.exception and not at.error
    _upload(at, "broken.pth", b"")  # a failed upload after a good one: the good one is still what is shown
    assert any("the pages still show **good.safetensors**" in i.value for i in at.info)
    assert any(m.label == "Layout" and m.value in ("torchvision", "timm") for m in at.metric)


def test_overview_on_a_real_file(shared_dir):
    at = page_test("overview.py", str(shared_dir / "checkpoints" / "mnist_vit_torchvision_layout.pth")).run()
    assert not errors(at)
    at.button(key="overview_report").click().run()  # the HTML report, made as a job, then offered for download
    assert not errors(at) and [b.proto.label for b in at.get("download_button")] == ["Download report (HTML)"]
    _, _, html = at.session_state["report_html"]
    assert html.startswith("<!DOCTYPE html>") and "mnist_vit_torchvision_layout.pth" in html
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Layout"] == "torchvision" and metrics["Tensors"] == "34"
    assert any("Recognized as a Vision Transformer" in s.value for s in at.success)


def test_overview_on_a_non_vit(tmp_path):
    import timm

    path = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), path)
    at = page_test("overview.py", str(path)).run()
    assert not at.exception
    assert any("Not recognized as a ViT" in w.value and "ResNet" in w.value for w in at.warning)


def test_missing_path_is_a_message():
    at = page_test("overview.py", "/nonexistent/model.safetensors").run()
    assert not at.exception
    assert any("does not exist" in e.value for e in at.error)


def test_hub_offline_is_a_message_not_a_hang():
    at = page_test("overview.py", "hf-hub:google/vit-base-patch16-224").run()
    assert not at.exception
    assert any("Hub is unreachable" in e.value for e in at.error)


def test_overview_maps_each_file_key_to_its_canonical_name(shared_dir):
    at = page_test("overview.py", str(shared_dir / "checkpoints" / "dinov2-small-hf")).run()
    assert not errors(at)
    mapping = at.dataframe[0].value
    assert list(mapping.columns[:2]) == ["original key", "canonical name"]
    keys = list(mapping["original key"])
    assert keys.index("encoder.layer.2.mlp.fc1.bias") < keys.index("encoder.layer.10.mlp.fc1.bias")  # natural order
    assert any(m.value == "**1 key left over**" for m in at.markdown)
    sha = "8b38fc0f3652d5a3cd0a5f3b71eb3b0b68a34460a68814528cb1e25177fe6e30"
    assert any(c.value == sha for c in at.code)  # whole, not cut
    assert at.button(key="overview_report").proto.label == "Make an HTML report"
    vit_pytorch = page_test("overview.py", str(shared_dir / "checkpoints" / "mnist_vit_lucidrains_layout.pt")).run()
    layout = {m.label: m.value for m in vit_pytorch.metric}["Layout"]
    assert layout not in ("custom", "unknown") and f"layout `{layout}`" in (ROOT / "README.md").read_text()  # named
    assert any("Recognized as a Vision Transformer" in s.value for s in vit_pytorch.success)  # as the README says


# The families people download today (issue 14), each under timm's own name in the sidebar's list.
TODAYS_FAMILIES = {"DINOv3", "EVA-02", "SigLIP", "SigLIP 2", "AIMv2", "BEiT", "BEiT v2", "MAE", "CLIP", "PE",
                   "RoPE-ViT"}


def test_the_sidebars_timm_list_holds_todays_families_and_overview_names_the_class():
    from vitdash.identity.family_table import family_rows

    at = picker_test().run()
    at.radio(key="source_kind").set_value("timm architecture (init)").run()
    names = {o.split(".")[0] for o in at.sidebar.selectbox[0].options}
    assert TODAYS_FAMILIES <= {r["family"] for r in family_rows() if r["timm_name"] in names}
    at.sidebar.selectbox[0].set_value("eva02_tiny_patch14_224").run()
    at.button(key="open_timm").click().run()
    assert errors(at) == []
    assert any(s.value.startswith("Recognized as a Vision Transformer: timm's Eva ") for s in at.success)
