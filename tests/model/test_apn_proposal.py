"""BandProposer (reference §2.2): shapes sized by the crop, anchored boundaries, the validity filter."""

import pytest
import torch

from apncli.model.proposal import AxisProposer, BandProposer

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


def _randomise_batchnorm(module: torch.nn.Module) -> None:
    for bn in (m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 2)
        bn.bias.data.uniform_(-1, 1)


def _as_convolutions(axis: AxisProposer, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The axis proposer run through its modules as convolutions: what its parameters mean in a checkpoint."""
    for block in axis.body:
        out = block.relu(block.bn1(block.conv1(z)))
        out = block.relu(block.bn2(block.conv2(out)))
        z = block.relu(block.bn3(block.conv3(out)) + z)
    feat = axis.neck(axis.collapse(z).flatten(2))
    return axis.score_head(feat), axis.boundary_head(feat)


@pytest.mark.parametrize(("height", "batch"), [(H, 2), (128, 3)])
def test_the_proposers_tensor_ops_compute_their_convolutions(height: int, batch: int) -> None:
    """The 3-channel convolutions run as plain tensor ops (oneDNN is 10-50x slow on them): same parameters,
    same outputs as the convolution modules, up to float rounding, on any memory layout."""
    torch.manual_seed(0)
    width = height // 2 + 1
    proposer = BandProposer(height, width, K).eval()
    _randomise_batchnorm(proposer)
    z = torch.rand(batch, 3, height, width) * 5
    with torch.inference_mode():
        normed = proposer.norm(z)
        for axis in (proposer.x_proposer, proposer.y_proposer):
            for got, want in zip(axis(normed), _as_convolutions(axis, normed), strict=True):
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        plain = proposer(z)
        from_channels_last = proposer(z.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(plain.starts_x, from_channels_last.starts_x)
    torch.testing.assert_close(plain.ends_y, from_channels_last.ends_y)


def test_the_proposer_trains_through_its_tensor_ops() -> None:
    """Every convolution parameter of the bottlenecks and the collapse gets a gradient."""
    proposer = BandProposer(H, W_HALF, K).train()
    out = proposer(torch.rand(2, 3, H, W_HALF))
    (out.raw_ends_x.sum() + out.raw_starts_y.sum()).backward()
    convs = [m for m in proposer.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.grad is not None and c.weight.grad.abs().sum() > 0 for c in convs)
