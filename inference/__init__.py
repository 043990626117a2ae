"""How any Pyro ``(model, guide)`` pair is fit and judged.

Nothing in this package knows about VAEs: it works on every model whose latent
sites sit under a ``pyro.plate("data", ...)``.
"""

from inference.checkpoint import CheckpointError, WriteError, load_checkpoint, save_checkpoint
from inference.compiled import Captured, NotStaticError
from inference.estimators import ESTIMATORS, make_elbo
from inference.evaluate import Difference, Evaluation, evaluate, kl_per_dimension, mutual_information, paired_difference
from inference.free_bits import with_free_bits
from inference.graph_loss import graph_loss
from inference.lr_schedules import LR_SCHEDULES, Cosine, Exponential, Staged, Step
from inference.options import choose
from inference.params import load_params
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
from inference.renyi import RenyiBound
from inference.run_lock import RunInUseError
from inference.svi import FitConfig, FitResult, NonFiniteError, fit
from inference.weights import LogWeights, log_weights

__all__ = [
    "Captured",
    "NotStaticError",
    "RenyiBound",
    "graph_loss",
    "LR_SCHEDULES",
    "Cosine",
    "Exponential",
    "Staged",
    "Step",
    "CheckpointError",
    "WriteError",
    "Difference",
    "Evaluation",
    "FitConfig",
    "FitResult",
    "LogWeights",
    "NonFiniteError",
    "RunInUseError",
    "evaluate",
    "fit",
    "kl_per_dimension",
    "load_checkpoint",
    "load_params",
    "log_weights",
    "mutual_information",
    "paired_difference",
    "save_checkpoint",
    "with_free_bits",
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
