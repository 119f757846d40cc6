"""How much memory a forward job will take, known before it runs: the job queue reserves it and the engine
sizes its CPU batch by it.

A ViT forward in inference holds, at its peak inside one block, a few copies of the token stream (input,
norm, q/k/v, attention output) and the MLP's hidden layer twice (fc1 and its activation): about
`TOKEN_FLOATS(dim, hidden)` floats per token. With fused attention (timm's default, PyTorch's
scaled_dot_product_attention) the attention matrix is never materialized; unfused (the attention pages, which
need it) it costs heads x tokens more per token, twice (scores and softmax). Tokens grow with the square of
the input size, so DINOv2 at its native 518 px has 1,370 tokens per image where a 224 px ViT-S/16 has 197.
The constants were measured with benchmarks/bench_memory.py (docs/benchmarks.md) and err on the high side.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from vitdash.identity.architecture import ArchSpec
from vitdash.perform.engine import EngineOptions

FLOAT = 4
STREAM_COPIES = 6  # residual, norm, attention output, projection, and q/k/v over (3 x attn_dim)
OVERHEAD = 96 << 20  # the data loader's decoded batch, autograd-free bookkeeping, allocator slack


def tokens(arch: ArchSpec, input_size: Sequence[int]) -> int:
    """Tokens per image at `input_size` (C, H, W): patches plus class/distillation/register tokens."""
    h, w = input_size[-2], input_size[-1]
    return (h // arch.patch_size) * (w // arch.patch_size) + arch.num_prefix_tokens


def activation_bytes(arch: ArchSpec, input_size: Sequence[int], fused: bool = True) -> int:
    """Peak bytes one image adds inside a block (plus its input tensor): what `EngineOptions.batch_for` divides."""
    n = tokens(arch, input_size)
    hidden = arch.mlp_hidden * (2 if arch.mlp_type == "swiglu" else 1)
    per_token = STREAM_COPIES * arch.embed_dim + 3 * arch.attn_dim + 2 * hidden
    if not fused:
        per_token += 2 * arch.num_heads * n
    c, h, w = input_size[-3], input_size[-2], input_size[-1]
    return FLOAT * (n * per_token + 2 * c * h * w)


def model_bytes(arch: ArchSpec) -> int:
    """One fp32 copy of the weights."""
    return FLOAT * arch.num_params


def forward_job_bytes(arch: ArchSpec, input_size: Sequence[int], batch: int, n_images: int = 0,
                      feature_dim: int = 0, feature_sets: int = 1) -> int:
    """What an accuracy check or a few-shot probe adds to the process at its peak: the model while it is built
    (three times its weights: the fresh module, the state it loads, and the checkpoint's own pages read from a
    memory-mapped file, which count as resident until let go), one batch's activations, and the features kept
    for the probe (`feature_sets` of `n_images` x `feature_dim`)."""
    return (3 * model_bytes(arch) + batch * activation_bytes(arch, input_size)
            + FLOAT * n_images * feature_dim * feature_sets + OVERHEAD)


def estimate_forward(arch: ArchSpec, input_size: Sequence[int], opts: EngineOptions, n_images: int = 0,
                     feature_sets: int = 0) -> int:
    """The job queue's reservation for an accuracy check (`feature_sets=0`) or a few-shot probe (2 with its twin)
    run with `opts`: the batch is the one the engine will use (never more than `opts.limit` images). On CUDA only
    the decoded batch and the model's host copy are in RAM, but the estimate stays the CPU one: it errs high
    rather than let a job through."""
    batch = opts.batch_for(torch.device("cpu"), activation_bytes(arch, input_size))
    if opts.limit:
        batch, n_images = min(batch, opts.limit), min(n_images, opts.limit)
    return forward_job_bytes(arch, input_size, batch, n_images, arch.embed_dim, feature_sets)
