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


def test_app_starts_with_a_hint_and_no_error():
    at = _app().run()
    assert not at.exception
    assert any("Pick a checkpoint" in i.value for i in at.info)


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
    _upload(at, "good.safetensors", save(sd))
    assert not at.exception and not at.error
    assert any(m.label == "Layout" and m.value in ("torchvision", "timm") for m in at.metric)


def test_overview_on_a_real_file(shared_dir):
    at = page_test("overview.py", str(shared_dir / "checkpoints" / "mnist_vit_torchvision_layout.pth")).run()
    assert not errors(at)
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
