"""`python -m vitdash inspect PATH [--json]`: the JSON fields the issue promises, exit 0 / exit 2 with a reason."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vitdash.cli import main
from vitdash.load.checkpoint import LAYOUTS

ROOT = Path(__file__).resolve().parents[1]
FIELDS = {"format": str, "layout": str, "num_tensors": int, "num_params": int, "sha256": str, "wrappers": list,
          "metadata": dict, "unmapped_keys": list, "warnings": list, "is_vit": bool}


@pytest.fixture(scope="module")
def vit_file(tmp_path_factory) -> Path:
    import timm

    sd = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2).state_dict()
    path = tmp_path_factory.mktemp("cli") / "tiny.safetensors"
    save_file(sd, path, metadata={"source": "test"})
    return path


def run_json(capsys, path) -> dict:
    assert main(["inspect", str(path), "--json"]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    return json.loads(out.out)


def check_fields(result: dict) -> None:
    for name, kind in FIELDS.items():
        assert isinstance(result[name], kind), (name, result.get(name))
    assert result["layout"] in LAYOUTS


def test_json_fields(capsys, vit_file):
    result = run_json(capsys, vit_file)
    check_fields(result)
    assert result["format"] == "safetensors" and result["layout"] == "timm" and result["is_vit"] is True
    assert result["sha256"] == hashlib.sha256(vit_file.read_bytes()).hexdigest()
    assert result["num_tensors"] == 2 * 12 + 8  # 12 tensors per block, 8 outside
    assert result["metadata"]["safetensors_metadata"] == {"source": "test"}
    assert result["warnings"] == [] and result["unmapped_keys"] == [] and result["wrappers"] == []


def test_json_for_a_non_vit(capsys, tmp_path):
    import timm

    path = tmp_path / "resnet.pth"
    torch.save({"model": timm.create_model("resnet18").state_dict()}, path)
    result = run_json(capsys, path)
    check_fields(result)
    assert result["is_vit"] is False and result["layout"] == "unknown" and result["wrappers"] == ["model"]
    assert "ResNet" in result["looks_like"]


def test_summary_without_json(capsys, vit_file):
    assert main(["inspect", str(vit_file)]) == 0
    text = capsys.readouterr().out
    assert "tiny.safetensors" in text and "timm layout" in text and "ViT: yes" in text


@pytest.mark.parametrize("content,reason", [(b"", "empty"), (b"\xff\xd8\xff\xe0" + bytes(64), "JPEG image")])
def test_refused_file_exits_2_with_reason(capsys, tmp_path, content, reason):
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    assert main(["inspect", str(path), "--json"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.startswith("vitdash: model.pth") and reason in out.err


def test_missing_path_exits_2(capsys, tmp_path):
    assert main(["inspect", str(tmp_path / "nope.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_real_process_exit_codes(vit_file, tmp_path):
    """The same through `python -m vitdash`, as a shell or CI would see it."""
    bad = tmp_path / "weights.safetensors"
    bad.write_bytes(b"\x00" * 7)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ok = subprocess.run([sys.executable, "-m", "vitdash", "inspect", str(vit_file), "--json"], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=120)
    refused = subprocess.run([sys.executable, "-m", "vitdash", "inspect", str(bad), "--json"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    check_fields(json.loads(ok.stdout))
    assert refused.returncode == 2 and refused.stdout == ""
    assert "weights.safetensors" in refused.stderr and "truncated" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize("name,layout,sha_prefix", [
    ("dinov2-small-hf", "hf", "8b38fc0f"),
    ("fmnist_vit_custom.pth", "structure", "882fa95f"),
    ("mnist_vit_torchvision_layout.pth", "torchvision", "fb18df3f"),
    ("mnist_vit_lucidrains_layout.pt", "structure", "f742611b"),
])
def test_shared_checkpoints(capsys, shared_dir, name, layout, sha_prefix):
    result = run_json(capsys, shared_dir / "checkpoints" / name)
    check_fields(result)
    assert result["layout"] == layout and result["is_vit"] is True
    assert result["sha256"].startswith(sha_prefix)
