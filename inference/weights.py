"""Per-datum importance log-weights log p(x_i, z) - log q(z | x_i) of any model/guide pair.

Pyro's :func:`~pyro.infer.importance.vectorized_importance_weights` sums the
weights over the whole batch; evaluation and diagnostics need them per data
point. This module draws ``S`` samples of every latent site in one vectorized
pass (an outer ``pyro.plate``) and keeps the ``"data"`` plate's dimension,
split into the three parts of the ELBO.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.util import site_is_subsample
from tqdm.auto import tqdm

from inference.batching import args_to, as_args
from inference.compiled import Captured, compiler_name

PARTICLE_PLATE = "_iw_samples"


@dataclass
class LogWeights:
    """Per-sample, per-datum terms, each shaped ``(S, batch)``.

    ``log_lik`` sums the observed sites, ``log_prior`` the model's latent sites
    and ``log_q`` the guide's sites; ``log_w = log_lik + log_prior - log_q``.
    ``latent_means`` maps each latent site to E_q[z | x] ``(batch, *event)``
    (exact where the guide's distribution has a mean, else the sample mean);
    ``samples`` maps it to the draws ``(S, batch, *event)`` (kept by
    :func:`log_weights`, not by :func:`iter_log_weights`).
    """

    log_lik: torch.Tensor
    log_prior: torch.Tensor
    log_q: torch.Tensor
    latent_means: dict[str, torch.Tensor]
    samples: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def log_w(self) -> torch.Tensor:
        return self.log_lik + self.log_prior - self.log_q


def _per_datum(site, num_samples: int, plate_name: str, log_p: torch.Tensor | None = None) -> torch.Tensor:
    """The site's log-density (``log_p``, by default at its own value) summed to ``(num_samples, batch)``."""
    frames = {f.name: f for f in site["cond_indep_stack"]}
    if plate_name not in frames:
        raise ValueError(
            f"site {site['name']!r} is not under pyro.plate({plate_name!r}): per-datum weights need every "
            f"latent and observed site inside the data plate (global latents have no per-datum log p(x)): "
            f"draw it in `with pyro.plate({plate_name!r}, len(x)):` in the model and the guide, its batch dim "
            f"the plate's rather than part of the event"
        )
    log_p = site["fn"].log_prob(site["value"]) if log_p is None else log_p
    dim = frames[plate_name].dim
    particle_dim = frames[PARTICLE_PLATE].dim
    ndim = -particle_dim
    log_p = log_p.reshape((1,) * (ndim - log_p.dim()) + log_p.shape)
    log_p = log_p.movedim(dim, -1).movedim(particle_dim, 0)
    log_p = log_p.expand(num_samples, *log_p.shape[1:])
    return log_p.reshape(num_samples, -1, log_p.shape[-1]).sum(1)


def subsample_scale(site, plate_name: str = "data") -> float:
    """full size / batch size of the ``plate_name`` plate around ``site``: the factor by
    which a subsampled plate scales the batch's terms (1 without subsampling)."""
    for frame in site["cond_indep_stack"]:
        if frame.name == plate_name:
            return frame.full_size / frame.size if frame.full_size else 1.0
    return 1.0


def trace_log_density(
    trace, num_samples: int, plate_name: str = "data", *, site_scales: bool = False, detach_values: bool = False
) -> tuple[torch.Tensor, float]:
    """Sum the sample sites of a particle trace (see :func:`particle_traces`) per
    sample and datum: ``(log density (num_samples, batch), the plate's subsample scale)``.

    :param site_scales: weigh each site by its scale relative to the plate's
        subsample scale (e.g. beta from :func:`inference.scaling.beta_scale`), and apply its mask.
    :param detach_values: evaluate the densities at the detached values (the
        score of the parameters, no path through the samples).
    """
    total, scale = 0.0, 1.0
    for site in trace.nodes.values():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        value = site["value"].detach() if detach_values else site["value"]
        log_p = site["fn"].log_prob(value)
        scale = subsample_scale(site, plate_name)
        if site_scales:
            log_p = scale_and_mask(log_p, site["scale"] / scale, site["mask"])
        total = total + _per_datum(site, num_samples, plate_name, log_p)
    return total, scale


def _mean(site, num_samples: int, plate_name: str) -> torch.Tensor:
    fn, value = site["fn"], site["value"]
    try:
        mean = fn.mean
    except NotImplementedError:
        mean = value
    mean = mean.expand(value.shape) if mean.shape != value.shape else mean
    return mean.mean(0) if mean.shape[0] == num_samples else mean[0]


def particle_traces(model, guide, *args, num_samples: int, max_plate_nesting: int = 1, **kwargs):
    """(model trace, guide trace) with ``num_samples`` draws of every guide site,
    vectorized in a plate just outside the model's ``max_plate_nesting`` plates."""
    with pyro.plate(PARTICLE_PLATE, num_samples, dim=-(max_plate_nesting + 1)):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = replay_in_particles(model, guide_trace, *args, num_samples=num_samples,
                                      max_plate_nesting=max_plate_nesting, **kwargs)
    return model_trace, guide_trace


def replay_in_particles(model, trace, *args, num_samples: int, max_plate_nesting: int = 1, **kwargs):
    """The model's trace at the values of ``trace`` (drawn by :func:`particle_traces`), in the same particle plate."""
    with pyro.plate(PARTICLE_PLATE, num_samples, dim=-(max_plate_nesting + 1)):
        return poutine.trace(poutine.replay(model, trace=trace)).get_trace(*args, **kwargs)


@torch.no_grad()
def log_weights(
    model,
    guide,
    *args,
    num_samples: int = 1,
    max_plate_nesting: int = 1,
    plate_name: str = "data",
    **kwargs,
) -> LogWeights:
    """Draw ``num_samples`` guide samples per datum and score them under the model.

    :param args, kwargs: the model's and guide's arguments (a batch).
    :param max_plate_nesting: how many plates the model nests; the samples
        live in a plate just outside them.
    :returns: :class:`LogWeights`.

    >>> import torch, pyro, pyro.distributions as dist
    >>> def model(x):
    ...     with pyro.plate("data", len(x)):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
    ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> def guide(x):
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("z", dist.Normal(x / 2, 0.5**0.5))  # the exact posterior
    >>> w = log_weights(model, guide, torch.tensor([0.0, 1.0]), num_samples=3)
    >>> torch.allclose(w.log_w, dist.Normal(0.0, 2**0.5).log_prob(torch.tensor([0.0, 1.0])).expand(3, 2))
    True
    """
    model_trace, guide_trace = particle_traces(
        model, guide, *args, num_samples=num_samples, max_plate_nesting=max_plate_nesting, **kwargs
    )
    log_lik = log_prior = log_q = None
    means, samples = {}, {}

    def add(total, site):
        term = _per_datum(site, num_samples, plate_name)
        return term if total is None else total + term

    for site in model_trace.nodes.values():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if site["is_observed"]:
            log_lik = add(log_lik, site)
        else:
            log_prior = add(log_prior, site)
    for name, site in guide_trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        log_q = add(log_q, site)
        means[name] = _mean(site, num_samples, plate_name)
        samples[name] = site["value"]
    if log_lik is None or log_q is None:
        raise ValueError("the model needs an observed site and the guide a latent site to weigh")
    return LogWeights(log_lik, torch.zeros_like(log_lik) if log_prior is None else log_prior, log_q, means, samples)


def _chunk_sizes(num_samples: int, num_data: int, budget: int) -> tuple[int, int]:
    """(data per pass, samples per pass) with their product at most ``budget``."""
    samples = min(num_samples, budget)
    return max(1, min(num_data, budget // samples)), samples


def _captured_log_weights(model, guide, num_samples: int, max_plate_nesting: int, compiler: str):
    """:func:`log_weights` on a batch, captured and compiled (see :mod:`inference.compiled`)."""
    def terms(*args):
        w = log_weights(model, guide, *args, num_samples=num_samples, max_plate_nesting=max_plate_nesting)
        return w.log_lik, w.log_prior, w.log_q, w.latent_means

    captured = Captured(terms, compiler=compiler)

    def weights(*args):
        return LogWeights(*captured(*args))

    return weights


@torch.no_grad()
def iter_log_weights(
    model,
    guide,
    data,
    *,
    num_samples: int,
    budget: int = 2**16,
    max_plate_nesting: int = 1,
    device=None,
    progress: bool = False,
    desc: str = "weights",
    compile: bool | str = False,
) -> Iterator[tuple[torch.Tensor, LogWeights]]:
    """For consecutive batches of a data set (anything with ``__len__`` and
    ``batch(index)``; a batch that is a tuple ``(x, y, ...)`` is passed to the
    model and guide as their arguments): the batch's ``x`` and its :class:`LogWeights` with
    ``num_samples`` samples per datum (float64, ``(num_samples, batch)``),
    drawn in vectorized passes of at most ``budget`` (samples x data)
    particles, so that memory is bounded by ``budget`` whatever ``num_samples`` is.

    :param compile: capture and compile each pass's computation once per
        shape (``True`` for inductor, or a compiler's name; see
        :mod:`inference.compiled`); the model and guide must be static.
    """
    compiler = compiler_name(compile)
    passes = {}  # samples per pass -> the captured computation

    def weights(args, samples):
        if compiler is None:
            return log_weights(model, guide, *args, num_samples=samples, max_plate_nesting=max_plate_nesting)
        if samples not in passes:
            passes[samples] = _captured_log_weights(model, guide, samples, max_plate_nesting, compiler)
        return passes[samples](*args)

    n = len(data)
    batch_size, sample_chunk = _chunk_sizes(num_samples, n, budget)
    bar = tqdm(total=n, desc=desc, unit="datum", disable=not progress, leave=False)
    for first in range(0, n, batch_size):
        args = args_to(as_args(data.batch(torch.arange(first, min(first + batch_size, n)))), device)
        x = args[0]
        chunks = [weights(args, min(sample_chunk, num_samples - done)) for done in range(0, num_samples, sample_chunk)]
        yield x, LogWeights(
            torch.cat([c.log_lik for c in chunks]).double(),
            torch.cat([c.log_prior for c in chunks]).double(),
            torch.cat([c.log_q for c in chunks]).double(),
            {site: torch.stack([c.latent_means[site] for c in chunks]).mean(0) for site in chunks[0].latent_means},
        )
        bar.update(x.shape[0])
    bar.close()
