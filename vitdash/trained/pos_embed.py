"""Position-embedding structure: how strongly cosine similarity follows the patch grid, as a z-score
against random re-placements of the same embeddings on the grid. An i.i.d. init has none."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from vitdash.common.compute import one_thread
from vitdash.common.results import jsonable
from vitdash.trained.moments import z_score


@dataclass
class PosEmbedStructure:
    """Cosine similarity between the patch positions' embeddings, and how much it follows the grid.

    `corr`: Pearson correlation between similarity and minus the grid distance over position pairs
    (the one number for "similarity follows distance"); `neighbour_contrast`: mean similarity of grid
    neighbours minus that of all pairs. Each gets a z-score against random re-placements of the same
    embeddings on the grid (about N(0, 1) for any i.i.d. init). Learned embeddings need not be
    monotone in distance (MNIST borders are all alike), so `z`, the structure evidence, is the larger
    of the neighbour z and the absolute correlation z.
    """

    grid: tuple[int, int]
    num_prefix: int
    corr: float
    corr_z: float
    neighbour_contrast: float
    neighbour_z: float
    z: float
    neighbour_sim: float  # mean cosine similarity of grid neighbours
    far_sim: float  # mean cosine similarity of pairs farther apart than half the grid

    @property
    def inverse(self) -> bool:
        """The evidence is similarity falling as positions get nearer (far-apart positions more alike)."""
        return self.corr_z < 0 and abs(self.corr_z) >= self.neighbour_z

    def describe(self) -> str:
        how = "is tied to" if self.inverse else "follows"
        tail = ": far-apart positions are the more alike" if self.inverse else ""
        return (f"position similarity {how} the {self.grid[0]}x{self.grid[1]} grid with z={self.z:.1f} "
                f"(neighbours {self.neighbour_sim:.2f}, far apart {self.far_sim:.2f}{tail})")

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else jsonable(v)) for k, v in self.__dict__.items()}


POS_MAX_POSITIONS = 256


POS_PERMUTATIONS = 16


def split_pos_embed(pe: torch.Tensor, num_prefix: int | None = None,
                    grid: tuple[int, int] | None = None) -> tuple[torch.Tensor, tuple[int, int], int] | None:
    """(patch embeddings (H*W, D), grid, prefix count) from a (1, N, D) / (N, D) position embedding."""
    x = pe.detach().reshape(-1, pe.shape[-1])
    n = x.shape[0]
    if grid is not None and num_prefix is not None and grid[0] * grid[1] + num_prefix == n:
        return x[num_prefix:], tuple(grid), num_prefix
    candidates = ([num_prefix] if num_prefix is not None else []) + [1, 0, 2, 5, 4]
    for p in candidates:
        side = math.isqrt(max(n - p, 0))
        if side >= 2 and side * side == n - p:
            return x[p:], (side, side), p
    return None


def cosine_grid(patches: torch.Tensor) -> torch.Tensor:
    """(P, P) cosine similarities between the patch positions' embeddings (ViT paper, figure 7)."""
    x = patches.double()
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return x @ x.T


@one_thread()
def pos_embed_structure(pe: torch.Tensor, num_prefix: int | None = None, grid: tuple[int, int] | None = None,
                        seed: int = 0) -> PosEmbedStructure | None:
    split = split_pos_embed(pe, num_prefix, grid)
    if split is None:
        return None
    patches, (h, w), p = split
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    coords = torch.stack([ys.reshape(-1), xs.reshape(-1)], 1).double()
    g = torch.Generator().manual_seed(seed)
    if patches.shape[0] > POS_MAX_POSITIONS:  # a random subset of positions keeps the estimates unbiased
        keep = torch.randperm(patches.shape[0], generator=g)[:POS_MAX_POSITIONS]
        patches, coords = patches[keep], coords[keep]
    sim = cosine_grid(patches)
    n = sim.shape[0]
    iu = torch.triu_indices(n, n, 1)
    raw, dist = sim[iu[0], iu[1]], torch.cdist(coords, coords)
    d = dist[iu[0], iu[1]]
    # Both statistics are sums over position pairs of a similarity term times a distance term, so as
    # full symmetric matrices (diagonals zeroed) re-placing the embeddings on the grid, the null,
    # permutes the distance terms: one gather per permutation, no distances recomputed.
    s = ((sim - raw.mean()) / raw.std().clamp_min(1e-12)).fill_diagonal_(0)
    nd = (-(dist - d.mean()) / d.std()).fill_diagonal_(0)
    near = (dist <= 1.0 + 1e-9).double().fill_diagonal_(0)

    def stats(nd: torch.Tensor, near: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(corr with -distance, neighbour contrast) for flattened (P * P) distance terms."""
        corr = nd @ s.reshape(-1) / 2 / (raw.numel() - 1)
        contrast = near @ sim.reshape(-1) / near.sum(-1).clamp_min(1) - raw.mean()
        return corr, contrast

    corr, contrast = stats(nd.reshape(-1), near.reshape(-1))
    perms = torch.stack([torch.randperm(n, generator=g) for _ in range(POS_PERMUTATIONS)])
    nulls = []
    for perm in perms:  # one at a time: (permutations, P, P) temporaries would cost more in page faults
        flat = (perm[:, None] * n + perm).reshape(-1)  # entry (perm_i, perm_j)
        nulls.append(stats(nd.reshape(-1).index_select(0, flat), near.reshape(-1).index_select(0, flat)))
    null_corr, null_contrast = (torch.stack(v) for v in zip(*nulls))
    corr_z, neigh_z = z_score(float(corr), null_corr), z_score(float(contrast), null_contrast)
    near, far = raw[d <= 1.0 + 1e-9], raw[d > max(h, w) / 2]
    return PosEmbedStructure(
        grid=(h, w), num_prefix=p, corr=float(corr), corr_z=corr_z, neighbour_contrast=float(contrast),
        neighbour_z=neigh_z, z=max(neigh_z, abs(corr_z)),
        neighbour_sim=float(near.mean()) if near.numel() else math.nan,
        far_sim=float(far.mean()) if far.numel() else math.nan)
