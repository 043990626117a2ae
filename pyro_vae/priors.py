"""p(z) families: each an ``nn.Module`` whose ``forward`` returns a Pyro
distribution over z with one event dim and an empty batch shape (the
``"data"`` plate broadcasts it).

A prior may be defined through the recognition model (the VampPrior):
``forward`` therefore takes the posterior ``x -> q(z|x)`` as an optional
argument, which the other priors ignore.

References: Tomczak & Welling 2018 (VampPrior); Dilokthanakul et al. 2016
(mixture prior); Chen et al. 2017 and Huang et al. 2017 (flow priors).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import pyro.distributions as dist
from pyro_vae.flows import affine_autoregressive
import torch
import torch.nn.functional as F
from torch import nn

from inference.options import choose

Posterior = Callable[[torch.Tensor], dist.TorchDistribution]


class Prior(nn.Module):
    """Base class: ``forward(posterior=None) -> p(z)``."""

    def __init__(self, z_dim: int) -> None:
        super().__init__()
        self.z_dim = z_dim

    def forward(self, posterior: Posterior | None = None) -> dist.TorchDistribution:
        raise NotImplementedError


class StandardNormal(Prior):
    """N(0, I), the default.

    >>> StandardNormal(3)().event_shape
    torch.Size([3])
    """

    def __init__(self, z_dim: int) -> None:
        super().__init__(z_dim)
        self.register_buffer("zeros", torch.zeros(z_dim), persistent=False)

    def forward(self, posterior=None):
        return dist.Normal(self.zeros, 1.0).to_event(1)


class LearnedNormal(Prior):
    """N(mu, diag(sigma^2)) with learnable mu and sigma (initialized to N(0, I))."""

    def __init__(self, z_dim: int) -> None:
        super().__init__(z_dim)
        self.loc = nn.Parameter(torch.zeros(z_dim))
        self.raw_scale = nn.Parameter(torch.full((z_dim,), 0.5413))  # softplus(0.5413) = 1

    def forward(self, posterior=None):
        return dist.Normal(self.loc, F.softplus(self.raw_scale)).to_event(1)


class MixtureOfGaussians(Prior):
    """A mixture of ``num_components`` diagonal normals with learnable weights,
    means (spread at random at the start) and scales."""

    def __init__(self, z_dim: int, num_components: int = 10) -> None:
        super().__init__(z_dim)
        self.logits = nn.Parameter(torch.zeros(num_components))
        self.locs = nn.Parameter(torch.randn(num_components, z_dim))
        self.raw_scales = nn.Parameter(torch.zeros(num_components, z_dim))

    def forward(self, posterior=None):
        components = dist.Normal(self.locs, F.softplus(self.raw_scales)).to_event(1)
        return dist.MixtureSameFamily(dist.Categorical(logits=self.logits), components)


class _BroadcastMixture(dist.MixtureSameFamily):
    """A mixture that hands its components z expanded over the component dim
    rather than unsqueezed: conditional flows (an IAF guide inside a VampPrior)
    expand their context to the input's shape and cannot broadcast."""

    def _pad(self, x):
        x = super()._pad(x)
        return x.expand(*x.shape[:-2], self._num_component, x.shape[-1])


class _DiagonalNormalMixture(_BroadcastMixture):
    """A mixture of diagonal Gaussians N(m_k, diag(s_k^2)) whose log-density is one matrix product:
    sum_d (z_d - m_kd)^2 / s_kd^2 = (z * z) . a_k - 2 z . b_k + c_k, with a = 1 / s^2, b = m / s^2
    and c_k = sum_d m_kd^2 / s_kd^2, so that N points cost an (N, D) @ (D, K) product instead of an
    (N, K, D) tensor (for K = 500 components the generic mixture's K = 5000-sample evaluation of one
    image holds 10^8 numbers). The expansion cancels terms as large as (m / s)^2, so it runs in
    float64: within float32's rounding of the generic :class:`~pyro.distributions.MixtureSameFamily`
    (tests/test_densities.py checks values and gradients against it).
    """

    def __init__(self, mixture_distribution, component_distribution, validate_args=None) -> None:
        super().__init__(mixture_distribution, component_distribution, validate_args=validate_args)
        normal = component_distribution.base_dist
        # the components' means and scales, (K, D) each, shared by every batch element: a plate's expand
        # broadcasts the components over the batch, and the expanded copy keeps these
        self._loc, self._scale = torch.broadcast_tensors(normal.loc, normal.scale)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(_DiagonalNormalMixture, _instance)
        new._loc, new._scale = self._loc, self._scale
        return super().expand(batch_shape, _instance=new)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        loc, scale = self._loc.double(), self._scale.double()
        precision = scale.pow(-2)
        z = value.double()
        squares = (z * z) @ precision.T - 2 * z @ (loc * precision).T + (loc * loc * precision).sum(-1)
        log_norm = scale.log().sum(-1) + 0.5 * loc.shape[-1] * math.log(2 * math.pi)
        log_weights = torch.log_softmax(self.mixture_distribution.logits.double(), -1)
        return torch.logsumexp(log_weights - log_norm - 0.5 * squares, -1).to(value.dtype)


def _is_diagonal_normal(d: dist.TorchDistribution) -> bool:
    """``Normal(loc, scale).to_event(1)`` over a batch of one dim: what the ``diagonal`` guide gives."""
    return (isinstance(d, torch.distributions.Independent) and d.reinterpreted_batch_ndims == 1
            and type(d.base_dist) in (torch.distributions.Normal, dist.Normal) and len(d.batch_shape) == 1)


class VampPrior(Prior):
    """The variational mixture of posteriors (Tomczak & Welling 2018):
    p(z) = (1/K) sum_k q(z | u_k) with ``num_components`` learnable
    pseudo-inputs u_k, clamped to [0, 1] as in the paper.

    :param x_shape: the shape of one observation (and of each pseudo-input).
    :param init_mean, init_std: the pseudo-inputs start as N(init_mean, init_std^2) pixel by pixel
        (Tomczak & Welling's code: 0.05 and 0.01 for MNIST).
    """

    def __init__(self, z_dim: int, x_shape: Sequence[int], num_components: int = 50, *, init_mean: float = 0.5,
                 init_std: float = 0.05) -> None:
        super().__init__(z_dim)
        self.pseudo_inputs = nn.Parameter(init_mean + init_std * torch.randn(num_components, *x_shape))

    def forward(self, posterior=None):
        if posterior is None:
            raise ValueError("VampPrior is defined through q(z|x): call it as prior(posterior), e.g. inside VAE.model")
        components = posterior(F.hardtanh(self.pseudo_inputs, 0.0, 1.0))
        logits = torch.zeros(components.batch_shape, device=self.pseudo_inputs.device)
        fast = _is_diagonal_normal(components) and self.pseudo_inputs.device.type != "mps"  # MPS has no float64
        mixture = _DiagonalNormalMixture if fast else _BroadcastMixture
        return mixture(dist.Categorical(logits=logits), components)


class FlowPrior(Prior):
    """N(0, I) pushed through ``num_flows`` affine autoregressive transforms
    (Pyro's :func:`~pyro.distributions.transforms.affine_autoregressive`, with
    the capturable inverse of :mod:`pyro_vae.flows`): a learnable, flexible
    density with an exact log-probability.

    The flows start as the identity (their output layers are zero), so the
    prior starts as N(0, I) and training shapes it; with Pyro's random
    initialization the prior would start with heavy tails.
    """

    def __init__(self, z_dim: int, num_flows: int = 2, hidden: Sequence[int] | None = None) -> None:
        super().__init__(z_dim)
        if z_dim < 2:
            raise ValueError("prior='flow' needs z_dim >= 2; use prior='learned_normal' for one latent dim")
        self.register_buffer("zeros", torch.zeros(z_dim), persistent=False)
        hidden = list(hidden or [4 * z_dim])
        self.flows = nn.ModuleList(affine_autoregressive(z_dim, hidden_dims=hidden) for _ in range(num_flows))
        with torch.no_grad():
            for flow in self.flows:
                flow.arn.layers[-1].weight.zero_()
                flow.arn.layers[-1].bias.zero_()

    def forward(self, posterior=None):
        return dist.TransformedDistribution(dist.Normal(self.zeros, 1.0).to_event(1), list(self.flows))


PriorName = Literal["standard_normal", "learned_normal", "mixture", "vamp", "flow"]

#: name -> factory(z_dim, x_shape) -> Prior
PRIORS = {
    "standard_normal": lambda z_dim, x_shape: StandardNormal(z_dim),
    "learned_normal": lambda z_dim, x_shape: LearnedNormal(z_dim),
    "mixture": lambda z_dim, x_shape: MixtureOfGaussians(z_dim),
    "vamp": lambda z_dim, x_shape: VampPrior(z_dim, x_shape),
    "flow": lambda z_dim, x_shape: FlowPrior(z_dim),
}


def make_prior(name: PriorName, *, z_dim: int, x_shape: Sequence[int]) -> Prior:
    """Build a prior by name."""
    return choose(PRIORS, name, what="prior")(z_dim, tuple(x_shape))
