"""APN forward: output contract, inference shortcut, determinism, layouts and where gradients go."""

from dataclasses import replace

import pytest
import torch
from torch.nn import functional as F

from apncli.model import APN, APNOutput, build_model, get_config

TINY = get_config("tiny")


def _model(config=TINY, seed: int = 0) -> APN:
    torch.manual_seed(seed)
    return build_model(config)


def _images(batch: int, crop: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, crop, crop, generator=torch.Generator().manual_seed(seed))


def _check_shapes(out: APNOutput, batch: int, config) -> None:
    k, d = config.num_bands, config.feature_dim
    for name in ("logits", "logits_freq", "logits_spatial"):
        assert getattr(out, name).shape == (batch, 2)
    for name in ("f_art", "f_irr", "f_art_spatial", "f_irr_spatial", "f_art_freq", "f_irr_freq"):
        assert getattr(out, name).shape == (batch, d)
    assert out.band_weights.shape == (batch, k)
    assert ((out.band_weights > 0) & (out.band_weights < 1)).all()
    for prop in (out.amplitude, out.phase):
        assert prop.starts_x.shape == prop.raw_ends_y.shape == (batch, 3, k)


def test_tiny_output_contract() -> None:
    model = _model().eval()
    x = _images(2, TINY.crop)
    out = model(x, return_images=True)
    _check_shapes(out, 2, TINY)
    assert out.art_images.shape == out.irr_images.shape == (2, TINY.num_bands, 3, 32, 32)
    assert model(x).art_images is None
    masks = model.band_masks(out)
    assert masks["amplitude"].shape == masks["phase"].shape == (2, 3, TINY.num_bands, 32, 17)
    assert torch.allclose(out.f_art, (out.f_art_spatial + out.f_art_freq) / 2)
    assert torch.allclose(out.f_irr, (out.f_irr_spatial + out.f_irr_freq) / 2)
    assert torch.allclose(out.logits, model.classifier(out.f_art))


def test_lite_output_contract() -> None:
    config = get_config("lite")
    model = _model(config).eval()
    with torch.inference_mode():
        _check_shapes(model(_images(1, config.crop)), 1, config)


def test_inference_shortcut_gives_the_same_logits() -> None:
    model = _model().eval()
    x = _images(3, TINY.crop)
    full, short = model(x), model(x, irrelevant=False)
    assert short.f_irr is None and short.f_irr_freq is None and short.irr_images is None
    assert torch.allclose(full.logits, short.logits, atol=1e-6)
    p = model.probability(x)
    assert p.shape == (3,) and ((p > 0) & (p < 1)).all()
    assert torch.allclose(p, torch.softmax(full.logits, -1)[:, 1], atol=1e-6)


def test_eval_is_deterministic_and_seeded_builds_match() -> None:
    x = _images(2, TINY.crop)
    a, b = _model(seed=3).eval(), _model(seed=3).eval()
    assert torch.equal(a(x).logits, a(x).logits)
    assert torch.equal(a(x).logits, b(x).logits)


def test_channels_last_model_agrees() -> None:
    model = _model().eval()
    x = _images(2, TINY.crop)
    expected = model(x).logits
    model = model.to(memory_format=torch.channels_last)
    got = model(x.contiguous(memory_format=torch.channels_last)).logits
    assert torch.allclose(got, expected, atol=1e-5)


def test_rejects_wrong_input_shape() -> None:
    with pytest.raises(ValueError, match="expects Bx3x32x32"):
        _model()(torch.rand(1, 3, 64, 64))


def test_parameter_groups_split_off_the_bases() -> None:
    model = _model()
    bases, others = model.base_parameters(), model.other_parameters()
    assert [p.shape for p in bases] == [(TINY.base_rank, TINY.feature_dim)] * 2
    assert len(bases) + len(others) == sum(p.requires_grad for p in model.parameters())
    r = TINY.base_rank
    assert torch.equal(model.spatial_bases.semantic_base[:, :r], torch.eye(r))
    assert torch.equal(model.spatial_bases.generative_base[:, -r:], torch.eye(r))
    assert model.spatial_bases.semantic_base[:, r:].abs().sum() == 0


def _band_loss(out: APNOutput, eps: float = 0.01) -> torch.Tensor:
    """L_band (reference §5.1) on the unfiltered boundaries of both proposers and both axes."""
    total = torch.zeros(())
    for prop in (out.amplitude, out.phase):
        for s, e in ((prop.raw_starts_x, prop.raw_ends_x), (prop.raw_starts_y, prop.raw_ends_y)):
            terms = F.relu(s - e + eps) + F.relu(s - 1) + F.relu(e - 1)
            total = total + terms.sum((1, 2)).mean()
    return total


def _task_loss(out: APNOutput, y: torch.Tensor) -> torch.Tensor:
    """The three cross-entropies plus the two branch alignments (all features reach some loss)."""
    ce = sum(
        F.cross_entropy(out_logits, y) for out_logits in (out.logits, out.logits_freq, out.logits_spatial)
    )
    align = ((out.f_art_spatial - out.f_art_freq) ** 2).sum(1).mean()
    return ce + align + ((out.f_irr_spatial - out.f_irr_freq) ** 2).sum(1).mean()


def _params_without_grad(model: APN, loss: torch.Tensor) -> set[str]:
    """Names of trainable parameters that ``loss`` leaves without a (non-zero) gradient."""
    model.zero_grad(set_to_none=True)
    loss.backward()
    trainable = ((n, p) for n, p in model.named_parameters() if p.requires_grad)
    return {n for n, p in trainable if p.grad is None or not p.grad.any()}


@pytest.mark.parametrize("branches", ["spatial", "frequency"])
def test_an_ablated_branch_neither_runs_nor_feeds_the_score(branches: str) -> None:
    """The ablations train and score one branch alone: the other's features alias it, its modules get no
    gradient, and without the frequency branch there are no band proposals."""
    model = _model(replace(TINY, name=f"tiny-{branches}", branches=branches)).train()
    out = model(_images(2, TINY.crop))
    kept = out.f_art_spatial if branches == "spatial" else out.f_art_freq
    assert out.f_art_spatial is out.f_art_freq is kept and torch.allclose(out.f_art, kept)
    assert (out.amplitude is None and out.band_weights.shape == (2, 0)) == (branches == "spatial")
    loss = _task_loss(out, torch.tensor([0, 1])) + (out.f_irr ** 2).sum()
    unused = _params_without_grad(model, loss)
    dropped = ("amplitude_proposer", "generative_head") if branches == "spatial" else ("spatial_backbone",)
    assert all(any(n.startswith(d) for n in unused) for d in dropped)
    assert not any(n.startswith(("classifier", "spatial_bases" if branches == "spatial" else "art_proj"))
                   for n in unused)


def _proposer_params(model: APN) -> set[str]:
    return {
        n for n, p in model.named_parameters() if n.split(".")[0].endswith("_proposer") and p.requires_grad
    }


def test_only_the_unused_score_heads_are_frozen() -> None:
    """The proposers' score heads p feed nothing (§8.3): frozen, and exactly those parameters."""
    model = _model()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(".score_head." in n for n in frozen)
    assert len(frozen) == 2 * 2 * 4 * 2  # 2 proposers x 2 axes x 4 Linear layers x (weight, bias)
    assert all(".score_head." not in n for n in _proposer_params(model))


def test_task_and_band_losses_reach_every_trainable_parameter() -> None:
    model = _model().train()
    out = model(_images(2, TINY.crop))
    assert _params_without_grad(model, _task_loss(out, torch.tensor([0, 1])) + _band_loss(out)) == set()


def test_hard_masks_give_proposers_no_task_gradient_only_band_loss() -> None:
    """Hard masks are a non-differentiable function of the boundaries: only L_band trains the proposers."""
    model = _model().train()
    out = model(_images(2, TINY.crop))
    assert _params_without_grad(model, _task_loss(out, torch.tensor([0, 1]))) == _proposer_params(model)
    out = model(_images(2, TINY.crop))
    assert not _params_without_grad(model, _band_loss(out)) & _proposer_params(model)


@pytest.mark.parametrize("mode", ["soft", "straight-through"])
def test_differentiable_masks_give_boundaries_a_task_gradient(mode: str) -> None:
    model = _model(replace(TINY, name=f"tiny-{mode}", mask=mode)).train()
    out = model(_images(2, TINY.crop))
    assert _params_without_grad(model, _task_loss(out, torch.tensor([0, 1]))) == set()


def test_straight_through_masks_score_like_hard_masks() -> None:
    """Same forward values as the paper's hard masks (only the gradient differs)."""
    torch.manual_seed(0)
    hard = _model(TINY).eval()
    straight = _model(replace(TINY, name="tiny-st", mask="straight-through")).eval()
    straight.load_state_dict(hard.state_dict())
    x = _images(3, TINY.crop)
    with torch.no_grad():
        assert torch.allclose(hard(x).logits, straight(x).logits, atol=1e-5)


@pytest.mark.slow
def test_paper_model_forward_batch_one() -> None:
    config = get_config("paper")
    model = _model(config).eval()
    assert 100e6 < sum(p.numel() for p in model.parameters()) < 125e6
    with torch.inference_mode():
        out = model(_images(1, config.crop))
    _check_shapes(out, 1, config)
