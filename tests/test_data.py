"""Data discovery and label mapping: folder shapes, synset ids to ImageNet heads, refusals, coarse groups."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vitdash.data.datasets import (
    IMAGENET_COARSE_GROUPS,
    coarse_imagenet_group,
    discover,
    group_coarse,
    imagenet_lemma,
    load_digits,
    suggested_data,
)
from vitdash.data.labels import map_labels
from vitdash.errors import VitdashError


def _png(path, color=(200, 30, 30), size=(20, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def test_shared_sample_maps_by_synset_to_every_fifth_imagenet_class(shared_dir):
    ds = discover(shared_dir / "images" / "imagenet-sample")
    assert ds.kind == "flat-synset" and ds.synset_classes
    assert len(ds) == 200 and len(ds.classes) == 200 and not ds.skipped
    mapping = map_labels(ds, {}, 1000)
    assert not mapping.guess and "ImageNetInfo" in mapping.method
    # The README: one image for each of every fifth ImageNet-1k class, so sorted synset i is class 5 * i.
    assert mapping.head_index == list(range(0, 1000, 5))
    assert ds.class_names()[0] == "tench"


def test_imagenet_style_folders_and_unlabeled_files(tmp_path):
    _png(tmp_path / "n01443537" / "a.png")
    _png(tmp_path / "n01443537" / "b.png")
    _png(tmp_path / "n01440764" / "c.png")
    (tmp_path / "README.txt").write_text("not part of any class")
    ds = discover(tmp_path)
    assert ds.kind == "imagenet-folders"
    assert ds.classes == ["n01440764", "n01443537"] and ds.labels == [0, 1, 1]
    assert [r for _, r in ds.skipped] == ["file outside the class folders (no label)"]
    assert map_labels(ds, {}, 1000).head_index == [0, 1]  # tench, goldfish
    assert ds.class_names() == ["tench", "goldfish"]


def test_non_image_file_fails_to_load_with_its_name(tmp_path):
    _png(tmp_path / "cat" / "ok.png")
    (tmp_path / "cat" / "broken.jpg").write_bytes(b"this is text, not a JPEG")
    ds = discover(tmp_path)
    assert len(ds) == 2  # discovery does not decode; loading does
    good = ds.items.index(tmp_path / "cat" / "ok.png")
    assert ds.load(good, "L").mode == "L" and ds.load(good, "RGB").size == (20, 16)
    with pytest.raises(VitdashError, match="broken.jpg"):
        ds.load(1 - good, "RGB")


def test_flat_folder_needs_synset_prefixes(tmp_path):
    _png(tmp_path / "n01440764_tench.png")
    _png(tmp_path / "holiday.png")
    ds = discover(tmp_path)
    assert ds.classes == ["n01440764"] and len(ds) == 1
    assert ds.skipped == [(str(tmp_path / "holiday.png"), "file name does not start with a synset id (no label)")]
    (tmp_path / "n01440764_tench.png").unlink()
    with pytest.raises(VitdashError, match="no labels"):
        discover(tmp_path)


def test_missing_or_file_data_is_refused(tmp_path):
    with pytest.raises(VitdashError, match="does not exist"):
        discover(tmp_path / "nope")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(VitdashError, match="is a file"):
        discover(tmp_path / "x.txt")


def test_own_class_names_fall_back_to_folder_order_with_a_warning(tmp_path):
    for name in ("cat", "dog", "fox"):
        _png(tmp_path / name / "1.png")
    ds = discover(tmp_path)
    m = map_labels(ds, {}, 10)
    assert m.guess and m.head_index == [0, 1, 2] and "guess" in m.warning
    with pytest.raises(VitdashError, match="2 outputs but the data has 3 classes"):
        map_labels(ds, {}, 2)
    with pytest.raises(VitdashError, match="no classification head"):
        map_labels(ds, {}, 0)


def test_checkpoint_class_names_win_over_folder_order(tmp_path):
    for name in ("cat", "dog"):
        _png(tmp_path / name / "1.png")
    ds = discover(tmp_path)
    m = map_labels(ds, {"class_to_idx": {"dog": 0, "cat": 1}}, 2)
    assert m.method == "checkpoint class_to_idx" and m.head_index == [1, 0] and not m.guess
    m = map_labels(ds, {"config": {"id2label": {"0": "Dog", "1": "bird", "2": "Cat"}}}, 3)
    assert m.method == "checkpoint id2label" and m.head_index == [2, 0]


def test_synset_data_against_a_named_small_head(tmp_path):
    """A 3-way head whose id2label uses lemmas (as Hugging Face configs do) still maps synset folders."""
    _png(tmp_path / "n01443537" / "a.png")
    _png(tmp_path / "n01440764" / "b.png")
    ds = discover(tmp_path)
    m = map_labels(ds, {"id2label": {0: "goldfish, Carassius auratus", 1: "tench, Tinca tinca", 2: "x"}}, 3)
    assert m.head_index == [1, 0]


def test_synsets_outside_the_head_are_refused(tmp_path):
    _png(tmp_path / "n00004475" / "a.png")  # 'organism': in ImageNet-21k, not in ImageNet-1k
    with pytest.raises(VitdashError, match="not among the imagenet-1k classes"):
        map_labels(discover(tmp_path), {}, 1000)


def test_digits_are_built_in():
    ds = discover("digits")
    assert len(ds) == 1797 and ds.classes == [str(i) for i in range(10)]
    img = ds.load(0, "L")
    assert img.size == (8, 8)
    from sklearn.datasets import load_digits as sk

    assert np.array_equal(np.asarray(img), np.round(sk().images[0] * 255 / 16).astype(np.uint8))
    assert ds.load(0, "RGB").mode == "RGB"
    assert load_digits().class_counts() == np.bincount(sk().target).tolist()


def test_limit_is_a_reproducible_subset():
    ds = load_digits()
    a, b = ds.limited(100), ds.limited(100)
    assert len(a) == 100 and a.labels == b.labels and len(set(a.labels)) == 10
    with pytest.raises(VitdashError):
        ds.limited(0)


def test_coarse_groups_partition_imagenet_and_match_the_lemmas():
    owner = [coarse_imagenet_group(i) for i in range(1000)]
    spans = sum(hi - lo + 1 for ranges in IMAGENET_COARSE_GROUPS.values() for lo, hi in ranges)
    assert spans == 1000 and len(set(owner)) == len(IMAGENET_COARSE_GROUPS)
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    lemma = {imagenet_lemma(s): i for i, s in enumerate(info.label_names())}
    anchors = {"fish, amphibian, reptile": ["tench", "bullfrog", "Komodo dragon", "puffer"],
               "bird": ["ostrich", "bald eagle", "flamingo", "king penguin"],
               "invertebrate": ["tarantula", "jellyfish", "ladybug", "sea urchin"],
               "dog": ["Chihuahua", "beagle", "German shepherd", "Mexican hairless"],
               "other mammal": ["koala", "timber wolf", "tiger", "orangutan", "giant panda"],
               "artifact, sign": ["abacus", "laptop", "yurt", "traffic light", "toilet tissue"],
               "food, plant, landscape, person": ["pizza", "volcano", "scuba diver", "daisy", "bolete"]}
    for group, names in anchors.items():
        assert [coarse_imagenet_group(lemma[n]) for n in names] == [group] * len(names)


def test_group_coarse_on_the_shared_sample(shared_dir):
    ds = group_coarse(discover(shared_dir / "images" / "imagenet-sample"))
    assert len(ds) == 200 and len(ds.classes) == 7
    assert min(ds.class_counts()) >= 12  # enough for 10-shot with test images left
    with pytest.raises(VitdashError, match="synset"):
        group_coarse(load_digits())


def test_suggested_data_fits_the_model_channels(tmp_path):
    assert suggested_data(3, tmp_path) == str(tmp_path)
    assert suggested_data(1, tmp_path) == "digits"  # grayscale models get the built-in digits
    assert suggested_data(3, None) == "digits"
