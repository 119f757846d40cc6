"""Who may do what, without a browser: AppTest seeds st.secrets and st.user. Sign-in off by default (the laptop),
on with [auth]: the gate, the allow-lists, server paths confined in shared mode, the per-user upload quota, who
may save to the library and who saved."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save
from streamlit.testing.v1 import AppTest

import vitdash.load.uploads as uploads
from tests.apptest_utils import ROOT, errors, picker_test
from vitdash.load.confine import REFUSED

AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32, "client_id": "c",
        "client_secret": "s", "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}
ALLOWED = {"allowed_users": ["alice@example.com", "@example.org"]}


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    for name, sub in (("VITDASH_CACHE_DIR", "cache"), ("VITDASH_HISTORY_DB", "h.sqlite"),
                      ("VITDASH_LIBRARY_DIR", "library"), ("HF_HUB_CACHE", "hf"), ("TORCH_HOME", "torch")):
        monkeypatch.setenv(name, str(tmp_path / sub))
    monkeypatch.setenv("VITDASH_MODEL_DIRS", str(tmp_path / "models"))
    monkeypatch.delenv("VITDASH_ALLOWED_ROOTS", raising=False)
    monkeypatch.setattr(uploads, "_SHARED", None)  # a fresh quota, read from this test's environment
    (tmp_path / "models").mkdir()
    return tmp_path


def _opened_on_home(at: AppTest) -> bool:
    """The pages are reached: a new session opens on Home with the demo's four answers."""
    return any(m.value == "#### Is it trained?" for m in at.markdown)


def _app(user=None, vitdash=None, auth=True) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    if auth:
        at.secrets["auth"] = AUTH
    if vitdash is not None:
        at.secrets["vitdash"] = vitdash
    if user is not None:
        at.user = user
    return at.run()


def _signed_in(at: AppTest, email: str, **vitdash) -> AppTest:
    at.secrets["auth"] = AUTH
    at.secrets["vitdash"] = vitdash
    at.user = {"is_logged_in": True, "email": email, "email_verified": True, "name": email.split("@")[0].title()}
    return at


def test_without_an_auth_section_the_app_opens_as_before():
    at = _app(auth=False)
    assert errors(at) == []
    assert _opened_on_home(at)
    assert not [b for b in at.button if b.label == "Sign in"]


def test_signed_out_sees_only_sign_in():
    at = _app(user={"is_logged_in": False})
    assert errors(at) == []
    assert [b.label for b in at.button] == ["Sign in"]
    assert not _opened_on_home(at) and not at.sidebar.radio  # no page, no checkpoint picker


@pytest.mark.parametrize("email", ["alice@example.com", "ALICE@example.com", "bob@example.org"])
def test_an_allowed_user_sees_the_pages_and_who_is_signed_in(email):
    at = _app(user={"is_logged_in": True, "email": email, "name": "Someone"}, vitdash=ALLOWED)
    assert errors(at) == []
    assert _opened_on_home(at)
    assert "Sign out" in [b.label for b in at.sidebar.button]
    assert "Someone" in " ".join(m.value for m in at.sidebar.markdown)


@pytest.mark.parametrize("claims", [{"email": "mallory@evil.test"}, {"email": "x@sub.example.org"},
                                    {"email": "alice@example.com", "email_verified": False}, {}])
def test_a_refused_user_sees_a_clear_refusal_and_nothing_else(claims):
    at = _app(user={"is_logged_in": True, "sub": "s1", **claims}, vitdash=ALLOWED)
    assert not at.exception
    assert len(at.error) == 1 and "Access denied" in at.error[0].value
    assert "is not on this dashboard's list of allowed users" in at.error[0].value
    assert not _opened_on_home(at) and not at.sidebar.radio
    assert [b.label for b in at.sidebar.button] == ["Sign out"]


def _open_path(at: AppTest, path) -> AppTest:
    at.radio(key="source_kind").set_value("Path on server").run()
    at.sidebar.text_input[0].set_value(str(path)).run()
    at.button(key="open_path").click().run()
    return at


def _tiny_file(path):
    from vitdash.load.sources import load_timm

    ckpt = load_timm("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(save({k: v.contiguous() for k, v in ckpt.tensors.materialize().items()}))
    return path


def test_shared_mode_confines_server_paths_with_one_message(env, monkeypatch):
    inside = _tiny_file(env / "models" / "team" / "vit.safetensors")
    outside = _tiny_file(env / "elsewhere" / "vit.safetensors")
    monkeypatch.setenv("VITDASH_ALLOWED_ROOTS", str(env / "models"))
    at = picker_test().run()
    for path in (outside, env / "elsewhere" / "missing.pth", "/etc/passwd", env / "models" / ".." / "elsewhere"):
        _open_path(at, path)
        assert errors(at) == [REFUSED], path
        assert "source" not in at.session_state
    _open_path(at, env / "models" / "team" / ".." / "team" / "vit.safetensors")
    assert errors(at) == [] and at.session_state["source"] == str(inside.resolve())


def test_with_sign_in_on_paths_are_confined_too(env):
    _tiny_file(env / "elsewhere" / "vit.safetensors")
    at = _signed_in(picker_test(), "alice@example.com", **ALLOWED).run()
    _open_path(at, env / "elsewhere" / "vit.safetensors")
    assert errors(at) == [REFUSED]


def test_on_a_laptop_any_path_opens(env):
    outside = _tiny_file(env / "elsewhere" / "vit.safetensors")
    at = _open_path(picker_test().run(), outside)
    assert errors(at) == [] and at.session_state["source"] == str(outside)


def _upload(at: AppTest, name: str, data: bytes, key: str = "uploader") -> AppTest:
    at.radio(key="source_kind").set_value("Upload").run()
    at.file_uploader(key=key).upload(name, data).run()
    return at


def test_an_upload_past_the_users_quota_is_refused_and_dropped(monkeypatch):
    monkeypatch.setenv("VITDASH_UPLOAD_QUOTA_MB", "0.001")  # about 1 KB
    at = _signed_in(picker_test(), "alice@example.com").run()
    _upload(at, "big.safetensors", save({"w": torch.zeros(1024)}))  # 4 KB
    assert len(at.error) == 1 and "past the 0 MB each person may hold" in at.error[0].value
    assert not [b for b in at.button if b.key == "open_upload"]  # the uploader was reset: nothing to open
    assert at.session_state["uploader_generation"] == 1


def test_library_writers_decide_who_may_save_and_the_library_records_who_did(env, tiny_vit_ckpt):
    data = save({k: v.contiguous() for k, v in tiny_vit_ckpt.tensors.materialize().items()})
    writers = {"library_writers": ["@example.org"]}
    reader = _upload(_signed_in(picker_test(), "alice@example.com", **writers).run(), "mine.safetensors", data)
    reader.button(key="open_upload").click().run()
    assert errors(reader) == []
    assert not [b for b in reader.button if b.key == "save_upload"]
    assert any("library_writers" in c.value for c in reader.caption)

    writer = _upload(_signed_in(picker_test(), "bob@example.org", **writers).run(), "mine.safetensors", data)
    writer.button(key="open_upload").click().run()
    writer.button(key="save_upload").click().run()
    assert any("Saved as" in s.value for s in writer.success)
    saved = env / "models" / "mine.safetensors"
    assert saved.read_bytes() == data
    assert json.loads((env / "models" / ".mine.safetensors.vitdash.json").read_text())["saved_by"] == "bob@example.org"


def test_the_zoo_folder_is_confined_in_shared_mode(env, monkeypatch):
    from tests.apptest_utils import page_test

    (env / "elsewhere").mkdir()
    monkeypatch.setenv("VITDASH_ALLOWED_ROOTS", str(env / "models"))
    at = page_test("zoo.py").run()
    for folder in (env / "elsewhere", env / "nowhere", "/etc"):
        at.text_input(key="zoo_dir").input(str(folder)).run()
        at.button(key="zoo_run").click().run()
        assert errors(at) == [REFUSED], folder
