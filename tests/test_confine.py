"""Server paths confined to the configured roots: traversal, symlinks out, paths elsewhere, symlinked roots."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from vitdash.errors import VitdashError
from vitdash.load.confine import REFUSED, confine, server_roots, shared_mode


@pytest.fixture()
def tree(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "models"
    (root / "team").mkdir(parents=True)
    (root / "team" / "vit.safetensors").write_bytes(b"x")
    secret = tmp_path / "other-team"
    secret.mkdir()
    (secret / "private.safetensors").write_bytes(b"y")
    return {"root": root, "secret": secret, "tmp": tmp_path}


def _refused(path, roots) -> str:
    with pytest.raises(VitdashError) as e:
        confine(path, roots)
    return str(e.value)


def test_paths_under_a_root_are_resolved_and_kept(tree):
    root = tree["root"]
    assert confine(root / "team" / "vit.safetensors", [root]) == (root / "team" / "vit.safetensors").resolve()
    assert confine(root, [root]) == root.resolve()
    assert confine(f"{root}/team/../team/vit.safetensors", [root]) == (root / "team" / "vit.safetensors").resolve()
    # not there yet, but inside: the loader's own "does not exist" may say so
    assert confine(root / "team" / "missing.pth", [root]) == (root / "team" / "missing.pth").resolve()


@pytest.mark.parametrize("rel", ["../other-team/private.safetensors", "team/../../other-team", "../..", ".."])
def test_traversal_out_of_a_root_is_refused(tree, rel):
    assert _refused(f"{tree['root']}/{rel}", [tree["root"]]) == REFUSED


def test_absolute_paths_elsewhere_get_one_message_whether_or_not_they_exist(tree):
    roots = [tree["root"]]
    messages = {_refused(p, roots) for p in ("/etc", "/etc/passwd", "/definitely/not/here", Path.home() / ".ssh",
                                             tree["secret"], tree["secret"] / "private.safetensors",
                                             tree["secret"] / "nothing.pth", "relative/elsewhere", "", "  ",
                                             "timm:vit_base_patch16_224", "a\x00b")}
    assert messages == {REFUSED}
    assert "exist" not in REFUSED


def test_a_symlink_inside_a_root_that_leads_out_is_refused(tree):
    root, secret = tree["root"], tree["secret"]
    (root / "escape").symlink_to(secret)
    (root / "team" / "leak.safetensors").symlink_to(secret / "private.safetensors")
    (root / "team" / "dangling.pth").symlink_to(tree["tmp"] / "nowhere.pth")
    for p in (root / "escape", root / "escape" / "private.safetensors", root / "team" / "leak.safetensors",
              root / "team" / "dangling.pth"):
        assert _refused(p, [root]) == REFUSED
    # a folder that is itself inside but holds a link out (a config.json or shard the reader would open)
    assert _refused(root / "team", [root]) == REFUSED
    assert _refused(root, [root]) == REFUSED


def test_a_symlink_that_stays_inside_is_followed(tree):
    root = tree["root"]
    (root / "alias.safetensors").symlink_to(root / "team" / "vit.safetensors")
    assert confine(root / "alias.safetensors", [root]) == (root / "team" / "vit.safetensors").resolve()
    assert confine(root, [root]) == root.resolve()


def test_a_root_that_is_itself_a_symlink(tree):
    link = tree["tmp"] / "models-link"
    link.symlink_to(tree["root"], target_is_directory=True)
    target = tree["root"] / "team" / "vit.safetensors"
    assert confine(link / "team" / "vit.safetensors", [link]) == target.resolve()
    assert confine(target, [link]) == target.resolve()  # the real path is under the root's target
    assert _refused(link / ".." / "other-team", [link]) == REFUSED
    assert _refused(tree["secret"], [link]) == REFUSED


def test_a_prefix_is_not_a_parent(tree):
    sibling = tree["tmp"] / "models-old"
    sibling.mkdir()
    assert _refused(sibling, [tree["root"]]) == REFUSED


def test_shared_mode_and_roots_from_the_environment(tree, monkeypatch):
    monkeypatch.delenv("VITDASH_ALLOWED_ROOTS", raising=False)
    monkeypatch.setenv("VITDASH_MODEL_DIRS", str(tree["root"]))
    monkeypatch.setenv("VITDASH_LIBRARY_DIR", str(tree["tmp"] / "lib"))
    assert not shared_mode(False) and shared_mode(True)
    assert server_roots() == [tree["root"], tree["tmp"] / "lib"]
    monkeypatch.setenv("VITDASH_ALLOWED_ROOTS", os.pathsep.join([str(tree["secret"]), ""]))
    assert shared_mode(False)
    assert server_roots(["/configured"]) == [tree["secret"], tree["root"], Path("/configured"), tree["tmp"] / "lib"]
