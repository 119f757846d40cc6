"""Bad input: every broken, misnamed or hostile file ends in a VitdashError whose message says what is wrong.

The malicious-pickle tests assert the command never ran; the huge-header tests assert that nothing
was allocated to the size the file claims.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import struct
import tracemalloc
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from vitdash.errors import VitdashError
from vitdash.load.formats.torch_pickle import pickle_globals
from vitdash.load.sources import checkpoint_from_state_dict, load

torch.manual_seed(0)


def tiny_sd() -> dict[str, torch.Tensor]:
    import timm

    return timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1).state_dict()


def st_bytes(header: dict, data: bytes) -> bytes:
    """A safetensors file written by hand, so the header can lie."""
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def refuse(path, *patterns: str) -> str:
    with pytest.raises(VitdashError) as info:
        load(path)
    message = str(info.value)
    for p in patterns:
        assert p.lower() in message.lower(), message
    return message


# ---- empty, truncated, random --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["model.safetensors", "model.pth", "checkpoints"])
def test_empty_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    refuse(tmp_path / name, name, "empty")


def test_truncated_safetensors_data(tmp_path):
    path = tmp_path / "cut.safetensors"
    save_file(tiny_sd(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    refuse(path, "cut.safetensors", "truncated")


def test_truncated_safetensors_header(tmp_path):
    path = tmp_path / "cut.safetensors"
    save_file(tiny_sd(), path)
    path.write_bytes(path.read_bytes()[:200])  # the 8-byte length survives, the JSON does not
    refuse(path, "header claims", "truncated")


def test_random_bytes_named_safetensors(tmp_path):
    path = tmp_path / "random.safetensors"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    refuse(path, "random.safetensors", "not a safetensors file")


@pytest.mark.parametrize("claimed", [2**62, 90 * 1024 * 1024])  # beyond any file; just under safetensors' cap
def test_huge_header_length_allocates_nothing(tmp_path, claimed):
    path = tmp_path / "liar.safetensors"
    path.write_bytes(struct.pack("<Q", claimed) + b'{"a": 1}' + bytes(1000))
    tracemalloc.start()
    try:
        refuse(path, f"{claimed:,}", "truncated or not a safetensors file")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak:,} bytes allocated while refusing a header that claims {claimed:,}"


def test_tensor_claiming_a_huge_shape_allocates_nothing(tmp_path):
    path = tmp_path / "shape.safetensors"
    path.write_bytes(st_bytes({"w": {"dtype": "F32", "shape": [2**20, 2**20], "data_offsets": [0, 16]}}, bytes(16)))
    tracemalloc.start()
    try:
        refuse(path, "'w'", "does not match its shape")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


@pytest.mark.parametrize("header,data,pattern", [
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12), "overlaps"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
      "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}, bytes(12), "gap"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(100), "unexpected bytes"),
    ({"a": {"dtype": "Q99", "shape": [1], "data_offsets": [0, 4]}}, bytes(4), "dtype Q99"),
    ({"a": {"dtype": "F32", "shape": ["4"], "data_offsets": [0, 16]}}, bytes(16), "non-integer"),
    ({"a": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, bytes(16), "non-integer"),
    ({"a": {"dtype": "F32", "shape": [1]}}, bytes(4), "malformed header entry"),
    ({"a": [1, 2, 3]}, bytes(4), "malformed header entry"),
    ({"__metadata__": {"epoch": 3}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(4),
     "__metadata__"),
    ({}, b"", "holds no tensors"),
])
def test_corrupt_safetensors_headers(tmp_path, header, data, pattern):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(st_bytes(header, data))
    refuse(path, "bad.safetensors", pattern)


def test_safetensors_header_not_json(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", 10) + b"{not json}" + bytes(8))
    refuse(path, "not valid JSON")


def test_truncated_torch_zip(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save(tiny_sd(), path)
    path.write_bytes(path.read_bytes()[:5000])
    refuse(path, "cut.pth", "corrupt or truncated")


def test_truncated_legacy_torch_pickle(tmp_path):
    path = tmp_path / "cut.pt"
    torch.save(tiny_sd(), path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:3000])
    refuse(path, "cut.pt", "corrupt")


# ---- not a checkpoint at all ---------------------------------------------------------------------------------


def test_image_renamed_pth(tmp_path):
    from PIL import Image

    path = tmp_path / "vit_weights.pth"
    Image.new("RGB", (8, 8), "red").save(path, format="JPEG")
    refuse(path, "vit_weights.pth", "JPEG image")


def test_png_renamed_safetensors(tmp_path):
    from PIL import Image

    path = tmp_path / "model.safetensors"
    Image.new("RGB", (8, 8)).save(path, format="PNG")
    refuse(path, "PNG image")


@pytest.mark.parametrize("content,pattern", [
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n", "git lfs pull"),
    (b"<!DOCTYPE html><html><body>Rate limited</body></html>", "HTML"),
    (gzip.compress(b"x" * 100), "gzip"),
    (b"\n  {\"architectures\": [\"ViTModel\"]}", "JSON"),
])
def test_common_wrong_files(tmp_path, content, pattern):
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(content)
    refuse(path, "pytorch_model.bin", pattern)


def test_pickle_without_tensors(tmp_path):
    path = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "best": 0.7}, path)
    refuse(path, "no tensors found", "epoch")


def test_pickle_of_a_list(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], path)
    refuse(path, "holds a list")


# ---- hostile pickles -----------------------------------------------------------------------------------------


class _RunsCommand:
    """Unpickling this calls os.system(cmd): what a trojan checkpoint does."""

    def __init__(self, cmd: str):
        self.cmd = cmd

    def __reduce__(self):
        return os.system, (self.cmd,)


class _CallsExec:
    def __reduce__(self):
        return exec, ("import os",)


def _marker() -> Path:
    return Path("/tmp") / f"vitdash-pwned-{uuid.uuid4().hex}"


@pytest.mark.parametrize("how", ["torch.save", "torch.save legacy", "pickle protocol 2", "pickle protocol 4",
                                 "inside a training checkpoint"])
def test_malicious_pickle_never_runs(tmp_path, how):
    marker = _marker()
    evil = _RunsCommand(f"touch {marker}")
    path = tmp_path / "innocent.pth"
    if how == "torch.save":
        torch.save({"w": torch.zeros(2), "x": evil}, path)
    elif how == "torch.save legacy":
        torch.save({"w": torch.zeros(2), "x": evil}, path, _use_new_zipfile_serialization=False)
    elif how.startswith("pickle protocol"):
        path.write_bytes(pickle.dumps({"x": evil}, protocol=int(how[-1])))
    else:
        torch.save({"state_dict": tiny_sd(), "epoch": 1, "args": evil}, path)
    assert not marker.exists()
    message = refuse(path, "innocent.pth", "refused", f"{os.system.__module__}.system", "could run code")
    assert f"{os.system.__module__}.system" in pickle_globals(path)  # found by reading opcodes only
    assert not marker.exists(), "the pickle's command ran"
    assert "weights_only" in message


def test_malicious_exec_is_named(tmp_path):
    path = tmp_path / "exec.pt"
    torch.save({"x": _CallsExec()}, path)
    refuse(path, "builtins.exec")


def test_malicious_pickle_as_upload(tmp_path):
    from vitdash.load.sources import load_bytes

    marker = _marker()
    buf = io.BytesIO()
    torch.save({"x": _RunsCommand(f"touch {marker}")}, buf)
    with pytest.raises(VitdashError, match="refused"):
        load_bytes(buf.getvalue(), "model.pth")
    assert not marker.exists()


# ---- loads, with a verdict -----------------------------------------------------------------------------------


def test_resnet_is_not_a_vit(tmp_path):
    import timm

    path = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), path)
    ckpt = load(path)
    assert not ckpt.is_vit and not ckpt.canonical and ckpt.layout == "unknown"
    assert "ResNet" in ckpt.looks_like
    assert any("not a ViT: it looks like a convolutional network, ResNet-style" in w and "page" not in w
               for w in ckpt.warnings)
    assert ckpt.to_dict()["is_vit"] is False


@pytest.mark.parametrize("name", ["swin_tiny_patch4_window7_224", "pvt_v2_b0", "mvitv2_tiny"])
def test_a_hierarchical_vision_transformer_is_named_as_such(name):
    """Swin, PVT and MViT have attention and a patch embedding but stages that merge patches: not a plain ViT, and
    not 'nothing that cuts an image into patches' either."""
    import timm

    ckpt = checkpoint_from_state_dict(timm.create_model(name).state_dict())
    assert not ckpt.is_vit
    assert ckpt.looks_like.startswith("a hierarchical vision transformer"), ckpt.looks_like


@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
def test_nan_and_inf_are_loaded_and_named(tmp_path, fmt):
    sd = tiny_sd()
    sd["blocks.0.attn.qkv.weight"][3, 7] = float("nan")
    sd["head.bias"][0] = float("inf")
    path = tmp_path / f"m.{'safetensors' if fmt == 'safetensors' else 'pth'}"
    save_file(sd, path) if fmt == "safetensors" else torch.save(sd, path)
    ckpt = load(path)
    assert ckpt.is_vit
    [warning] = [w for w in ckpt.warnings if "non-finite" in w]
    assert "blocks.0.attn.qkv.weight" in warning and "head.bias" in warning and "2 tensor" in warning
    assert torch.isnan(ckpt.tensors["blocks.0.attn.qkv.weight"]).sum() == 1
