"""What a file that is not a ViT resembles, so "not a ViT" says what it is instead.

Read from names and shapes only: a language model has a token table (vocabulary x width) and often a causal
mask and an LM head back to the vocabulary; a convolutional network is made of conv kernels and BatchNorm
statistics; a hierarchical vision transformer (Swin, PVT, MViT) has attention and a patch embedding but works in
stages that merge patches between them; a 1-D sequence model has transformer layers but nothing that cuts an image
into patches.
"""
from __future__ import annotations

import re

from vitdash.load.buffers import is_mask
from vitdash.load.checkpoint import TensorStore

_TOKEN_TABLE = re.compile(r"(token_embedding|tok_emb|wte|embed_tokens|word_embeddings|token_embedding_table|"
                          r"(^|\.)embedding\.weight$|embeddings?\.word|vocab)", re.I)
_LM_HEAD = re.compile(r"(lm_head|decoder\.weight$|output_projection|logits)", re.I)
_ATTENTION = re.compile(r"(attn|attention|self_attn|in_proj|query|qkv|to_qkv|multihead)", re.I)
_MASK_NAME = re.compile(r"(tril|causal|mask|\.bias$)", re.I)
_PATCHES = re.compile(r"(patch_embed|patch_embedding|patchify|to_patch)", re.I)
_MERGING = re.compile(r"(downsample|patch_merg|merge|reduction|\.sr\.|pool_[qkv]\.)", re.I)  # between stages
_STAGED = re.compile(r"(stages?|layers)\.\d+\.blocks\.\d+\.", re.I)  # blocks numbered within stages


def _causal_masks(store: TensorStore) -> list[str]:
    return [k for k in store if _MASK_NAME.search(k) and len(store.shape(k)) >= 2
            and store.shape(k)[-1] == store.shape(k)[-2] and store.shape(k)[-1] > 1 and is_mask(store[k])]


def looks_like(store: TensorStore) -> str:
    keys = list(store)
    joined = " ".join(keys)
    convs = [k for k in keys if len(store.shape(k)) == 4]
    attention = [k for k in keys if _ATTENTION.search(k)]
    tables = [k for k in keys if _TOKEN_TABLE.search(k) and len(store.shape(k)) == 2]
    if tables:
        masks = _causal_masks(store)
        heads = [k for k in keys if _LM_HEAD.search(k) and len(store.shape(k)) == 2]
        signs = [f"token embedding {tables[0]} {tuple(store.shape(tables[0]))}"]
        if masks:
            signs.append(f"causal mask {masks[0]}")
        if heads:
            signs.append(f"LM head {heads[0]}")
        return "a language model (" + ", ".join(signs) + ")"
    if re.search(r"layer[1-4]\.\d+\.(conv|bn)\d", joined):
        return f"a convolutional network, ResNet-style ({len(convs)} conv kernels, e.g. layer1.0.conv1.weight)"
    stage_keys = [k for k in keys if _MERGING.search(k)] or [k for k in keys if _STAGED.search(k)]
    if attention and stage_keys and any(_PATCHES.search(k) for k in keys):
        return ("a hierarchical vision transformer in stages that merge patches, like Swin, PVT or MViT "
                f"(e.g. {attention[0].rsplit('.', 1)[0]} and {stage_keys[0].rsplit('.', 1)[0]}), not a plain ViT "
                "with one sequence of same-width blocks")
    if convs and (len(convs) > 3 or "running_mean" in joined):
        staged = " with stages, like ConvNeXt/EfficientNet" if "stages." in joined else ""
        return f"a convolutional network{staged} ({len(convs)} conv kernels, BatchNorm statistics)" \
            if "running_mean" in joined else f"a convolutional network{staged} ({len(convs)} conv kernels)"
    if attention:
        return ("a 1-D sequence model (transformer layers such as "
                f"{attention[0].rsplit('.', 1)[0]}, but nothing that cuts an image into patches)")
    return "an unrecognized network (no patch embedding, no transformer blocks)"
