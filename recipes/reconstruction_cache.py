"""Cached TAEF2 reconstruction fakes for the default-model recipe.

Why a centre crop: the product's ``apn train --fakes reconstruct:taef2`` reconstructs each whole photo once
per run (:class:`apncli.data.reconstruct.DiskMemo`), about 2 s for a 500-px photo on two CPU cores. The
recipe trains four variants on the same photos within a CPU budget, so it reconstructs one fixed
``size``-pixel centre crop of each real photo once, in one memo shared by all variants. The fake keeps the
photo's content and native resolution, so the pair still differs only in decoder traces.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from apncli.data.crops import center_crop
from apncli.data.reconstruct import DiskMemo

__all__ = ["centre_crop_reconstruction"]


class _CentreCrop:
    """RGB photo → ``reconstruct`` of its centre crop (side ≤ ``size``, a multiple of the 8-px latents)."""

    def __init__(self, reconstruct: Callable[[np.ndarray], np.ndarray], size: int) -> None:
        self.reconstruct = reconstruct
        self.size = size

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        side = min(self.size, *rgb.shape[:2]) // 8 * 8
        return self.reconstruct(center_crop(rgb, side))


def centre_crop_reconstruction(cache_dir: Path, size: int,
                               reconstruct: Callable[[np.ndarray], np.ndarray]) -> DiskMemo:
    """The memoised centre-crop source; entries are named ``<sha1>-<size>.png`` in ``cache_dir``."""
    return DiskMemo(_CentreCrop(reconstruct, size), cache_dir, tag=str(size))
