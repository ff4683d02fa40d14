"""The APN objective's terms, on hand-made proposals and on a tiny model's real output."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from apncli.model import BandProposal, build_model
from apncli.training.losses import (
    LossWeights,
    band_validity_loss,
    detector_loss,
    mi_pairs,
    pull_loss,
    squared_l2,
)


def _proposal(starts: list[float], ends: list[float]) -> BandProposal:
    s = torch.tensor(starts).view(1, 1, -1)
    e = torch.tensor(ends).view(1, 1, -1)
    z = torch.zeros_like(s)
    return BandProposal(s, e, z, z + 0.5, s, e, z, z, z.bool(), z.bool(), z, z)


def test_band_validity_loss_by_hand() -> None:
    # x axis: k0 valid (0.1..0.5): 0; k1 inverted (0.6 > 0.4): 0.2 + eps; k2 beyond 1: (1.2-1) + (1.5-1)
    # y axis: starts 0, ends 0.5 → relu(0 - 0.5 + 0.01) = 0 each
    prop = _proposal([0.1, 0.6, 1.2], [0.5, 0.4, 1.5])
    expected = (0.2 + 0.01) + 0.2 + 0.5
    assert float(band_validity_loss([prop])) == pytest.approx(expected, abs=1e-6)
    assert float(band_validity_loss([prop, prop])) == pytest.approx(2 * expected, abs=1e-6)


def test_pull_loss_is_zero_for_the_initial_split_and_rank_for_identical_bases() -> None:
    eye = torch.eye(4)
    irr = torch.cat([eye, torch.zeros(4, 4)], 1)
    art = torch.cat([torch.zeros(4, 4), eye], 1)
    assert float(pull_loss(irr, art)) == 0.0
    assert float(pull_loss(irr, 3 * irr)) == pytest.approx(4.0)  # row-normalised, so scale-free


def test_squared_l2_sums_features_and_averages_batch() -> None:
    a, b = torch.zeros(2, 3), torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.0, 0.0]])
    assert float(squared_l2(a, b)) == pytest.approx((3 + 4) / 2)


def test_loss_weights_parse() -> None:
    w = LossWeights.parse("mi=0, pull=0.5")
    assert w.mi == 0 and w.pull == 0.5 and w.ce == 1
    for bad in ("nope=1", "mi", "mi=x", "mi=-1"):
        with pytest.raises(ValueError):
            LossWeights.parse(bad)


@pytest.fixture(scope="module")
def tiny_output():
    torch.manual_seed(0)
    model = build_model("tiny")
    with torch.no_grad():
        out = model(torch.rand(4, 3, 32, 32))
    return model, out


def test_detector_loss_terms_weights_and_teacher(tiny_output) -> None:
    model, out = tiny_output
    labels = torch.tensor([0, 1, 0, 1])
    bases = (model.spatial_bases.semantic_base, model.spatial_bases.generative_base)
    total, terms = detector_loss(out, labels, LossWeights(), bases, mi_bound=lambda o: torch.tensor(0.25))
    assert set(terms) == {"ce", "ce_freq", "ce_spatial", "gen", "se1", "band", "pull", "mi"}
    assert float(total.detach()) == pytest.approx(sum(float(v.detach()) for v in terms.values()), rel=1e-6)
    assert float(terms["mi"]) == 0.25
    teacher = torch.randn(4, model.config.feature_dim)
    mask = torch.tensor([True, False, True, False])
    _, with_teacher = detector_loss(out, labels, LossWeights(mi=0, se3=2.0), bases, None, teacher, mask)
    assert "mi" not in with_teacher and {"se2", "se3"} <= set(with_teacher)
    rows = mask.nonzero().flatten()
    assert float(with_teacher["se2"]) == pytest.approx(
        float(squared_l2(out.f_irr_spatial[rows], teacher[rows]))
    )
    assert float(with_teacher["se3"]) == pytest.approx(
        2 * float(squared_l2(out.f_irr_freq[rows], teacher[rows]))
    )
    with pytest.raises(ValueError, match="nothing to train"):
        zero = LossWeights(**dict.fromkeys(LossWeights().to_dict(), 0.0))
        detector_loss(out, labels, zero, bases)


def test_unit_space_cannot_be_met_by_rescaling_the_features(tiny_output) -> None:
    """``space="unit"`` compares directions: scaling the features leaves L_gen and the CLUB pairs unchanged
    (the paper's squared L2 falls with the scale, which is how features collapse to meet it)."""
    model, out = tiny_output
    labels = torch.tensor([0, 1, 0, 1])
    bases = (model.spatial_bases.semantic_base, model.spatial_bases.generative_base)
    shrunk = dataclasses.replace(out, f_art_spatial=out.f_art_spatial * 0.1, f_art_freq=out.f_art_freq * 0.1)
    weights = LossWeights(se1=0, band=0, pull=0)
    gen = {a: [float(detector_loss(o, labels, weights, bases, space=a)[1]["gen"]) for o in (out, shrunk)]
           for a in ("raw", "unit")}
    assert gen["raw"][1] == pytest.approx(gen["raw"][0] * 0.01, rel=1e-4)
    assert gen["unit"][1] == pytest.approx(gen["unit"][0], rel=1e-4) and 0 < gen["unit"][0] <= 4
    big = dataclasses.replace(out, f_art=out.f_art * 50, f_irr=out.f_irr * 50)
    (x, y), (x50, y50) = mi_pairs(out, "fused", "unit")[0], mi_pairs(big, "fused", "unit")[0]
    assert torch.allclose(x, x50, atol=1e-6) and torch.allclose(y, y50, atol=1e-6)
    assert torch.allclose(x.norm(dim=-1), torch.ones(len(x)))
    with pytest.raises(ValueError, match="feature space"):
        detector_loss(out, labels, weights, bases, space="cosine")


def test_mi_pairs(tiny_output) -> None:
    _, out = tiny_output
    assert mi_pairs(out, "fused")[0][0] is out.f_art
    assert [x is out.f_art_spatial for x, _ in mi_pairs(out, "branch")] == [True, False]
    with pytest.raises(ValueError):
        mi_pairs(out, "other")
