"""beta-TCVAE (Chen et al. 2018): the ELBO's KL term split in three, with a weight on each.

For a latent site z under ``pyro.plate("data")`` with a factorized guide q(z|x) (an
``Independent`` of univariate distributions, as the VAE's diagonal Gaussian), the aggregate
posterior q(z) = 1/N sum_n q(z|x_n) splits the average KL to the prior into

    E[log q(z|x) - log p(z)]
      = E[log q(z|x) - log q(z)]                 index-code mutual information  (mi_weight)
      + E[log q(z) - sum_d log q(z_d)]            total correlation              (tc_weight)
      + E[sum_d log q(z_d) - log p(z)]            dimension-wise KL              (dim_kl_weight)

and the objective is E[log p(x|z)] minus the weighted sum. log q(z) and each log q(z_d) are
estimated on the minibatch by minibatch-weighted sampling (Chen et al., eq. S6): for the batch's
draws z_i, log q(z_i) ~ logsumexp_j log q(z_i | x_j) - log(N M), with N the data plate's size and
M the batch size. The terms telescope draw by draw, so with all weights 1 the loss is exactly the
``Trace_ELBO`` loss of the same draws. Chen et al.'s beta-TCVAE is ``tc_weight = beta`` with the
other two 1; plain beta-VAE stays the beta handler (:func:`inference.beta_scale`), and the two
compose: under the handler the site's scale carries beta, which multiplies all three terms.

Every latent site of the data plate is split this way, each on its own (a hierarchical model's
layers each; p(z) is then the model's conditional density of that site). Other sites (observed
ones, global latents outside the plate) enter as under ``Trace_ELBO``.
"""

from __future__ import annotations

import math

import torch
from pyro.distributions import Independent
from pyro.distributions.util import is_identically_zero
from pyro.infer import Trace_ELBO
from pyro.infer.util import torch_item
from pyro.poutine.util import site_is_subsample
from pyro.util import warn_if_nan


class TCVAE_ELBO(Trace_ELBO):
    """The beta-TCVAE objective (see the module docstring); ``num_particles`` draws are averaged
    one after another (the pairwise densities need the data plate as the only batch dim).

    >>> import torch, pyro, pyro.distributions as dist
    >>> def model(x):
    ...     with pyro.plate("data", len(x)):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    ...         pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)
    >>> def guide(x):
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("z", dist.Normal(x / 2, 0.7).to_event(1))
    >>> x = torch.randn(8, 2)
    >>> with pyro.poutine.trace() as tape:  # one draw of the guide, replayed under both estimators
    ...     guide(x)
    >>> same = pyro.poutine.replay(guide, trace=tape.trace)
    >>> tcvae = TCVAE_ELBO(mi_weight=1.0, tc_weight=1.0, dim_kl_weight=1.0).loss(model, same, x)
    >>> abs(tcvae - pyro.infer.Trace_ELBO().loss(model, same, x)) < 1e-4
    True
    """

    def __init__(self, mi_weight: float = 1.0, tc_weight: float = 1.0, dim_kl_weight: float = 1.0, *,
                 plate: str = "data", num_particles: int = 1, max_plate_nesting: int = 1, **kwargs) -> None:
        if kwargs.pop("vectorize_particles", False):
            raise ValueError("TCVAE_ELBO draws its particles one after another: use vectorize_particles=False")
        for name, weight in (("mi_weight", mi_weight), ("tc_weight", tc_weight), ("dim_kl_weight", dim_kl_weight)):
            if not weight >= 0:
                raise ValueError(f"{name} must be >= 0, got {weight}")
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting, vectorize_particles=False,
                         **kwargs)
        self.mi_weight, self.tc_weight, self.dim_kl_weight, self.plate = mi_weight, tc_weight, dim_kl_weight, plate

    def loss(self, model, guide, *args, **kwargs) -> float:
        loss = 0.0
        with torch.no_grad():
            for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
                loss += self._differentiable_loss_particle(model_trace, guide_trace)[0] / self.num_particles
        warn_if_nan(loss, "loss")
        return loss

    def _split(self, name: str, q_site, p_site) -> torch.Tensor:
        """Per datum: -(mi_weight I + tc_weight TC + dim_kl_weight dim-KL) for one latent site, its draws' estimates."""
        frames = {f.name: f for f in q_site["cond_indep_stack"]}
        frame = frames[self.plate]
        q, z = q_site["fn"], q_site["value"]
        if not (isinstance(q, Independent) and q.reinterpreted_batch_ndims == 1 and z.dim() == 2
                and frame.dim == -1):
            raise ValueError(
                f"TCVAE_ELBO splits the KL of a latent site with a factorized guide, shaped (batch, dims) under "
                f"pyro.plate({self.plate!r}) as its only batch dim; {name!r} has {type(q).__name__} with value shape "
                f"{tuple(z.shape)}: use an Independent of univariate distributions (e.g. Normal(loc, scale).to_event(1))"
            )
        batch = z.shape[0]
        log_norm = math.log(frame.size * batch)
        pairwise = q.base_dist.log_prob(z.unsqueeze(-2))  # [i, j, d] = log q(z_i,d | x_j)
        log_qz = torch.logsumexp(pairwise.sum(-1), dim=1) - log_norm
        log_prod_qzd = (torch.logsumexp(pairwise, dim=1) - log_norm).sum(-1)
        log_qzx, log_pz = q_site["unscaled_log_prob"], p_site["unscaled_log_prob"]
        return -(self.mi_weight * (log_qzx - log_qz) + self.tc_weight * (log_qz - log_prod_qzd)
                 + self.dim_kl_weight * (log_prod_qzd - log_pz))

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        split = {name for name, site in guide_trace.nodes.items()
                 if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
                 and any(f.name == self.plate for f in site["cond_indep_stack"])}
        elbo = 0.0
        for name, site in model_trace.nodes.items():
            if site["type"] == "sample" and name not in split:
                elbo = elbo + site["log_prob_sum"]
        for name, site in guide_trace.nodes.items():
            if site["type"] != "sample":
                continue
            if name in split:
                if not site["fn"].has_rsample:
                    raise ValueError(f"TCVAE_ELBO needs reparameterized latent sites; {name!r} is not")
                elbo = elbo + (site["scale"] * self._split(name, site, model_trace.nodes[name])).sum()
            else:
                elbo = elbo - site["log_prob_sum"]
                _, score, _ = site["score_parts"]
                if not is_identically_zero(score):
                    raise ValueError(f"TCVAE_ELBO needs reparameterized guide sites; {name!r} is not")
        return -torch_item(elbo), -elbo  # the value, and the differentiable estimate (Trace_ELBO's convention)
