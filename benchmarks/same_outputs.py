"""Prove a refactor changed no result: record the CLI's JSON on a fixed set of inputs, then compare.

    python benchmarks/same_outputs.py record baseline.json    # before the change
    python benchmarks/same_outputs.py check baseline.json     # after it: prints every difference, exits 1 on any

Inputs: every checkpoint in ../shared/checkpoints (when present) and a few timm architectures at init, through
`inspect`, `audit`, `rollout` (on one shared image, or a generated one) and `compare`. It calls the CLI in a
subprocess, so it runs the same on any code layout. Timings are left out; floats compare to 1e-6 (relative).
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
TIMM = ["timm:vit_tiny_patch16_224", "timm:deit_tiny_distilled_patch16_224", "timm:vit_small_patch14_reg4_dinov2"]
TIMING_KEYS = {"seconds", "elapsed", "elapsed_s", "audit_seconds", "time_s", "load_seconds", "wall_s"}


def _inputs() -> list[str]:
    ckpts = sorted(str(p) for p in (SHARED / "checkpoints").iterdir()) if (SHARED / "checkpoints").is_dir() else []
    return ckpts + TIMM


def _image(tmp: Path) -> str:
    sample = SHARED / "images" / "imagenet-sample"
    if sample.is_dir():
        return str(sorted(sample.iterdir())[0])
    import numpy as np
    from PIL import Image

    path = tmp / "gradient.png"
    Image.fromarray((np.indices((64, 64)).sum(0) * 2).astype("uint8")).convert("RGB").save(path)
    return str(path)


def _run(args: list[str]) -> object:
    proc = subprocess.run([sys.executable, "-m", "vitdash", *args, "--json"], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    if proc.returncode != 0:
        return {"exit": proc.returncode, "stderr": proc.stderr.strip().splitlines()[-1:]}
    return _strip(json.loads(proc.stdout))


def _strip(obj: object) -> object:
    """Timings dropped, and the shared data's location written as ../shared (checkouts may sit anywhere)."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    if isinstance(obj, str) and obj.startswith("/") and "/shared/" in obj:
        return "../shared/" + obj.split("/shared/", 1)[1]
    return obj


def record() -> dict[str, object]:
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        image = _image(Path(tmp))
        inputs = _inputs()
        for path in inputs:
            name = Path(path).name
            for command in (["inspect", path], ["audit", path], ["rollout", path, image]):
                print(f"  {command[0]:8} {name}", file=sys.stderr, flush=True)
                results[f"{command[0]} {name}"] = _run(command)
        for a, b in zip(inputs, inputs[1:]):
            print(f"  compare  {Path(a).name} {Path(b).name}", file=sys.stderr, flush=True)
            results[f"compare {Path(a).name} {Path(b).name}"] = _run(["compare", a, b])
    return results


def _diff(a: object, b: object, where: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{where}.{k}: only in {'after' if k in b else 'before'}")
            else:
                _diff(a[k], b[k], f"{where}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{where}: length {len(a)} -> {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{where}[{i}]", out)
    elif isinstance(a, float) and isinstance(b, float):
        if not (a == b or (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)):
            out.append(f"{where}: {a!r} -> {b!r}")
    elif a != b:
        out.append(f"{where}: {str(a)[:120]!r} -> {str(b)[:120]!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("record", "check"))
    parser.add_argument("file", type=Path)
    args = parser.parse_args()
    now = record()
    if args.mode == "record":
        args.file.write_text(json.dumps(now, indent=1, sort_keys=True))
        print(f"recorded {len(now)} results to {args.file}")
        return 0
    before = _strip(json.loads(args.file.read_text()))
    diffs: list[str] = []
    _diff(before, now, "", diffs)
    for line in diffs:
        print(line)
    print(f"{len(now)} results compared, {len(diffs)} difference(s)")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
