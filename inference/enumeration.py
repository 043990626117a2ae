"""The ``enum`` estimator: Pyro's ``TraceEnum_ELBO`` with every discrete guide site enumerated.

Discrete latents (a class label, a mixture component) make the single-sample
ELBO a score-function estimator, whose gradient variance is large. Summing
over their values instead, exactly and in parallel (Pyro's enumeration: each
discrete site gets its own tensor dimension left of the plates), removes that
variance. :class:`EnumELBO` marks the guide's discrete sites that carry no
``infer={"enumerate": ...}`` of their own for parallel enumeration
(``pyro.infer.config_enumerate``), so a plain model and guide train under
``fit(..., estimator="enum")`` unchanged; continuous sites are sampled (and
reparameterized) as under ``trace``.

Scoring with :func:`inference.evaluate` samples the discrete sites from the
guide like the others (importance sampling over all latents, an estimate
of log p(x) that converges as K grows); ``EnumELBO().loss`` gives the
enumerated ELBO itself, exact over the discrete sites.

Reference: Pyro's enumeration tutorial; Kingma et al. 2014 (sum over the label of M2's unlabelled data).
"""

from __future__ import annotations

from pyro.infer import TraceEnum_ELBO, config_enumerate


class EnumELBO(TraceEnum_ELBO):
    """``TraceEnum_ELBO`` that enumerates the guide's discrete sites in parallel unless they say otherwise.

    >>> import torch, pyro, pyro.distributions as dist
    >>> def model(x):  # a two-component mixture with a known marginal
    ...     with pyro.plate("data", len(x)):
    ...         y = pyro.sample("y", dist.Bernoulli(0.3))
    ...         pyro.sample("x", dist.Normal(2.0 * y, 1.0), obs=x)
    >>> def guide(x):  # the exact posterior p(y | x)
    ...     with pyro.plate("data", len(x)):
    ...         p1 = 0.3 * dist.Normal(2.0, 1.0).log_prob(x).exp()
    ...         p0 = 0.7 * dist.Normal(0.0, 1.0).log_prob(x).exp()
    ...         pyro.sample("y", dist.Bernoulli(p1 / (p0 + p1)))
    >>> x = torch.tensor([0.5, 2.5])
    >>> exact = (0.3 * dist.Normal(2.0, 1.0).log_prob(x).exp() + 0.7 * dist.Normal(0.0, 1.0).log_prob(x).exp()).log()
    >>> round(-EnumELBO(max_plate_nesting=1).loss(model, guide, x), 5) == round(exact.sum().item(), 5)
    True
    """

    def _guide(self, guide):
        return config_enumerate(guide, default="parallel")

    def loss(self, model, guide, *args, **kwargs):
        return super().loss(model, self._guide(guide), *args, **kwargs)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        return super().differentiable_loss(model, self._guide(guide), *args, **kwargs)

    def loss_and_grads(self, model, guide, *args, **kwargs):
        return super().loss_and_grads(model, self._guide(guide), *args, **kwargs)
