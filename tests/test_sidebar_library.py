"""The sidebar's library under AppTest: the demo trained on first use with progress, configured folders from
secrets, and an upload that stays private until saved into the library."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save

from tests.apptest_utils import errors, picker_test


@pytest.fixture()
def env(tmp_path, monkeypatch):
    for name, sub in (("VITDASH_CACHE_DIR", "cache"), ("VITDASH_HISTORY_DB", "h.sqlite"),
                      ("VITDASH_LIBRARY_DIR", "library"), ("HF_HUB_CACHE", "hf"), ("TORCH_HOME", "torch")):
        monkeypatch.setenv(name, str(tmp_path / sub))
    monkeypatch.setenv("VITDASH_MODEL_DIRS", str(tmp_path / "models"))
    return tmp_path


def test_demo_is_trained_on_first_use_then_opened(env, monkeypatch):
    from vitdash.load import demo

    real = demo.train_demo
    tiny = demo.DemoRecipe(embed_dim=16, depth=1, num_heads=2, epochs=1)  # seconds: the plumbing, not the model
    monkeypatch.setattr(demo, "train_demo", lambda recipe, progress: real(tiny, progress))
    at = picker_test().run()
    assert at.radio(key="source_kind").value == "Demo"
    at.button(key="open_demo_trained").click().run()
    assert errors(at) == []
    assert any("digits-vit-trained" in m.value for m in at.sidebar.markdown)
    assert demo.find_demo(cache_dir=env / "cache") is not None


def test_library_lists_configured_folders_from_secrets(env):
    folder = env / "team-models"
    folder.mkdir()
    (folder / "mine.safetensors").write_bytes(save({"w": torch.zeros(2)}))
    at = picker_test()
    at.secrets["vitdash"] = {"model_dirs": [str(folder)]}
    at.run()
    at.radio(key="source_kind").set_value("Library").run()
    labels = at.selectbox[0].options  # as shown: name first, then its folder and size
    assert any(label.startswith("mine.safetensors (team-models/") for label in labels), labels


def test_upload_stays_private_until_saved(env, tiny_vit_ckpt):
    data = save({k: v.contiguous() for k, v in tiny_vit_ckpt.tensors.materialize().items()})
    at = picker_test().run()
    at.radio(key="source_kind").set_value("Upload").run()
    at.file_uploader(key="uploader").upload("mine.safetensors", data).run()
    at.button(key="open_upload").click().run()
    assert errors(at) == []
    other = picker_test().run()  # another session: no trace of the upload
    assert "source" not in other.session_state
    other.radio(key="source_kind").set_value("Library").run()
    assert not any("mine.safetensors" in o for o in other.selectbox[0].options)

    at.button(key="save_upload").click().run()
    assert any("Saved as" in s.value for s in at.success)
    saved = env / "models" / "mine.safetensors"
    assert saved.read_bytes() == data
    other.run()
    assert any(o.startswith("mine.safetensors (models/") for o in other.selectbox[0].options)
