"""Low-signal rule: false positives on flat, drawn-UI and tiny images before and after, and what it costs.

Probes are made here (single colours, drawn chat screens, gradients, tiny images and strips, native
centre crops of photos smaller than the crop); the photos and AI images that must keep their verdicts come
from ``../shared/data`` when present. For each set it prints how many images the default detector flags
as ``ai-generated`` without the rule ("before") and with it ("after"), and how many the rule made
``inconclusive``. It also prints the textured-pixel share of real and AI images (the calibration of
``MIN_TEXTURED_FRACTION``). Usage: ``python bench/low_signal.py [--data ../shared/data] [--max-per-set N]``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {"white": (255, 255, 255), "sky-blue": (135, 206, 235), "black": (0, 0, 0),
           "grey": (128, 128, 128), "red": (220, 30, 30), "beige": (245, 240, 220)}


def flat_images() -> Iterator[np.ndarray]:
    for colour in COLOURS.values():
        yield np.full((512, 768, 3), colour, np.uint8)


def ui_screens(count: int = 12) -> Iterator[np.ndarray]:
    """Drawn chat and settings screens: solid fills, rounded bubbles, text; no camera noise."""
    rng = np.random.default_rng(0)
    for i in range(count):
        width, height = (390, 844) if i % 2 else (1280, 800)
        background = tuple(int(v) for v in rng.choice([250, 255, 30, 18], 1).repeat(3))
        img = Image.new("RGB", (width, height), background)
        draw = ImageDraw.Draw(img)
        y = 60
        while y < height - 80:
            left = bool(rng.integers(0, 2))
            w = int(rng.integers(width // 4, width * 2 // 3))
            h = int(rng.integers(40, 120))
            x = 20 if left else width - w - 20
            fill = (229, 229, 234) if left else (0, 122, 255)
            draw.rounded_rectangle((x, y, x + w, y + h), radius=18, fill=fill)
            for line in range(h // 24):
                draw.text((x + 14, y + 10 + 22 * line), "lorem ipsum dolor sit amet " * 2,
                          fill=(0, 0, 0) if left else (255, 255, 255))
            y += h + int(rng.integers(12, 30))
        draw.rectangle((0, 0, width, 48), fill=(247, 247, 247))
        draw.text((16, 16), "Messages   12:41", fill=(0, 0, 0))
        yield np.asarray(img)


def gradients() -> Iterator[np.ndarray]:
    y, x = np.mgrid[0:512, 0:768]
    yield np.stack([x / 3, y / 2, (x + y) / 5], -1).astype(np.uint8)
    yield np.repeat((y * 255 // 511).astype(np.uint8)[..., None], 3, 2)


def tiny_images() -> Iterator[np.ndarray]:
    rng = np.random.default_rng(1)
    for shape in ((1, 1), (8, 8), (1, 300), (300, 1), (2, 500), (16, 16), (64, 64), (100, 100)):
        yield rng.integers(0, 256, (*shape, 3), dtype=np.uint8)


def photo_files(root: Path, sub: str, limit: int) -> list[Path]:
    suffixes = {".jpg", ".jpeg", ".png", ".webp"}
    files = sorted(p for p in (root / sub).rglob("*") if p.suffix.lower() in suffixes)
    step = max(1, len(files) // limit) if limit else 1
    return files[::step][:limit] if limit else files


def centre_crops(files: list[Path], side: int) -> Iterator[np.ndarray]:
    from apncli.data.crops import center_window
    from apncli.data.images import decode_image

    for path in files:
        pixels = decode_image(path).pixels
        if min(pixels.shape[:2]) >= side:
            yield np.ascontiguousarray(center_window(pixels, side, side))


def decoded(files: list[Path]) -> Iterator[np.ndarray]:
    from apncli.data.images import decode_image

    for path in files:
        yield decode_image(path).pixels


def measure(detector, images) -> dict[str, object]:
    before = after = low = n = 0
    textured: list[float] = []
    for rgb in images:
        crops, signal = detector.prepare(rgb)
        p_ai = float(detector.predict_crops(crops).mean())
        n += 1
        before += detector.verdict(p_ai) == "ai-generated"
        after += detector.verdict(p_ai, signal=signal) == "ai-generated"
        low += signal.low_signal is not None
        textured.append(signal.textured_fraction)
    q = np.percentile(textured, [0, 1, 5, 50]) if textured else [float("nan")] * 4
    return {"n": n, "before": before, "after": after, "low": low, "textured": q}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--max-per-set", type=int, default=150, help="Photos per shared-data set (0: all).")
    args = parser.parse_args(argv)
    import torch

    from apncli.engine import Detector

    torch.set_num_threads(1)
    detector = Detector.load(None, device="cpu")
    sets: list[tuple[str, object]] = [
        ("flat colours 768x512", list(flat_images())),
        ("drawn chat/settings screens", list(ui_screens())),
        ("smooth gradients", list(gradients())),
        ("tiny noise images and strips", list(tiny_images())),
    ]
    if args.data.is_dir():
        def files(sub: str) -> list[Path]:
            return photo_files(args.data, sub, args.max_per_set)

        reals = files("eval/unseen-diffusion/0_real")
        sets += [
            ("real photo centre crops 100 px", list(centre_crops(reals, 100))),
            ("real photo centre crops 128 px", list(centre_crops(reals, 128))),
            ("real photos (unseen-diffusion reals)", decoded(reals)),
            ("real camera photos (modern-2025 reals)", decoded(files("eval/modern-2025/0_real"))),
            ("train reals (lossless benchmarks)", decoded(files("train/real/lossless"))),
            ("AI images (unseen-diffusion fakes)", decoded(files("eval/unseen-diffusion/1_fake"))),
            ("AI images (modern-2025 fakes)", decoded(files("eval/modern-2025/1_fake"))),
            ("AI images (train fakes)", decoded(files("train/fake"))),
        ]
    print("| set | n | flagged before | flagged after | low-signal (inconclusive) | textured share min / p1 "
          "/ p5 / median |\n|---|---|---|---|---|---|")
    for name, images in sets:
        r = measure(detector, images)
        q = " / ".join(f"{v:.3f}" for v in r["textured"])
        print(f"| {name} | {r['n']} | {r['before']} | {r['after']} | {r['low']} | {q} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
