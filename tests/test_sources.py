"""Sources: folders (Hugging Face single/sharded, ViT Model Zoo), training checkpoints, uploads, timm names, Hub.

Folders are written by the tools that define them (transformers' `save_pretrained`, huggingface_hub's
shard splitter, `torch.save`), and every variant must give the same canonical tensors as the plain file.
The Hub tests run in a subprocess against a local endpoint that refuses or never answers, so no test
touches the network and a hang fails the test instead of blocking the suite.
"""
from __future__ import annotations

import argparse
import io
import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.tiny import assert_same_tensors, tiny_vit
from vitdash.errors import VitdashError
from vitdash.load.sources import load, load_bytes, load_timm

ROOT = Path(__file__).resolve().parents[1]
torch.manual_seed(0)


# ---- Hugging Face folders ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_model():
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                       image_size=32, patch_size=8, num_labels=3, id2label={0: "cat", 1: "dog", 2: "fox"},
                       label2id={"cat": 0, "dog": 1, "fox": 2})
    model = ViTForImageClassification(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def hf_single(hf_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf_single")
    hf_model.save_pretrained(folder)
    return load(folder)


def _write_bin_shards(model, folder: Path, max_shard_size) -> None:
    """pytorch_model*.bin (+ index when split), the pre-safetensors Hub layout, via huggingface_hub's splitter.

    The tensors carry the Hub's names, which `save_pretrained` writes (transformers 5 renames in memory)."""
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import load_file

    model.save_pretrained(folder)
    sd = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    split = split_torch_state_dict_into_shards(sd, filename_pattern="pytorch_model{suffix}.bin",
                                               max_shard_size=max_shard_size)
    for filename, names in split.filename_to_tensors.items():
        torch.save({n: sd[n] for n in names}, folder / filename)
    if split.is_sharded:
        (folder / "pytorch_model.bin.index.json").write_text(
            json.dumps({"metadata": split.metadata, "weight_map": split.tensor_to_filename}))


def test_hf_single_safetensors_folder(hf_single, hf_model):
    ckpt = hf_single
    assert ckpt.layout == "hf" and ckpt.canonical and ckpt.format == "safetensors"
    assert ckpt.metadata["config"]["num_attention_heads"] == 4
    assert ckpt.metadata["id2label"] == {"0": "cat", "1": "dog", "2": "fox"}
    assert ckpt.num_params == sum(p.numel() for p in hf_model.parameters()) and not ckpt.unmapped_keys


def test_hf_sharded_safetensors_folder(hf_model, hf_single, tmp_path):
    hf_model.save_pretrained(tmp_path, max_shard_size="60KB")
    shards = sorted(tmp_path.glob("model-*.safetensors"))
    assert len(shards) > 2 and (tmp_path / "model.safetensors.index.json").exists()
    ckpt = load(tmp_path)
    assert ckpt.layout == "hf" and ckpt.metadata["shards"] == len(shards)
    assert ckpt.metadata["id2label"] == hf_single.metadata["id2label"]
    assert_same_tensors(ckpt.tensors, hf_single.tensors)


@pytest.mark.parametrize("max_shard_size", ["60KB", "50GB"])
def test_hf_bin_folders(hf_model, hf_single, tmp_path, max_shard_size):
    _write_bin_shards(hf_model, tmp_path, max_shard_size)
    sharded = max_shard_size == "60KB"
    assert (tmp_path / "pytorch_model.bin.index.json").exists() == sharded
    ckpt = load(tmp_path)
    assert ckpt.format == "torch" and ckpt.layout == "hf"
    assert_same_tensors(ckpt.tensors, hf_single.tensors)


def test_sharded_index_naming_a_missing_shard(hf_model, tmp_path):
    hf_model.save_pretrained(tmp_path, max_shard_size="60KB")
    gone = sorted(tmp_path.glob("model-*.safetensors"))[-1]
    gone.unlink()
    with pytest.raises(VitdashError, match=f"{gone.name} is missing"):
        load(tmp_path)


# ---- ViT Model Zoo -------------------------------------------------------------------------------------------


def _model_zoo_folder(folder: Path, model, wrapped: bool) -> None:
    """The layout of "A Model Zoo of Vision Transformers": a Ray Tune trial folder whose checkpoint folders hold
    a file named `checkpoints` (no extension) with the wrapper module's `vit.`-prefixed timm keys."""
    (folder / "config.json").write_text(json.dumps({"model::type": "vit_s_16", "optim::lr": 3e-4, "seed": 1}))
    (folder / "result.json").write_text("\n".join(
        json.dumps({"training_iteration": i, "test_acc": 0.1 * i, "train_loss": 2.0 / i}) for i in range(1, 11)))
    opt = torch.optim.AdamW(model.parameters())
    for epoch in (9, 10):
        ck = folder / f"checkpoint_{epoch:06d}"
        ck.mkdir()
        sd = {f"vit.{k}": v * (epoch / 10) for k, v in model.state_dict().items()}  # epoch 10 == the model
        torch.save({"model": sd, "optimizer": opt.state_dict(), "epoch": epoch} if wrapped else sd, ck / "checkpoints")
        torch.save(opt.state_dict(), ck / "optimizer")


@pytest.mark.parametrize("wrapped", [True, False])
def test_model_zoo_folder(tmp_path, wrapped):
    model = tiny_vit()
    _model_zoo_folder(tmp_path, model, wrapped)
    ckpt = load(tmp_path)
    assert ckpt.layout == "model_zoo" and ckpt.canonical and ckpt.is_vit
    assert ckpt.wrappers == ["checkpoint_000010"] + (["model"] if wrapped else []) + ["vit"]
    assert ckpt.metadata["config"]["optim::lr"] == 3e-4
    assert [r["test_acc"] for r in ckpt.metadata["result"]][-1] == pytest.approx(1.0)
    if wrapped:
        assert ckpt.metadata["epoch"] == 10
    assert_same_tensors(ckpt.tensors, model.state_dict())


# ---- training checkpoints and wrappers -----------------------------------------------------------------------


def test_timm_training_checkpoint(tmp_path):
    model = tiny_vit()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()  # real optimizer moments in the file
    args = argparse.Namespace(model="vit_tiny_patch16_224", lr=5e-4, epochs=300, output=Path("/runs/x"))
    path = tmp_path / "checkpoint-12.pth.tar"
    torch.save({"epoch": 12, "arch": "visiontransformer", "state_dict": model.state_dict(),
                "optimizer": opt.state_dict(), "version": 2, "args": args, "metric": 71.3,
                "state_dict_ema": model.state_dict()}, path)
    ckpt = load(path)
    assert ckpt.wrappers == ["state_dict"] and ckpt.canonical
    meta = ckpt.metadata
    assert meta["epoch"] == 12 and meta["metric"] == 71.3 and meta["arch"] == "visiontransformer"
    assert meta["args"]["model"] == "vit_tiny_patch16_224" and meta["args"]["epochs"] == 300
    assert meta["timm_model"] == "vit_tiny_patch16_224"
    assert meta["optimizer"]["param_groups"][0]["lr"] == 5e-4
    assert meta["optimizer"]["state_entries"] == len(list(model.parameters()))
    assert "not loaded" in meta["state_dict_ema"]
    as_json = json.loads(json.dumps(ckpt.to_dict()))  # metadata from a pickle must still be printable
    assert as_json["metadata"]["args"]["output"] == "/runs/x"
    assert_same_tensors(ckpt.tensors, model.state_dict())


def test_ddp_module_prefix(tmp_path):
    sd = tiny_vit().state_dict()
    path = tmp_path / "ddp.pth"
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}, "epoch": 1}, path)
    ckpt = load(path)
    assert ckpt.wrappers == ["model", "module"] and ckpt.layout == "timm"
    assert_same_tensors(ckpt.tensors, sd)


# ---- uploads -------------------------------------------------------------------------------------------------


def test_upload_safetensors_and_torch(tmp_path):
    from safetensors.torch import save

    sd = tiny_vit().state_dict()
    a = load_bytes(save(sd), "my model.safetensors")
    buf = io.BytesIO()
    torch.save({"state_dict": sd}, buf)
    b = load_bytes(buf.getvalue(), "ckpt.pth.tar")
    assert a.source == "upload:my model.safetensors" and a.name == "my model.safetensors"
    assert b.wrappers == ["state_dict"]
    assert_same_tensors(a.tensors, sd)  # readable after the temporary file is gone
    assert_same_tensors(b.tensors, sd)
    assert a.sha256 != b.sha256 and len(a.sha256) == 64


def test_upload_without_extension_is_read_by_content():
    buf = io.BytesIO()
    torch.save({f"vit.{k}": v for k, v in tiny_vit().state_dict().items()}, buf)
    assert load_bytes(buf.getvalue(), "checkpoints").canonical


def test_bad_upload_is_named_by_its_own_filename():
    with pytest.raises(VitdashError, match=r"^holiday\.jpg\.pth\b.*JPEG"):
        load_bytes(b"\xff\xd8\xff\xe0" + bytes(100), "holiday.jpg.pth")


# ---- timm names ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "deit_tiny_distilled_patch16_224"])
def test_timm_name_at_init(name):
    ckpt = load(f"timm:{name}")
    assert ckpt.canonical and ckpt.is_vit and ckpt.layout == "timm"
    assert ckpt.metadata["timm_model"] == name and ckpt.metadata["pretrained"] is False


def test_timm_dinov2_name_with_kwargs():
    ckpt = load_timm("vit_small_patch14_dinov2", img_size=56, depth=2)
    assert ckpt.canonical and ckpt.tensors.shape("pos_embed") == (1, 17, 384)


def test_unknown_timm_name():
    with pytest.raises(VitdashError, match="timm has no model named 'vit_tinyy_patch16_224'"):
        load("timm:vit_tinyy_patch16_224")


# ---- the Hub, offline ----------------------------------------------------------------------------------------

_HUB_CALLS = textwrap.dedent("""
    import time
    from vitdash.errors import VitdashError
    from vitdash.load.sources import load_hub, load_timm
    for call in (lambda: load_hub("google/vit-base-patch16-224"),
                 lambda: load_timm("vit_tiny_patch16_224", pretrained=True)):
        start = time.monotonic()
        try:
            call()
            print("no error raised")
        except VitdashError as e:
            print(f"VitdashError after {time.monotonic() - start:.1f}s: {e}", flush=True)
""")


@pytest.fixture(params=["refused", "silent"])
def dead_endpoint(request):
    """An endpoint that refuses connections, or one that accepts them and never answers (a black hole)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    if request.param == "refused":
        server.close()
    else:
        server.listen(16)  # the kernel completes the handshake; nobody ever reads or replies
    yield f"http://127.0.0.1:{port}"
    server.close()


def test_hub_unreachable_fails_fast_with_a_clear_message(dead_endpoint, tmp_path):
    """`load_hub` and `load_timm(pretrained=True)` each give up within seconds with a VitdashError."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HF_ENDPOINT": dead_endpoint,
           "HF_HOME": str(tmp_path / "hf"), "HOME": str(tmp_path), "HF_HUB_DISABLE_TELEMETRY": "1"}
    try:
        done = subprocess.run([sys.executable, "-c", _HUB_CALLS], env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=150)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"a Hub download against an unreachable endpoint hung (killed after 150 s): {e.stdout}")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("VitdashError") for line in lines), done.stdout
    for line, what in zip(lines, ("google/vit-base-patch16-224", "vit_tiny_patch16_224")):
        assert what in line and "unreachable" in line, line
        seconds = float(line.split("after ")[1].split("s:")[0])
        assert seconds < 15, f"took {seconds:.0f}s to give up: {line}"


def _cache_repo(hf_home: Path, repo_id: str, files: dict[str, Path]) -> None:
    """A repository in huggingface_hub's cache layout (refs/main -> snapshots/<commit>/), as a download leaves it."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    for name, src in files.items():
        (repo / "snapshots" / commit / name).write_bytes(src.read_bytes())


_CACHED_CALLS = textwrap.dedent("""
    import time
    import huggingface_hub, timm
    from huggingface_hub import constants
    from vitdash.load.sources import load_hub, load_timm
    seen = []  # huggingface_hub's process-wide offline flag, as any other thread would see it mid-call

    def spy(fn):
        def call(*args, **kwargs):
            seen.append(constants.HF_HUB_OFFLINE)
            return fn(*args, **kwargs)
        return call

    timm.create_model = spy(timm.create_model)
    huggingface_hub.snapshot_download = spy(huggingface_hub.snapshot_download)
    start = time.monotonic()
    timm_ckpt = load_timm("vit_tiny_patch16_224", pretrained=True)
    hub_ckpt = load_hub("vitdash-test/tiny-vit")
    print(f"{time.monotonic() - start:.1f}", "/".join(map(str, seen)),
          float(timm_ckpt.tensors["blocks.0.attn.qkv.weight"].double().sum()),
          float(hub_ckpt.tensors["blocks.0.attn.qkv.weight"].double().sum()))
""")


def test_hub_unreachable_loads_cached_copies_without_going_offline_process_wide(dead_endpoint, tmp_path, hf_model):
    """With the Hub unreachable, what is in the local cache still loads (timm weights and Hub repositories),
    through a per-call switch: huggingface_hub's process-wide offline flag, which other sessions' downloads
    would see, stays as it was."""
    import timm
    from safetensors.torch import save_file

    timm_weights = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("vit_tiny_patch16_224").state_dict().items()},
              str(timm_weights))
    hf_model.save_pretrained(tmp_path / "hf_folder")
    hf_home = tmp_path / "hf"
    _cache_repo(hf_home, "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k", {"model.safetensors": timm_weights})
    _cache_repo(hf_home, "vitdash-test/tiny-vit", {p.name: p for p in (tmp_path / "hf_folder").iterdir()})
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HF_ENDPOINT": dead_endpoint, "HF_HOME": str(hf_home),
           "HOME": str(tmp_path), "HF_HUB_DISABLE_TELEMETRY": "1"}
    done = subprocess.run([sys.executable, "-c", _CACHED_CALLS], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=150)
    assert done.returncode == 0, done.stderr[-2000:]
    seconds, offline, timm_sum, hub_sum = done.stdout.split()
    assert float(seconds) < 15 and offline == "False/False"
    from safetensors.torch import load_file

    assert float(timm_sum) == pytest.approx(float(load_file(timm_weights)["blocks.0.attn.qkv.weight"].double().sum()))
    expected = load(tmp_path / "hf_folder").tensors["blocks.0.attn.qkv.weight"].double().sum()
    assert float(hub_sum) == pytest.approx(float(expected))
