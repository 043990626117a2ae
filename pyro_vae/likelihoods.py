"""p(x|z) families: each turns the decoder's flat output into a distribution over
one observation, with ``len(x_shape)`` event dims.

A likelihood declares how many parameter maps per pixel it needs
(:attr:`Likelihood.num_params`; the decoder outputs ``num_params * prod(x_shape)``
numbers) and which data it accepts: :meth:`Likelihood.check_support` refuses
data outside the support with an error that names a likelihood or data
representation that fits.

References: Loaiza-Ganem & Cunningham 2019 (continuous Bernoulli);
Salimans et al. 2017 (discretized logistic).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from inference.options import choose
from pyro_vae.discretized_logistic import DiscretizedLogistic


class Likelihood(nn.Module):
    """Base class: override :meth:`pixel_distribution` (and :meth:`check_support`
    for a support smaller than the real line).

    :param x_shape: the shape of one observation, e.g. ``(1, 28, 28)``.
    """

    num_params: int = 1

    def __init__(self, x_shape: Sequence[int]) -> None:
        super().__init__()
        self.x_shape = tuple(x_shape)

    @property
    def out_features(self) -> int:
        """How many numbers the decoder must output per z."""
        return self.num_params * math.prod(self.x_shape)

    def forward(self, params: torch.Tensor) -> dist.TorchDistribution:
        if self.num_params == 1:  # one map: a plain reshape (an unbind would add an autograd node per step)
            maps = (params.reshape(*params.shape[:-1], *self.x_shape),)
        else:
            maps = params.reshape(*params.shape[:-1], self.num_params, *self.x_shape).unbind(-1 - len(self.x_shape))
        return self.pixel_distribution(*maps).to_event(len(self.x_shape))

    def pixel_distribution(self, *maps: torch.Tensor) -> dist.TorchDistribution:
        raise NotImplementedError

    def check_support(self, x: torch.Tensor, lo: float, hi: float) -> None:
        """Raise ``ValueError`` if ``x`` (whose extremes are ``lo`` and ``hi``, known
        finite) lies outside the support; reals are accepted here."""

    def _refuse(self, lo: float, hi: float, needs: str, fix: str) -> None:
        raise ValueError(f"likelihood {type(self).__name__} needs {needs}, but the data range over [{lo:.4g}, {hi:.4g}]; {fix}")


class Bernoulli(Likelihood):
    """Bernoulli pixels with logits from the decoder; for binary data."""

    def pixel_distribution(self, logits):
        return dist.Bernoulli(logits=logits)

    def check_support(self, x, lo, hi):
        # within [0, 1], frac(x) = x except frac(1) = 0: its maximum is 0 exactly when every pixel is 0 or 1
        if lo < 0 or hi > 1 or x.frac().amax().item() > 0:
            self._refuse(
                lo,
                hi,
                "binary pixels (0 or 1)",
                "use representation='dynamic' or 'static', or likelihood='continuous_bernoulli'",
            )


class ContinuousBernoulli(Likelihood):
    """The continuous Bernoulli (Loaiza-Ganem & Cunningham 2019): the Bernoulli
    log-likelihood made a normalized density on [0, 1]."""

    def pixel_distribution(self, logits):
        return dist.ContinuousBernoulli(logits=logits)

    def check_support(self, x, lo, hi):
        if lo < 0 or hi > 1:
            self._refuse(lo, hi, "pixels in [0, 1]", "use representation='continuous', or likelihood='gaussian'")


class _LocationScale(Likelihood):
    family: type[dist.TorchDistribution]

    def __init__(
        self,
        x_shape: Sequence[int],
        *,
        scale: float = 0.1,
        learn_scale: bool = False,
        per_pixel: bool = True,
        min_scale: float = 1e-3,
    ) -> None:
        super().__init__(x_shape)
        if not scale > min_scale:
            raise ValueError(f"scale must be > min_scale={min_scale}, got {scale}")
        self.min_scale = min_scale
        # softplus^-1(scale - min_scale), so that self.scale == scale at the start
        raw = torch.tensor(scale - min_scale).expm1().log()
        raw = raw.expand(self.x_shape if per_pixel else ()).clone()
        if learn_scale:
            self.raw_scale = nn.Parameter(raw)
        else:
            self.register_buffer("raw_scale", raw)

    @property
    def scale(self) -> torch.Tensor:
        return F.softplus(self.raw_scale) + self.min_scale

    def pixel_distribution(self, loc):
        return self.family(loc, self.scale)


class Gaussian(_LocationScale):
    """Normal pixels with the decoder's output as mean and a ``scale`` that is
    fixed or learned (``learn_scale=True``), one per pixel or (``per_pixel=False``)
    one for all. Isotropic Gaussian with a linear decoder is probabilistic PCA.
    """

    family = dist.Normal


class Laplace(_LocationScale):
    """Laplace pixels: the decoder's output as location, a fixed or learned scale."""

    family = dist.Laplace


class Beta(Likelihood):
    """Beta pixels on the open interval (0, 1); both concentrations from the decoder."""

    num_params = 2

    def pixel_distribution(self, raw1, raw0):
        return dist.Beta(F.softplus(raw1) + 1e-3, F.softplus(raw0) + 1e-3)

    def check_support(self, x, lo, hi):
        if lo <= 0 or hi >= 1:
            self._refuse(lo, hi, "pixels in the open interval (0, 1)", "use representation='dequantized'")


class DiscretizedLogistic8Bit(Likelihood):
    """Discretized logistic over the 256 values ``k / 255`` (8-bit images);
    location and scale from the decoder. Its log-likelihood is a true log
    probability of the discrete data, comparable across papers in bits/dim."""

    num_params = 2
    num_bins = 256

    def pixel_distribution(self, loc, raw_scale):
        return DiscretizedLogistic(loc, F.softplus(raw_scale) + 1e-4, num_bins=self.num_bins)

    def check_support(self, x, lo, hi):
        k = x * (self.num_bins - 1)
        if lo < 0 or hi > 1 or not ((k - k.round()).abs() < 1e-4).all():
            self._refuse(
                lo,
                hi,
                f"8-bit pixels k/{self.num_bins - 1}",
                "use representation='continuous', or a continuous likelihood for dequantized data",
            )


LikelihoodName = Literal[
    "bernoulli", "continuous_bernoulli", "gaussian", "gaussian_learned", "laplace", "beta", "discretized_logistic"
]

#: name -> factory(x_shape) -> Likelihood
LIKELIHOODS = {
    "bernoulli": Bernoulli,
    "continuous_bernoulli": ContinuousBernoulli,
    "gaussian": lambda x_shape: Gaussian(x_shape, scale=0.1),
    "gaussian_learned": lambda x_shape: Gaussian(x_shape, scale=0.1, learn_scale=True),
    "laplace": lambda x_shape: Laplace(x_shape, scale=0.1, learn_scale=True),
    "beta": Beta,
    "discretized_logistic": DiscretizedLogistic8Bit,
}


#: the data representation (:mod:`pyro_vae.data`) that each likelihood is meant for
REPRESENTATION_FOR = {
    "bernoulli": "dynamic",
    "continuous_bernoulli": "continuous",
    "gaussian": "dequantized",
    "gaussian_learned": "dequantized",
    "laplace": "dequantized",
    "beta": "dequantized",
    "discretized_logistic": "continuous",
}


def make_likelihood(name: LikelihoodName, *, x_shape: Sequence[int]) -> Likelihood:
    """Build a likelihood by name.

    >>> lik = make_likelihood("bernoulli", x_shape=(1, 2, 2))
    >>> lik(torch.zeros(3, 4)).batch_shape, lik(torch.zeros(3, 4)).event_shape
    (torch.Size([3]), torch.Size([1, 2, 2]))
    """
    return choose(LIKELIHOODS, name, what="likelihood")(tuple(x_shape))
