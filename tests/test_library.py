"""The library: every source listed without reading weights, every listed entry loadable, uploads saved safely."""
from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import save, save_file

from tests.demo_utils import demo_cache_dir
from vitdash.errors import VitdashError
from vitdash.load import demo, library
from vitdash.load.sources import load


@pytest.fixture()
def isolated(monkeypatch, tmp_path):
    """No configured folders, an empty user library, so each test sees only what it builds."""
    monkeypatch.delenv("VITDASH_MODEL_DIRS", raising=False)
    monkeypatch.setenv("VITDASH_LIBRARY_DIR", str(tmp_path / "user-library"))
    return tmp_path


def _tiny_state() -> dict[str, torch.Tensor]:
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, embed_dim=48, num_heads=3,
                              num_classes=4)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def _model_tree(root, state):
    """One of each layout a model folder may hold, plus things that must not be listed."""
    hf = root / "team" / "hf-folder"
    hf.mkdir(parents=True)
    save_file(state, hf / "model.safetensors")
    (hf / "config.json").write_text(json.dumps({"num_heads": 3}))
    (hf / "unrelated.pth").write_bytes(b"inside a model folder: not listed on its own")
    nested = root / "a" / "b"
    nested.mkdir(parents=True)
    torch.save(state, nested / "deep.pth")
    save_file(state, root / "top.safetensors")
    zoo = root / "zoo-run" / "checkpoint_000010"
    zoo.mkdir(parents=True)
    torch.save({"vit." + k: v for k, v in state.items()}, zoo / "checkpoints")
    hidden = root / ".trash"
    hidden.mkdir()
    save_file(state, hidden / "gone.safetensors")
    (root / "README.txt").write_text("not a checkpoint")


def test_scan_finds_every_layout_recursively_and_each_entry_loads(tmp_path):
    _model_tree(tmp_path, _tiny_state())
    entries = library.scan_folder(tmp_path, prefix="models/")
    assert {e.name: e.kind for e in entries} == {
        "models/a/b/deep.pth": "file", "models/team/hf-folder": "folder", "models/top.safetensors": "file",
        "models/zoo-run": "folder"}
    for e in entries:
        assert e.size_bytes > 0 and e.ready and e.origin == library.ORIGIN_FOLDER
        ckpt = load(e.source)
        assert ckpt.is_vit and ckpt.num_params > 0, e.name


def test_a_folder_that_loads_as_one_model_is_listed_as_one(tmp_path):
    """`load(folder)` opens a folder by its weights' name (a Hub download without config.json) or with its
    metadata beside a single checkpoint: the library lists such a folder, not its file, so it opens the same way."""
    state = _tiny_state()
    bare = tmp_path / "bare-hf"
    bare.mkdir()
    save_file(state, bare / "model.safetensors")
    with_meta = tmp_path / "with-preprocessing"
    with_meta.mkdir()
    torch.save(state, with_meta / "vit.pth")
    (with_meta / "preprocessor_config.json").write_text(json.dumps({"crop_pct": 0.9}))
    loose = tmp_path / "loose"
    loose.mkdir()
    for name in ("model.safetensors", "other.safetensors"):  # which one is the model? list both
        save_file(state, loose / name)
    entries = {e.name: e.kind for e in library.scan_folder(tmp_path)}
    assert entries == {"bare-hf": "folder", "with-preprocessing": "folder", "loose/model.safetensors": "file",
                       "loose/other.safetensors": "file"}
    assert load(bare).is_vit and load(with_meta).metadata["preprocessor_config"] == {"crop_pct": 0.9}


def test_shared_checkpoints_are_all_listed_and_readable(shared_dir):
    entries = library.scan_folder(shared_dir / "checkpoints")
    names = {e.name for e in entries}
    assert {"dinov2-small-hf", "fmnist_vit_custom.pth", "mnist_vit_torchvision_layout.pth",
            "mnist_vit_lucidrains_layout.pt"} <= names
    for e in entries:
        assert load(e.source).is_vit, e.name


def test_model_dirs_from_environment_and_secrets(monkeypatch, tmp_path):
    a, b, c = (tmp_path / n for n in "abc")
    monkeypatch.setenv("VITDASH_MODEL_DIRS", f"{a}{os.pathsep}{b}")
    assert library.model_dirs() == [a, b]
    assert library.model_dirs([str(c), str(a)]) == [a, b, c]  # secrets add to the environment, no duplicates
    assert library.model_dirs(str(c)) == [a, b, c]
    assert library.save_dir([str(c)]) == a
    monkeypatch.delenv("VITDASH_MODEL_DIRS")
    assert library.model_dirs([str(c)]) == [c]
    assert library.save_dir() == library.user_library_dir()


def _fake_hub_cache(cache, repo_id: str, files: dict[str, bytes], commit: str = "a" * 40, ref: str = "main"):
    """The Hub cache layout huggingface_hub writes: blobs, snapshots/<commit> of symlinks, refs/<ref>."""
    import hashlib

    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo / "blobs").mkdir()
    (repo / "refs").mkdir()
    (repo / "refs" / ref).write_text(commit)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snap / name).symlink_to(os.path.relpath(blob, snap))
    return snap


def test_hub_cache_lists_snapshots_with_weights(tmp_path):
    cache = tmp_path / "hub"
    weights = save(_tiny_state())
    snap = _fake_hub_cache(cache, "timm/vit_tiny_test", {"model.safetensors": weights,
                                                         "config.json": json.dumps({"num_heads": 3}).encode()})
    _fake_hub_cache(cache, "someone/tokenizer-only", {"tokenizer.json": b"{}"})
    entries = library.hub_cache_entries(cache)
    assert [(e.name, e.kind, e.origin) for e in entries] == [("timm/vit_tiny_test@main", "folder",
                                                             library.ORIGIN_HF)]
    assert entries[0].source == str(snap) and entries[0].size_bytes >= len(weights)
    assert load(entries[0].source).is_vit
    assert library.hub_cache_entries(tmp_path / "missing") == []


def test_torch_hub_checkpoints_are_listed(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    torch.save(_tiny_state(), tmp_path / "checkpoints" / "vit_tiny-1234abcd.pth")
    entries = library.torch_hub_entries(tmp_path)
    assert [(e.name, e.origin) for e in entries] == [("vit_tiny-1234abcd.pth", library.ORIGIN_TORCH)]


def test_list_library_gathers_every_source_once(isolated, demo_pair, request):
    models = isolated / "models"
    _model_tree(models, _tiny_state())
    hub = isolated / "hub"
    _fake_hub_cache(hub, "timm/vit_tiny_test", {"model.safetensors": save(_tiny_state()), "config.json": b"{}"})
    entries = library.list_library([str(models), str(models)], demo_cache_dir=demo_cache_dir(request.config),
                                   hf_cache_dir=hub, torch_hub_dir=isolated / "no-torch-hub")
    origins = [e.origin for e in entries]
    assert origins[:2] == [library.ORIGIN_DEMO] * 2  # the demo pair first: there is always something to open
    assert origins.count(library.ORIGIN_FOLDER) == 4 and origins.count(library.ORIGIN_HF) == 1
    assert len({os.path.realpath(e.source) for e in entries}) == len(entries)
    assert entries[0].source == str(demo_pair.trained) and entries[0].ready
    assert entries[0].label.startswith("digits-vit-trained (demo")


def test_demo_entries_are_listed_before_they_exist_and_prepare_builds_them(tmp_path, monkeypatch):
    entries = library.demo_entries(tmp_path)
    assert [e.ready for e in entries] == [False, False]
    assert all("built on first use" in e.label for e in entries)
    real = demo.train_demo
    tiny = demo.DemoRecipe(embed_dim=16, depth=1, num_heads=2, epochs=1)
    monkeypatch.setattr(demo, "train_demo", lambda recipe, progress: real(tiny, progress))  # seconds, not a minute
    reports = []
    source = library.prepare(entries[1], progress=reports.append)
    assert source == entries[1].source and load(source).is_vit
    assert reports and reports[-1].fraction == 1.0
    assert all(e.ready for e in library.demo_entries(tmp_path))


def test_save_upload_is_atomic_and_never_overwrites(tmp_path):
    folder = tmp_path / "lib"
    first = save(_tiny_state())
    path = library.save_upload(first, "../../escape/model.safetensors", folder)
    assert path == folder / "model.safetensors" and path.read_bytes() == first
    assert library.save_upload(first, "model.safetensors", folder) == path  # same bytes: same file
    other = save({k: v + 1 for k, v in _tiny_state().items()})
    second = library.save_upload(other, "model.safetensors", folder)
    assert second != path and second.name.startswith("model-") and second.suffix == ".safetensors"
    assert path.read_bytes() == first and second.read_bytes() == other
    odd = library.save_upload(first, "weights", folder)
    assert odd.name == "weights.bin" and load(odd).is_vit  # listed by the scan, read by content
    assert sorted(e.name for e in library.scan_folder(folder)) == sorted(p.name for p in (path, second, odd))
    hidden = sorted(p.name for p in folder.iterdir() if p.name.startswith("."))  # no .part left behind
    assert hidden == sorted(f".{p.name}.vitdash.json" for p in (path, second, odd))


def test_the_library_records_who_saved_a_file(tmp_path):
    folder = tmp_path / "lib"
    data = save(_tiny_state())
    path = library.save_upload(data, "mine.safetensors", folder, saved_by=" alice@example.com ")
    assert library.save_upload(data, "again.safetensors", folder, saved_by="bob@example.com") != path
    assert library.save_upload(data, "mine.safetensors", folder, saved_by="bob@example.com") == path
    [entry] = [e for e in library.scan_folder(folder) if e.source == str(path)]
    assert entry.saved_by == "alice@example.com"  # the same bytes saved again keep their first saver
    assert "saved by alice@example.com" in entry.label
    anonymous = library.save_upload(save({k: v * 2 for k, v in _tiny_state().items()}), "anon.pth", folder)
    assert library.who_saved(anonymous) == "" and library.who_saved(tmp_path / "nothing.pth") == ""
    (folder / ".anon.pth.vitdash.json").write_text("{not json")
    assert library.who_saved(anonymous) == ""  # a damaged sidecar costs the name, not the listing


def test_save_upload_refuses_clearly(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(VitdashError, match="could not save"):
        library.save_upload(b"data", "m.pth", blocker / "sub")
    with pytest.raises(VitdashError, match="no usable file name"):
        library.save_upload(b"data", "...", tmp_path)


def test_labels_lead_with_the_models_own_name():
    """A narrow sidebar cuts the end of a label: two files of one folder must differ in their first words."""
    a = library.LibraryEntry("checkpoints/mnist_vit_torchvision_layout.pth", "/x/a.pth", "file", 474767)
    b = library.LibraryEntry("checkpoints/mnist_vit_lucidrains_layout.pt", "/x/b.pt", "file", 2029324)
    assert a.label == "mnist_vit_torchvision_layout.pth (checkpoints/, 463.6 KB)"
    assert b.label.startswith("mnist_vit_lucidrains_layout.pt (checkpoints/")
    hub = library.LibraryEntry("timm/vit_tiny@main/model.safetensors", "/h", "file", 0, library.ORIGIN_HF)
    assert hub.label == "model.safetensors (timm/vit_tiny@main/, Hugging Face cache)"
