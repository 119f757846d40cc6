"""Hugging Face BEiT and Data2Vec-Vision, in the Hub's names and transformers 5's, map onto timm's Beit (q/v biases,
relative position bias per block or shared, LayerScale, mean pooling through fc_norm) and compute transformers'
own outputs; the masked-image-modeling head and the mask token are set aside with their reasons."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from tests.layout_utils import assert_accounted, assert_same, assert_spec_complete, image, randomize, saved_tensors
from vitdash.identity.architecture import infer_architecture
from vitdash.identity.model import build_model
from vitdash.load.checkpoint import Checkpoint
from vitdash.load.sources import load

BASE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, image_size=32,
            patch_size=8)


def _beit(ckpt: Checkpoint, pos: str, rel: str) -> torch.nn.Module:
    """The model vitdash builds, after the architecture it reads is checked against the source's config."""
    arch = infer_architecture(ckpt)
    assert_spec_complete(ckpt, arch)
    assert (arch.timm_class, arch.embed_dim, arch.depth, arch.num_heads, arch.patch_size, arch.img_size) == (
        "Beit", 64, 2, 4, 8, (32, 32))
    assert (arch.num_prefix_tokens, arch.pos_embed, arch.rel_pos_bias, arch.mlp_type, arch.attn_bias) == (
        1, pos, rel, "mlp", "qv")
    assert arch.heads_source in ("config", "shapes") and arch.norm_eps == 1e-12  # (the table is one head wide)
    return build_model(ckpt, arch)


def _save(model, folder, names: str):
    model.save_pretrained(folder)  # transformers 5 writes the Hub's names back for BEiT
    file = folder / "model.safetensors"
    if names == "transformers5":
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, file, metadata={"format": "pt"})
    return saved_tensors(file)


@pytest.mark.parametrize("names", ["hub", "transformers5"])
def test_beit_model_relative_bias_layer_scale_mean_pool(tmp_path, names):
    from transformers import BeitConfig, BeitModel

    model = randomize(BeitModel(BeitConfig(**BASE, use_relative_position_bias=True, layer_scale_init_value=0.1,
                                           use_mean_pooling=True)))
    saved = _save(model, tmp_path, names)
    assert any(k.startswith("layers.") for k in saved) == (names == "transformers5")
    if names == "hub":  # files from 2021 also hold the index buffer
        saved["encoder.layer.0.attention.attention.relative_position_bias.relative_position_index"] = torch.zeros(
            17, 17, dtype=torch.long)
        save_file(saved, tmp_path / "model.safetensors", metadata={"format": "pt"})
    ckpt = load(tmp_path)
    assert ckpt.layout == "hf" and (ckpt.metadata["timm_class"], ckpt.metadata["pos_embed"]) == ("Beit", "relative")
    assert_accounted(ckpt, saved)
    assert all("buffer" in why for why in ckpt.unmapped_reasons.values())
    assert len(ckpt.unmapped_keys) == (names == "hub")
    assert {"blocks.1.attn.q_bias", "blocks.1.attn.v_bias", "blocks.1.attn.relative_position_bias_table",
            "blocks.1.gamma_2", "fc_norm.weight"} <= set(ckpt.tensors)
    rebuilt = _beit(ckpt, "relative", "per_block")
    x = image()
    with torch.no_grad():
        theirs = model(pixel_values=x)
        features = rebuilt.forward_features(x)
        assert_same(features, theirs.last_hidden_state, f"BeitModel[{names}] tokens")
        assert_same(rebuilt.forward_head(features, pre_logits=True), theirs.pooler_output, f"BeitModel[{names}] pooled")
        for block in rebuilt.blocks:  # the table's rows are positions: reversed, the output is far off
            block.attn.relative_position_bias_table.data = block.attn.relative_position_bias_table.data.flip(0)
        assert (rebuilt.forward_head(rebuilt.forward_features(x), pre_logits=True)
                - theirs.pooler_output).abs().max() > 1e-3


@pytest.mark.parametrize("names", ["hub", "transformers5"])
def test_beit_for_masked_image_modeling(tmp_path, names):
    """BEiT pretraining: shared relative bias, absolute positions, class token through the encoder's own norm; the
    MIM head (its norm and lm_head) and the mask token are set aside."""
    from transformers import BeitConfig, BeitForMaskedImageModeling

    model = randomize(BeitForMaskedImageModeling(BeitConfig(
        **BASE, use_relative_position_bias=False, use_shared_relative_position_bias=True,
        use_absolute_position_embeddings=True, use_mean_pooling=False, use_mask_token=True,
        layer_scale_init_value=0.1)), seed=1)
    saved = _save(model, tmp_path, names)
    ckpt = load(tmp_path)
    assert ckpt.metadata["pos_embed"] == "learned+relative"
    assert_accounted(ckpt, saved)
    assert set(ckpt.unmapped_keys) == {"beit.embeddings.mask_token", "layernorm.weight", "layernorm.bias",
                                       "lm_head.weight", "lm_head.bias"}
    assert "masked-image-modeling head" in ckpt.unmapped_reasons["lm_head.weight"]
    x = image(2)
    with torch.no_grad():
        assert_same(_beit(ckpt, "learned+relative", "shared").forward_features(x),
                    model.beit(pixel_values=x).last_hidden_state,
                    f"BeitForMaskedImageModeling[{names}] encoder tokens")


@pytest.mark.parametrize("names", ["hub", "transformers5"])
def test_beit_for_image_classification_without_layer_scale(tmp_path, names):
    from transformers import BeitConfig, BeitForImageClassification

    model = randomize(BeitForImageClassification(BeitConfig(
        **BASE, use_relative_position_bias=True, layer_scale_init_value=0.0, use_mean_pooling=True, num_labels=7)),
        seed=2)
    saved = _save(model, tmp_path, names)
    ckpt = load(tmp_path)
    assert_accounted(ckpt, saved)
    assert ckpt.unmapped_keys == [] and "blocks.0.gamma_1" not in ckpt.tensors and "head.weight" in ckpt.tensors
    x = image(3)
    with torch.no_grad():
        assert_same(_beit(ckpt, "relative", "per_block")(x), model(pixel_values=x).logits,
                    f"BeitForImageClassification[{names}] logits")


def test_data2vec_vision_for_image_classification(tmp_path):
    from transformers import Data2VecVisionConfig, Data2VecVisionForImageClassification

    model = randomize(Data2VecVisionForImageClassification(Data2VecVisionConfig(
        **BASE, use_relative_position_bias=True, layer_scale_init_value=0.1, use_mean_pooling=True, num_labels=5)),
        seed=3)
    saved = _save(model, tmp_path, "hub")
    ckpt = load(tmp_path)
    assert ckpt.metadata["timm_class"] == "Beit" and ckpt.unmapped_keys == []
    assert_accounted(ckpt, saved)
    x = image(4)
    with torch.no_grad():
        assert_same(_beit(ckpt, "relative", "per_block")(x), model(pixel_values=x).logits,
                    "Data2VecVisionForImageClassification logits")


def test_data2vec_vision_model_without_a_final_norm(tmp_path):
    """Data2VecVisionModel is saved without its pooler, and with mean pooling it has no other final norm: the
    encoder's tokens are the features, unnormalized, as timm's Beit computes them with its norm left out."""
    from transformers import Data2VecVisionConfig, Data2VecVisionModel

    model = randomize(Data2VecVisionModel(Data2VecVisionConfig(**BASE, use_relative_position_bias=True,
                                                               layer_scale_init_value=0.1, use_mean_pooling=True)),
                      seed=5)
    saved = _save(model, tmp_path, "hub")
    ckpt = load(tmp_path)
    assert_accounted(ckpt, saved)
    assert not {"norm.weight", "fc_norm.weight"} & set(ckpt.tensors)
    x = image(5)
    with torch.no_grad():
        assert_same(_beit(ckpt, "relative", "per_block").forward_features(x), model(pixel_values=x).last_hidden_state,
                    "Data2VecVisionModel (no final norm) tokens")
