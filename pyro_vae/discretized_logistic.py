"""The discretized logistic distribution of 8-bit pixels (Salimans et al. 2017; Kingma et al. 2016)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution, constraints
from torch.distributions.utils import broadcast_all


class DiscretizedLogistic(TorchDistribution):
    r"""A logistic distribution of location ``loc`` and scale ``scale``, binned
    onto the grid ``k / (num_bins - 1)``, ``k = 0 .. num_bins - 1``.

    Each value owns the bin of width ``1 / (num_bins - 1)`` centred on it; the
    two edge bins extend to -inf and +inf, so the probabilities of the
    ``num_bins`` values sum to one. With ``a`` and ``b`` the standardized upper
    and lower bin edges, the log-probability of an interior bin is computed as
    ``log sigmoid(a) + log sigmoid(-b) + log(1 - exp(b - a))``, which equals
    ``log(sigmoid(a) - sigmoid(b))`` and is stable in both tails.

    >>> d = DiscretizedLogistic(torch.tensor(0.5), torch.tensor(0.1))
    >>> grid = torch.arange(256) / 255
    >>> round(d.log_prob(grid).exp().sum().item(), 5)
    1.0
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.unit_interval
    has_rsample = False

    def __init__(self, loc, scale, num_bins: int = 256, validate_args=None):
        self.loc, self.scale = broadcast_all(loc, scale)
        self.num_bins = num_bins
        super().__init__(self.loc.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DiscretizedLogistic, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape)
        new.scale = self.scale.expand(batch_shape)
        new.num_bins = self.num_bins
        super(DiscretizedLogistic, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def _half_width(self) -> float:
        return 0.5 / (self.num_bins - 1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        a = (value + self._half_width - self.loc) / self.scale  # upper edge
        b = (value - self._half_width - self.loc) / self.scale  # lower edge
        width = 2 * self._half_width / self.scale
        interior = F.logsigmoid(a) + F.logsigmoid(-b) + torch.log(-torch.expm1(-width))
        lowest = value <= self._half_width
        highest = value >= 1 - self._half_width
        return torch.where(lowest, F.logsigmoid(a), torch.where(highest, F.logsigmoid(-b), interior))

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device).clamp(1e-6, 1 - 1e-6)
            x = self.loc.expand(shape) + self.scale.expand(shape) * (u.log() - (-u).log1p())
            return (x.clamp(0, 1) * (self.num_bins - 1)).round() / (self.num_bins - 1)

    @property
    def probs(self) -> torch.Tensor:
        """The probabilities of the ``num_bins`` values, in a last dimension."""
        grid = torch.arange(self.num_bins, dtype=self.loc.dtype, device=self.loc.device) / (self.num_bins - 1)
        batch = (1,) * len(self.batch_shape)
        return DiscretizedLogistic(self.loc.unsqueeze(-1), self.scale.unsqueeze(-1), self.num_bins).log_prob(
            grid.reshape(*batch, -1)
        ).exp()

    @property
    def mean(self) -> torch.Tensor:
        grid = torch.arange(self.num_bins, dtype=self.loc.dtype, device=self.loc.device) / (self.num_bins - 1)
        return (self.probs * grid).sum(-1)
