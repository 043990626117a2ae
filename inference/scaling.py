"""Scale the log-density of named sample sites: the beta-VAE handler and its schedules.

In an ELBO every latent site ``z`` contributes ``log p(z) - log q(z|x)``. Scaling
that site by beta *in the model and in the guide alike* multiplies exactly
this term, the (Monte Carlo or analytic) KL, by beta, under every Pyro
estimator, while the observed sites keep their scale. Scaling ``"x"`` by 0
instead gives the "KL only" model, scaling ``"z"`` by 0 the "reconstruction
only" one: the two extremes that the VAE tutorial contrasts with the VAE.

References: Higgins et al. 2017 (beta-VAE); Bowman et al. 2016 (KL warm-up);
Fu et al. 2019 (cyclical annealing).
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import contextmanager
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Union

import torch
from pyro.poutine.messenger import Messenger

from inference.options import choose

Schedule = Callable[[int], float]
Factor = Union[float, Schedule]


@dataclass(frozen=True)
class Constant:
    """beta(step) = value."""

    value: float = 1.0

    def __call__(self, step: int) -> float:
        return float(self.value)


@dataclass(frozen=True)
class LinearWarmup:
    """KL warm-up: beta rises linearly from ``start`` to ``end`` over ``steps``
    steps, then stays at ``end``.

    >>> LinearWarmup(steps=100)(50)
    0.5
    """

    steps: int
    start: float = 0.0
    end: float = 1.0

    def __call__(self, step: int) -> float:
        return self.start + (self.end - self.start) * min(step / self.steps, 1.0)


@dataclass(frozen=True)
class Cyclical:
    """Cyclical annealing (Fu et al. 2019): in every cycle of ``period`` steps,
    beta rises linearly from ``start`` to ``end`` over the first ``ratio`` of
    the cycle and stays at ``end`` for the rest.

    >>> schedule = Cyclical(period=100, ratio=0.5)
    >>> schedule(25), schedule(75), schedule(125)
    (0.5, 1.0, 0.5)
    """

    period: int
    ratio: float = 0.5
    start: float = 0.0
    end: float = 1.0

    def __call__(self, step: int) -> float:
        tau = (step % self.period) / self.period
        return self.start + (self.end - self.start) * min(tau / self.ratio, 1.0)


@dataclass(frozen=True)
class Sigmoid:
    """Logistic warm-up (Bowman et al. 2016): beta follows a sigmoid centred on
    ``steps / 2`` with slope ``steepness / steps``, from ``start`` to ``end``.

    >>> Sigmoid(steps=100)(50)
    0.5
    """

    steps: int
    steepness: float = 10.0
    start: float = 0.0
    end: float = 1.0

    def __call__(self, step: int) -> float:
        t = self.steepness * (step / self.steps - 0.5)
        return self.start + (self.end - self.start) / (1.0 + math.exp(-t))


SCHEDULES: dict[str, type] = {
    "constant": Constant,
    "linear": LinearWarmup,
    "cyclical": Cyclical,
    "sigmoid": Sigmoid,
}
ScheduleName = Literal["constant", "linear", "cyclical", "sigmoid"]


def make_schedule(name: ScheduleName, **kwargs) -> Schedule:
    """Build a schedule by name, e.g. ``make_schedule("linear", steps=1000)``."""
    return choose(SCHEDULES, name, what="beta schedule")(**kwargs)


def schedule_name(schedule: Schedule, registry: Mapping[str, type] = SCHEDULES) -> str:
    """The registry name of a built-in schedule (for saving it in a config)."""
    for name, cls in registry.items():
        if type(schedule) is cls:
            return name
    raise ValueError(f"{schedule!r} is not one of the built-in schedules {list(registry)}")


def schedule_to_dict(schedule: Factor, registry: Mapping[str, type] = SCHEDULES) -> dict:
    """A plain dict (weights-only checkpoint friendly) that :func:`schedule_from_dict` rebuilds;
    a number is a :class:`Constant` beta schedule."""
    if not callable(schedule):
        schedule = Constant(float(schedule))
    return {"name": schedule_name(schedule, registry), **dataclasses.asdict(schedule)}


def schedule_from_dict(data: Mapping, registry: Mapping[str, type] = SCHEDULES, what: str = "beta schedule") -> Schedule:
    data = dict(data)
    return choose(registry, data.pop("name"), what=what)(**data)


class ScaleSites(Messenger):
    """Multiply the log-density of the named sample sites by a factor >= 0.

    A factor is a number or a schedule (a callable of the step); the step is
    the handler's :attr:`step` attribute, which a training loop advances.
    Unlike :func:`pyro.poutine.scale`, a factor of 0 is allowed: it removes a
    site's term from the objective (``{"z": 0}`` trains a pure autoencoder).

    Like every Pyro handler it works as a context manager and as a wrapper
    (see :func:`scale_sites`).

    :param scales: site name -> factor.
    :param step: the initial step.
    """

    def __init__(self, scales: Mapping[str, Factor], step: int = 0) -> None:
        super().__init__()
        if not scales:
            raise ValueError("scales is empty: name at least one site, e.g. {'z': 4.0}")
        self.scales = dict(scales)
        self.step = step
        self._given = None
        for name in self.scales:
            self.factor(name)  # validate early

    def factor(self, name: str) -> float:
        """The factor of site ``name`` at the current step."""
        value = self.scales[name]
        value = float(value(self.step) if callable(value) else value)
        if not value >= 0:  # also catches NaN
            raise ValueError(f"the scale of site {name!r} must be >= 0, got {value} at step {self.step}")
        return value

    @contextmanager
    def given(self, factors: Mapping[str, torch.Tensor]):
        """Within this context, scale by these tensors instead of the current
        factors: a captured graph (:mod:`inference.compiled`) takes them as inputs,
        so that a schedule's later values reach it."""
        old, self._given = self._given, dict(factors)
        try:
            yield self
        finally:
            self._given = old

    def _process_message(self, msg) -> None:
        if msg["type"] == "sample" and msg["name"] in self.scales:
            factor = self._given[msg["name"]] if self._given is not None else self.factor(msg["name"])
            msg["scale"] = factor * msg["scale"]


def scale_sites(fn: Callable | None = None, scales: Mapping[str, Factor] | None = None, step: int = 0):
    """Scale the named sites of ``fn``; without ``fn``, a context manager.

    >>> import torch, pyro, pyro.distributions as dist
    >>> def model():
    ...     pyro.sample("z", dist.Normal(0.0, 1.0))
    >>> trace = pyro.poutine.trace(scale_sites(model, {"z": 0.0})).get_trace()
    >>> trace.nodes["z"]["scale"]
    0.0
    """
    handler = ScaleSites(scales or {}, step=step)
    return handler if fn is None else handler(fn)


@dataclass
class BetaScaled:
    """A model and a guide whose latent sites share one :class:`ScaleSites` handler."""

    model: Callable
    guide: Callable
    handler: ScaleSites
    sites: tuple[str, ...]

    @property
    def step(self) -> int:
        return self.handler.step

    @step.setter
    def step(self, value: int) -> None:
        self.handler.step = value

    @property
    def beta(self) -> float:
        """beta at the current step."""
        return self.handler.factor(self.sites[0])


def beta_scale(
    model: Callable,
    guide: Callable,
    beta: Factor = 1.0,
    sites: Sequence[str] = ("z",),
) -> BetaScaled:
    """Weight the KL term of the ELBO by ``beta``, in any model/guide pair.

    The latent ``sites`` are scaled in the model and in the guide by one
    shared handler, so ``log p(z) - log q(z|x)`` is multiplied by beta under
    every estimator (Monte Carlo KL under ``Trace_ELBO``, analytic KL under
    ``TraceMeanField_ELBO``) and the likelihood term is left untouched.

    :param beta: a number >= 0 or a schedule (a callable of the step, such as
        :class:`LinearWarmup`); set ``result.step`` as training advances.
    :param sites: the latent sites that make up the KL term.
    :returns: a :class:`BetaScaled` with ``.model``, ``.guide``, ``.step`` and ``.beta``.

    >>> import torch, pyro, pyro.distributions as dist
    >>> from pyro.infer import Trace_ELBO
    >>> def model(x):
    ...     z = pyro.sample("z", dist.Normal(0.0, 1.0))
    ...     pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> def guide(x):
    ...     pyro.sample("z", dist.Normal(0.5 * x, 0.8))
    >>> scaled = beta_scale(model, guide, beta=LinearWarmup(steps=10))
    >>> scaled.step = 5
    >>> scaled.beta
    0.5
    >>> loss = Trace_ELBO().loss(scaled.model, scaled.guide, torch.tensor(1.0))
    """
    sites = tuple(sites)
    handler = ScaleSites({site: beta for site in sites})
    return BetaScaled(model=handler(model), guide=handler(guide), handler=handler, sites=sites)
