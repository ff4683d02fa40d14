"""Band masks on the unshifted rfft2 grid, and the artifact/irrelevant split (reference §2.1-§2.4)."""

import torch

from apncli.model.spectrum import band_masks, hermitian_edges, polar, recombine, spectrum, split_bands

H, W_HALF = 8, 5  # an 8x8 image has an 8x5 rfft2 grid


def _mask(sx: float, ex: float, sy: float, ey: float, **kw: object) -> torch.Tensor:
    t = lambda v: torch.tensor([v])  # noqa: E731
    return band_masks(t(sx), t(ex), t(sy), t(ey), H, W_HALF, **kw)[0]


def _expected(rows: list[int], cols: list[int]) -> torch.Tensor:
    m = torch.zeros(H, W_HALF)
    m[rows, :] = 1
    m[:, cols] = 1
    return m


def test_mask_is_row_stripe_union_column_stripe_with_floor() -> None:
    # rows floor(0.25*8)=2 .. floor(0.5*8)=4; columns floor(0.5*5)=2 .. floor(0.75*5)=3
    assert torch.equal(_mask(0.25, 0.5, 0.5, 0.75), _expected([2, 3, 4], [2, 3]))
    # a proposal whose end floors onto its start selects a single row / column
    assert torch.equal(_mask(0.25, 0.3, 0.6, 0.7), _expected([2], [3]))


def test_invalid_proposal_selects_dc_row_and_dc_column() -> None:
    assert torch.equal(_mask(0.0, 0.0, 0.0, 0.0), _expected([0], [0]))


def test_coordinates_clamp_to_the_grid() -> None:
    # boundaries past 1 (anchor + sigmoid reaches ~1.9) land on the last row / column
    assert torch.equal(_mask(1.3, 1.9, 1.05, 1.5), _expected([H - 1], [W_HALF - 1]))
    assert torch.equal(_mask(-0.5, 0.0, 0.0, 2.0), _expected([0], list(range(W_HALF))))


def test_masks_are_batched_and_bool_form_agrees() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.rand(2, 3, 4, generator=g)
    e = s + torch.rand(2, 3, 4, generator=g) * 0.5
    floats = band_masks(s, e, s / 2, e / 2, H, W_HALF)
    assert floats.shape == (2, 3, 4, H, W_HALF) and floats.dtype == torch.float32
    assert set(floats.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(band_masks(s, e, s / 2, e / 2, H, W_HALF, dtype=torch.bool), floats.bool())
    assert torch.equal(floats[1, 2, 3], _mask(s[1, 2, 3], e[1, 2, 3], s[1, 2, 3] / 2, e[1, 2, 3] / 2))


def test_hard_masks_carry_no_gradient() -> None:
    s = torch.tensor([0.25], requires_grad=True)
    assert not band_masks(s, s + 0.25, s, s + 0.25, H, W_HALF).requires_grad


def test_soft_mask_is_bounded_and_differentiable_in_boundaries() -> None:
    s = torch.tensor([0.25, 0.5], requires_grad=True)
    e = torch.tensor([0.5, 0.9], requires_grad=True)
    m = band_masks(s, e, s, e, H, W_HALF, mode="soft", tau=1.0)
    assert m.shape == (2, H, W_HALF)
    assert m.min() >= 0 and m.max() <= 1
    (m * torch.rand_like(m)).sum().backward()
    assert s.grad is not None and e.grad is not None
    assert s.grad.abs().min() > 0 and e.grad.abs().min() > 0
    # with a sharp ramp the soft mask approaches the hard one (edges a quarter bin into a bin, where the
    # ramp's rounding and the hard mask's floor agree): rows 2.25..4.25 -> 2..4, columns 1.25..2.25 -> 1..2
    boundaries = (2.25 / H, 4.25 / H, 1.25 / W_HALF, 2.25 / W_HALF)
    sharp = _mask(*boundaries, mode="soft", tau=0.02)
    assert torch.equal(_mask(*boundaries), _expected([2, 3, 4], [1, 2]))
    assert torch.allclose(sharp, _expected([2, 3, 4], [1, 2]), atol=1e-3)


def test_spectrum_round_trip() -> None:
    x = torch.rand(2, 3, 16, 16)
    amp, phase = spectrum(x)
    assert amp.shape == (2, 3, 16, 9) and (amp >= 0).all()
    assert torch.allclose(recombine(amp, phase, (16, 16)), x, atol=1e-5)


def _random_masks(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) < 0.3


def test_art_plus_irr_reconstructs_input_when_masks_coincide() -> None:
    x = torch.rand(2, 3, 16, 16)
    mask = _random_masks((2, 4, 3, 16, 9), seed=1)
    freq = torch.fft.rfft2(x)
    for masks in ((mask, mask), (mask.float(), mask.float())):  # hard fast path and generic path
        art, irr = split_bands(freq, *masks, (16, 16))
        assert art.shape == irr.shape == (2, 4, 3, 16, 16)
        assert torch.allclose(art + irr, x.unsqueeze(1).expand_as(art), atol=1e-4)


def test_hard_split_matches_literal_polar_formula_when_masks_differ() -> None:
    """The trig-free hard path must equal irfft2(M_A·A·e^{i·M_P·P}) literally, quirk included."""
    x = torch.rand(2, 3, 16, 16)
    ma, mp = _random_masks((2, 3, 3, 16, 9), 2), _random_masks((2, 3, 3, 16, 9), 3)
    freq = torch.fft.rfft2(x)
    art, irr = split_bands(freq, ma, mp, (16, 16))
    amp, phase = polar(freq.unsqueeze(1))
    a_art, p_art = ma * amp, mp * phase
    assert torch.allclose(art, recombine(a_art, p_art, (16, 16)), atol=1e-5)
    assert torch.allclose(irr, recombine(amp - a_art, phase - p_art, (16, 16)), atol=1e-5)
    art_only, none = split_bands(freq, ma, mp, (16, 16), irrelevant=False)
    assert none is None and torch.equal(art_only, art)


def _half_rows_irfft2(original):
    """An inverse FFT that, like some GPU backends, reads only rows 0..H/2 of columns 0 and W/2 and
    mirrors the rest: identical to the CPU's on a Hermitian half spectrum, different on any other."""

    def irfft2(spec: torch.Tensor, s: tuple[int, int]) -> torch.Tensor:
        spec = spec.clone()
        rows, width = spec.shape[-2], s[-1]
        for column in (0, width // 2):
            for u in range(rows // 2 + 1, rows):
                spec[..., u, column] = spec[..., rows - u, column].conj()
        return original(spec, s=s)

    return irfft2


def test_split_is_the_same_whatever_the_backend_assumes_of_the_edge_columns(monkeypatch) -> None:
    """Band masks break the Hermitian symmetry of columns 0 and W/2; irfft2 is backend-defined there.
    The split makes them Hermitian first, so the CPU's convention and a half-rows one give one image."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, H, H, generator=g)
    freq = torch.fft.rfft2(x)
    b = lambda: torch.rand(2, 2, 3, generator=g)  # noqa: E731
    amp_masks = band_masks(b() * 0.5, b() * 0.5 + 0.5, b() * 0.5, b() * 0.5 + 0.5, H, W_HALF)
    phase_masks = band_masks(b() * 0.5, b() * 0.5 + 0.5, b() * 0.5, b() * 0.5 + 0.5, H, W_HALF)
    expected = split_bands(freq, amp_masks, phase_masks, (H, H))
    monkeypatch.setattr(torch.fft, "irfft2", _half_rows_irfft2(torch.fft.irfft2))
    for masks in ((amp_masks, phase_masks), (amp_masks.bool(), phase_masks.bool())):
        got = split_bands(freq, *masks, (H, H))
        for image, reference in zip(got, expected, strict=True):
            assert torch.allclose(image, reference, atol=1e-5)


def test_hermitian_edges_leaves_the_cpu_result_unchanged() -> None:
    g = torch.Generator().manual_seed(1)
    spec = torch.complex(torch.randn(3, H, W_HALF, generator=g), torch.randn(3, H, W_HALF, generator=g))
    before = torch.fft.irfft2(spec, s=(H, H))
    after = torch.fft.irfft2(hermitian_edges(spec.clone(), H), s=(H, H))
    assert torch.allclose(before, after, atol=1e-5)
