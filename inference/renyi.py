"""The K-sample importance-weighted (IWAE) and Renyi bounds, per datum, as a differentiable loss.

For each datum x_b the bound draws K samples z_k ~ q(z | x_b) and averages the
weights w_kb = p(x_b, z_k) / q(z_k | x_b) inside the logarithm:

    L_alpha(x_b) = 1 / (1 - alpha) * log (1/K) sum_k w_kb^(1 - alpha)

alpha = 0 is IWAE_K (Burda et al. 2016), alpha -> 1 the ELBO, and the bound is
monotone in K for alpha = 0. The loss is minus the sum over the batch, times
the ``"data"`` plate's subsampling factor (full size / batch size), so that
a minibatch estimates the full-data bound as :class:`~pyro.infer.Trace_ELBO`
does. Pyro's :class:`~pyro.infer.RenyiELBO` computes the same bound when the
plate is not subsampled, but it scales the log-weights themselves by the
subsampling factor before the log-sum-exp, which gives another objective
(above the full-data log-likelihood) when it is; and it has no
``differentiable_loss``. This class has both, reads no tensor value (so a
compiled step can capture it, see :mod:`inference.compiled`), and its
gradient is the reparameterized gradient of the bound.

References: Burda, Grosse & Salakhutdinov 2016; Li & Turner 2016.
"""

from __future__ import annotations

import math

import torch
from pyro.infer.util import is_validation_enabled
from pyro.poutine.util import site_is_subsample
from pyro.util import check_if_enumerated

from inference.weights import particle_traces, trace_log_density


class RenyiBound:
    """Minus the K-sample Renyi bound of order ``alpha`` (IWAE_K at ``alpha = 0``),
    summed over the data and scaled by the ``"data"`` plate's subsampling.

    Other site scales (a beta handler's) weigh their sites' terms inside each
    log-weight, as in Pyro's :class:`~pyro.infer.RenyiELBO`. Every guide site
    must be reparameterized. It has the interface :class:`~pyro.infer.SVI` and
    :func:`inference.fit` use: ``loss``, ``differentiable_loss`` and ``loss_and_grads``.

    :param alpha: the order, ``alpha != 1``.
    :param num_particles: K, drawn in one vectorized pass.
    :param max_plate_nesting: how many plates the model nests.

    >>> import torch, pyro, pyro.distributions as dist
    >>> def model(x):
    ...     with pyro.plate("data", len(x)):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
    ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> def guide(x):
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("z", dist.Normal(x / 2, 0.5**0.5))  # the exact posterior: every bound is log p(x)
    >>> x = torch.tensor([0.0, 1.0])
    >>> exact = dist.Normal(0.0, 2**0.5).log_prob(x).sum()
    >>> bool(torch.isclose(-RenyiBound(num_particles=5).differentiable_loss(model, guide, x), exact))
    True
    """

    vectorize_particles = True

    def __init__(
        self, alpha: float = 0.0, num_particles: int = 2, max_plate_nesting: int = 1, plate_name: str = "data"
    ) -> None:
        if num_particles < 1:
            raise ValueError(f"num_particles must be >= 1, got {num_particles}")
        if alpha == 1:
            raise ValueError("the Renyi bound needs alpha != 1; alpha = 1 is the ELBO: use estimator='trace'")
        self.alpha, self.num_particles = float(alpha), num_particles
        self.max_plate_nesting, self.plate_name = max_plate_nesting, plate_name

    def log_weights(self, model, guide, *args, **kwargs) -> tuple[torch.Tensor, float]:
        """``(log w (K, batch), the plate's subsampling factor)``, differentiable in the parameters."""
        K = self.num_particles
        model_trace, guide_trace = particle_traces(
            model, guide, *args, num_samples=K, max_plate_nesting=self.max_plate_nesting, **kwargs
        )
        if is_validation_enabled():
            check_if_enumerated(guide_trace)
        for site in guide_trace.nodes.values():
            if site["type"] == "sample" and not site_is_subsample(site) and not site["fn"].has_rsample:
                raise ValueError(
                    f"{type(self).__name__} needs reparameterized guide sites; {site['name']!r} is not: "
                    f"use estimator='graph' (score-function gradients) or a reparameterized family"
                )
        log_p, scale = trace_log_density(model_trace, K, self.plate_name, site_scales=True)
        log_q, _ = trace_log_density(guide_trace, K, self.plate_name, site_scales=True)
        return log_p - log_q, scale

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        log_w, scale = self.log_weights(model, guide, *args, **kwargs)
        one_minus_alpha = 1.0 - self.alpha
        bound = (torch.logsumexp(one_minus_alpha * log_w, 0) - math.log(self.num_particles)) / one_minus_alpha
        return -scale * bound.sum()

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return loss.item()
