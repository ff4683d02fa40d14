"""The APN training objective (reference §4–§5.1), as pure functions of an ``APNOutput``.

L = CE(C(f̄_art)) + CE(C(f^F_art)) + CE(C(f^S_art))               three classification terms
  + L_gen + L_se1 [+ L_se2 + L_se3 when a semantic teacher exists]   branch alignment (squared L2)
  + L_band + L_pull + Î_CLUB                                        band validity, base orthogonality, MI

Every term has its own weight (all 1 by default, as in the reference). The CLUB estimator itself is
trained elsewhere (trainer) on detached features; here its bound only flows into the detector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from apncli.model import APNOutput, BandProposal

__all__ = [
    "FEATURE_SPACES",
    "MI_VARIABLES",
    "LossWeights",
    "band_validity_loss",
    "detector_loss",
    "mi_pairs",
    "pull_loss",
    "squared_l2",
]

#: Which (x, y) feature pairs the CLUB bound is taken over: the fused pair, or one pair per branch.
MI_VARIABLES = ("fused", "branch")
#: Where implicit purification compares features: as they are ("raw", the reference), or L2-normalised
#: ("unit", non-paper): the alignment terms become 2 - 2 cos, which shrinking the features cannot meet, and
#: CLUB sees bounded features, which growing them cannot fool.
FEATURE_SPACES = ("raw", "unit")


@dataclass(frozen=True)
class LossWeights:
    """Scale of each term of the detector loss (reference defaults: all 1)."""

    ce: float = 1.0
    ce_freq: float = 1.0
    ce_spatial: float = 1.0
    gen: float = 1.0
    se1: float = 1.0
    se2: float = 1.0
    se3: float = 1.0
    band: float = 1.0
    pull: float = 1.0
    mi: float = 1.0

    @classmethod
    def parse(cls, spec: str | None) -> LossWeights:
        """``"mi=0,pull=0.1"`` → weights with those terms changed; unknown names are an error."""
        values = asdict(cls())
        for part in (spec or "").split(","):
            if not part.strip():
                continue
            name, sep, raw = part.partition("=")
            name = name.strip()
            if not sep or name not in values:
                raise ValueError(f"bad loss weight {part.strip()!r}; names: {', '.join(values)}")
            try:
                values[name] = float(raw)
            except ValueError:
                raise ValueError(f"loss weight {name} must be a number, got {raw!r}") from None
            if values[name] < 0:
                raise ValueError(f"loss weight {name} must be >= 0")
        return cls(**values)

    def to_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def squared_l2(a: Tensor, b: Tensor) -> Tensor:
    """‖a − b‖² summed over features, averaged over the batch (the reference's alignment losses)."""
    return ((a - b) ** 2).sum(-1).mean()


def unit_squared_l2(a: Tensor, b: Tensor) -> Tensor:
    """``squared_l2`` of the L2-normalised features: 2 − 2·cos(a, b), in [0, 4], averaged over the batch."""
    return squared_l2(F.normalize(a, dim=-1), F.normalize(b, dim=-1))


def band_validity_loss(proposals: Iterable[BandProposal], eps: float = 0.01) -> Tensor:
    """Σ over proposers and axes of mean_b Σ_{c,k} [relu(s−e+ε) + relu(s−1) + relu(e−1)] on raw bounds."""
    total: Tensor | None = None
    for prop in proposals:
        for s, e in ((prop.raw_starts_x, prop.raw_ends_x), (prop.raw_starts_y, prop.raw_ends_y)):
            term = (F.relu(s - e + eps) + F.relu(s - 1) + F.relu(e - 1)).flatten(1).sum(1).mean()
            total = term if total is None else total + term
    if total is None:
        raise ValueError("band_validity_loss needs at least one proposal")
    return total


def pull_loss(semantic_base: Tensor, generative_base: Tensor) -> Tensor:
    """Σ_ij |⟨b̂_irr_i, b̂_art_j⟩| over row-normalised bases: pushes the two subspaces apart."""
    irr = F.normalize(semantic_base, dim=1)
    art = F.normalize(generative_base, dim=1)
    return (irr @ art.T).abs().sum()


def mi_pairs(out: APNOutput, variables: str, space: str = "raw") -> list[tuple[Tensor, Tensor]]:
    """(x, y) pairs for CLUB: x = artifact feature, y = artifact-irrelevant feature, in ``space``."""
    if variables == "fused":
        pairs = [(out.f_art, out.f_irr)]
    elif variables == "branch":
        pairs = [(out.f_art_spatial, out.f_irr_spatial), (out.f_art_freq, out.f_irr_freq)]
    else:
        raise ValueError(f"unknown MI variables {variables!r}; expected one of {MI_VARIABLES}")
    if space == "unit":
        return [(F.normalize(x, dim=-1), F.normalize(y, dim=-1)) for x, y in pairs]
    return pairs


def detector_loss(
    out: APNOutput,
    labels: Tensor,
    weights: LossWeights,
    bases: tuple[Tensor, Tensor],
    mi_bound: Callable[[APNOutput], Tensor] | None = None,
    teacher: Tensor | None = None,
    teacher_mask: Tensor | None = None,
    space: str = "raw",
) -> tuple[Tensor, dict[str, Tensor]]:
    """Total detector loss and its weighted terms (detached copies for logging are the caller's job).

    ``bases`` = (semantic, generative) decomposition bases; ``mi_bound`` returns Î_CLUB for this output
    (None or weight 0 skips it); ``teacher`` (B, D) with ``teacher_mask`` (B,) enables L_se2/L_se3 on the
    rows that have a teacher feature. ``space`` (``FEATURE_SPACES``) is where L_gen and L_se1-3 compare the
    features (``mi_bound`` must use the same space: ``mi_pairs``).

    Measured (pretrained-lite0, 2026-11-30): raw, the alignment terms start ~450x larger than the
    cross-entropies, training shrinks the features to meet them and after one epoch the validation AUC was
    0.49; with unit alignment but raw CLUB pairs, the features grew until Î_CLUB reached -24,000 by step 140.
    """
    if space not in FEATURE_SPACES:
        raise ValueError(f"unknown feature space {space!r}; expected one of {FEATURE_SPACES}")
    align = unit_squared_l2 if space == "unit" else squared_l2
    terms: dict[str, Tensor] = {}

    def add(name: str, weight: float, fn: Callable[[], Tensor]) -> None:
        if weight:
            terms[name] = weight * fn()

    add("ce", weights.ce, lambda: F.cross_entropy(out.logits.float(), labels))
    add("ce_freq", weights.ce_freq, lambda: F.cross_entropy(out.logits_freq.float(), labels))
    add("ce_spatial", weights.ce_spatial, lambda: F.cross_entropy(out.logits_spatial.float(), labels))
    add("gen", weights.gen, lambda: align(out.f_art_spatial.float(), out.f_art_freq.float()))
    add("se1", weights.se1, lambda: align(out.f_irr_spatial.float(), out.f_irr_freq.float()))
    if teacher is not None and teacher_mask is not None and bool(teacher_mask.any()):
        rows = teacher_mask.bool()
        target = teacher[rows].float()
        add("se2", weights.se2, lambda: align(out.f_irr_spatial[rows].float(), target))
        add("se3", weights.se3, lambda: align(out.f_irr_freq[rows].float(), target))
    proposals = [p for p in (out.amplitude, out.phase) if p is not None]
    if proposals:  # a model without the frequency branch proposes no bands
        add("band", weights.band, lambda: band_validity_loss(proposals))
    add("pull", weights.pull, lambda: pull_loss(*bases))
    if mi_bound is not None:
        add("mi", weights.mi, lambda: mi_bound(out))
    if not terms:
        raise ValueError("every loss weight is 0: nothing to train")
    total = torch.stack(list(terms.values())).sum()
    return total, terms
