"""Hub-sized towers (their published configs, built on the meta device: shapes only) read through each Hugging Face
and open_clip layout land on their own family row, with an architecture that accounts for every tensor."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.layout_utils import assert_spec_complete
from vitdash.identity.architecture import infer_architecture
from vitdash.identity.family import identify_weights, report
from vitdash.identity.family_table import family_rows
from vitdash.load.sources import checkpoint_from_state_dict

B16 = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, patch_size=16)
HUB = {  # repository: (transformers class, its config class, config values, the family row's name)
    "facebook/dinov3-vitb16-pretrain-lvd1689m": ("DINOv3ViTModel", "DINOv3ViTConfig",
                                                 dict(B16, image_size=224, num_register_tokens=4), "DINOv3 ViT-B/16"),
    "openai/clip-vit-base-patch32": ("CLIPModel", "CLIPConfig", dict(vision_config=dict(B16, patch_size=32),
                                                                     projection_dim=512), "CLIP ViT-B/32"),
    "google/siglip2-base-patch16-naflex": ("Siglip2Model", "Siglip2Config",
                                           dict(vision_config=dict(B16, num_patches=256)), "SigLIP 2 B/16 @256"),
    "apple/aimv2-large-patch14-224": ("Aimv2VisionModel", "Aimv2VisionConfig", dict(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=8, intermediate_size=2816, patch_size=14,
        image_size=224), "AIMv2-L/14 @224"),
    "facebook/vit-mae-base": ("ViTMAEForPreTraining", "ViTMAEConfig", {}, "MAE ViT-B/16 @224"),
    "microsoft/beit-base-patch16-224": ("BeitForImageClassification", "BeitConfig", dict(
        use_relative_position_bias=True, layer_scale_init_value=0.1, use_mean_pooling=True, num_labels=1000),
                                        "BEiT-B/16 @224"),
}


def _check(ckpt, family: str) -> None:
    assert_spec_complete(ckpt, infer_architecture(ckpt))
    found = report(ckpt).match  # as the page matches: the config's model type and repository decide between twins
    assert found.name.startswith(family), found.summary
    # the network is the row's: a tower may differ by its head (a projection set aside) or pooling (transformers'
    # DINOv3 pools its class token, timm's averages), never by an image size no tensor holds (DINOv3's config says
    # 224, its row 256)
    assert found.kind != "custom" and not any(d.startswith("image size") for d in found.differences), found.summary
    held = [r["hf_ids"][repo] for r in family_rows() for repo in r["hf_ids"] if repo in ckpt.source + str(
        ckpt.metadata.get("config", {}).get("_name_or_path"))]
    if held:  # published weights: identified on the matched row
        assert found.weight_tag == held[0]
        assert identify_weights(ckpt, among=(found.name, *found.also_matches))[0]["label"] == found.name


@pytest.mark.parametrize("repo", list(HUB))
def test_hugging_face_towers_find_their_family(repo):
    import transformers

    model_cls, config_cls, values, family = HUB[repo]
    config = getattr(transformers, config_cls)(**values)
    config._name_or_path = repo  # as from_pretrained records it
    with torch.device("meta"):
        model = getattr(transformers, model_cls)(config)
    _check(checkpoint_from_state_dict(model.state_dict(), metadata={"config": config.to_dict()}), family)


def test_open_clip_tower_finds_its_family():
    import open_clip
    from open_clip.model import CLIP

    config = json.loads((Path(open_clip.__file__).parent / "model_configs" / "ViT-B-32.json").read_text())
    with torch.device("meta"):
        model = CLIP(**config, quick_gelu=True)
    _check(checkpoint_from_state_dict(model.state_dict(), metadata={"open_clip_config": {"model_cfg": config}}),
           "CLIP ViT-B/32")
