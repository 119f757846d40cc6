"""The null behind "related": unrelated models of the same shape must score as unrelated, at a stated rate.

Null pairs are checkpoints of one architecture with no common history: fresh inits of several seeds and three
init schemes (timm's, jax's, MoCo's), independent trainings from other seeds, a trained model against fresh
inits of its own architecture, and the shared DINOv2 against fresh inits of its architecture. Their combined z
must look like a standard normal (the permutation null's promise) and stay below RELATED_Z; the stated
false-positive rate is what that implies. Run with -s to see the table.
"""
from __future__ import annotations

import itertools
import math
import statistics

import torch

from tests.lineage_cases import _demo_model
from vitdash.load.sources import checkpoint_from_state_dict, load
from vitdash.population.lineage_fingerprint import CANDIDATE_Z, FingerprintIndex, fingerprint
from vitdash.population.lineage_null import RELATED_Z, false_positive_rate
from vitdash.population.lineage_relations import relate

SCHEMES = {"timm": range(10, 16), "jax": range(20, 23), "moco": range(30, 33)}


def _fresh(scheme: str, seed: int):
    model = _demo_model(seed=seed, weight_init="" if scheme == "timm" else scheme)
    return checkpoint_from_state_dict(model.state_dict(), source=f"{scheme} init seed {seed}")


def _null_pairs(digits_family) -> list[tuple[object, object]]:
    """Every pair of checkpoints from different lineages (the demo's family counts as one lineage)."""
    family = [load(digits_family / "library" / n) for n in ("digits-vit-trained", "digits-vit-init",
                                                            "parity.safetensors")]
    family += [load(digits_family / "queries" / "shift.safetensors")]
    lineages = [family] + [[load(p)] for p in (
        digits_family / "library" / "twin-seed1.safetensors", digits_family / "queries" / "twin-seed2.safetensors",
        digits_family / "null" / "trained-seed5.safetensors", digits_family / "null" / "trained-seed6.safetensors",
        digits_family / "library" / "fresh-seed3.safetensors", digits_family / "queries" / "fresh-seed4.safetensors")]
    lineages += [[_fresh(scheme, seed)] for scheme, seeds in SCHEMES.items() for seed in seeds]
    return [(a, b) for la, lb in itertools.combinations(lineages, 2) for a in la for b in lb]


def _summary(zs: list[float], fp_zs: list[float]) -> str:
    mean, sd = statistics.fmean(zs), statistics.stdev(zs)
    k = len(zs)
    return (f"null pairs: {k}; combined z mean {mean:+.2f}, sd {sd:.2f}, min {min(zs):+.2f}, max {max(zs):+.2f}; "
            f"related above z {RELATED_Z:g}: {sum(z >= RELATED_Z for z in zs)}/{k} observed (95% upper bound "
            f"{3 / k:.1%}); Gaussian tail at {RELATED_Z:g} with the fitted sd: "
            f"{false_positive_rate(RELATED_Z / max(sd, 1e-9)):.1e} per pair (nominal {false_positive_rate():.1e}); "
            f"fingerprint z max {max(fp_zs):+.2f}, candidates {sum(z >= CANDIDATE_Z for z in fp_zs)}/{k}")


def _null_scores(pairs) -> tuple[list[float], list[float]]:
    zs, fp_zs = [], []
    prints: dict[int, object] = {}
    for a, b in pairs:
        zs.append(relate(a, b).score)
        pa = prints.setdefault(id(a), fingerprint(a))
        pb = prints.setdefault(id(b), fingerprint(b))
        fp_zs.append(FingerprintIndex([pa]).search(pb)[0].z)
    return zs, fp_zs


def test_unrelated_digits_models_score_as_unrelated_at_the_stated_rate(digits_family):
    torch.manual_seed(0)
    pairs = _null_pairs(digits_family)
    zs, fp_zs = _null_scores(pairs)
    text = _summary(zs, fp_zs)
    print("\n" + text)
    assert len(zs) >= 150
    assert max(zs) < RELATED_Z, text
    assert abs(statistics.fmean(zs)) < 0.4 and 0.6 < statistics.stdev(zs) < 1.5, text  # ~ N(0, 1): calibrated
    assert max(fp_zs) < CANDIDATE_Z, text
    assert false_positive_rate(RELATED_Z / statistics.stdev(zs)) < 1e-5, text


def test_dinov2_against_fresh_inits_of_its_architecture(dino_family, shared_dir):
    import timm

    inits = []
    for seed in (21, 22):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            sd = timm.create_model("vit_small_patch14_dinov2").state_dict()
        inits.append(checkpoint_from_state_dict(sd, source=f"vit_small_patch14_dinov2 init seed {seed}"))
    trained = [load(shared_dir / "checkpoints" / "dinov2-small-hf"), load(dino_family / "queries" / "dinov2-ft56-head")]
    pairs = [(t, i) for t in trained for i in inits] + [tuple(inits)]
    zs, fp_zs = _null_scores(pairs)
    print("\n" + "; ".join(f"{a.name} vs {b.name}: z {z:+.2f} (fingerprint {f:+.2f})"
                           for (a, b), z, f in zip(pairs, zs, fp_zs)))
    assert all(abs(z) < 4 for z in zs) and max(fp_zs) < CANDIDATE_Z, zs
    related = relate(trained[0], trained[1]).score
    assert related > 100 * RELATED_Z and math.isfinite(related)  # the same test, on real relatives
