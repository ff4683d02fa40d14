"""Cut fixed-size windows out of images without ever resampling them.

Generator artifacts live in the highest frequencies, which any resize would destroy, so images smaller
than the crop are enlarged by wrapping their own pixels around (``cv2.BORDER_WRAP``, as the reference
implementation does) and larger ones are cropped. Tiles let a big image be judged on several windows,
the centre first so that a one-tile budget equals the plain centre crop.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch


def pad_to(arr: np.ndarray, size: int) -> np.ndarray:
    """Enlarge an H×W(×C) image to at least ``size`` on each side by wrapping it around; never resize.

    The padding is split evenly between the two edges so that the centre of the canvas stays the centre
    of the image. Images already large enough are returned unchanged (not copied).
    """
    _check_size(size)
    height, width = arr.shape[:2]
    pad_y, pad_x = max(0, size - height), max(0, size - width)
    if pad_y == 0 and pad_x == 0:
        return arr
    top, left = pad_y // 2, pad_x // 2
    return cv2.copyMakeBorder(
        np.ascontiguousarray(arr), top, pad_y - top, left, pad_x - left, cv2.BORDER_WRAP
    ).reshape(height + pad_y, width + pad_x, *arr.shape[2:])


def center_crop(arr: np.ndarray, size: int) -> np.ndarray:
    """The central ``size``×``size`` window (padding first if needed): the deterministic evaluation crop."""
    return center_window(pad_to(arr, size), size, size)


def center_window(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """The central ``height``×``width`` window, as a view; refuses a window larger than the array.

    It is where ``center_crop`` takes its window from, so a source that centre-crops before processing can
    be matched pixel for pixel on the unprocessed image.
    """
    _check_size(height)
    _check_size(width)
    full_h, full_w = arr.shape[:2]
    if height > full_h or width > full_w:
        raise ValueError(f"a {height}x{width} window does not fit the {full_h}x{full_w} image")
    y, x = (full_h - height) // 2, (full_w - width) // 2
    return arr[y : y + height, x : x + width]


def random_crop(arr: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly placed ``size``×``size`` window (padding first if needed), drawn from ``rng``."""
    canvas = pad_to(arr, size)
    height, width = canvas.shape[:2]
    y = int(rng.integers(0, height - size + 1))
    x = int(rng.integers(0, width - size + 1))
    return extract(canvas, y, x, size)


def tile_positions(height: int, width: int, size: int, max_tiles: int) -> list[tuple[int, int]]:
    """Top-left corners of up to ``max_tiles`` windows on an (already padded) ``height``×``width`` canvas.

    The centre window comes first. The others come from a grid that covers the whole canvas with as few,
    barely overlapping windows as possible, picked farthest-first (each new tile as far as possible from
    those already chosen), so a few tiles spread over the image and a smaller budget always yields a
    prefix of a larger one. Deterministic; the centre is never repeated.
    """
    _check_size(size)
    if height < size or width < size:
        raise ValueError(f"canvas {height}x{width} is smaller than the {size}px tile; pad it first")
    if max_tiles < 1:
        raise ValueError(f"max_tiles must be at least 1, got {max_tiles}")
    centre = ((height - size) // 2, (width - size) // 2)
    ys, xs = np.meshgrid(_spread(height, size), _spread(width, size), indexing="ij")
    grid = np.stack([ys.ravel(), xs.ravel()], axis=1).astype(np.float64)
    distance = np.hypot(*(grid - centre).T)
    chosen = [centre]
    while len(chosen) < max_tiles:
        best = int(np.argmax(distance))
        if distance[best] <= 0:
            break
        chosen.append((int(grid[best, 0]), int(grid[best, 1])))
        distance = np.minimum(distance, np.hypot(*(grid - grid[best]).T))
    return chosen


#: Local detail is measured on every DETAIL_SUBSAMPLE-th pixel: 1/16 of a photo's pixels, a few ms for 12 MP.
DETAIL_SUBSAMPLE = 4


def textured_tile_positions(canvas: np.ndarray, size: int, max_tiles: int) -> list[tuple[int, int]]:
    """Top-left corners of up to ``max_tiles`` windows on ``canvas`` (H×W×C, already padded), content first.

    When the canvas holds more grid windows (see :func:`tile_positions`) than the budget, the windows
    with the most local detail come first: the mean absolute difference between neighbouring pixels,
    on a 1-in-``DETAIL_SUBSAMPLE`` subsample. Flat sky, walls and studio backdrops carry little of the
    generator's high-frequency trace and of the camera's, so a few tiles are better spent on content.
    Ties go to the window nearer the centre, then to grid order; deterministic, and a smaller budget
    yields a prefix of a larger one. Canvases that fit in the budget are tiled as by ``tile_positions``.
    """
    height, width = canvas.shape[:2]
    return place_textured_tiles(height, width, size, max_tiles,
                                canvas[::DETAIL_SUBSAMPLE, ::DETAIL_SUBSAMPLE])


def place_textured_tiles(height: int, width: int, size: int, max_tiles: int,
                         sample: np.ndarray) -> list[tuple[int, int]]:
    """:func:`textured_tile_positions` of a ``height``×``width`` canvas known only by its subsample
    ``sample`` = ``canvas[::DETAIL_SUBSAMPLE, ::DETAIL_SUBSAMPLE]``: for decoders that never convert the
    whole image (``data.images.decode_windows``)."""
    ys, xs = _spread(height, size), _spread(width, size)
    if len(ys) * len(xs) <= max_tiles:
        return tile_positions(height, width, size, max_tiles)
    means = _window_detail(sample, ys, xs, size)
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
    distance = np.hypot(grid_y - (height - size) / 2, grid_x - (width - size) / 2)
    order = np.lexsort((distance.ravel(), -means.ravel()))  # detail first, then nearest the centre
    return [(int(grid_y.flat[i]), int(grid_x.flat[i])) for i in order[:max_tiles]]


def _window_detail(sample: np.ndarray, ys: np.ndarray, xs: np.ndarray, size: int) -> np.ndarray:
    """(len(ys), len(xs)) mean |horizontal| + |vertical| neighbour difference of the green channel (the
    luminance-heavy one) inside each window, on the 1-in-``DETAIL_SUBSAMPLE`` subsample ``sample``, via a
    summed-area table."""
    small = (sample[..., 1] if sample.ndim == 3 else sample).astype(np.int16)
    detail = np.zeros(small.shape, dtype=np.int32)
    detail[:, 1:] += np.abs(np.diff(small, axis=1))
    detail[1:, :] += np.abs(np.diff(small, axis=0))
    rows, columns = detail.shape
    y0, x0 = ys // DETAIL_SUBSAMPLE, xs // DETAIL_SUBSAMPLE
    y1 = np.clip((ys + size) // DETAIL_SUBSAMPLE, y0 + 1, rows)
    x1 = np.clip((xs + size) // DETAIL_SUBSAMPLE, x0 + 1, columns)
    # Summed-area table, built only on the rows the windows start and end at (a full one costs 5x more).
    down = np.zeros((rows + 1, columns), dtype=np.int64)
    np.cumsum(detail, axis=0, out=down[1:])
    edges = np.concatenate([y0, y1])
    table = np.zeros((len(edges), columns + 1), dtype=np.int64)
    np.cumsum(down[edges], axis=1, out=table[:, 1:])
    top, bottom = table[: len(y0)], table[len(y0):]
    total = bottom[:, x1] - top[:, x1] - bottom[:, x0] + top[:, x0]
    return total / np.outer(y1 - y0, x1 - x0)


def _spread(length: int, size: int) -> np.ndarray:
    """Offsets of the fewest ``size`` windows that cover ``length``, first and last flush with the edges."""
    count = math.ceil(length / size)
    return np.unique(np.round(np.linspace(0, length - size, count)).astype(np.int64))


def extract(arr: np.ndarray, y: int, x: int, size: int) -> np.ndarray:
    """The ``size``×``size`` window at (y, x), as a view; refuses windows that leave the array."""
    height, width = arr.shape[:2]
    if y < 0 or x < 0 or y + size > height or x + size > width:
        raise ValueError(f"window {size}px at ({y}, {x}) leaves the {height}x{width} image")
    return arr[y : y + size, x : x + size]


def to_tensor_bgr(crops: list[np.ndarray]) -> torch.Tensor:
    """Stack S×S×3 uint8 RGB crops into an N×3×S×S float32 tensor in [0, 1], BGR order, contiguous.

    BGR and plain /255 scaling (no ImageNet statistics) are what the reference model was trained on.
    One ``np.stack`` plus one converting copy per channel; no intermediate tensors.
    """
    if not crops:
        raise ValueError("no crops to convert")
    first = crops[0].shape
    if len(first) != 3 or first[2] != 3 or first[0] != first[1]:
        raise ValueError(f"crops must be SxSx3, got {first}")
    if any(c.shape != first or c.dtype != np.uint8 for c in crops):
        raise ValueError("crops must all be uint8 and share one shape")
    batch = torch.from_numpy(np.stack(crops))  # N×S×S×3, RGB
    out = torch.empty((len(crops), 3, first[0], first[1]), dtype=torch.float32)
    for dst, src in enumerate((2, 1, 0)):  # RGB → BGR while converting, no intermediate copy
        out[:, dst].copy_(batch[..., src])
    return out.div_(255.0)


def _check_size(size: int) -> None:
    if size < 1:
        raise ValueError(f"crop size must be positive, got {size}")
