"""The training verdict on every public implementation's init, trained and trained-with-a-fresh-head states, and on
every real file in ../shared: at init -> init, trained -> trained, fresh head -> partial with exactly the head
(what the implementation re-initializes, in vitdash's groups) at init. The earlier calibration (timm, torchvision
and Hugging Face inits, DINOv2 mixtures, shuffled entries, the demo pair) lives in tests/test_verdict.py.
"""
from __future__ import annotations

import pytest
import torch

from tests.demo_utils import demo_cache_dir
from tests.implementations import states as S
from vitdash.load.library import scan_folder
from vitdash.load.sources import checkpoint_from_state_dict, load
from vitdash.trained.verdict import audit

VITS = [n for n in S.names() if S.module(n).EXPECTED["is_vit"]]
# The homegrown CLIP re-draws its projection from CLIP's own init (normal(width ** -0.5) on a bare matrix), which no
# known prior covers: a fresh projection reads as moved, so its fresh-head state is left out (see the README).
FRESH = [n for n in VITS if S.module(n).HEAD and n != "clip_homegrown"]


@pytest.fixture(scope="module")
def impl_cache(request):
    folder = demo_cache_dir(request.config, "vitdash-implementation-states")
    S.ensure(folder)
    return folder


def _audit(sd, name):
    return audit(checkpoint_from_state_dict(sd, name=name))


@pytest.mark.parametrize("name", VITS)
def test_init_is_random_and_trained_is_trained(name, impl_cache):
    st = S.states(name, impl_cache)
    init = _audit(st.init, f"{name} (init)")
    assert init.verdict == "init", init.summary
    trained = _audit(st.trained, f"{name} (trained)")
    assert trained.verdict == "trained", (trained.summary, trained.at_init_groups)
    assert trained.at_init == []


@pytest.mark.parametrize("name", FRESH)
def test_fresh_head_is_partial_with_exactly_the_head(name, impl_cache):
    st = S.states(name, impl_cache)
    ckpt = checkpoint_from_state_dict(st.fresh_head, name=f"{name} (fresh head)")
    result = audit(ckpt)
    assert result.verdict == "partial", result.summary
    head = set(st.head_keys)

    def from_head(t) -> bool:  # every file tensor behind this report is one the implementation re-initialized
        return set(ckpt.origins.get(t.name, [t.name.removeprefix("file:")])) <= head

    groups = {t.group for t in result.tensors if from_head(t)}
    assert set(result.at_init_groups) == groups, (result.at_init_groups, groups)
    assert all(from_head(result.tensor(n)) for n in result.at_init)


def test_sin_cos_tables_are_kept_out_of_the_evidence(impl_cache):
    """A model at PyTorch's init with a sin-cos position buffer reads init, the table listed apart as computed."""
    st = S.states("medium_sincos_buffer_vit", impl_cache)
    ckpt = checkpoint_from_state_dict(st.init, name="sin-cos at init")
    result = audit(ckpt)
    assert result.verdict == "init", result.summary
    assert [b.to_dict() for b in result.buffers] == [{"name": "pos_embed", "kind": "sincos"}]
    assert "pos_embed" not in {t.name for t in result.tensors} and result.counts["fixed"] == 1
    d = ckpt.to_dict()
    assert d["buffers"] == [{"name": "positional_encoding.pe", "kind": "sincos"}]
    assert d["num_params"] - d["num_learned_params"] == st.init["positional_encoding.pe"].numel()


def test_shared_files_are_trained(shared_dir):
    for entry in scan_folder(shared_dir / "checkpoints"):
        result = audit(load(entry.source))
        assert result.verdict == "trained", (entry.name, result.summary)
        assert result.at_init == [], (entry.name, result.at_init)


def test_norm_gains_sharing_a_channel_pattern_show_training_and_noise_does_not():
    from vitdash.trained.norm_gains import gain_structure
    from vitdash.trained.verdict import TRAINED_Z

    g = torch.Generator().manual_seed(0)
    noise = [1 + 0.05 * torch.randn(64, generator=g) for _ in range(6)]
    pattern = torch.randn(64, generator=g)
    trained = [1 + 0.05 * (pattern + torch.randn(64, generator=g)) for _ in range(6)]
    shuffled = [t[torch.randperm(64, generator=g)] for t in trained]
    assert gain_structure(noise).z < 3 and gain_structure(shuffled).z < 3
    assert gain_structure(trained).z > TRAINED_Z
    assert gain_structure(trained[:2]) is None  # two layers are too few to tell
