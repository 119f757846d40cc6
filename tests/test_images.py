"""Opening images safely, and the offline samples."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vitdash.data.images import list_images, open_image
from vitdash.data.samples import SAMPLE_DIR_ENV, data_samples, folder_samples, sample_dir, samples, sklearn_samples
from vitdash.errors import VitdashError


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def photo(mode: str = "RGB", size=(48, 32)) -> Image.Image:
    rng = np.random.default_rng(0)
    shape = (size[1], size[0], len(mode)) if len(mode) > 1 else (size[1], size[0])
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=None).convert(mode)


@pytest.mark.parametrize("fmt, mode", [("JPEG", "RGB"), ("PNG", "RGBA"), ("PNG", "L"), ("PNG", "P"),
                                       ("WEBP", "RGB")])
def test_supported_formats_open_as_rgb(fmt, mode):
    img = open_image(encode(photo(mode), fmt), "x")
    assert img.mode == "RGB" and img.size == (48, 32)


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: width and height swap when displayed
    img = open_image(encode(photo(), "JPEG", exif=exif))
    assert img.size == (32, 48)


def test_paths_open_too(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(encode(photo(), "PNG"))
    assert open_image(path).size == (48, 32)
    with pytest.raises(VitdashError, match="no such image file"):
        open_image(tmp_path / "missing.png")


@pytest.mark.parametrize("data, message", [
    (b"", "file is empty"),
    (b"%PDF-1.4 not a picture at all", "not an image"),
    (encode(photo(), "JPEG")[:200], "broken or truncated"),
    (encode(photo(), "PNG")[:70], "broken or truncated"),
    (encode(photo(), "TIFF"), "TIFF images are not supported"),
    (encode(photo(), "BMP"), "BMP images are not supported"),
])
def test_bad_files_get_a_clear_message(data, message):
    with pytest.raises(VitdashError, match=message) as e:
        open_image(data, "upload.jpg")
    assert str(e.value).startswith("upload.jpg:")


def test_huge_pixel_count_is_refused_before_decoding():
    data = encode(Image.new("1", (3000, 2000)), "PNG")  # 6 MP of zeros: a few kB on disk
    with pytest.raises(VitdashError, match="6 megapixels is over the limit of 5 megapixels"):
        open_image(data, "bomb.png", max_pixels=5_000_000)


def test_pil_decompression_bomb_guard_becomes_a_message(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL warns above this, raises above twice this
    for size in [(40, 30), (100, 100)]:
        with pytest.raises(VitdashError, match="decompression bomb"):
            open_image(encode(photo(size=size), "PNG"), "big.png")


def test_sklearn_samples_are_there_offline():
    refs = sklearn_samples()
    assert [r.name for r in refs] == ["china", "flower"]
    assert refs[0].load().size == (640, 427)


def test_sample_folder_from_env(tmp_path, monkeypatch):
    (tmp_path / "n01440764_tench.png").write_bytes(encode(photo(), "PNG"))
    (tmp_path / "cat.WEBP").write_bytes(encode(photo(), "WEBP"))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(encode(photo(), "PNG"))
    monkeypatch.setenv(SAMPLE_DIR_ENV, str(tmp_path))
    assert sample_dir() == tmp_path
    refs = folder_samples()
    assert [(r.name, r.label) for r in refs] == [("cat", None), ("n01440764_tench", "tench")]
    assert [r.origin for r in samples()] == ["sklearn", "sklearn", "folder", "folder"]
    monkeypatch.setenv(SAMPLE_DIR_ENV, str(tmp_path / "absent"))
    assert sample_dir() is None and folder_samples() == []
    with pytest.raises(VitdashError, match="not a folder"):
        list_images(tmp_path / "absent")


def test_shared_imagenet_sample(shared_dir, monkeypatch):
    monkeypatch.delenv(SAMPLE_DIR_ENV, raising=False)
    assert sample_dir() == shared_dir / "images" / "imagenet-sample"
    refs = folder_samples()
    assert len(refs) == 200 and refs[0].label == "tench"
    assert min(refs[0].load().size) == 256


def test_data_samples_from_the_accuracy_check_data(tmp_path):
    digits = data_samples("digits", limit=3)
    assert [r.label for r in digits] == ["0", "1", "2"]
    assert digits[0].load().size == (8, 8)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        (tmp_path / cls / f"{cls}1.png").write_bytes(encode(photo(), "PNG"))
    refs = data_samples(tmp_path)
    assert [(r.name, r.label, r.origin) for r in refs] == [("cat1", "cat", "data"), ("dog1", "dog", "data")]
    assert refs[1].load().mode == "RGB"
