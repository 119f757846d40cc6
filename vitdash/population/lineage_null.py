"""Were A and B trained independently? The permutation null behind every lineage score.

Training is blind to the order of hidden units: permuting a ViT's residual channels (with every tensor that
reads or writes them) gives the same function, an i.i.d. init draws the permuted copy as often as the original,
and SGD or Adam train both the same way. So when B was trained independently of A, the correlation between a
tensor of A and the same tensor of B is distributed like its correlation with B's tensor permuted along such an
axis (Zhu et al. 2025, "Independence tests for language models", whose exact tests simulate those copies). The
mean and variance over every permutation have closed forms (Hoeffding's combinatorial central limit theorem), so
each tensor's correlation becomes a z-score without simulating copies, and the tensors' z-scores combine into one
(Stouffer). Nothing is assumed about the data, the init scale or the structure training gave the weights (smooth
position embeddings, outlier channels): only that one model's units were not aligned to the other's.
"""
from __future__ import annotations

import math
import zlib

import torch

from vitdash.trained.roles import TOKEN_ROLES, TensorRole

# Above this combined z, two checkpoints are related. On the calibration set (tests/test_lineage_calibration.py:
# fresh inits of several seeds and schemes, independent trainings, trained against inits of its own
# architecture) the null z has mean ~0 and sd ~1; a Gaussian tail at 6 is 1e-9 per pair, 1e-6 over a
# 1,000-entry library. Real relatives score from ~90 (two trainings from one init) to >1,000 (fine-tunes).
RELATED_Z = 6.0
# Units and columns of the unit-by-rest matrix kept for the test (seeded subsets, the same in both tensors):
# the null holds on any subset of units and columns, and this bounds the cost per tensor whatever the size.
MAX_UNITS = 512
MAX_COLUMNS = 256
# Tensors whose hidden-unit axis is the input: the residual stream enters them.
_INPUT_AXIS_ROLES = ("qkv", "q", "k", "v", "kv", "fc1", "head", "pre_logits")
# 1-D tensors whose entries are not exchangeable: a head's bias is indexed by class (two heads trained on the
# same labels agree on frequent classes), a fused qkv bias mixes q, k and v (trained to different scales).
_NOT_EXCHANGEABLE = {("head", "bias"), ("qkv", "bias"), ("kv", "bias"), ("pre_logits", "bias")}


def unit_axis(role: TensorRole, shape: tuple[int, ...]) -> int | None:
    """The axis along which hidden units can be permuted without changing what the model computes, or None."""
    if not shape or math.prod(shape) < 4 or role.role == "mask_token":
        return None
    if len(shape) == 1:
        return None if (role.role, role.param) in _NOT_EXCHANGEABLE else 0
    if role.role in TOKEN_ROLES or role.role == "latent":
        return len(shape) - 1  # (1, tokens, D): the channels are the residual stream's
    return 1 if role.role in _INPUT_AXIS_ROLES else 0


def column_seed(name: str, shape: tuple[int, ...]) -> int:
    """A seed fixed by a tensor's name and shape, so two checkpoints sample the same positions."""
    return zlib.crc32(f"{name}|{tuple(shape)}".encode())


def unit_matrix(t: torch.Tensor, axis: int, seed: int) -> torch.Tensor:
    """`t` as (units, rest) in float32, centred on its mean, with at most MAX_UNITS x MAX_COLUMNS seeded picks."""
    m = t.detach().movedim(axis, 0).reshape(t.shape[axis], -1)
    g = torch.Generator().manual_seed(seed)
    if m.shape[0] > MAX_UNITS:
        m = m[torch.randperm(m.shape[0], generator=g)[:MAX_UNITS]]
    if m.shape[1] > MAX_COLUMNS:
        m = m[:, torch.randperm(m.shape[1], generator=g)[:MAX_COLUMNS]]
    m = m.float()
    return m - m.mean()


def permutation_z(a: torch.Tensor, b: torch.Tensor, axis: int, seed: int) -> tuple[float, float] | None:
    """(correlation, z under the unit-permutation null) of two same-shape tensors; None when one is constant.

    With G[i, j] = <a_i, b_j> / (|a||b|) over units i, j, the correlation is trace(G); over all permutations of
    B's units it has mean sum(G)/n and variance sum(d_ij^2)/(n-1), d the doubly centred G (Hoeffding 1951).
    """
    ma, mb = unit_matrix(a, axis, seed), unit_matrix(b, axis, seed)
    na, nb = float(ma.norm()), float(mb.norm())
    if na == 0 or nb == 0 or ma.shape[0] < 3:
        return None
    g = (ma @ mb.T).double() / (na * nb)
    n = g.shape[0]
    r = float(g.diagonal().sum())
    d = g - g.mean(1, keepdim=True) - g.mean(0, keepdim=True) + g.mean()
    var = float((d * d).sum()) / (n - 1)
    if var <= 0:
        return None
    return r, (r - float(g.sum()) / n) / math.sqrt(var)


def stouffer(zs: list[float]) -> float | None:
    """Independent z-scores combined into one (their sum over sqrt(count)); None for none."""
    return sum(zs) / math.sqrt(len(zs)) if zs else None


def false_positive_rate(z: float = RELATED_Z) -> float:
    """The null's upper tail at `z` (standard normal, as the calibration shows the combined z to be)."""
    return 0.5 * math.erfc(z / math.sqrt(2))
