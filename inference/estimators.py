"""ELBO estimators by name: one dict from name to a factory of a Pyro ``ELBO``.

Most entries are Pyro's own estimators; the registry gives them short, stable
names and common keyword arguments. The K-sample bounds are the project's
:class:`~inference.renyi.RenyiBound` (per datum, scaled by the data plate's
subsampling, with a ``differentiable_loss``), because Pyro's ``RenyiELBO``
gives another objective under a subsampled plate; the path-derivative
estimators are in :mod:`inference.path_derivative`.

================  ===========================================  =========================
name              Pyro class                                   reference
================  ===========================================  =========================
``trace``         :class:`~pyro.infer.Trace_ELBO`              Kingma & Welling 2014
``mean_field``    :class:`~pyro.infer.TraceMeanField_ELBO`     analytic KL where a
                                                               ``kl_divergence`` is
                                                               registered, Monte Carlo
                                                               otherwise
``graph``         :class:`~pyro.infer.TraceGraph_ELBO`         Schulman et al. 2015
``iwae``          :class:`~inference.renyi.RenyiBound`         Burda et al. 2016
                  (alpha = 0)
``renyi``         :class:`~inference.renyi.RenyiBound`         Li & Turner 2016
``tail_adaptive`` :class:`~pyro.infer.TraceTailAdaptive_ELBO`  Wang et al. 2018
``stl``           :class:`~inference.path_derivative.          Roeder et al. 2017
                  TraceSTL_ELBO`
``dreg``          :class:`~inference.path_derivative.          Tucker et al. 2019
                  DReG_ELBO` (K = ``num_particles``)
``enum``          :class:`~inference.enumeration.EnumELBO`     exact sums over discrete
                  (Pyro's ``TraceEnum_ELBO``)                  latents (Kingma et al. 2014)
``tcvae``         :class:`~inference.tcvae.TCVAE_ELBO`         Chen et al. 2018: the KL
                  (``tc_weight``: beta of beta-TCVAE)          split, TC weighted
================  ===========================================  =========================

``iwae`` and ``renyi`` with ``num_particles=K`` are the K-sample bounds; with
``K = 1`` they reduce to the ELBO.

Compiled steps (``fit(..., compile=True)``, :mod:`inference.compiled`) take
``trace``, ``mean_field``, ``stl``, ``iwae``, ``renyi`` and ``dreg`` (and free
bits on ``trace`` and ``mean_field``); ``graph``, ``tail_adaptive``, ``enum`` and ``tcvae`` run eagerly only. ``tail_adaptive`` only gives gradients: its
loss value is a surrogate, it ignores site scales (plate subsampling, the beta
handler) and it needs ``num_particles > 1``; monitor training with another
estimator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from pyro.infer import (
    ELBO,
    Trace_ELBO,
    TraceGraph_ELBO,
    TraceMeanField_ELBO,
    TraceTailAdaptive_ELBO,
)

from inference.options import choose
from inference.enumeration import EnumELBO
from inference.path_derivative import DReG_ELBO, TraceSTL_ELBO
from inference.renyi import RenyiBound
from inference.tcvae import TCVAE_ELBO

EstimatorName = Literal["trace", "mean_field", "graph", "iwae", "renyi", "tail_adaptive", "stl", "dreg", "enum", "tcvae"]


def _renyi(alpha: float = 0.0, num_particles: int = 1, max_plate_nesting: int = 1, **_) -> RenyiBound:
    return RenyiBound(alpha=alpha, num_particles=num_particles, max_plate_nesting=max_plate_nesting)


def _tail_adaptive(**kwargs) -> ELBO:
    if kwargs["num_particles"] < 2 or not kwargs["vectorize_particles"]:
        raise ValueError(
            "tail_adaptive needs num_particles >= 2 and vectorize_particles=True"
        )
    return TraceTailAdaptive_ELBO(**kwargs)


#: name -> factory(num_particles=..., vectorize_particles=..., max_plate_nesting=..., [alpha]) -> ELBO
ESTIMATORS: dict[str, Callable[..., ELBO]] = {
    "trace": Trace_ELBO,
    "mean_field": TraceMeanField_ELBO,
    "graph": TraceGraph_ELBO,
    "iwae": _renyi,
    "renyi": _renyi,
    "tail_adaptive": _tail_adaptive,
    "stl": TraceSTL_ELBO,
    "dreg": lambda num_particles, max_plate_nesting, **_: DReG_ELBO(num_particles, max_plate_nesting),
    "enum": EnumELBO,
    "tcvae": lambda num_particles, max_plate_nesting, tc_weight=1.0, **_: TCVAE_ELBO(
        tc_weight=tc_weight, num_particles=num_particles, max_plate_nesting=max_plate_nesting),
}


NO_GRADIENT = (
    "the loss depends on no parameter, so there is nothing to train: compute the model's and the "
    "guide's distributions from the values that pyro.param and pyro.module return"
)


def backward(elbo, model, guide, *args, **kwargs) -> torch.Tensor:
    """Accumulate the estimator's gradient into the parameters and return its
    loss, detached, through ``differentiable_loss`` where the estimator has one,
    else ``loss_and_grads``."""
    if hasattr(elbo, "differentiable_loss"):
        loss = elbo.differentiable_loss(model, guide, *args, **kwargs)
        if not loss.requires_grad:
            raise ValueError(NO_GRADIENT)
        loss.backward()
        return loss.detach()
    return torch.tensor(float(elbo.loss_and_grads(model, guide, *args, **kwargs)), dtype=torch.float64)


def make_elbo(
    name: EstimatorName = "trace",
    *,
    num_particles: int = 1,
    vectorize_particles: bool = True,
    max_plate_nesting: int = 1,
    alpha: float | None = None,
    tc_weight: float | None = None,
) -> ELBO:
    """Build the estimator called ``name``.

    :param name: a key of :data:`ESTIMATORS`.
    :param num_particles: Monte Carlo samples per data point (K for ``iwae``).
    :param vectorize_particles: draw all particles in one vectorized pass
        (Pyro adds an outer plate); needs a model whose batch dims are all
        declared by plates.
    :param max_plate_nesting: how many plates the model nests (1 for a VAE:
        the ``"data"`` plate).
    :param alpha: the order of the Renyi divergence (``renyi`` only).
    :param tc_weight: the weight of the total correlation (``tcvae`` only: Chen et al.'s beta;
        the mutual information and dimension-wise KL keep weight 1).

    >>> elbo = make_elbo("iwae", num_particles=10)
    >>> type(elbo).__name__, elbo.alpha, elbo.num_particles
    ('RenyiBound', 0.0, 10)
    """
    factory = choose(ESTIMATORS, name, what="estimator")
    if num_particles < 1:
        raise ValueError(f"num_particles must be >= 1, got {num_particles}")
    kwargs = dict(
        num_particles=num_particles,
        vectorize_particles=vectorize_particles and num_particles > 1,
        max_plate_nesting=max_plate_nesting,
    )
    if name == "renyi":
        kwargs["alpha"] = 0.5 if alpha is None else alpha
    elif alpha is not None:
        raise ValueError(f"alpha is an option of estimator='renyi' only, not {name!r}")
    if name == "tcvae":
        kwargs["tc_weight"] = 1.0 if tc_weight is None else tc_weight
    elif tc_weight is not None:
        raise ValueError(f"tc_weight is an option of estimator='tcvae' only, not {name!r}")
    if name == "tail_adaptive":
        kwargs["vectorize_particles"] = vectorize_particles
    return factory(**kwargs)
