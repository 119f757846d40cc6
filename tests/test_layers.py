"""Per-layer histograms: one role in every block on shared bins, each against its best init prior with the
distances the verdict reads, and a second checkpoint overlaid on the same bins."""
from __future__ import annotations

import numpy as np
import pytest

from vitdash.figures.trained import layer_histograms_figure
from vitdash.load.sources import load
from vitdash.trained.layers import layer_histograms, layer_slots
from vitdash.trained.verdict import audit


@pytest.fixture(scope="module")
def pair(demo_pair):
    """(checkpoint, audit) of the demo's trained model and of its init twin."""
    return [(c, audit(c)) for c in (load(demo_pair.trained), load(demo_pair.init))]


def test_slots_are_the_roles_repeated_in_blocks_weights_first(pair):
    slots = layer_slots(pair[0][1])
    assert slots[:4] == ["attn.proj.weight", "attn.qkv.weight", "mlp.fc1.weight", "mlp.fc2.weight"]
    assert "norm1.weight" in slots and "cls_token" not in slots and "head.weight" not in slots


def test_every_block_on_shared_bins_with_the_audits_own_numbers(pair):
    trained, trained_audit = pair[0]
    h = layer_histograms(trained, trained_audit, "attn.qkv.weight")
    assert [x.block for x in h.layers] == [0, 1, 2, 3] and h.role == "qkv"
    widths = np.diff(h.edges)
    for x in h.layers:
        inside = float((x.density * widths).sum())
        assert inside == pytest.approx(1 - x.outside / x.numel)  # a density of the entries in range
    reports = {t.name: t for t in trained_audit.tensors}
    for x in h.layers:  # the KS and std ratio beside each histogram are the ones the verdict used
        assert x.fit is reports[x.name].stats.best_fit and x.ks == x.fit.ks


def test_tails_span_every_entry(pair):
    h = layer_histograms(*pair[0], "mlp.fc1.weight", tails=True)
    assert all(x.outside == 0 for x in h.layers) and not h.notes


def test_init_overlaid_on_the_trained_bins(pair):
    a = layer_histograms(*pair[0], "attn.qkv.weight")
    b = layer_histograms(*pair[1], "attn.qkv.weight", edges=a.edges)
    assert np.array_equal(a.edges, b.edges)
    assert all(y.fit.matches for y in b.layers) and not any(x.fit.matches for x in a.layers)
    fig = layer_histograms_figure(a, b, names=("trained", "init"))
    assert len([t for t in fig.data if t.name == "init: entries"]) == 4  # one overlay per block
    assert "trained: KS" in fig.layout.annotations[0].text and "init: KS" in fig.layout.annotations[0].text
    log = layer_histograms_figure(a, b, log=True)
    assert all(ax.type == "log" for k, ax in log.layout.to_plotly_json().items() if k.startswith("yaxis")
               for ax in [log.layout[k]])


def test_a_slot_no_block_holds_is_refused(pair):
    from vitdash.errors import VitdashError

    with pytest.raises(VitdashError, match="no block"):
        layer_histograms(*pair[0], "attn.nothing.weight")
