"""q(z|x) families: each turns the encoder's features into a reparameterized
distribution over z with one event dim.

References: Rezende et al. 2014 and Kingma & Welling 2014 (diagonal normal);
Kingma et al. 2016 (inverse autoregressive flow).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import pyro.distributions as dist
from pyro_vae.flows import conditional_affine_autoregressive
import torch
import torch.nn.functional as F
from torch import nn

from inference.options import choose


ScaleName = Literal["softplus", "exp", "clipped_log_variance"]


def _clipped_log_variance(raw: torch.Tensor) -> torch.Tensor:
    return torch.exp(0.5 * F.hardtanh(raw, -6.0, 2.0))


#: name -> the map from a head's raw output to a standard deviation (before the floor):
#: ``"clipped_log_variance"`` reads it as a log-variance clipped to [-6, 2], deviations in
#: [0.05, 2.7] (Tomczak & Welling's code)
SCALES = {"softplus": F.softplus, "exp": torch.exp, "clipped_log_variance": _clipped_log_variance}


class GuideFamily(nn.Module):
    """Base class: ``forward(features) -> q(z|x)``, batch shape ``features.shape[:-1]``.

    :param feature_dim: the encoder's ``out_features``.
    :param z_dim: the latent dimension.
    :param min_scale: a floor on every standard deviation, so q never collapses to a point.
    :param scale: how a raw output becomes a standard deviation: ``"softplus"`` (the
        default: bounded growth), ``"exp"`` (Burda et al.'s: a log standard deviation,
        whose gradient does not vanish as the deviation shrinks; see ``benchmarks/collapse.py``)
        or ``"clipped_log_variance"`` (Tomczak & Welling's: a log-variance clipped to [-6, 2]).
    """

    def __init__(self, feature_dim: int, z_dim: int, min_scale: float = 1e-3, scale: ScaleName = "softplus") -> None:
        super().__init__()
        self.feature_dim, self.z_dim, self.min_scale = feature_dim, z_dim, min_scale
        self.scale, self._positive = scale, choose(SCALES, scale, what="scale")

    def _scale(self, raw: torch.Tensor) -> torch.Tensor:
        return self._positive(raw) + self.min_scale

    def forward(self, features):
        return self.distribution(self.head(features))

    def distribution(self, params: torch.Tensor) -> dist.TorchDistribution:
        """q(z|x) from the head's output (the family's free parameters: what a
        non-amortized guide of the same family optimizes per datum)."""
        raise NotImplementedError(f"{type(self).__name__} has no free-parameter form")


class DiagonalNormal(GuideFamily):
    """N(mu(x), diag(sigma(x)^2)), sigma through softplus with a floor (the default).

    >>> q = DiagonalNormal(feature_dim=8, z_dim=2)(torch.randn(5, 8))
    >>> q.batch_shape, q.event_shape
    (torch.Size([5]), torch.Size([2]))
    """

    def __init__(self, feature_dim: int, z_dim: int, min_scale: float = 1e-3, scale: ScaleName = "softplus") -> None:
        super().__init__(feature_dim, z_dim, min_scale, scale)
        self.head = nn.Linear(feature_dim, 2 * z_dim)

    def distribution(self, params):
        loc, raw = params.chunk(2, dim=-1)
        return dist.Normal(loc, self._scale(raw)).to_event(1)


class LowRankNormal(GuideFamily):
    """N(mu(x), F(x) F(x)^T + diag(d(x))) with a ``rank``-column factor F."""

    def __init__(self, feature_dim: int, z_dim: int, rank: int = 2, min_scale: float = 1e-3,
                 scale: ScaleName = "softplus") -> None:
        super().__init__(feature_dim, z_dim, min_scale, scale)
        self.rank = rank
        self.head = nn.Linear(feature_dim, z_dim * (rank + 2))

    def distribution(self, params):
        loc, raw, factor = params.split([self.z_dim, self.z_dim, self.z_dim * self.rank], dim=-1)
        factor = factor.reshape(*factor.shape[:-1], self.z_dim, self.rank)
        return dist.LowRankMultivariateNormal(loc, factor, self._scale(raw) ** 2)


class FullNormal(GuideFamily):
    """N(mu(x), L(x) L(x)^T) with a full lower-triangular L (positive diagonal)."""

    def __init__(self, feature_dim: int, z_dim: int, min_scale: float = 1e-3, scale: ScaleName = "softplus") -> None:
        super().__init__(feature_dim, z_dim, min_scale, scale)
        rows, cols = torch.tril_indices(z_dim, z_dim, offset=-1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)
        self.head = nn.Linear(feature_dim, 2 * z_dim + len(rows))

    def distribution(self, params):
        loc, raw, off = params.split([self.z_dim, self.z_dim, len(self.rows)], dim=-1)
        tril = torch.diag_embed(self._scale(raw))
        tril[..., self.rows, self.cols] = off
        return dist.MultivariateNormal(loc, scale_tril=tril)


class IAF(GuideFamily):
    """A diagonal normal pushed through ``num_flows`` inverse autoregressive
    flows conditioned on the encoder's features (Kingma et al. 2016), using
    Pyro's :func:`~pyro.distributions.transforms.conditional_affine_autoregressive`
    in its stable (sigmoid-gated) form."""

    def __init__(
        self,
        feature_dim: int,
        z_dim: int,
        num_flows: int = 2,
        hidden: Sequence[int] | None = None,
        min_scale: float = 1e-3,
        scale: ScaleName = "softplus",
    ) -> None:
        super().__init__(feature_dim, z_dim, min_scale, scale)
        if z_dim < 2:
            raise ValueError("guide='iaf' needs z_dim >= 2 (an autoregressive flow on one dim is affine); use guide='diagonal'")
        self.base = DiagonalNormal(feature_dim, z_dim, min_scale, scale)
        hidden = list(hidden or [4 * z_dim])
        self.flows = nn.ModuleList(
            conditional_affine_autoregressive(z_dim, feature_dim, hidden_dims=hidden, stable=True)
            for _ in range(num_flows)
        )

    def forward(self, features):
        return dist.TransformedDistribution(self.base(features), [flow.condition(features) for flow in self.flows])


GuideName = Literal["diagonal", "low_rank", "full", "iaf"]

#: name -> factory(feature_dim, z_dim) -> GuideFamily
GUIDES = {
    "diagonal": DiagonalNormal,
    "low_rank": LowRankNormal,
    "full": FullNormal,
    "iaf": IAF,
}


def make_guide(name: GuideName, *, feature_dim: int, z_dim: int) -> GuideFamily:
    """Build a guide family by name."""
    return choose(GUIDES, name, what="guide")(feature_dim, z_dim)
