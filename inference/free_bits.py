"""Free bits (Kingma et al. 2016): a floor on the KL of each latent dimension.

The KL term sum_u KL_u of the ELBO is replaced by sum_u max(lambda, KL_u),
where KL_u is the KL of dimension u averaged over the batch. Written as the
estimator's own loss plus ``relu(lambda - KL_u)`` per dimension, the gradient
changes only for the dimensions whose KL is below the floor, where the KL's
pull towards the prior is switched off.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.infer import ELBO, Trace_ELBO, TraceMeanField_ELBO
from torch.distributions import kl_divergence


def kl_per_dim(model_site, guide_site) -> torch.Tensor:
    """KL(q || p) per latent dimension at every batch position ``(..., z_dim)``:
    analytic where registered, else the one-sample Monte Carlo term."""
    q, p = guide_site["fn"], model_site["fn"]
    q_base, p_base = getattr(q, "base_dist", None), getattr(p, "base_dist", None)
    if type(q).__name__ != "Independent" or type(p).__name__ != "Independent" or q_base is None or p_base is None:
        raise ValueError(
            f"free bits need a guide and a prior that factorize over the dimensions of site {guide_site['name']!r} "
            f"(diagonal normals), got {type(q).__name__} and {type(p).__name__}; drop free_bits or use guide='diagonal' "
            f"with a factorized prior"
        )
    try:
        return kl_divergence(q_base, p_base)
    except NotImplementedError:
        z = guide_site["value"]
        return q_base.log_prob(z) - p_base.log_prob(z)


def free_bits_penalty(model_trace, guide_trace, floor: float, sites: Sequence[str], particles: int = 1) -> torch.Tensor:
    """sum over ``sites`` and their dimensions of relu(floor - batch-mean KL), weighted like
    the site's KL term in the loss (its scale x the batch size); ``particles`` is the size
    of a vectorized particle plate (1 without one). A tensor: nothing is read from it."""
    penalty = 0.0
    for name in sites:
        guide_site = guide_trace.nodes[name]
        kl = kl_per_dim(model_trace.nodes[name], guide_site)  # (particles?, batch, z_dim)
        flat = kl.reshape(-1, kl.shape[-1])
        batch = flat.shape[0] / particles
        # the site's scale (beta x plate subsampling) x batch size = the weight of a per-datum KL
        penalty = penalty + guide_site["scale"] * batch * torch.relu(floor - flat.mean(0)).sum()
    return penalty * particles  # the vectorized particle is averaged by the caller


class _FreeBitsMixin:
    free_bits: float
    free_bits_sites: tuple[str, ...]

    def free_bits_penalty(self, model_trace, guide_trace) -> torch.Tensor:
        particles = self.num_particles if self.vectorize_particles else 1
        return free_bits_penalty(model_trace, guide_trace, self.free_bits, self.free_bits_sites, particles)

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        loss, surrogate = super()._differentiable_loss_particle(model_trace, guide_trace)
        penalty = self.free_bits_penalty(model_trace, guide_trace)
        return loss + float(penalty.detach() if torch.is_tensor(penalty) else penalty), surrogate + penalty


def with_free_bits(elbo: ELBO, floor: float, sites: Sequence[str] = ("z",)) -> ELBO:
    """The same estimator, with free bits ``floor`` (nats per dimension) on ``sites``.

    Supported for ``Trace_ELBO`` and ``TraceMeanField_ELBO`` (``trace`` and ``mean_field``).
    """
    if floor < 0:
        raise ValueError(f"free_bits must be >= 0 nats, got {floor}")
    base = type(elbo)
    if base not in (Trace_ELBO, TraceMeanField_ELBO):
        raise ValueError(f"free bits work with estimator 'trace' or 'mean_field', not {base.__name__}")
    cls = type(f"FreeBits{base.__name__}", (_FreeBitsMixin, base), {})
    new = cls.__new__(cls)
    new.__dict__.update(elbo.__dict__)
    new.free_bits, new.free_bits_sites = float(floor), tuple(sites)
    return new
