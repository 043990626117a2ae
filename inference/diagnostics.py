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
def to_inference_data(model, guide, x: torch.Tensor, *, num_samples: int = 500, site: str = "z",
                      max_plate_nesting: int = 1) -> az.InferenceData:
    """Guide draws of ``site`` for the data points ``x`` as ArviZ ``InferenceData``.

    Groups: ``posterior`` (``site`` with dims chain, draw, datum, ``site``_dim),
    ``sample_stats`` (``log_weight`` per chain, draw and datum; ``khat`` per
    datum) and ``observed_data`` (``x``), so that ``az.summary``,
    ``az.plot_posterior`` and ``az.plot_pair`` work on it directly.
    """
    w = log_weights(model, guide, x, num_samples=num_samples, max_plate_nesting=max_plate_nesting)
    z = w.samples[site].reshape(num_samples, x.shape[0], -1).double().cpu().numpy()
    log_w = w.log_w.double().cpu().numpy()  # (draw, datum)
    khat = _khat(w.log_w).numpy()
    draws, datum, dim = np.arange(num_samples), np.arange(x.shape[0]), f"{site}_dim"
    posterior = xr.Dataset(
        {site: (("chain", "draw", "datum", dim), z[None])},
        coords={"chain": [0], "draw": draws, "datum": datum, dim: np.arange(z.shape[-1])},
    )
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
