"""Estimator losses that read no tensor value, so that a tracer can capture them.

Pyro's ``Trace_ELBO.differentiable_loss`` adds up the loss as Python floats
(``torch_item``) and checks it for NaN (``warn_if_nan``): both read a tensor's
value, which stops :func:`torch.fx.experimental.proxy_tensor.make_fx`. The
functions here compute the same loss and the same surrogate from the same
Pyro traces (``elbo._get_traces``, so plates, particles, scales and masks
are Pyro's own) and return ``value.detach() + surrogate - surrogate.detach()``:
the estimator's loss value with its gradient, as one tensor.
:mod:`inference.compiled` captures them; tests check them against the eager
estimators draw for draw.

Covered: ``trace`` (score-function terms of non-reparameterized sites
included), ``mean_field``, ``stl``, free bits on ``trace`` and
``mean_field``, and the K-sample estimators ``iwae``, ``renyi`` and
``dreg``, whose own ``differentiable_loss`` already reads no value.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pyro.distributions.util import is_identically_zero, scale_and_mask
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.trace_elbo import _compute_log_r
from torch.distributions import kl_divergence

from inference.free_bits import _FreeBitsMixin
from inference.path_derivative import DReG_ELBO, TraceSTL_ELBO, _score_of_q
from inference.renyi import RenyiBound


def _trace_particle(model_trace, guide_trace) -> tuple[torch.Tensor, torch.Tensor]:
    """``Trace_ELBO._differentiable_loss_particle`` with tensors: (-ELBO, -surrogate ELBO)."""
    elbo = surrogate = 0.0
    log_r = None
    for site in model_trace.nodes.values():
        if site["type"] == "sample":
            elbo = elbo + site["log_prob_sum"]
            surrogate = surrogate + site["log_prob_sum"]
    for site in guide_trace.nodes.values():
        if site["type"] != "sample":
            continue
        _, score_function_term, entropy_term = site["score_parts"]
        elbo = elbo - site["log_prob_sum"]
        if not is_identically_zero(entropy_term):
            surrogate = surrogate - entropy_term.sum()
        if not is_identically_zero(score_function_term):
            if log_r is None:
                log_r = _compute_log_r(model_trace, guide_trace)
            surrogate = surrogate + (log_r.sum_to(site["cond_indep_stack"]) * score_function_term).sum()
    return -elbo, -surrogate


def _mean_field_particle(model_trace, guide_trace) -> tuple[torch.Tensor, torch.Tensor]:
    """``TraceMeanField_ELBO._differentiable_loss_particle`` with tensors: analytic KL where registered."""
    elbo = 0.0
    for name, model_site in model_trace.nodes.items():
        if model_site["type"] != "sample":
            continue
        if model_site["is_observed"]:
            elbo = elbo + model_site["log_prob_sum"]
            continue
        guide_site = guide_trace.nodes[name]
        try:
            kl = kl_divergence(guide_site["fn"], model_site["fn"])
        except NotImplementedError:
            elbo = elbo + model_site["log_prob_sum"] - guide_site["score_parts"].entropy_term.sum()
            continue
        kl = scale_and_mask(kl, scale=guide_site["scale"], mask=guide_site["mask"])
        elbo = elbo - (kl.sum() if torch.is_tensor(kl) else kl * guide_site["fn"].batch_shape.numel())
    for name, guide_site in guide_trace.nodes.items():  # auxiliary guide sites
        if guide_site["type"] == "sample" and name not in model_trace.nodes:
            elbo = elbo - guide_site["score_parts"].entropy_term.sum()
    return -elbo, -elbo


def _stl_particle(model_trace, guide_trace) -> tuple[torch.Tensor, torch.Tensor]:
    loss, surrogate = _trace_particle(model_trace, guide_trace)
    return loss, surrogate - _score_of_q(guide_trace)


#: the estimator class (exactly, not its subclasses) -> its particle loss
PARTICLE_LOSSES: dict[type, Callable] = {
    Trace_ELBO: _trace_particle,
    TraceMeanField_ELBO: _mean_field_particle,
    TraceSTL_ELBO: _stl_particle,
}
#: estimators whose own ``differentiable_loss`` reads no tensor value
VALUE_FREE = (RenyiBound, DReG_ELBO)


def _particle_loss(elbo, particle, model, guide, args, kwargs) -> torch.Tensor:
    loss = 0.0
    for model_trace, guide_trace in elbo._get_traces(model, guide, args, kwargs):
        value, surrogate = particle(model_trace, guide_trace)
        if isinstance(elbo, _FreeBitsMixin):
            penalty = elbo.free_bits_penalty(model_trace, guide_trace)
            value, surrogate = value + penalty, surrogate + penalty
        loss = loss + (value.detach() + surrogate - surrogate.detach()) / elbo.num_particles
    return loss


def graph_loss(elbo) -> Callable[..., torch.Tensor]:
    """``loss(model, guide, *args, **kwargs)``: the estimator's differentiable loss,
    computed without reading any tensor's value.

    :raises ValueError: for an estimator that has no such form (``graph``,
        ``tail_adaptive``), naming those that have.

    >>> import torch, pyro, pyro.distributions as dist
    >>> from pyro.infer import Trace_ELBO
    >>> def model(x):
    ...     with pyro.plate("data", len(x)):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
    ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> def guide(x):
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("z", dist.Normal(x / 3, 0.8))
    >>> x = torch.tensor([0.5, -1.0])
    >>> pyro.set_rng_seed(0); eager = Trace_ELBO().differentiable_loss(model, guide, x)
    >>> pyro.set_rng_seed(0); ours = graph_loss(Trace_ELBO())(model, guide, x)
    >>> bool(torch.isclose(ours, eager))
    True
    """
    if isinstance(elbo, VALUE_FREE):
        return elbo.differentiable_loss
    kind = type(elbo)
    if isinstance(elbo, _FreeBitsMixin):  # FreeBits<Base>(_FreeBitsMixin, Base)
        kind = kind.__mro__[2]
    particle = PARTICLE_LOSSES.get(kind)
    if particle is None:
        raise ValueError(
            f"{type(elbo).__name__} cannot be captured for a compiled step; compiled steps take the estimators "
            f"'trace', 'mean_field', 'stl', 'iwae', 'renyi' and 'dreg': choose one of them or drop compile"
        )

    def loss(model, guide, *args, **kwargs):
        return _particle_loss(elbo, particle, model, guide, args, kwargs)

    return loss
