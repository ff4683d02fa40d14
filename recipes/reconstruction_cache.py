"""Cached TAEF2 reconstruction fakes for the default-model recipe.

Why a cache: ``apn train --fakes reconstruct:taef2`` re-synthesises every real photo through the TAEF2
encoder/decoder each time it is drawn (about 2 s for a 500-px photo on two CPU cores), which would make the
reconstruction fakes cost more than the detector itself. The recipe instead reconstructs one fixed
``size``-pixel centre crop of each real photo once, stores it losslessly, and serves it on every later draw.
The fake keeps the photo's content and native resolution, so the pair still differs only in decoder traces.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from apncli.data.crops import center_crop

__all__ = ["CachedReconstruction"]


class CachedReconstruction:
    """RGB uint8 photo → TAEF2 reconstruction of its centre ``size``-crop, memoised on disk by content hash.

    Picklable (DataLoader workers get a copy); the autoencoder is only built on a cache miss.
    """

    def __init__(self, cache_dir: Path, size: int = 256,
                 factory: Callable[[], Callable[[np.ndarray], np.ndarray]] | None = None) -> None:
        self.cache_dir = Path(cache_dir)
        self.size = size
        self.factory = factory
        self._model: Callable[[np.ndarray], np.ndarray] | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_model": None}

    def _key(self, rgb: np.ndarray) -> Path:
        digest = hashlib.sha1(np.ascontiguousarray(rgb).tobytes() + repr(rgb.shape).encode()).hexdigest()
        return self.cache_dir / f"{digest}-{self.size}.png"

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        path = self._key(rgb)
        if path.is_file():
            cached = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if cached is not None:
                return cached[..., ::-1].copy()
        if self._model is None:
            if self.factory is None:
                raise RuntimeError("reconstruction cache miss and no autoencoder factory given")
            self._model = self.factory()
        side = min(self.size, *rgb.shape[:2]) // 8 * 8
        out = self._model(center_crop(rgb, side))
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.png")
        cv2.imwrite(str(tmp), np.ascontiguousarray(out[..., ::-1]))
        tmp.replace(path)
        return out
