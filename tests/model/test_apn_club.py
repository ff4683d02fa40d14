"""CLUB (reference §4.2): a trained estimator ranks dependent pairs above independent ones."""

import torch

from apncli.model import CLUB


def _train(club: CLUB, x: torch.Tensor, y: torch.Tensor, steps: int = 100) -> None:
    opt = torch.optim.Adam(club.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        club.learning_loss(x, y).backward()
        opt.step()


def test_dependent_pairs_get_a_higher_bound_than_independent_ones() -> None:
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(8, 8, generator=g)

    def pairs(dependent: bool) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(256, 8, generator=g)
        y = (
            x @ mix + 0.3 * torch.randn(256, 8, generator=g)
            if dependent
            else torch.randn(256, 8, generator=g)
        )
        return x, y

    estimates = []
    for dependent in (True, False):
        torch.manual_seed(0)
        club = CLUB(8, 8, 32)
        _train(club, *pairs(dependent))
        with torch.no_grad():  # judged on fresh samples, so memorising the training pairs does not help
            estimates.append(club.mi_upper_bound(*pairs(dependent)).item())
    mi_dependent, mi_independent = estimates
    assert mi_dependent > 5.0 and abs(mi_independent) < 1.0


def test_bound_matches_the_pairwise_definition_and_is_differentiable() -> None:
    torch.manual_seed(0)
    club = CLUB(4, 3, 8)
    x, y = torch.randn(6, 4, requires_grad=True), torch.randn(6, 3)
    mu, logvar = club.mu(x), club.logvar(x)
    log_q = -((mu.unsqueeze(1) - y.unsqueeze(0)) ** 2) / logvar.exp().unsqueeze(1) / 2  # [i, j, d]
    expected = (log_q.diagonal(dim1=0, dim2=1).T.sum(-1) - log_q.sum(-1).mean(1)).mean()
    bound = club.mi_upper_bound(x, y)
    assert torch.allclose(bound, expected, atol=1e-5)
    assert torch.allclose(club(x, y), bound)
    bound.backward()
    assert x.grad is not None and x.grad.any()
    assert club.learning_loss(x.detach(), y).shape == ()
