"""What a ViT costs: parameters by component and analytic GFLOPs at its native resolution.

GFLOPs follow the convention of timm's and fvcore's published tables (and most ViT papers): one
multiply-accumulate counts as one FLOP, so "17.6 GFLOPs" for ViT-B/16 at 224 px means 17.6e9 MACs.
Multiply by 2 for FLOPs that count the multiply and the add separately (what
`torch.utils.flop_counter` reports). Only matrix products are counted (patch projection, q/k/v and
output projections, attention scores and mixing, MLP, the attention-pooling head of 'map' models,
head); norms, softmax, activations and residual adds are a fraction of a percent and are left out, as
fvcore's defaults leave most of them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from vitdash.identity.architecture import ArchSpec, infer_architecture
from vitdash.load.checkpoint import Checkpoint

CONVENTION = ("GFLOPs = 10^9 multiply-accumulates (1 MAC = 1 FLOP, the timm/fvcore convention of published "
              "ViT tables); matrix products only. Double it for FLOPs counting multiplies and adds separately.")

PARAM_COMPONENTS = ("patch_embed", "tokens", "pos_embed", "attention", "mlp", "norms", "layer_scale", "attn_pool",
                    "head")
MAC_COMPONENTS = ("patch_embed", "attention_proj", "attention_matrix", "mlp", "attn_pool", "head")

# Canonical (timm) tensor name -> component; the first matching rule wins.
_PARAM_RULES = [(re.compile(p), c) for p, c in (
    (r"(patch_embed|embeds)\.(proj|norm|norm_input)\.", "patch_embed"),
    (r"(embeds\.)?(cls_token|dist_token|reg_token)$", "tokens"),
    (r"(embeds\.)?pos_embed(_x|_y)?$", "pos_embed"),
    (r"(.*\.)?relative_position_bias_table$|rope\.freqs$", "pos_embed"),  # relative bias, learned RoPE frequencies
    (r"attn_pool\.", "attn_pool"),
    (r"blocks\.\d+\.attn\.(q_norm|k_norm|norm)\.", "norms"),
    (r"blocks\.\d+\.attn\.", "attention"),
    (r"blocks\.\d+\.mlp\.norm\.", "norms"),
    (r"blocks\.\d+\.mlp\.", "mlp"),
    (r"blocks\.\d+\.(ls[12]\.gamma|gamma_[12])$", "layer_scale"),
    (r"(blocks\.\d+\.norm[12]|norm|fc_norm|norm_pre)\.", "norms"),
    (r"(head|head_dist|pre_logits)\.", "head"),
)]


def params_by_component(ckpt: Checkpoint) -> dict[str, int]:
    """Parameter count of each component, from the checkpoint's own tensors ('other' for anything else)."""
    counts = dict.fromkeys(PARAM_COMPONENTS, 0)
    for name in ckpt.tensors:
        component = next((c for rx, c in _PARAM_RULES if rx.match(name)), "other")
        counts[component] = counts.get(component, 0) + ckpt.tensors.info(name).numel
    return counts


def spec_params(arch: ArchSpec) -> dict[str, int]:
    """The same breakdown computed from the hyper-parameters alone (family rows have no tensors).

    Equal to `params_by_component` for every layout vitdash maps, which the tests check: it is the proof
    that the ArchSpec misses nothing.
    """
    d, a, h, depth = arch.embed_dim, arch.attn_dim, arch.mlp_hidden, arch.depth
    fc1_out = h if arch.mlp_type == "mlp" else 2 * h
    norm = 2 * d if arch.norm_type == "layernorm" else d
    per_norm = 2 if arch.norm_type == "layernorm" else 1
    grid = arch.grid_size[0] * arch.grid_size[1]
    head_in = arch.representation_size or d
    head = (head_in + 1) * arch.num_classes * (2 if arch.has_dist_token else 1)
    if arch.representation_size:
        head += d * arch.representation_size + arch.representation_size
    qk_norm = 2 * per_norm * arch.head_dim if arch.qk_norm else 0
    ph = arch.pool_mlp_hidden
    # timm's AttentionPoolLatent: latent queries, q (d -> d), kv (d -> 2d), proj (d -> d), norm, MLP; all with biases.
    attn_pool = (arch.pool_latent_len * d + (d * d + d) + (2 * d * d + 2 * d) + (d * d + d) + norm
                 + (d * ph + ph) + (ph * d + d)) if arch.global_pool == "map" else 0
    # k and v may have fewer heads than q (grouped-query attention, one count per block)
    kv = arch.model_args.get("num_kv_heads") or [arch.num_heads] * depth
    kv_dims = [n * arch.head_dim for n in kv]
    q_bias = {"qkv": 1, "qv": 1, "none": 0}[arch.attn_bias]
    attention = sum(a * d + 2 * kv_dim * d + a * d + q_bias * a + {"qkv": 2 * kv_dim, "qv": kv_dim, "none": 0}[
        arch.attn_bias] + (d if arch.proj_bias else 0) for kv_dim in kv_dims)
    return {
        "patch_embed": d * arch.in_chans * arch.patch_size ** 2 + (d if arch.patch_bias else 0)
                       + (norm if arch.patch_norm else 0),
        "tokens": arch.num_prefix_tokens * d,
        "pos_embed": _position_params(arch, grid),
        "attention": attention,
        "mlp": depth * (d * fc1_out + h * d + ((fc1_out + d) if arch.mlp_bias else 0)),
        "norms": depth * (2 * norm + qk_norm + (per_norm * a if arch.attn_norm else 0)
                          + (per_norm * h if arch.mlp_norm else 0))
                 + norm * (int(arch.final_norm and not arch.fc_norm) + int(arch.fc_norm) + int(arch.pre_norm)),
        "layer_scale": depth * d * (1 if arch.model_args.get("attn_only_layer_scale") else 2) if arch.layer_scale
        else 0,
        "attn_pool": attn_pool,
        "head": head,
    }


def _position_params(arch: ArchSpec, grid: int) -> int:
    """Learned absolute table (NaFlexVit: a 2-D table of patches, or row + column tables), BEiT's relative bias
    tables ((2g - 1)^2 + 3 rows by heads, per block or shared), mixed RoPE's learned frequencies."""
    d, parts = arch.embed_dim, set(arch.pos_embed.split("+"))
    total = 0
    if parts & {"learned", "fixed"}:
        if arch.model_args.get("pos_embed") == "factorized":
            total += (arch.grid_size[0] + arch.grid_size[1]) * d
        else:
            total += (grid + (0 if arch.no_embed_class else arch.num_prefix_tokens)) * d
    if "relative" in parts:
        gh, gw = arch.grid_size
        table = ((2 * gh - 1) * (2 * gw - 1) + 3) * arch.num_heads
        total += table * (arch.depth if arch.rel_pos_bias == "per_block" else 1)
    if arch.model_args.get("rope_type") == "mixed":
        total += arch.depth * arch.attn_dim
    return total


def macs_by_component(arch: ArchSpec, img_size: tuple[int, int] | None = None) -> dict[str, int]:
    """Multiply-accumulates of one forward pass of one image, per component (see the module docstring)."""
    h_px, w_px = img_size or arch.img_size
    p = arch.patch_size
    patches = (h_px // p) * (w_px // p)
    n = patches + arch.num_prefix_tokens
    d, a, hidden = arch.embed_dim, arch.attn_dim, arch.mlp_hidden
    fc1_out = 2 * hidden if arch.mlp_type == "swiglu" else hidden
    head_in = arch.representation_size or d
    head = head_in * arch.num_classes * (2 if arch.has_dist_token else 1) if arch.num_classes else 0
    if arch.representation_size:
        head += d * arch.representation_size
    return {
        "patch_embed": patches * d * arch.in_chans * p * p,
        "attention_proj": arch.depth * (n * d * 3 * a + n * a * d),
        "attention_matrix": arch.depth * 2 * n * n * a,
        "mlp": arch.depth * (n * d * fc1_out + n * hidden * d),
        "attn_pool": _attn_pool_macs(arch, patches + (arch.num_prefix_tokens if arch.timm_class == "Eva" else 0)),
        "head": head,
    }


def _attn_pool_macs(arch: ArchSpec, patches: int) -> int:
    """timm's AttentionPoolLatent on the tokens it reads (VisionTransformer drops the prefix tokens before it, Eva
    keeps them): keys and values of every token, then q, scores, mixing, projection and MLP for the latent
    queries only."""
    if arch.global_pool != "map":
        return 0
    d, latents = arch.embed_dim, arch.pool_latent_len
    return (patches * d * 2 * d  # kv
            + latents * (d * d + 2 * patches * d + d * d + 2 * d * arch.pool_mlp_hidden))  # q, attn, proj, mlp


@dataclass
class Complexity:
    img_size: tuple[int, int]
    num_tokens: int
    params: dict[str, int]
    macs: dict[str, int]
    convention: str = CONVENTION
    notes: list[str] = field(default_factory=list)

    @property
    def num_params(self) -> int:
        return sum(self.params.values())

    @property
    def gflops(self) -> float:
        """GMACs, reported as GFLOPs by the timm/fvcore convention."""
        return sum(self.macs.values()) / 1e9

    def to_dict(self) -> dict[str, Any]:
        return {"img_size": list(self.img_size), "num_tokens": self.num_tokens, "num_params": self.num_params,
                "params_by_component": dict(self.params), "gflops": self.gflops,
                "gflops_by_component": {k: v / 1e9 for k, v in self.macs.items()},
                "convention": self.convention, "notes": list(self.notes)}


def complexity(ckpt: Checkpoint, arch: ArchSpec | None = None, img_size: tuple[int, int] | None = None) -> Complexity:
    """Parameters by component (from the tensors) and GFLOPs at the native resolution (or `img_size`)."""
    arch = arch or infer_architecture(ckpt)
    size = img_size or arch.img_size
    params = params_by_component(ckpt)
    notes = []
    if params.get("other"):
        notes.append(f"{params['other']:,} parameters in tensors outside the ViT components (counted as 'other', "
                     "not in the GFLOPs)")
    tokens = (size[0] // arch.patch_size) * (size[1] // arch.patch_size) + arch.num_prefix_tokens
    return Complexity(img_size=tuple(size), num_tokens=tokens, params=params, macs=macs_by_component(arch, size),
                      notes=notes)
