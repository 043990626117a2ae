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


def _param_sites(model, guide, args, kwargs) -> tuple[list[str], list[str], dict[str, torch.Tensor]]:
    """The guide's parameter names, the model's other ones, and every parameter's unconstrained tensor."""
    with poutine.trace(param_only=True) as guide_params:
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    with poutine.trace(param_only=True) as model_params:
        poutine.replay(model, trace=guide_trace)(*args, **kwargs)
    in_guide = sorted(guide_params.trace.nodes)
    in_model = sorted(set(model_params.trace.nodes) - set(in_guide))
    values = {name: site["value"].unconstrained()
              for trace in (guide_params.trace, model_params.trace) for name, site in trace.nodes.items()}
    return in_guide, in_model, values


def parameter_groups(model, guide, *args, **kwargs) -> dict[str, list[str]]:
    """``{"guide": [...], "model": [...]}``: the parameter names that the guide
    uses, and the others that the model uses."""
    in_guide, in_model, _ = _param_sites(model, guide, args, kwargs)
    return {"guide": in_guide, "model": in_model}


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
    in_guide, in_model, values = _param_sites(model, guide, args, kwargs)
    groups = dict(groups or {"guide": in_guide, "model": in_model})
    params = {name: values[name] for names in groups.values() for name in names}
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


@dataclass(frozen=True)
class RaceEntry:
    """One estimator's run: its budget use, held-out scores and learning curve
    (``(training seconds, validation ELBO per datum)`` at each epoch end)."""

    estimator: str
    num_particles: int
    steps: int
    train_seconds: float
    log_px: float
    log_px_se: float
    elbo: float
    curve: list[tuple[float, float]]


@dataclass(frozen=True)
class RaceResult:
    entries: list[RaceEntry]

    def table(self) -> str:
        """A markdown table, best held-out log p(x) first."""
        rows = ["| estimator | K | steps | train s | held-out log p(x) | held-out ELBO |", "|---|---|---|---|---|---|"]
        for e in sorted(self.entries, key=lambda e: -e.log_px):
            rows.append(f"| {e.estimator} | {e.num_particles} | {e.steps} | {e.train_seconds:.1f} | "
                        f"{e.log_px:.2f} ± {e.log_px_se:.2f} | {e.elbo:.2f} |")
        return "\n".join(rows)

    def csv(self) -> str:
        lines = ["estimator,num_particles,steps,train_seconds,log_px,log_px_se,elbo"]
        lines += [f"{e.estimator},{e.num_particles},{e.steps},{e.train_seconds:.3f},{e.log_px:.4f},{e.log_px_se:.4f},"
                  f"{e.elbo:.4f}" for e in self.entries]
        return "\n".join(lines) + "\n"

    def figure(self):
        """Validation ELBO against training seconds, one line per estimator."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 4.5), layout="constrained")
        ax = fig.subplots()
        for e in self.entries:
            if e.curve:
                seconds, bound = zip(*e.curve, strict=True)
                ax.plot(seconds, bound, marker="o", markersize=3, label=f"{e.estimator} (K={e.num_particles})")
        ax.set_xlabel("training seconds")
        ax.set_ylabel("validation ELBO (nats per datum)")
        ax.set_title("bound against wall time")
        ax.legend()
        return fig


def race(
    make_pair,
    data,
    test,
    *,
    estimators: Sequence[str | tuple[str, int]] = ("trace", "stl", ("iwae", 10), ("dreg", 10)),
    max_seconds: float | None = None,
    max_steps: int | None = None,
    validation=None,
    eval_samples: int = 100,
    seed: int = 0,
    progress: bool = False,
    **fit_options,
) -> RaceResult:
    """Train the same model under each estimator for the same budget and score them on ``test``.

    :param make_pair: a function returning a fresh ``(model, guide)``; it is
        called after ``torch.manual_seed(seed)`` and with a cleared param store
        for every entrant, so all start from the same initialization.
    :param estimators: names, or ``(name, num_particles)`` pairs.
    :param max_seconds, max_steps: the budget of every entrant (one of them is needed).
    :param validation: data for the learning curves (default: ``test``).
    :param fit_options: more :func:`inference.fit` settings (``lr``, ``batch_size``, ``compile``, ...);
        ``compile`` also compiles the scoring passes. A compiled entrant's compile
        time counts towards its ``max_seconds``.

    >>> import torch, pyro, pyro.distributions as dist
    >>> def make_pair():
    ...     def model(x):
    ...         loc = pyro.param("loc", torch.tensor(0.0))
    ...         with pyro.plate("data", len(x)):
    ...             pyro.sample("x", dist.Normal(pyro.sample("z", dist.Normal(loc, 1.0)), 1.0), obs=x)
    ...     def guide(x):
    ...         w = pyro.param("w", torch.tensor(0.0))
    ...         with pyro.plate("data", len(x)):
    ...             pyro.sample("z", dist.Normal(w * x, 0.7))
    ...     return model, guide
    >>> result = race(make_pair, torch.randn(64) + 2, torch.randn(32) + 2, estimators=["trace", ("iwae", 4)],
    ...               max_steps=40, batch_size=16, lr=0.05)
    >>> [(e.estimator, e.steps) for e in result.entries]
    [('trace', 40), ('iwae', 40)]
    """
    import pyro

    from inference.evaluate import evaluate
    from inference.svi import fit

    if max_seconds is None and max_steps is None:
        raise ValueError("race needs a budget: max_seconds or max_steps")
    epochs = fit_options.pop("epochs", 10**6)
    entries = []
    for spec in estimators:
        name, k = (spec, 1) if isinstance(spec, str) else spec
        pyro.clear_param_store()
        torch.manual_seed(seed)
        model, guide = make_pair()
        result = fit(model, guide, data, validation=validation if validation is not None else test, estimator=name,
                     num_particles=k, max_seconds=max_seconds, max_steps=max_steps,
                     epochs=epochs, seed=seed, progress=progress, **fit_options)
        score = evaluate(model, guide, test, num_samples=eval_samples, ks=(1, eval_samples), progress=progress,
                         compile=fit_options.get("compile", False))
        curve = [(row["train_seconds"], row["val_elbo"]) for row in result.metrics]
        entries.append(RaceEntry(name, k, result.step, result.train_seconds, score.log_px, score.log_px_se, score.elbo,
                                 curve))
    return RaceResult(entries)
