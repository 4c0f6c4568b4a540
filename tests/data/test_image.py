"""Image decoding: the libspng fast path gives Pillow's pixels on every PNG kind, and broken files say why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from predict.config import ImagePreprocessing
from predict.data import image as image_module
from predict.data.image import ImageBatches, ImageInput
from predict.data.paths import UnreadableRow

SIZE = 24


def loader(folder: Path, names: list[str], channels: int = 3) -> ImageBatches:
    spec = ImageInput(
        name="x", height=SIZE, width=SIZE, channels=channels, channels_first=False, dtype=np.dtype(np.float32)
    )
    return ImageBatches(
        names,
        data_folder=folder,
        image_input=spec,
        preprocessing=ImagePreprocessing(),
        batch_size=len(names),
        column="image",
    )


def pillow_reference(path: Path, mode: str) -> np.ndarray:
    with Image.open(path) as image:
        image = image.convert(mode)
        if image.size != (SIZE, SIZE):
            image = image.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
        return np.asarray(image)


def write_kinds(folder: Path) -> dict[str, bool]:
    """One file per PNG kind (plus a JPEG); value: whether the libspng fast path takes it."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (SIZE, SIZE, 4), dtype=np.uint8)
    Image.fromarray(rgb).save(folder / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (40, 31, 3), dtype=np.uint8)).save(folder / "rgb_resized.png")
    Image.fromarray(rgba).save(folder / "rgba.png")
    Image.fromarray(rgb).quantize(16).save(folder / "palette.png")
    Image.fromarray(rgb).quantize(16).save(folder / "palette_transparent.png", transparency=3)
    Image.fromarray(rgb[..., 0]).save(folder / "gray.png")
    Image.fromarray(rgba).convert("LA").save(folder / "gray_alpha.png")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(folder / "gray16.png")
    Image.fromarray(rgb).save(folder / "photo.jpg", quality=90)
    return {
        "rgb.png": True,
        "rgb_resized.png": True,
        "rgba.png": True,
        "palette.png": False,
        "palette_transparent.png": False,
        "gray.png": False,
        "gray_alpha.png": False,
        "gray16.png": False,
        "photo.jpg": False,
    }


@pytest.mark.parametrize(("channels", "mode"), [(3, "RGB"), (1, "L")])
def test_every_png_kind_decodes_to_pillows_pixels(tmp_path, channels, mode):
    kinds = write_kinds(tmp_path)
    batches = loader(tmp_path, list(kinds), channels=channels)
    for name, fast in kinds.items():
        assert (image_module._read_rgb_png(tmp_path / name) is not None) == fast, name
        pixels, original = batches._decode(name)
        expected = pillow_reference(tmp_path / name, mode)
        np.testing.assert_array_equal(pixels.reshape(expected.shape), expected, err_msg=name)
        with Image.open(tmp_path / name) as image:
            assert original == (image.height, image.width)


def test_a_truncated_png_is_an_unreadable_row_not_a_crash(tmp_path):
    write_kinds(tmp_path)
    data = (tmp_path / "rgb.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableRow, match="not a readable image"):
        loader(tmp_path, ["cut.png"])._decode("cut.png")
    batch = loader(tmp_path, ["rgb.png", "cut.png"])[0]
    assert [row for row, _ in batch.errors] == [1]
    assert "row 1, image 'cut.png': not a readable image" in batch.errors[0][1]


def test_the_fast_path_leaves_decompression_bombs_to_pillow(tmp_path, monkeypatch):
    write_kinds(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 24 x 24 = 576 > 2 x 100: Pillow refuses it
    assert image_module._read_rgb_png(tmp_path / "rgb.png") is None
    with pytest.raises(UnreadableRow, match="decompression bomb"):
        loader(tmp_path, ["rgb.png"])._decode("rgb.png")
