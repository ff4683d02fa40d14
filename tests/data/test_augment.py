"""Class-agnostic augmentations and evaluation perturbations."""

from __future__ import annotations

import numpy as np
import pytest

from apncli.data.augment import (
    AugmentConfig,
    Perturbation,
    augment,
    encode_jpeg,
    encode_webp,
    gaussian_blur,
    parse_perturbations,
    rescale,
)


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)


def test_encoders_round_trip_with_loss_and_keep_shape(rgb: np.ndarray) -> None:
    for out in (encode_jpeg(rgb, 75), encode_webp(rgb, 75)):
        assert out.shape == rgb.shape and out.dtype == np.uint8
        assert 0 < np.abs(out.astype(int) - rgb).mean() < 80
    assert np.array_equal(encode_jpeg(rgb, 75), encode_jpeg(rgb, 75))  # deterministic
    # channel order is preserved (a red image stays red)
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 200
    assert encode_jpeg(red, 95)[..., 0].mean() > 150 and encode_jpeg(red, 95)[..., 2].mean() < 50


def test_blur_and_rescale(rgb: np.ndarray) -> None:
    assert gaussian_blur(rgb, 0) is rgb
    assert gaussian_blur(rgb, 2.0).std() < rgb.std()
    assert rescale(rgb, 0.5).shape == (20, 24, 3)


def test_augment_is_deterministic_per_seed_and_off_means_identity(rgb: np.ndarray) -> None:
    cfg = AugmentConfig(compress_prob=1.0, blur_prob=1.0, downscale_prob=1.0)
    a = augment(rgb, np.random.default_rng(3), cfg)
    b = augment(rgb, np.random.default_rng(3), cfg)
    assert np.array_equal(a, b)
    assert augment(rgb, np.random.default_rng(3), AugmentConfig.off()) is rgb


def test_downscale_never_goes_below_the_crop(rgb: np.ndarray) -> None:
    cfg = AugmentConfig(compress_prob=0, blur_prob=0, downscale_prob=1.0, downscale_range=(0.1, 0.1))
    out = augment(rgb, np.random.default_rng(0), cfg, min_side=32)
    assert min(out.shape[:2]) >= 32


def test_augment_draws_do_not_depend_on_the_image(rgb: np.ndarray) -> None:
    """Both classes see the same distribution: which ops fire depends only on the generator."""
    cfg = AugmentConfig(compress_prob=0.5, blur_prob=0.5)
    fired_real, fired_fake = [], []
    for seed in range(20):
        fired_real.append(not np.array_equal(augment(rgb, np.random.default_rng(seed), cfg), rgb))
        fired_fake.append(not np.array_equal(augment(255 - rgb, np.random.default_rng(seed), cfg), 255 - rgb))
    assert fired_real == fired_fake and 0 < sum(fired_real) < 20


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="quality"):
        AugmentConfig(quality=(90, 60))
    with pytest.raises(ValueError, match="compress_prob"):
        AugmentConfig(compress_prob=1.5)
    assert AugmentConfig().to_dict()["quality"] == [60, 100]


def test_parse_perturbations(rgb: np.ndarray) -> None:
    perts = parse_perturbations("jpeg:75, resize:0.5,blur:1.0,jpeg:75")
    assert [p.name for p in perts] == ["none", "jpeg:75", "resize:0.5", "blur:1"]
    assert perts[0](rgb) is rgb
    assert perts[2](rgb).shape == (20, 24, 3)
    assert [p.name for p in parse_perturbations(None)] == ["none"]
    for bad in ("jpeg:101", "jpeg", "sharpen:1", "resize:0", "blur:x"):
        with pytest.raises(ValueError):
            Perturbation.parse(bad)
