"""Hugging Face BEiT and Data2Vec-Vision (`BeitModel`, `BeitForImageClassification`, `BeitForMaskedImageModeling`,
`Data2VecVision*`): the Hub's ViT-style names (`encoder.layer.N.attention.attention.query`) and transformers 5's
(`layers.N.attention.q_proj`, `shared_position_bias`) for BEiT; Data2Vec-Vision keeps the Hub's names.

The target is timm's `Beit`: q and v biases only (`q_bias`/`v_bias`), relative position bias tables per block
(`attn.relative_position_bias_table`) or one shared (`rel_pos_bias.*`), LayerScale `gamma_1`/`gamma_2`, and the
mean of the patch tokens through `fc_norm` (`pooler.layernorm`) or the class token through `norm`.
"""
from __future__ import annotations

import re
from typing import Any

from vitdash.load.layouts.canon import Canon, rename_by_rules

NAME = "hf"

_P = r"(?:beit\.|data2vec_vision\.)?"
_L = _P + r"(?:encoder\.layer|layers)\.(\d+)\."
_RULES = [
    (_P + r"embeddings\.cls_token", "cls_token"),
    (_P + r"embeddings\.position_embeddings", "pos_embed"),
    (_P + r"embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.proj.\1"),
    (_P + r"(?:encoder\.relative_position_bias|shared_position_bias)\.relative_position_bias_table",
     "rel_pos_bias.relative_position_bias_table"),
    (_L + r"(?:attention\.attention\.)?relative_position_bias\.relative_position_bias_table",
     r"blocks.\1.attn.relative_position_bias_table"),
    (_L + r"attention\.(?:attention\.query|q_proj)\.bias", r"blocks.\1.attn.q_bias"),
    (_L + r"attention\.(?:attention\.value|v_proj)\.bias", r"blocks.\1.attn.v_bias"),
    (_L + r"attention\.(?:output\.dense|o_proj)\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (_L + r"layernorm_before\.(weight|bias)", r"blocks.\1.norm1.\2"),
    (_L + r"layernorm_after\.(weight|bias)", r"blocks.\1.norm2.\2"),
    (_L + r"(?:intermediate\.dense|mlp\.fc1)\.(weight|bias)", r"blocks.\1.mlp.fc1.\2"),
    (_L + r"(?:output\.dense|mlp\.fc2)\.(weight|bias)", r"blocks.\1.mlp.fc2.\2"),
    (_L + r"lambda_([12])", r"blocks.\1.gamma_\2"),
    (_P + r"pooler\.layernorm\.(weight|bias)", r"fc_norm.\1"),
    (_P + r"layernorm\.(weight|bias)", r"norm.\1"),  # BeitForMaskedImageModeling's sits at the root
    (r"classifier\.(weight|bias)", r"head.\1"),
]
_QKV = [("attention.attention.query", "attention.attention.key", "attention.attention.value"),
        ("attention.q_proj", "attention.k_proj", "attention.v_proj")]


def _is_beit(src, meta: dict[str, Any]) -> bool:
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    return config.get("model_type") in ("beit", "data2vec-vision") or any(
        k.startswith(("beit.", "data2vec_vision.")) or k.endswith(("lambda_1", "relative_position_bias_table"))
        for k in src)


def convert(src, meta) -> Canon | None:
    if not any(re.fullmatch(_P + r"embeddings\.patch_embeddings\.projection\.weight", k) for k in src):
        return None
    if not _is_beit(src, meta):
        return None
    canon = Canon(src)
    layer_re = re.compile(_L)
    for layer in sorted({m.group(0) for k in src if (m := layer_re.match(k))}):
        block = layer_re.match(layer).group(1)
        for q, k, v in _QKV:
            if f"{layer}{q}.weight" in src:  # no key bias: BEiT's keys are unbiased
                canon.concat(f"blocks.{block}.attn.qkv.weight", [f"{layer}{n}.weight" for n in (q, k, v)])
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    canon.metadata.update(timm_class="Beit", norm_eps=float(config.get("layer_norm_eps", 1e-12)),  # BeitConfig's
                          hidden_act=str(config.get("hidden_act", "gelu")))
    canon.metadata["pos_embed"] = "+".join(
        kind for kind, found in (("learned", any(k.endswith("embeddings.position_embeddings") for k in src)),
                                 ("relative", any(k.endswith("relative_position_bias_table") for k in src))) if found
    ) or "none"
    for kind in ("weight", "bias"):  # the encoder's own final norm, before a masked-image-modeling head's
        own = next((k for k in src if re.fullmatch(rf"(?:beit|data2vec_vision)\.layernorm\.{kind}", k)), None)
        if own:
            canon.rename(f"norm.{kind}", own)
    rename_by_rules(canon, _RULES)
    canon.set_aside([k for k in src if k.endswith("relative_position_index")],
                    "relative position indices (a buffer older files saved; timm recomputes it)")
    canon.set_aside([k for k in src if k.endswith("embeddings.mask_token")],
                    "the mask token of masked-image pretraining")
    canon.set_aside([k for k in src if k.startswith(("lm_head.", "layernorm."))],
                    "the masked-image-modeling head (it predicts visual tokens of masked patches)")
    return canon
