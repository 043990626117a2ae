"""Path-derivative gradient estimators that Pyro lacks: STL and DReG.

Both are built on Pyro's traces, so they work with any reparameterized guide.
The trick that stops the gradient through q's *parameters* but not through
its *sample*: for a guide site with distribution ``q`` and value ``z`` (a
function of the parameters through the reparameterization),
``log q(z) - log q(z.detach())`` has the path gradient of ``log q(z)`` and
no score-function part, whatever the distribution. Adding ``log q(z.detach())``
with its value removed therefore turns a reparameterized estimator into its
path-derivative version.

References:
- Roeder, Wu & Duvenaud 2017, "Sticking the landing": the ELBO gradient
  without the score term of q; zero variance when q is the exact posterior.
- Tucker, Lawson, Gu & Maddison 2019, "Doubly reparameterized gradient
  estimators": for the K-sample IWAE bound, the guide gradient
  sum_k w_k^2 d log w_k / dz_k dz_k/dphi (normalized weights w, q's parameters
  stopped in log w), whose signal-to-noise ratio does not fall as K grows
  (Rainforth et al. 2018); the model gradient stays IWAE's sum_k w_k d log p / dtheta.
"""

from __future__ import annotations

import math

import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.infer.util import is_validation_enabled
from pyro.poutine.util import site_is_subsample
from pyro.util import check_if_enumerated

from inference.renyi import RenyiBound
from inference.weights import particle_traces, replay_in_particles, trace_log_density


def _score_of_q(guide_trace) -> torch.Tensor:
    """sum over guide sites of scale x (log q(z.detach()) - its value): zero-valued, with
    gradient +d log q / d params at fixed z (the score term)."""
    total = 0.0
    for site in guide_trace.nodes.values():
        if site["type"] != "sample" or site_is_subsample(site) or site["is_observed"]:
            continue
        if not site["fn"].has_rsample:
            raise ValueError(f"path-derivative estimators need reparameterized guide sites; {site['name']!r} is not")
        log_q = site["fn"].log_prob(site["value"].detach())
        total = total + (site["scale"] * (log_q - log_q.detach())).sum()
    return total


class TraceSTL_ELBO(Trace_ELBO):
    """The ELBO with the sticking-the-landing gradient (Roeder et al. 2017).

    Same loss value as :class:`~pyro.infer.Trace_ELBO`; its gradient drops the
    score term of q, whose expectation is zero, so it is unbiased for the ELBO
    and has zero variance for the guide when q equals the posterior.
    """

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        loss, surrogate = super()._differentiable_loss_particle(model_trace, guide_trace)
        # surrogate = -(log p - log q): adding -(log q(z.detach()) - const) cancels the score term
        return loss, surrogate - _score_of_q(guide_trace)


class DReG_ELBO(RenyiBound):
    """The K-sample IWAE bound with the doubly reparameterized guide gradient
    (Tucker et al. 2019) and IWAE's model gradient.

    The loss value is minus the IWAE_K bound (summed over the data and scaled
    by the ``"data"`` plate's subsampling), as :class:`~inference.renyi.RenyiBound`
    at ``alpha = 0``; K is ``num_particles``, always vectorized. Site scales
    other than the data plate's (a beta handler) are ignored: the estimator's
    weights are those of the unscaled model.
    """

    def __init__(self, num_particles: int = 2, max_plate_nesting: int = 1, plate_name: str = "data") -> None:
        super().__init__(0.0, num_particles, max_plate_nesting, plate_name)

    def _terms(self, model, guide, args, kwargs):
        K = self.num_particles
        model_trace, guide_trace = particle_traces(model, guide, *args, num_samples=K,
                                                   max_plate_nesting=self.max_plate_nesting, **kwargs)
        if is_validation_enabled():
            check_if_enumerated(guide_trace)
        # the model again at the detached samples: the model gradient without a path to the guide
        detached = poutine.Trace()
        for name, node in guide_trace.nodes.items():
            node = dict(node)
            if node["type"] == "sample":
                node["value"] = node["value"].detach()
            detached.add_node(name, **node)
        model_at_detached = replay_in_particles(model, detached, *args, num_samples=K,
                                                max_plate_nesting=self.max_plate_nesting, **kwargs)

        log_p, scale = trace_log_density(model_trace, K, self.plate_name)  # (K, B)
        log_p_detached, _ = trace_log_density(model_at_detached, K, self.plate_name)
        log_q, _ = trace_log_density(guide_trace, K, self.plate_name)
        log_q_at_detached, _ = trace_log_density(guide_trace, K, self.plate_name, detach_values=True)
        return log_p, log_p_detached, log_q, log_q_at_detached, scale

    def differentiable_loss(self, model, guide, *args, **kwargs):
        log_p, log_p_detached, log_q, log_q_at_detached, scale = self._terms(model, guide, args, kwargs)
        log_w = (log_p - log_q).detach()
        bound = torch.logsumexp(log_w, 0) - math.log(self.num_particles)  # (B,)
        w = torch.softmax(log_w, 0)
        # log w with q's parameters stopped (gradient through z only)
        log_w_path = log_p - (log_q - log_q_at_detached + log_q_at_detached.detach())
        surrogate = (
            (w * log_p_detached).sum(0)  # model: IWAE's sum_k w_k grad log p(x, z_k)
            + (w**2 * (log_w_path - log_p_detached)).sum(0)  # guide: DReG; the model part cancels
        )
        surrogate = scale * surrogate.sum()
        value = scale * bound.sum()
        return -(value + surrogate - surrogate.detach())
