"""Prior-free training signals: i.i.d. matrices of any entry distribution, scale and shape read as
unstructured, planted structure reads as structured, at both spectral code paths (exact and Krylov)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vitdash.common.compute import one_thread
from vitdash.trained.filters import filter_structure
from vitdash.trained.moments import MOMENTS_SAMPLE, moments
from vitdash.trained.pos_embed import pos_embed_structure
from vitdash.trained.spectra import (
    EXACT_MAX_DIM,
    gram_eigenvalues,
    mp_edge,
    mp_pdf,
    normal_scores,
    shuffled,
    spectrum,
    top_eigenvalues,
)
from vitdash.trained.verdict import NO_STRUCTURE_Z, TRAINED_Z


def _draw(dist: str, m: int, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dist == "normal":
        return torch.randn(m, n, generator=g) * 0.05
    if dist == "uniform01":  # nonzero mean, flat
        return torch.rand(m, n, generator=g)
    if dist == "student_t2.5":  # infinite fourth moment: raw spectra get outliers from the tails alone
        return torch.distributions.StudentT(2.5).sample((m, n))
    if dist == "sparse":  # 90% exact zeros: ties everywhere
        return torch.randn(m, n, generator=g) * (torch.rand(m, n, generator=g) < 0.1)
    if dist == "int8":  # quantized
        return (torch.randn(m, n, generator=g) * 20).round().clamp(-127, 127) / 127
    raise ValueError(dist)


def _planted(m: int, n: int, strength: float, seed: int = 0) -> torch.Tensor:
    """i.i.d. noise plus a rank-2 signal: the simplest thing training leaves in a weight matrix."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(m, n, generator=g)
    u, v = torch.randn(m, 2, generator=g), torch.randn(2, n, generator=g)
    return noise + strength * (u @ v) / math.sqrt(math.sqrt(m * n))


@pytest.mark.parametrize("shape", [(10, 32), (64, 64), (192, 64), (300, 300), (1536, 384)])
@pytest.mark.parametrize("dist", ["normal", "uniform01", "student_t2.5", "sparse", "int8"])
def test_iid_matrices_read_as_unstructured(shape, dist):
    torch.manual_seed(0)
    for seed in range(2):
        spec = spectrum(_draw(dist, *shape, seed), seed=seed)
        assert spec.structure < NO_STRUCTURE_Z, (dist, shape, spec.structure)
        assert spec.method == ("exact" if min(shape) <= EXACT_MAX_DIM else "krylov")


def test_heavy_tails_fool_the_raw_spectrum_but_not_the_normal_scores():
    w = _draw("student_t2.5", 256, 256, 0)
    spec = spectrum(w)
    assert spec.raw["z_mp"] > 10  # the raw top eigenvalue is far above MP: tails, not training
    assert spec.structure < NO_STRUCTURE_Z


@pytest.mark.parametrize("shape", [(64, 64), (192, 64), (1536, 384), (3072, 768)])
def test_planted_structure_reads_as_structured(shape):
    spec = spectrum(_planted(*shape, strength=3.0))
    assert spec.structure > TRAINED_Z, (shape, spec.structure)
    assert spec.n_outliers >= 1 and spec.top_over_twin > 1.1


def test_orthogonal_matrix_is_flat_and_below_the_edge():
    w = torch.nn.init.orthogonal_(torch.empty(192, 192))
    spec = spectrum(w)
    assert spec.raw["flatness"] > 0.99
    assert spec.structure < 0 and spec.raw["z_mp"] < 0


def test_spectrum_is_deterministic_and_seeded():
    w = _planted(128, 96, 1.0)
    a, b, c = spectrum(w), spectrum(w), spectrum(w, seed=1)
    assert a.to_dict() == b.to_dict()
    assert a.twin_top != c.twin_top


def test_krylov_matches_exact_top_eigenvalues_of_a_spiked_matrix():
    w = _planted(600, 300, 4.0)
    with one_thread():
        exact = gram_eigenvalues(w.double())[:2]
        approx = top_eigenvalues(w)[:2]
    assert torch.allclose(approx.double(), exact, rtol=5e-3)


def test_shuffled_twin_keeps_the_entries():
    w = torch.randn(40, 30)
    twins = shuffled(w, 3, seed=0)
    assert twins.shape == (3, 40, 30)
    for t in twins:
        assert torch.equal(t.flatten().sort().values, w.flatten().sort().values) and not torch.equal(t, w)
    assert torch.equal(shuffled(w, 3, seed=0), twins)


def test_normal_scores_are_gaussian_and_keep_the_order():
    x = torch.distributions.StudentT(2.5).sample((200_000,))
    z = normal_scores(x)
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1) < 0.01
    kurt = float(((z - z.mean()) ** 4).mean() / z.var() ** 2 - 3)
    assert abs(kurt) < 0.05
    order = torch.argsort(x)
    zs = z[order]
    assert float((zs[1:] >= zs[:-1] - 0.05).float().mean()) > 0.999  # monotone up to within-bin jitter
    sparse = torch.randn(100_000) * (torch.rand(100_000) < 0.1)
    zs = normal_scores(sparse)
    assert abs(float(zs.std()) - 1) < 0.01  # the zeros' tie is spread, not kept


def test_mp_pdf_integrates_to_one_and_edge_matches():
    m, n, var = 300, 100, 0.5
    x = np.linspace(0, mp_edge(m, n, var) * 1.01, 20001)
    assert np.trapezoid(mp_pdf(x, m, n, var), x) == pytest.approx(1.0, abs=5e-3)
    eigs = gram_eigenvalues(torch.randn(m, n, dtype=torch.float64) * math.sqrt(var))
    assert float(eigs[0]) == pytest.approx(mp_edge(m, n, var), rel=0.05)


def test_moments_of_known_distributions():
    g = torch.Generator().manual_seed(0)
    u = moments(torch.rand(500_000, generator=g) * 2 - 1)
    assert u.sampled == MOMENTS_SAMPLE and u.numel == 500_000
    assert u.excess_kurtosis == pytest.approx(-1.2, abs=0.05) and u.std == pytest.approx(1 / math.sqrt(3), rel=0.01)
    c = moments(torch.ones(10))
    assert c.constant and c.std == 0 and math.isnan(c.excess_kurtosis)


def _smooth_pos_embed(h: int, w: int, d: int) -> torch.Tensor:
    """Sinusoids of the grid coordinates: neighbouring positions get similar embeddings."""
    g = torch.Generator().manual_seed(0)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    freqs = torch.rand(d, 2, generator=g) * 0.6
    phase = torch.rand(d, generator=g) * 6.28
    emb = torch.sin(ys.reshape(-1, 1) * freqs[:, 0] + xs.reshape(-1, 1) * freqs[:, 1] + phase)
    return torch.cat([torch.randn(1, d, generator=g), emb], 0)[None]  # a cls slot first


def test_position_embedding_structure():
    smooth = pos_embed_structure(_smooth_pos_embed(14, 14, 64))
    assert smooth.grid == (14, 14) and smooth.num_prefix == 1
    assert smooth.z > 10 and smooth.neighbour_sim > smooth.far_sim
    for seed in range(3):
        iid = pos_embed_structure(torch.randn(1, 197, 64, generator=torch.Generator().manual_seed(seed)), seed=seed)
        assert abs(iid.z) < 4.5, iid
    assert pos_embed_structure(torch.randn(1, 7, 16)) is None  # no grid fits 7 positions
    assert not smooth.inverse and smooth.describe().startswith("position similarity follows the 14x14 grid")


def test_position_embedding_whose_far_positions_are_alike_is_said_so():
    """MNIST-like tables: every border position learns the same 'blank' vector, so far-apart pairs (border to
    border) are more alike than neighbours (border to digit). Structure, but not 'following' the grid."""
    g = torch.Generator().manual_seed(0)
    ys, xs = torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij")
    border = ((ys == 0) | (ys == 5) | (xs == 0) | (xs == 5)).reshape(-1, 1).double()
    blank, digit = torch.randn(2, 32, generator=g, dtype=torch.float64)
    pe = border * blank + (1 - border) * torch.randn(36, 32, generator=g, dtype=torch.float64) + 0.1 * digit
    pos = pos_embed_structure(pe[None], num_prefix=0)
    assert pos.far_sim > pos.neighbour_sim and pos.z > 4 and pos.inverse
    assert "is tied to the 6x6 grid" in pos.describe() and "far-apart positions are the more alike" in pos.describe()


def test_patch_filter_smoothness():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(64, 3, 8, 8, generator=g)
    smooth = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(noise, (1, 1, 1, 1), mode="replicate"), 3, 1)
    assert filter_structure(smooth).z > 10
    assert abs(filter_structure(noise).z) < 4
    assert filter_structure(torch.randn(8, 3, 1, 1)) is None


def test_real_checkpoints_show_structure(shared_dir):
    """Calibration guard on the shared files: trained matrices of every size clear the threshold."""
    from vitdash.load.sources import load

    for name in ("mnist_vit_lucidrains_layout.pt", "fmnist_vit_custom.pth", "dinov2-small-hf"):
        ckpt = load(shared_dir / "checkpoints" / name)
        mats = [n for n in ckpt.tensors if n.startswith("blocks.") and len(ckpt.tensors.shape(n)) == 2]
        structured = sum(spectrum(ckpt.tensors[n]).structure > TRAINED_Z for n in mats)
        assert structured >= 0.9 * len(mats), (name, structured, len(mats))
    dino = load(shared_dir / "checkpoints" / "dinov2-small-hf")
    pos = pos_embed_structure(dino.tensors["pos_embed"])
    assert pos.grid == (37, 37) and pos.z > 50
    assert filter_structure(dino.tensors["patch_embed.proj.weight"]).z > 50
