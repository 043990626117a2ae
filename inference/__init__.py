"""How any Pyro ``(model, guide)`` pair is fit and judged.

Nothing in this package knows about VAEs: it works on every model whose latent
sites sit under a ``pyro.plate("data", ...)``.
"""

from inference.estimators import ESTIMATORS, make_elbo
from inference.options import choose
from inference.scaling import (
    SCHEDULES,
    BetaScaled,
    Constant,
    Cyclical,
    LinearWarmup,
    ScaleSites,
    Sigmoid,
    beta_scale,
    make_schedule,
    scale_sites,
)

__all__ = [
    "ESTIMATORS",
    "SCHEDULES",
    "BetaScaled",
    "Constant",
    "Cyclical",
    "LinearWarmup",
    "ScaleSites",
    "Sigmoid",
    "beta_scale",
    "choose",
    "make_elbo",
    "make_schedule",
    "scale_sites",
]
