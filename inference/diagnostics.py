"""Where and how much the guide is wrong, for any model/guide pair whose latents
sit under ``pyro.plate("data")``: PSIS k-hat per datum, an ArviZ
``InferenceData`` of guide draws, NUTS reference posteriors and a
posterior-collapse report.

References: Vehtari, Simpson, Gelman, Yao & Gabry 2024 (Pareto smoothed
importance sampling); Yao, Vehtari, Simpson & Gelman 2018 (k-hat as a
diagnostic of variational approximations); Burda et al. 2016 (active units).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import arviz as az
import numpy as np
import pyro
import torch
import xarray as xr
from pyro.infer import MCMC, NUTS

from inference.batching import as_dataset
from inference.weights import iter_log_weights, log_weights


@dataclass(frozen=True)
class PSISResult:
    """Pareto k-hat of the importance weights p(x, z) / q(z|x), one per datum.

    -inf where the weights are constant (the guide is that datum's exact
    posterior). Below 0.5 the guide is a good proposal for that datum's posterior; between
    0.5 and 0.7 importance sampling still works but slowly; above 0.7 the guide
    misses a part of the posterior (Vehtari et al.).
    """

    khat: torch.Tensor
    num_samples: int

    @property
    def share_above_05(self) -> float:
        return (self.khat > 0.5).double().mean().item()

    @property
    def share_above_07(self) -> float:
        return (self.khat > 0.7).double().mean().item()

    def worst(self, n: int = 8) -> torch.Tensor:
        """The indices of the ``n`` data points with the largest k-hat."""
        return self.khat.argsort(descending=True)[:n]

    def histogram(self):
        """A histogram of k-hat with the 0.5 and 0.7 thresholds."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 3.5), layout="constrained")
        ax = fig.subplots()
        ax.hist(self.khat[torch.isfinite(self.khat)].numpy(), bins=40, color="C0")
        for threshold, style in ((0.5, "--"), (0.7, "-")):
            ax.axvline(threshold, color="C3", linestyle=style, label=f"k = {threshold}")
        ax.set_xlabel("Pareto k-hat per datum")
        ax.set_ylabel("data points")
        ax.set_title(f"PSIS k-hat ({self.num_samples} guide draws each): "
                     f"{100 * self.share_above_07:.1f}% above 0.7")
        ax.legend()
        return fig


def psis_khat(model, guide, data, *, num_samples: int = 1000, budget: int = 2**16, max_plate_nesting: int = 1,
              progress: bool = False) -> PSISResult:
    """k-hat per datum from ``num_samples`` guide draws each, smoothed with ArviZ's PSIS.

    (Pyro's :func:`~pyro.infer.importance.psis_diagnostic` gives one k-hat for
    a whole batch; this gives one per data point.)

    >>> import torch, pyro, pyro.distributions as dist
    >>> def model(x):
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("x", dist.Normal(pyro.sample("z", dist.Normal(0.0, 1.0)), 1.0), obs=x)
    >>> def narrow(x):
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("z", dist.Normal(x / 2, 0.1))  # far too narrow: the exact scale is 0.71
    >>> psis_khat(model, narrow, torch.zeros(3), num_samples=2000).share_above_05
    1.0
    """
    khats = []
    for _, w in iter_log_weights(model, guide, as_dataset(data), num_samples=num_samples, budget=budget,
                                 max_plate_nesting=max_plate_nesting, progress=progress, desc="psis"):
        khats.append(_khat(w.log_w))
    return PSISResult(torch.cat(khats), num_samples)


def _khat(log_w: torch.Tensor) -> torch.Tensor:
    """k-hat per column of ``(samples, data)`` log-weights; -inf where the weights
    are constant (the guide is exact there and the tail fit is undefined)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns for every k-hat above 0.7: that is what we report
        _, kss = az.psislw(log_w.T.double().cpu().numpy())
    khat = torch.as_tensor(np.asarray(kss), dtype=torch.float64).reshape(-1)
    constant = (log_w.max(0).values - log_w.min(0).values).cpu() < 1e-6
    return torch.where(constant, torch.tensor(-math.inf, dtype=torch.float64), khat)


@torch.no_grad()
def to_inference_data(model, guide, x: torch.Tensor, *, num_samples: int = 500, site: str | Sequence[str] = "z",
                      max_plate_nesting: int = 1) -> az.InferenceData:
    """Guide draws of ``site`` (one name, or several: a hierarchy's ``("z1", "z2")``) for the
    data points ``x`` as ArviZ ``InferenceData``, from one joint draw of all of them.

    Groups: ``posterior`` (each site with dims chain, draw, datum, ``<site>_dim``),
    ``sample_stats`` (``log_weight`` per chain, draw and datum; ``khat`` per
    datum) and ``observed_data`` (``x``), so that ``az.summary``,
    ``az.plot_posterior`` and ``az.plot_pair`` work on it directly.
    """
    sites = [site] if isinstance(site, str) else list(site)
    w = log_weights(model, guide, x, num_samples=num_samples, max_plate_nesting=max_plate_nesting)
    missing = [s for s in sites if s not in w.samples]
    if missing:
        raise ValueError(f"the guide has no site {', '.join(map(repr, missing))}; its latent sites are "
                         f"{', '.join(map(repr, w.samples))}")
    log_w = w.log_w.double().cpu().numpy()  # (draw, datum)
    khat = _khat(w.log_w).numpy()
    draws, datum = np.arange(num_samples), np.arange(x.shape[0])
    variables, coords = {}, {"chain": [0], "draw": draws, "datum": datum}
    for name in sites:
        z = w.samples[name].reshape(num_samples, x.shape[0], -1).double().cpu().numpy()
        variables[name] = (("chain", "draw", "datum", f"{name}_dim"), z[None])
        coords[f"{name}_dim"] = np.arange(z.shape[-1])
    posterior = xr.Dataset(variables, coords=coords)
    stats = xr.Dataset(
        {"log_weight": (("chain", "draw", "datum"), log_w[None]), "khat": (("datum",), np.asarray(khat))},
        coords={"chain": [0], "draw": draws, "datum": datum},
    )
    pixels = [f"x_dim_{i}" for i in range(x.dim() - 1)]
    observed = xr.Dataset({"x": (("datum", *pixels), x.double().cpu().numpy())}, coords={"datum": datum})
    return az.InferenceData(posterior=posterior, sample_stats=stats, observed_data=observed)


@dataclass(frozen=True)
class ReferencePosterior:
    """NUTS draws of one datum's latent ``(chains, draws, *event)`` with ArviZ's R-hat and bulk ESS."""

    samples: torch.Tensor
    rhat: float
    ess: float
    inference_data: az.InferenceData

    @property
    def mean(self) -> torch.Tensor:
        return self.samples.flatten(0, 1).mean(0)

    @property
    def covariance(self) -> torch.Tensor:
        return torch.cov(self.samples.flatten(0, 1).reshape(-1, self.samples.shape[-1]).T)


def reference_posterior(model, x: torch.Tensor, *, site: str = "z", num_samples: int = 500, warmup: int = 300,
                        chains: int = 4, seed: int = 0, **model_kwargs) -> ReferencePosterior:
    """Sample p(site | x) for ONE datum ``x`` (a batch of one) by NUTS, with every
    parameter of the model held fixed (the decoder of a trained VAE).

    The chains run one after another from random initial points (``chains``
    independent runs of :class:`pyro.infer.MCMC`), so R-hat compares them.
    """
    if x.shape[0] != 1:
        raise ValueError(f"reference_posterior takes one datum (a batch of 1), got a batch of {x.shape[0]}")
    runs = []
    for chain in range(chains):
        pyro.set_rng_seed(seed + chain)
        mcmc = MCMC(NUTS(model, init_strategy=pyro.infer.autoguide.init_to_sample), num_samples=num_samples,
                    warmup_steps=warmup, num_chains=1, disable_progbar=True)
        mcmc.run(x, **model_kwargs)
        runs.append(mcmc.get_samples()[site].detach().reshape(num_samples, -1))
    samples = torch.stack(runs)  # (chains, draws, dim)
    idata = az.from_dict(posterior={site: samples.double().numpy()}, dims={site: [f"{site}_dim"]})
    return ReferencePosterior(
        samples=samples,
        rhat=float(az.rhat(idata)[site].max()),
        ess=float(az.ess(idata)[site].min()),
        inference_data=idata,
    )


class PosteriorCollapseWarning(UserWarning):
    """Most latent dimensions carry no information about x."""


@dataclass(frozen=True)
class CollapseReport:
    """How many latent dimensions are in use (Burda et al.'s active units:
    Cov_x(E_q[z_u | x]) > ``threshold``), their KL to the prior, I(x; z), and a
    warning when more than half have collapsed."""

    num_dims: int
    active_units: int
    latent_variance: list[float]
    kl_per_dim: list[float] | None
    mutual_information: float | None
    warning: str | None


def collapse_report(model, guide, data, *, site: str = "z", num_samples: int = 10, threshold: float = 0.01,
                    warn: bool = True) -> CollapseReport:
    """Check a fitted model for posterior collapse; warns (:class:`PosteriorCollapseWarning`)
    when most dimensions have collapsed, naming the remedies the project offers."""
    from inference.evaluate import evaluate

    scored = evaluate(model, guide, data, num_samples=num_samples, ks=(1,), latent_site=site, progress=False)
    variance = scored.latent_variance
    active = sum(v > threshold for v in variance)
    message = None
    if variance and active < len(variance) / 2:
        message = (
            f"posterior collapse: only {active} of {len(variance)} latent dimensions are active "
            f"(Cov_x E_q[z_u|x] > {threshold}); I(x; z) = {scored.mutual_information:.3g} nats. Remedies: a KL warm-up "
            f"(beta=LinearWarmup(steps=...), --beta-schedule linear), free bits (free_bits=0.5, --free-bits 0.5), "
            f"a smaller beta, or a likelihood/decoder that cannot explain x without z"
        )
        if warn:
            warnings.warn(message, PosteriorCollapseWarning, stacklevel=2)
    return CollapseReport(len(variance), active, variance, scored.kl_per_dim, scored.mutual_information, message)


@dataclass(frozen=True)
class AmortizationGap:
    """Cremer, Li & Duvenaud 2018: log p(x) - ELBO(amortized q) split into the
    approximation gap (log p(x) - ELBO of the best q of the family, fitted per
    datum) and the amortization gap (that ELBO - the amortized one). Means over
    the data in nats, with standard errors over the data; the per-datum values
    are kept. ``log_px - elbo_amortized`` is KL(q || p(z|x)) for the amortized guide.
    """

    log_px: torch.Tensor
    elbo_amortized: torch.Tensor
    elbo_optimized: torch.Tensor

    @property
    def approximation_gap(self) -> torch.Tensor:
        return self.log_px - self.elbo_optimized

    @property
    def amortization_gap(self) -> torch.Tensor:
        return self.elbo_optimized - self.elbo_amortized

    def summary(self) -> dict[str, float]:
        def mean_se(values):
            return values.mean().item(), (values.std() / math.sqrt(len(values))).item() if len(values) > 1 else math.nan

        out = {}
        for name, values in [("log_px", self.log_px), ("elbo_amortized", self.elbo_amortized),
                             ("elbo_optimized", self.elbo_optimized), ("approximation_gap", self.approximation_gap),
                             ("amortization_gap", self.amortization_gap)]:
            out[name], out[f"{name}_se"] = mean_se(values)
        return out


def amortization_gap(model, guide, x: torch.Tensor, *, local_guide, steps: int = 300, lr: float = 0.05,
                     num_particles: int = 16, num_samples: int = 1000, max_plate_nesting: int = 1) -> AmortizationGap:
    """Fit a non-amortized guide per datum of ``x`` (starting from the amortized
    one) and split log p(x) - ELBO into the approximation and amortization gaps.

    :param local_guide: ``x -> (guide_fn, [free tensors])``, a guide of the same
        family with free per-datum parameters (``VAE.local_guide`` for the project's VAE).
    :param steps, lr, num_particles: the per-datum optimization (Adam with the
        learning rate decayed 100-fold, on the sticking-the-landing ELBO
        gradient; the model's parameters are not touched).
    :param num_samples: draws per datum for each ELBO and for the importance-weighted
        log p(x) (which uses the fitted local guide as its proposal).
    """
    from inference.estimators import make_elbo

    local, free = local_guide(x)
    # sticking-the-landing gradients vanish at the family's optimum when it holds the posterior: no SGD jitter there
    elbo = make_elbo("stl", num_particles=num_particles)
    # Adam's step is about lr whatever the gradient's size; a large eps keeps rounding-level
    # gradients (at the optimum) from being blown up into full-size steps
    optimizer = torch.optim.Adam(free, lr=lr, eps=1e-4)
    decay = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.01 ** (1 / max(steps, 1)))
    for _ in range(steps):
        loss = elbo.differentiable_loss(model, local, x)
        grads = torch.autograd.grad(loss, free)  # the model's parameters are left alone
        for p, g in zip(free, grads, strict=True):
            p.grad = g
        optimizer.step()
        decay.step()

    def per_datum(g):
        return log_weights(model, g, x, num_samples=num_samples, max_plate_nesting=max_plate_nesting).log_w.double()

    amortized, optimized = per_datum(guide), per_datum(local)
    log_px = torch.logsumexp(optimized, 0) - math.log(num_samples)
    return AmortizationGap(log_px.cpu(), amortized.mean(0).cpu(), optimized.mean(0).cpu())


def overlay(guide_draws: torch.Tensor, reference: ReferencePosterior, *, max_dims: int = 4, title: str = ""):
    """Guide draws against NUTS draws of one datum's latent: marginal histograms
    on the diagonal, pair scatter plots below it (the first ``max_dims`` dimensions)."""
    from matplotlib.figure import Figure

    q = guide_draws.reshape(-1, guide_draws.shape[-1]).double().cpu()
    p = reference.samples.flatten(0, 1).reshape(-1, q.shape[-1]).double().cpu()
    d = min(q.shape[-1], max_dims)
    fig = Figure(figsize=(2.4 * d + 0.5, 2.4 * d), layout="constrained")
    axes = np.atleast_2d(fig.subplots(d, d, squeeze=False))
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            if i == j:
                ax.hist(p[:, i].numpy(), bins=40, density=True, alpha=0.5, color="C1", label="NUTS")
                ax.hist(q[:, i].numpy(), bins=40, density=True, alpha=0.5, color="C0", label="guide")
            elif i > j:
                ax.scatter(p[:, j].numpy(), p[:, i].numpy(), s=2, alpha=0.3, color="C1")
                ax.scatter(q[:, j].numpy(), q[:, i].numpy(), s=2, alpha=0.3, color="C0")
            else:
                ax.set_axis_off()
            if i == d - 1:
                ax.set_xlabel(f"z[{j}]")
    axes[0, 0].legend(fontsize="small")
    fig.suptitle(title or f"guide (blue) vs NUTS (orange); R-hat {reference.rhat:.3f}, ESS {reference.ess:.0f}")
    return fig
