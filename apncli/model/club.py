"""CLUB: a variational upper bound on mutual information (Cheng et al., ICML 2020; reference §4.2).

The detector minimises the bound between its artifact and artifact-irrelevant features ("implicit
purification"); the estimator itself is trained separately, on detached features, by maximising the
log-likelihood of q(y|x) = N(μ(x), diag var(x)).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CLUB(nn.Module):
    """q(y|x) with μ and log var MLPs (x_dim → hidden/2 → y_dim; log var squashed by tanh)."""

    def __init__(self, x_dim: int = 256, y_dim: int = 256, hidden: int = 256) -> None:
        super().__init__()
        mid = max(hidden // 2, 1)
        self.mu = nn.Sequential(nn.Linear(x_dim, mid), nn.ReLU(inplace=True), nn.Linear(mid, y_dim))
        self.logvar = nn.Sequential(
            nn.Linear(x_dim, mid), nn.ReLU(inplace=True), nn.Linear(mid, y_dim), nn.Tanh()
        )

    def mi_upper_bound(self, x: Tensor, y: Tensor) -> Tensor:
        """Î = mean_i [log q(y_i|x_i) - mean_j log q(y_j|x_i)] (constants cancel), a scalar.

        Differentiable in x and y, so the detector can minimise it through its features.
        """
        mu, logvar = self.mu(x), self.logvar(x)
        inv_var = torch.exp(-logvar)
        positive = -((mu - y) ** 2) * inv_var / 2  # (N, D)
        # mean_j (μ(x_i) - y_j)² expanded, which avoids an (N, N, D) tensor
        mean_sq = (mu**2) - 2 * mu * y.mean(0) + (y**2).mean(0)
        negative = -mean_sq * inv_var / 2
        return (positive - negative).sum(-1).mean()

    def learning_loss(self, x: Tensor, y: Tensor) -> Tensor:
        """Negative log-likelihood of y under q(·|x) (constants dropped): the estimator's training loss."""
        mu, logvar = self.mu(x), self.logvar(x)
        return -(-((mu - y) ** 2) / logvar.exp() - logvar).sum(-1).mean()

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.mi_upper_bound(x, y)


__all__ = ["CLUB"]
