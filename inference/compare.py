"""Compare gradient estimators on any model/guide pair: the loss estimate, and per
parameter group the gradient variance and signal-to-noise ratio.

Rainforth et al. 2018 ("Tighter variational bounds are not necessarily
better") define the signal-to-noise ratio of a gradient component as
|E[g]| / std(g). For the K-sample IWAE bound it falls like 1/sqrt(K) for the
guide's parameters and rises like sqrt(K) for the model's; the doubly
reparameterized estimator (Tucker et al. 2019) keeps the guide's from falling.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from pyro import poutine

from inference.estimators import backward, make_elbo


@dataclass(frozen=True)
class GroupStats:
    """Gradient statistics of one parameter group over repeated draws.

    :ivar snr: the mean over the group's components of |mean| / std (inf where a
        component is deterministic and nonzero, as under an analytic KL).
    :ivar variance: the sum over the group's components of the gradient variance.
    """

    num_params: int
    snr: float
    variance: float
    mean_norm: float


@dataclass(frozen=True)
class GradientStats:
    """One estimator's loss estimate (mean and standard error over repeats),
    seconds per gradient, and :class:`GroupStats` per parameter group."""

    estimator: str
    num_particles: int
    loss: float
    loss_se: float
    seconds_per_step: float
    groups: dict[str, GroupStats]


def parameter_groups(model, guide, *args, **kwargs) -> dict[str, list[str]]:
    """``{"guide": [...], "model": [...]}``: the parameter names that the guide
    uses, and the others that the model uses."""
    with poutine.trace(param_only=True) as guide_params:
        guide(*args, **kwargs)
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    with poutine.trace(param_only=True) as model_params:
        poutine.replay(model, trace=guide_trace)(*args, **kwargs)
    in_guide = sorted(guide_params.trace.nodes)
    return {"guide": in_guide, "model": sorted(set(model_params.trace.nodes) - set(in_guide))}


def _params(names: Sequence[str], model, guide, args, kwargs) -> dict[str, torch.Tensor]:
    with poutine.trace(param_only=True) as capture:
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        poutine.replay(model, trace=guide_trace)(*args, **kwargs)
    return {name: capture.trace.nodes[name]["value"].unconstrained() for name in names}


def gradient_stats(
    model,
    guide,
    *args,
    estimators: Sequence[str] = ("trace", "stl"),
    num_particles: int = 1,
    repeats: int = 100,
    groups: dict[str, Sequence[str]] | None = None,
    **kwargs,
) -> dict[str, GradientStats]:
    """Draw ``repeats`` gradients of each estimator on one batch and summarize them.

    :param args, kwargs: the batch (the model's and guide's arguments).
    :param estimators: names from :data:`inference.estimators.ESTIMATORS`.
    :param num_particles: K, for every estimator.
    :param groups: group name -> parameter names; by default :func:`parameter_groups`.

    >>> import torch, pyro, pyro.distributions as dist
    >>> def model(x):
    ...     loc = pyro.param("loc", torch.tensor(0.0))
    ...     with pyro.plate("data", len(x)):
    ...         z = pyro.sample("z", dist.Normal(loc, 1.0))
    ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> def guide(x):
    ...     w = pyro.param("w", torch.tensor(0.5))
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("z", dist.Normal(w * x, 0.5**0.5))
    >>> stats = gradient_stats(model, guide, torch.randn(20), estimators=["trace", "stl"], repeats=50)
    >>> stats["stl"].groups["guide"].variance < stats["trace"].groups["guide"].variance  # q is the posterior
    True
    """
    groups = dict(groups or parameter_groups(model, guide, *args, **kwargs))
    params = _params([n for names in groups.values() for n in names], model, guide, args, kwargs)
    results = {}
    for name in estimators:
        elbo = make_elbo(name, num_particles=num_particles)
        losses, grads = [], {group: [] for group in groups}
        start = time.perf_counter()
        for _ in range(repeats):
            for p in params.values():
                p.grad = None
            losses.append(backward(elbo, model, guide, *args, **kwargs))
            for group, names in groups.items():
                grads[group].append(
                    torch.cat([(params[n].grad if params[n].grad is not None else torch.zeros_like(params[n])).flatten()
                               for n in names])
                    if names else torch.zeros(0)
                )
        seconds = (time.perf_counter() - start) / repeats
        losses = torch.stack(losses).double()
        results[name] = GradientStats(
            estimator=name,
            num_particles=num_particles,
            loss=losses.mean().item(),
            loss_se=(losses.std() / math.sqrt(repeats)).item(),
            seconds_per_step=seconds,
            groups={group: _group_stats(torch.stack(g).double()) for group, g in grads.items()},
        )
    return results


def _group_stats(g: torch.Tensor) -> GroupStats:
    mean, std = g.mean(0), g.std(0)
    informative = (std > 0) | (mean != 0)  # a deterministic nonzero component has SNR inf; an all-zero one none
    snr = (mean.abs()[informative] / std[informative]).mean().item() if informative.any() else math.nan
    return GroupStats(num_params=g.shape[1], snr=snr, variance=(std**2).sum().item(), mean_norm=mean.norm().item())
