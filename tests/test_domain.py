"""Is the data the model's domain? Said first, in words, whenever an accuracy would be a number about nothing."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vitdash.data.datasets import discover, load_digits
from vitdash.data.labels import map_labels
from vitdash.load.checkpoint import Checkpoint, TensorStore
from vitdash.perform.domain import domain_check, head_names, training_set

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _ckpt(name: str = "model.pth", source: str = "/tmp/x/model.pth", **metadata) -> Checkpoint:
    return Checkpoint(TensorStore.from_tensors({}), source=source, format="torch", name=name, metadata=metadata)


def _check(ckpt, ds, classes=10, size=(28, 28), chans=1):
    return domain_check(ckpt, ds, classes, size, chans, map_labels(ds, ckpt.metadata, classes))


@pytest.mark.parametrize("name,expected", [
    ("fmnist_vit_custom.pth", "Fashion-MNIST"), ("fashion_mnist.pt", "Fashion-MNIST"),
    ("mnist_vit_torchvision_layout.pth", "MNIST"), ("kmnist-vit.pth", "KMNIST"), ("model.pth", None),
])
def test_the_training_set_named_by_the_file(name, expected):
    found, why = training_set(_ckpt(name, f"/data/{name}"), 10, (28, 28), 1)
    assert (found and found.name) == expected and (name in why if expected else why == "")


def test_a_name_counts_only_when_the_head_and_input_fit_that_set():
    assert training_set(_ckpt("mnist_to_imagenet.pth"), 1000, (224, 224), 3)[0].name == "ImageNet"
    assert training_set(_ckpt("cifar10.pth"), 100, (32, 32), 3)[0] is None  # a 100-way head is not CIFAR-10's
    # a folder far up the path says nothing about the file
    assert training_set(_ckpt("run3.pth", "/datasets/imagenet/experiments/mnist/run3.pth"), 10, (32, 32), 3)[0] is None


def test_own_class_names_and_metadata_name_the_set():
    by_labels = _ckpt(id2label={str(i): n for i, n in enumerate(FASHION)})
    assert training_set(by_labels, 10, (28, 28), 1)[0].name == "Fashion-MNIST"
    by_config = _ckpt(config={"dataset_name": "cifar10"})
    found, why = training_set(by_config, 10, (32, 32), 3)
    assert found.name == "CIFAR-10" and "dataset_name" in why
    assert head_names(_ckpt("fmnist.pth"), 10, (28, 28), 1) == FASHION  # names for top-5 lists


def test_fashion_mnist_model_on_digits_says_the_number_means_nothing():
    result = _check(_ckpt("fmnist_vit_custom.pth"), load_digits())
    assert result.mismatch and result.model_set == "Fashion-MNIST" and result.data_set == "scikit-learn digits"
    assert result.message.startswith("This model was trained on 28x28 grayscale Fashion-MNIST")
    assert "these are scikit-learn digits, 8x8 px: the number says nothing about it" in result.message


def test_a_model_trained_on_digits_is_in_its_domain():
    demo = _ckpt("digits-vit-trained", vitdash_demo={"dataset": "sklearn.datasets.load_digits"},
                 id2label={str(i): str(i) for i in range(10)})
    result = _check(demo, load_digits(), size=(16, 16))
    assert not result.mismatch and result.message == "" and result.model_set == "scikit-learn digits"


def test_an_unnamed_model_fed_blown_up_images_is_flagged():
    result = _check(_ckpt(), load_digits())
    assert result.mismatch and "blown up 3.5x" in result.reasons[0]
    assert result.message.startswith("This model takes 28x28 grayscale images and does not say what it was trained on")


def test_classes_the_model_does_not_have(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / cls / f"{i}.png")
    result = _check(_ckpt(id2label={str(i): n for i, n in enumerate(FASHION)}), discover(tmp_path))
    assert result.mismatch and any("are not among them" in r for r in result.reasons)
    same_size_unnamed = _check(_ckpt(), discover(tmp_path))
    assert not same_size_unnamed.mismatch  # 28x28 images for a 28x28 model that names nothing: no evidence
