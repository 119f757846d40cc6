"""Load speed and inspect memory, against safetensors itself in the same run (ratios, never asserted).

1. Load + canonicalize a ViT-B/16-sized `.safetensors` vs `safetensors.torch.load_file` on the same file.
   safetensors >= 0.6 memory-maps in `load_file`: it returns before reading any value, and so does vitdash's
   lazy store. A comparison means something only once both sides have the data, so both "touch" every tensor
   the same way, two ways: `read` (a sum: every byte read once, the cheapest full read) and `copy` (into
   preallocated tensors, as `load_state_dict` fills a built model; `load_file` itself copied before it
   memory-mapped). The bare `load_file` time is printed for reference.
2. Peak resident memory of `inspect` on a 1.2 GB ViT-L/16-sized `.safetensors`, in a fresh process, minus
   the peak of the same command on a tiny ViT file (same imports and code paths, next to no data). The peak
   is the process's VmHWM: `ru_maxrss` would be wrong here, since Linux carries it across exec from the
   (large) parent process.

The files are random float32 tensors under timm's ViT key names and shapes, written tensor by tensor into a
temporary folder under /tmp (so writing the 1.2 GB file never holds it in memory) and deleted at the end.

    python benchmarks/bench_load.py [--repeat 5] [--keep-threads]
"""
from __future__ import annotations

import argparse
import json
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from timing import timed  # benchmarks/timing.py (scripts run with benchmarks/ on sys.path)

from vitdash.load.formats.raw import sha256_files
from vitdash.load.formats.safetensors_reader import nonfinite

ROOT = Path(__file__).resolve().parents[1]


def write_random_safetensors(path: Path, model_name: str, **kwargs) -> int:
    """timm `model_name`'s state-dict names and shapes, random float32 values, streamed to disk."""
    import timm

    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in timm.create_model(model_name, **kwargs).state_dict().items()}
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 4 * int(torch.Size(shape).numel())
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # the data section starts 8-byte aligned, as safetensors writes it
    gen = torch.Generator().manual_seed(0)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for shape in shapes.values():
            f.write((0.02 * torch.randn(shape, generator=gen)).numpy().tobytes())
    return path.stat().st_size


def touch(tensors, how: str, into: dict[str, torch.Tensor]) -> None:
    """`read`: every byte once (a sum: mmap'd pages come in, nothing is allocated). `copy`: into preallocated
    tensors of the same names, as `load_state_dict` fills a model that is already built."""
    for name, t in tensors:
        t.sum() if how == "read" else into[name].copy_(t)


def bench_speed(path: Path, repeat: int) -> None:
    from safetensors.torch import load_file

    from vitdash.load.sources import load

    model = {k: torch.empty_like(v) for k, v in load_file(path).items()}  # the file holds timm (canonical) names

    def ours(how: str, checks: bool = False):
        ckpt = load(path)
        touch(((k, ckpt.tensors[k]) for k in ckpt.tensors), how, model)
        if checks:  # the file's sha256 and the NaN/Inf scan, whenever the loader computes them
            assert ckpt.sha256 and isinstance(ckpt.warnings, list)

    def theirs(how: str):
        touch(load_file(path).items(), how, model)

    hows = ("read", "copy")
    runs: dict[str, list[float]] = {"load_file alone": []}
    runs.update({f"{who} + {how}": [] for how in hows for who in ("load_file", "vitdash load")})
    runs.update({"vitdash load + read + sha256/warnings": [], "(sha256 of the file)": [], "(NaN/Inf scan)": []})
    ours("copy")  # warm the page cache, the imports and the destination: every run below reads from memory
    for _ in range(repeat):  # interleaved, so a noisy neighbour slows all sides alike
        runs["load_file alone"].append(timed(lambda: load_file(path)))
        for how in hows:
            runs[f"load_file + {how}"].append(timed(lambda: theirs(how)))
            runs[f"vitdash load + {how}"].append(timed(lambda: ours(how)))
        runs["vitdash load + read + sha256/warnings"].append(timed(lambda: ours("read", checks=True)))
        runs["(sha256 of the file)"].append(timed(lambda: sha256_files([path])))
        runs["(NaN/Inf scan)"].append(timed(lambda: nonfinite(path)))
    med = {k: statistics.median(v) for k, v in runs.items()}
    for k, v in med.items():
        print(f"  {k:<38} {v * 1000:8.1f} ms (median of {repeat})")
    for how in hows:
        print(f"  RATIO touch={how}: (vitdash load + {how}) / (load_file + {how}) = "
              f"{med[f'vitdash load + {how}'] / med[f'load_file + {how}']:.2f}   (target <= 1.5)")
    print(f"  with the integrity checks read as well (inspect, the Overview page): "
          f"{med['vitdash load + read + sha256/warnings'] / med['load_file + read']:.2f} x (load_file + read)")
    print(f"  reference: (vitdash load + read) / load_file alone = "
          f"{med['vitdash load + read'] / med['load_file alone']:.0f} (load_file alone reads no values)")


_RSS_PROBE = """
import contextlib, io, re, sys
from vitdash.cli import main
import vitdash.load.sources, vitdash.load.formats.safetensors_reader
rc = 0
if len(sys.argv) > 1:
    with contextlib.redirect_stdout(io.StringIO()):
        rc = main(["inspect", sys.argv[1], "--json"])
print(rc, re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
"""


def peak_rss_mb(*code_and_args: str) -> tuple[int, float]:
    out = subprocess.run([sys.executable, "-c", *code_and_args], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}).stdout.split()
    return int(out[0]), int(out[1]) / 1024


def bench_memory(path: Path, tiny: Path) -> None:
    _, bare = peak_rss_mb("import re, vitdash; print(0, re.search(r'VmHWM:\\s+(\\d+) kB', "
                          "open('/proc/self/status').read()).group(1))")
    _, base = peak_rss_mb(_RSS_PROBE, str(tiny))
    rc, peak = peak_rss_mb(_RSS_PROBE, str(path))
    assert rc == 0, "inspect failed on the benchmark file"
    print(f"  peak RSS: `import vitdash` alone {bare:.0f} MB; inspect on a {tiny.stat().st_size // 1024} KB ViT "
          f"(same imports and code, no data: the baseline) {base:.0f} MB; inspect on the 1.2 GB file {peak:.0f} MB")
    print(f"  RESULT inspect peak RSS above the interpreter's baseline = {peak - base:.0f} MB   (target < 300 MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep-threads", action="store_true",
                        help="use torch's default thread count (default: 1 thread, steadier on shared machines)")
    args = parser.parse_args()
    if not args.keep_threads:
        torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="vitdash-bench-", dir="/tmp") as tmp:
        b16 = Path(tmp) / "vit_base_patch16_224.safetensors"
        size = write_random_safetensors(b16, "vit_base_patch16_224")
        print(f"[1] load + canonicalize, ViT-B/16 float32 ({size / 1e6:.0f} MB), torch threads: "
              f"{torch.get_num_threads()}")
        bench_speed(b16, args.repeat)
        b16.unlink()
        l16 = Path(tmp) / "vit_large_patch16_224.safetensors"
        size = write_random_safetensors(l16, "vit_large_patch16_224")
        print(f"[2] inspect (no analysis), ViT-L/16 float32 ({size / 1e9:.2f} GB)")
        tiny = Path(tmp) / "tiny.safetensors"
        write_random_safetensors(tiny, "vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1)
        bench_memory(l16, tiny)


if __name__ == "__main__":
    main()
