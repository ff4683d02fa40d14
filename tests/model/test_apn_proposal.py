"""BandProposer (reference §2.2): shapes sized by the crop, anchored boundaries, the validity filter."""

import torch

from apncli.model.proposal import BandProposer

H, W_HALF, K = 32, 17, 3


def _proposer() -> BandProposer:
    torch.manual_seed(0)
    return BandProposer(H, W_HALF, K).eval()


def test_structure_is_sized_by_the_crop() -> None:
    p = _proposer()
    assert p.x_proposer.collapse.kernel_size == (3, W_HALF) and p.x_proposer.collapse.groups == 3
    assert p.y_proposer.collapse.kernel_size == (H, 3) and p.y_proposer.collapse.groups == 3
    assert len(p.x_proposer.body) == 3
    necks = [m for m in p.y_proposer.neck if isinstance(m, torch.nn.Linear)]
    assert len(necks) == 4 and necks[0].in_features == necks[0].out_features == W_HALF
    assert p.x_proposer.boundary_head[-2].out_features == 2 * K
    assert p.y_proposer.score_head[0].out_features == W_HALF // 4
    assert torch.allclose(p.anchors, torch.tensor([0.0, 0.45, 0.9]))


def test_outputs_are_anchored_and_filtered() -> None:
    p = _proposer()
    out = p(torch.rand(2, 3, H, W_HALF))
    for name in ("raw_starts_x", "ends_y", "valid_x", "scores_x", "scores_y"):
        assert getattr(out, name).shape == (2, 3, K)
    assert out.scores.shape == (2, 3, K)
    offsets = out.raw_starts_x - p.anchors  # sigmoid offsets from the anchors
    assert (offsets > 0).all() and (offsets < 1).all()
    assert torch.equal(out.valid_x, out.raw_ends_x > out.raw_starts_x)
    kept = out.valid_x
    assert torch.equal(out.starts_x[kept], out.raw_starts_x[kept])
    assert (out.starts_x[~kept] == 0).all() and (out.ends_x[~kept] == 0).all()
    assert (out.scores_x[~kept] == 0).all()


def test_inverted_boundaries_are_all_invalid() -> None:
    p = _proposer()
    last = p.x_proposer.boundary_head[-2]
    with torch.no_grad():  # push start offsets to ~1 and end offsets to ~0: e < s everywhere
        last.weight.zero_()
        last.bias[:K], last.bias[K:] = 20.0, -20.0
    out = p(torch.rand(2, 3, H, W_HALF))
    assert not out.valid_x.any()
    assert (out.starts_x == 0).all() and (out.ends_x == 0).all()
    assert (out.raw_starts_x > out.raw_ends_x).all()


def test_permuted_moves_k_before_channels() -> None:
    out = _proposer()(torch.rand(1, 3, H, W_HALF))
    assert torch.equal(out.permuted().ends_y, out.ends_y.transpose(1, 2))


def test_convolutions_see_nchw_contiguous_input_even_from_a_channels_last_spectrum() -> None:
    """On a channels-last input the 3-channel 1x1 convolutions take oneDNN's slow path (10x per call on AMD
    EPYC): the proposer converts once, and proposes exactly what it proposes on the NCHW input."""
    torch.manual_seed(0)
    proposer = _proposer().eval()
    layouts: list[bool] = []
    for conv in (m for m in proposer.modules() if isinstance(m, torch.nn.Conv2d)):
        conv.register_forward_pre_hook(lambda _m, args: layouts.append(args[0].is_contiguous()))
    z = torch.rand(2, 3, H, W_HALF)
    with torch.inference_mode():
        plain = proposer(z)
        from_channels_last = proposer(z.contiguous(memory_format=torch.channels_last))
    assert layouts and all(layouts)
    assert torch.equal(plain.starts_x, from_channels_last.starts_x)
    assert torch.equal(plain.ends_y, from_channels_last.ends_y)
