"""Crops: exact output shapes for any input size and pixel mode, never a resize, BGR tensors in [0, 1]."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from apncli.data.crops import (
    center_crop,
    center_window,
    extract,
    pad_to,
    random_crop,
    textured_tile_positions,
    tile_positions,
    to_tensor_bgr,
)
from apncli.data.images import decode_bytes

# Modes a decoded file can start from, with a format that stores each.
MODES = [
    ("RGB", "PNG"),
    ("RGBA", "PNG"),
    ("L", "PNG"),
    ("LA", "PNG"),
    ("1", "PNG"),
    ("P", "PNG"),
    ("I;16", "PNG"),
    ("CMYK", "TIFF"),
    ("F", "TIFF"),
]


def _image_in_mode(height: int, width: int, mode: str, fmt: str, seed: int) -> np.ndarray:
    """Noise saved in ``mode`` and decoded back: the arrays crops really receive."""
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    img = Image.fromarray(noise)
    if mode == "I;16":
        img = Image.fromarray(noise[..., 0].astype(np.uint16) * 257)
    elif mode == "F":
        img = Image.fromarray(noise[..., 0].astype(np.float32) / 255)
    elif mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return decode_bytes(buf.getvalue()).pixels


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    height=st.integers(1, 300),
    width=st.integers(1, 300),
    size=st.integers(1, 64),
    max_tiles=st.integers(1, 6),
    mode=st.sampled_from(MODES),
    seed=st.integers(0, 2**32 - 1),
)
def test_preprocessing_shapes_and_ranges(
    height: int, width: int, size: int, max_tiles: int, mode: tuple[str, str], seed: int
) -> None:
    arr = _image_in_mode(height, width, *mode, seed)
    assert arr.shape == (height, width, 3)

    canvas = pad_to(arr, size)
    assert canvas.shape == (max(height, size), max(width, size), 3)
    top, left = (canvas.shape[0] - height) // 2, (canvas.shape[1] - width) // 2
    np.testing.assert_array_equal(canvas[top : top + height, left : left + width], arr)  # no resampling

    rng = np.random.default_rng(seed)
    crops = [center_crop(arr, size), random_crop(arr, size, rng)]
    positions = tile_positions(canvas.shape[0], canvas.shape[1], size, max_tiles)
    crops += [extract(canvas, y, x, size) for y, x in positions]
    assert all(c.shape == (size, size, 3) and c.dtype == np.uint8 for c in crops)
    np.testing.assert_array_equal(crops[0], crops[2])  # the first tile is the centre crop

    assert 1 <= len(positions) <= max_tiles and len(set(positions)) == len(positions)
    more = tile_positions(canvas.shape[0], canvas.shape[1], size, max_tiles + 3)
    assert positions == more[: len(positions)]  # a smaller budget is a prefix of a larger one

    tensor = to_tensor_bgr(crops)
    assert tensor.shape == (len(crops), 3, size, size)
    assert tensor.dtype == torch.float32 and tensor.is_contiguous()
    assert float(tensor.min()) >= 0.0 and float(tensor.max()) <= 1.0
    expected = np.stack(crops)[..., ::-1].transpose(0, 3, 1, 2) / 255.0
    np.testing.assert_allclose(tensor.numpy(), expected, rtol=0, atol=1e-6)


def test_pad_wraps_around_instead_of_resizing() -> None:
    arr = np.arange(6, dtype=np.uint8).reshape(1, 6, 1).repeat(3, axis=2)  # one row: 0..5
    canvas = pad_to(arr, 4)
    assert canvas.shape == (4, 6, 3)
    assert (canvas[..., 0] == np.arange(6)).all()  # every row is the same wrapped row
    small = np.arange(4, dtype=np.uint8).reshape(2, 2, 1).repeat(3, axis=2)
    np.testing.assert_array_equal(pad_to(small, 6)[..., 0], np.tile([[0, 1], [2, 3]], (3, 3)))


def test_large_images_are_not_copied_by_pad() -> None:
    arr = np.zeros((40, 50, 3), np.uint8)
    assert pad_to(arr, 32) is arr


def test_center_crop_is_centred() -> None:
    arr = np.zeros((10, 12, 3), np.uint8)
    arr[4:6, 5:7] = 255
    assert center_crop(arr, 2).min() == 255


def test_center_window_is_where_center_crop_looks_and_refuses_to_grow() -> None:
    arr = np.random.default_rng(0).integers(0, 256, (21, 30, 3), dtype=np.uint8)
    assert np.array_equal(center_window(arr, 16, 16), center_crop(arr, 16))
    assert center_window(arr, 9, 30).shape == (9, 30, 3)
    with pytest.raises(ValueError, match="does not fit"):
        center_window(arr, 22, 10)


def test_random_crop_is_reproducible_and_covers_the_image() -> None:
    arr = np.arange(20 * 20, dtype=np.int64).reshape(20, 20, 1)
    first = [random_crop(arr, 5, np.random.default_rng(7))[0, 0, 0] for _ in range(3)]
    assert len(set(first)) == 1
    rng = np.random.default_rng(0)
    corners = {int(random_crop(arr, 5, rng)[0, 0, 0]) for _ in range(2000)}
    assert 0 in corners and 15 * 20 + 15 in corners  # both extreme positions are reachable


def test_tiles_start_at_the_centre_and_spread_out() -> None:
    assert tile_positions(224, 224, 224, 4) == [(0, 0)]
    positions = tile_positions(4000, 3000, 224, 4)
    assert positions[0] == ((4000 - 224) // 2, (3000 - 224) // 2)
    assert {(0, 0), (0, 2776), (3776, 0)} == set(positions[1:])
    everything = tile_positions(448, 448, 224, 100)
    assert sorted(everything) == [(0, 0), (0, 224), (112, 112), (224, 0), (224, 224)]


def sky_over_content(height: int = 300, width: int = 400, seed: int = 0) -> np.ndarray:
    """A photo-like canvas: flat, gently graded sky over the top two thirds, detailed ground below."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = np.linspace(150, 200, height, dtype=np.uint8)[:, None, None]
    ground = height * 2 // 3
    image[ground:] = rng.integers(0, 256, (height - ground, width, 3), dtype=np.uint8)
    return image


def test_textured_tiles_go_to_content_not_sky() -> None:
    canvas = sky_over_content()
    positions = textured_tile_positions(canvas, 32, 4)
    assert len(positions) == 4 and len(set(positions)) == 4
    assert all(y >= 200 for y, _ in positions)  # every window in the detailed ground, none in the sky
    assert textured_tile_positions(canvas, 32, 4) == positions  # deterministic
    assert textured_tile_positions(canvas, 32, 7)[:4] == positions  # a bigger budget extends it
    # A canvas the budget covers is tiled as before; a uniform one ranks by distance to the centre.
    assert textured_tile_positions(canvas[:64, :64], 32, 4) == tile_positions(64, 64, 32, 4)
    flat = np.full((300, 400, 3), 128, np.uint8)
    assert textured_tile_positions(flat, 32, 1) == [(119, 184)]  # the grid window nearest the centre


@pytest.mark.parametrize(
    ("height", "width", "size", "tiles"), [(10, 40, 16, 2), (40, 40, 32, 0), (8, 8, 0, 1)]
)
def test_tile_positions_refuses_bad_requests(height: int, width: int, size: int, tiles: int) -> None:
    with pytest.raises(ValueError):
        tile_positions(height, width, size, tiles)


def test_extract_refuses_windows_outside_the_image() -> None:
    with pytest.raises(ValueError):
        extract(np.zeros((8, 8, 3), np.uint8), 4, 0, 5)


def test_to_tensor_bgr_rejects_mixed_or_empty_batches() -> None:
    with pytest.raises(ValueError):
        to_tensor_bgr([])
    with pytest.raises(ValueError):
        to_tensor_bgr([np.zeros((4, 4, 3), np.uint8), np.zeros((5, 5, 3), np.uint8)])
    with pytest.raises(ValueError):
        to_tensor_bgr([np.zeros((4, 4, 3), np.float32)])


def test_to_tensor_bgr_swaps_channels() -> None:
    crop = np.zeros((2, 2, 3), np.uint8)
    crop[..., 0] = 255  # pure red in RGB
    tensor = to_tensor_bgr([crop])
    assert tensor[0, 2].eq(1).all() and tensor[0, :2].eq(0).all()
