"""Regenerate the bundled example images in ``examples/`` (all made here, no third-party photos).

- ``synthetic-scene.jpg`` / ``synthetic-scene.png``: a procedurally rendered scene (sky gradient, hills,
  texture) with sensor-like noise, saved as a camera would (JPEG) and losslessly (PNG).
- ``decoder-made.png``: the same scene passed through the TAEF2 latent autoencoder (MIT): its pixels are
  re-synthesised by a generator's decoder, the kind of trace apn looks for.
- ``noise.webp``: plain noise, an image no generator would make.
- ``declared-ai.png``: the scene PNG with a PNG text chunk in the form Stable Diffusion web UIs write
  (``parameters``: prompt, steps, sampler, seed): metadata that declares AI generation.

What the shipped detector says about each is in the README ("The bundled examples").

Usage: ``python scripts/make_examples.py [--taef2-dir ../shared/models/taef2]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

OUT = Path(__file__).resolve().parent.parent / "examples"


def render_scene(height: int = 320, width: int = 480, seed: int = 7) -> np.ndarray:
    """A landscape-like image with gradients, edges, texture and mild sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    sky = np.stack([0.45 + 0.3 * y / height, 0.6 + 0.2 * y / height, 0.95 - 0.2 * y / height], axis=-1)
    ridge = height * (0.55 + 0.08 * np.sin(x / 37.0) + 0.04 * np.sin(x / 11.0 + 1.3))
    ground = (y > ridge)[..., None]
    grass = np.stack([0.25 + 0.1 * np.sin(x / 5.0) * np.cos(y / 7.0), 0.45 + 0.05 * np.sin(y / 3.0),
                      0.2 + 0.0 * x], axis=-1)
    image = np.where(ground, grass, sky)
    sun = np.exp(-(((x - 0.75 * width) ** 2 + (y - 0.2 * height) ** 2) / (2 * 18.0**2)))[..., None]
    image = image + 0.5 * sun
    image = image + rng.normal(0, 0.02, image.shape)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def decoder_made(rgb: np.ndarray, taef2_dir: Path) -> np.ndarray:
    """Round-trip through TAEF2 so every pixel comes out of a generator's decoder."""
    from apncli.data.reconstruct import make_reconstruction_source

    source = make_reconstruction_source("reconstruct:taef2", encoder_path=taef2_dir / "taef2_encoder.pth",
                                        decoder_path=taef2_dir / "taef2_decoder.pth")
    return source(rgb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taef2-dir", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "models" / "taef2")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    scene = render_scene()
    Image.fromarray(scene).save(OUT / "synthetic-scene.jpg", quality=90)
    Image.fromarray(scene).save(OUT / "synthetic-scene.png", optimize=True)
    declaration = PngImagePlugin.PngInfo()
    declaration.add_text("parameters", "a quiet valley at noon, hills, sun\nSteps: 20, Sampler: Euler a, "
                                       "CFG scale: 7, Seed: 7, Size: 480x320, Model: example")
    Image.fromarray(scene).save(OUT / "declared-ai.png", optimize=True, pnginfo=declaration)
    noise = np.random.default_rng(3).integers(0, 256, (240, 240, 3), dtype=np.uint8)
    Image.fromarray(noise).save(OUT / "noise.webp", lossless=True)
    if args.taef2_dir.is_dir():
        Image.fromarray(decoder_made(scene, args.taef2_dir)).save(OUT / "decoder-made.png", optimize=True)
    else:
        print(f"TAEF2 weights not found in {args.taef2_dir}: skipped decoder-made.png")
    print(f"wrote examples to {OUT}")


if __name__ == "__main__":
    main()
