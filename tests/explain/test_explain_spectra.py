"""Frequency geometry: the centred full plane and the cycles/pixel ranges must mean what they say."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from apncli.explain import spectra
from apncli.model.spectrum import band_masks


@pytest.mark.parametrize("shape", [(32, 32), (16, 24), (15, 9)])
def test_mirrored_half_plane_equals_shifted_full_fft(shape: tuple[int, int]) -> None:
    """Conjugate-symmetry mirroring + fftshift of |rfft2| is exactly fftshift(|fft2|)."""
    x = np.random.default_rng(1).random(shape)
    half = np.abs(np.fft.rfft2(x))
    expected = np.fft.fftshift(np.abs(np.fft.fft2(x)))
    np.testing.assert_allclose(spectra.centred_full_plane(half, shape[1]), expected, atol=1e-9)


def test_row_stripe_lands_at_its_frequencies_in_the_centred_plane() -> None:
    """A proposal with rows 3..4 and column 16 (f_x = 0.5) on a 32² crop, placed by meaning, not by code."""
    n = 32
    mask = band_masks(torch.tensor(3.2 / n), torch.tensor(4.9 / n), torch.tensor(16.1 / 17),
                      torch.tensor(16.9 / 17), n, n // 2 + 1).numpy()
    assert mask.shape == (n, n // 2 + 1)
    full = spectra.centred_full_plane(mask, n)
    f = (np.arange(n) - n // 2) / n  # cycles/pixel of centred index i
    for i, fy in enumerate(f):
        for j, fx in enumerate(f):
            in_rows = (fx >= 0 and fy in (3 / n, 4 / n)) or (fx < 0 and fy in (-3 / n, -4 / n))
            assert full[i, j] == float(in_rows or fx == -0.5), (fy, fx)


def test_row_intervals_split_where_fft_order_wraps() -> None:
    assert spectra.row_intervals(2, 5, 32) == [(2 / 32, 5 / 32)]
    assert spectra.row_intervals(14, 18, 32) == [(14 / 32, 15 / 32), (-0.5, -14 / 32)]
    assert spectra.row_intervals(20, 31, 32) == [(-12 / 32, -1 / 32)]
    assert spectra.row_intervals(0, 0, 32) == [(0.0, 0.0)]
    assert spectra.column_interval(0, 16, 32) == (0.0, 0.5)


def test_hard_bins_match_the_model_masks() -> None:
    starts, ends = torch.tensor([0.0, 0.11, 0.52]), torch.tensor([0.0, 0.2, 1.7])
    a, b = spectra.hard_bins(starts, ends, 32)
    rows = band_masks(starts, ends, torch.zeros(3), torch.zeros(3), 32, 17)[..., 1:]  # drop DC column
    for k in range(3):
        selected = torch.nonzero(rows[k].amax(-1)).flatten().tolist()
        assert selected == list(range(int(a[k]), int(b[k]) + 1))


def test_weighted_band_map_is_weight_share() -> None:
    masks = torch.zeros(3, 2, 4, 3)
    masks[:, 0, 0] = 1
    masks[:, 1, :2] = 1
    out = spectra.weighted_band_map(masks, torch.tensor([0.75, 0.25]))
    assert out.shape == (3, 4, 3)
    assert float(out[0, 0, 0]) == pytest.approx(1.0)
    assert float(out[0, 1, 0]) == pytest.approx(0.25)
    assert float(out[0, 2, 0]) == 0.0
    assert float(spectra.weighted_band_map(masks, torch.zeros(2)).abs().sum()) == 0.0
