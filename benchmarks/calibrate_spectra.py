"""Null and power of the prior-free spectral test, for checking a change to its speed settings.

- Null: structure z of i.i.d. matrices (the entry kinds of tests/test_signals.py: normal, uniform, Student-t
  2.5, 90% sparse, int8-quantized; seven shapes on the Krylov path, several seeds each) and of orthogonal
  inits. The verdict reads z >= 5 as trained and z <= 4 as no structure, so the maximum must stay below 4.
- Power: the weakest z over every matrix of the shared DINOv2-S (skipped with a note when ../shared is
  absent), and the largest z once each matrix's entries are shuffled (which must read as null again).

Run: `python benchmarks/calibrate_spectra.py [--side 384] [--seeds 6]`. Everything is seeded: the same
settings print the same numbers.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import sys
from pathlib import Path

import torch

from vitdash.trained import spectra
from vitdash.trained.spectra import spectrum

ROOT = Path(__file__).resolve().parents[1]

sys.path.insert(0, str(ROOT))  # the unit tests' entry kinds, from tests/
from tests.test_signals import _draw  # noqa: E402

SHAPES = [(768, 768), (2304, 768), (3072, 768), (768, 3072), (1536, 384), (400, 300), (1024, 1024)]
KINDS = ["normal", "uniform01", "student_t2.5", "sparse", "int8"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=spectra.SPECTRAL_MAX_SIDE, help="sub-block side of the Krylov path")
    ap.add_argument("--seeds", type=int, default=6, help="matrices drawn per shape and kind")
    args = ap.parse_args()
    spectra.SPECTRAL_MAX_SIDE = args.side  # read by spectrum() at each call
    torch.manual_seed(0)  # the Student-t draws use the global generator

    nulls = []
    for shape in SHAPES:
        for kind in KINDS:
            for seed in range(args.seeds):
                w = _draw(kind, *shape, seed)
                nulls += [(spectrum(w, seed=s).structure, shape, kind) for s in range(2)]
    for seed in range(4):
        w = torch.nn.init.orthogonal_(torch.empty(768, 768), generator=torch.Generator().manual_seed(seed))
        nulls.append((spectrum(w, seed=seed).structure, (768, 768), "orthogonal"))
    z = torch.tensor([n[0] for n in nulls])
    print(f"window {args.side}: null z over {len(z)} i.i.d./orthogonal matrices: mean {z.mean():.2f}, "
          f"sd {z.std():.2f}, 99% {z.quantile(0.99):.2f}, max {z.max():.2f} (must stay < 4)")
    for value, shape, kind in sorted(nulls, key=lambda n: -n[0])[:3]:
        print(f"  highest: z={value:.2f} {kind} {shape[0]}x{shape[1]}")

    dino = ROOT.parent / "shared" / "checkpoints" / "dinov2-small-hf"
    if not dino.exists():
        print(f"power: skipped, {dino} is absent")
        return 0
    from vitdash.load.sources import load

    ckpt = load(dino)
    mats = [n for n in ckpt.tensors if len(ckpt.tensors.shape(n)) == 2 and min(ckpt.tensors.shape(n)) >= 256]
    power = sorted((spectrum(ckpt.tensors[n]).structure, n) for n in mats)
    print(f"power: weakest z over {len(mats)} DINOv2-S matrices: "
          + ", ".join(f"{name} {value:.1f}" for value, name in power[:3]))
    g = torch.Generator().manual_seed(1)
    shuffled = [spectrum(t.reshape(-1)[torch.randperm(t.numel(), generator=g)].reshape(t.shape)).structure
                for t in (ckpt.tensors[n] for n in mats)]
    print(f"shuffled DINOv2-S entries: max z {max(shuffled):.2f} (must stay < 4)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
