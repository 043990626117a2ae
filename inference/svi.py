"""``fit``: minibatch SVI for any Pyro model/guide pair, with a progress bar,
per-epoch metrics, a NaN guard and checkpoints that resume exactly.

The loop follows Pyro's :class:`~pyro.infer.SVI` (parameters are found by
tracing ``param`` sites) but steps a plain ``torch.optim`` optimizer on
``elbo.differentiable_loss``, with Pyro's validation on for the first step
only: that removes most of Pyro's per-step overhead (see ``BENCHMARKS.md``).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import inspect
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyro
import torch
from pyro import poutine
from pyro.optim.clipped_adam import ClippedAdam
from tqdm.auto import tqdm

from inference.batching import args_to, as_args, as_dataset, data_state, full_view, listed, load_data_state, nonfinite_rows
from inference.checkpoint import (
    CheckpointError,
    load_checkpoint,
    resume_hint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    write_failed,
)
from inference.compiled import Captured, CompilerName, compiler_name
from inference.distributed import ParamModule, Shard, World, all_sum, average_gradients, gather, join, num_steps, shard
from inference.estimators import ESTIMATORS, NO_GRADIENT, EstimatorName, backward, make_elbo
from inference.free_bits import with_free_bits
from inference.graph_loss import graph_loss
from inference.options import choose
from inference.params import restore_params, traced_params
from inference.lr_schedules import LR_SCHEDULES
from inference.normalized_adam import NormalizedAdam
from inference.run_lock import hold_run_dir
from inference.scaling import BetaScaled, Factor, ScaleSites, beta_scale, schedule_from_dict, schedule_to_dict
from inference.stopping import stop_on_signals
from inference.weights import iter_log_weights

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"
METRICS_NAME = "metrics.csv"


FUSED_ADAM_DEVICES = {"cpu", "cuda"}  # where torch >= 2.4 has a fused Adam kernel


def fused_adam(params, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, *,
               kind: type[torch.optim.Adam] = torch.optim.Adam) -> torch.optim.Adam:
    """``torch.optim.Adam`` (or the subclass ``kind``), fused into one kernel per step where torch
    has one for the parameters (real floating-point tensors on CPU or CUDA): the same update
    rule at about a third of the default implementation's cost per step on CPU
    (see ``BENCHMARKS.md``); the default implementation elsewhere.

    >>> w = torch.zeros(3, requires_grad=True)
    >>> fused_adam([w], lr=0.1).defaults["fused"]
    True
    """
    params = list(params)
    fusable = all(p.is_floating_point() and p.device.type in FUSED_ADAM_DEVICES for p in params)
    return kind(params, lr=lr, betas=betas, eps=eps, fused=fusable or None)


#: name -> ``make(params, lr=, betas=, eps=)``; ``"normalized_adam"``: Adam on each tensor's gradient
#: scaled to unit norm (:mod:`inference.normalized_adam`, Tomczak & Welling's optimizer)
OPTIMIZERS = {"adam": fused_adam, "clipped_adam": ClippedAdam,
              "normalized_adam": functools.partial(fused_adam, kind=NormalizedAdam)}
# settings that may differ between a run and its resumption
RESUMABLE_CHANGES = {"epochs", "max_steps", "max_seconds", "checkpoint_every", "compile"}


@dataclass(frozen=True)
class FitConfig:
    """Every setting of a run; saved (as a dict) inside its checkpoints.

    :ivar beta: the KL weight as a schedule dict (see :func:`inference.scaling.schedule_to_dict`).
    :ivar free_bits: a floor in nats on the batch-averaged KL of each latent dimension, or ``None``.
    :ivar lr_decay: the learning rate is multiplied by this after every epoch.
    :ivar lr_schedule: or a schedule of the epoch from :mod:`inference.lr_schedules`, as a dict
        (e.g. ``Staged()``, Burda et al.'s), whose factor multiplies ``lr``.
    :ivar betas, eps: Adam's.
    :ivar validation_samples: K of the validation bound: with K > 1 the metrics
        gain ``val_iwae``, the K-sample bound, and early stopping watches it.
    :ivar patience: stop when the validation bound has not improved for this
        many epochs (``None``: never), and end with the best parameters, saved
        as ``best.pt`` in the run folder; resuming keeps the count.
    :ivar clip_norm: clip the gradient's global norm to this, or ``None``.
    :ivar max_steps: stop after this many optimizer steps in all.
    :ivar max_seconds: stop after this many seconds of training steps in all
        (validation and checkpoints not counted): a wall-clock budget.
    :ivar checkpoint_every: also checkpoint every this many steps (besides every epoch end).
    :ivar tc_weight: under ``estimator="tcvae"``, the weight of the total correlation (beta-TCVAE's
        beta, :mod:`inference.tcvae`); ``None`` elsewhere.
    :ivar compile: capture the estimator's loss as a graph and compile it
        (:mod:`inference.compiled`): ``True`` for inductor, or a compiler's
        name (``"inductor"``, ``"aot_eager"``, ``"graph"``); ``False`` runs eagerly.
    """

    estimator: EstimatorName = "trace"
    num_particles: int = 1
    tc_weight: float | None = None
    beta: dict = field(default_factory=lambda: schedule_to_dict(1.0))
    latent_sites: tuple[str, ...] = ("z",)
    free_bits: float | None = None
    optimizer: Literal["adam", "clipped_adam", "normalized_adam"] = "adam"
    lr: float = 1e-3
    lr_decay: float = 1.0
    lr_schedule: dict | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    clip_norm: float | None = None
    epochs: int = 10
    max_steps: int | None = None
    max_seconds: float | None = None
    batch_size: int = 128
    seed: int = 0
    checkpoint_every: int | None = 500
    compile: bool | CompilerName = False
    validation_samples: int = 1
    patience: int | None = None

    def __post_init__(self):
        choose(OPTIMIZERS, self.optimizer, what="optimizer")
        compiler_name(self.compile)  # validate early
        for name in ("num_particles", "epochs", "batch_size", "validation_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.lr_schedule is not None:
            schedule_from_dict(self.lr_schedule, LR_SCHEDULES, what="lr schedule")
            if self.lr_decay != 1.0:
                raise ValueError("lr_decay and lr_schedule both set: give one (lr_schedule=Exponential(gamma) is lr_decay)")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 epochs, got {self.patience}")

    @property
    def compiler(self) -> CompilerName | None:
        """The compiler's name, or ``None`` for eager steps."""
        return compiler_name(self.compile)

    def lr_factor(self, epoch: int) -> float:
        """The factor of ``lr`` in ``epoch`` (counted from 0)."""
        if self.lr_schedule is None:
            return self.lr_decay**epoch
        return schedule_from_dict(self.lr_schedule, LR_SCHEDULES, what="lr schedule")(epoch)

    @classmethod
    def from_dict(cls, data: dict) -> FitConfig:
        data = dict(data)
        data["latent_sites"] = tuple(data["latent_sites"])
        if "betas" in data:
            data["betas"] = tuple(data["betas"])
        return cls(**data)


@dataclass
class FitResult:
    """What a run produced: its config, one metrics dict per epoch, where it was
    saved, and ``train_seconds``: the time spent in training steps (all sessions of a resumed run),
    of which ``compile_seconds`` (this session) went into capturing and compiling compiled steps;
    with early stopping, ``best_epoch`` (whose parameters the model ends with) and ``stopped_early``;
    ``interrupted`` names the signal (``"SIGINT"``, ``"SIGTERM"``) that stopped the run early, else ``None``."""

    config: FitConfig
    metrics: list[dict]
    step: int
    epoch: int
    seconds: float
    run_dir: Path | None
    train_seconds: float = 0.0
    compile_seconds: float = 0.0
    best_epoch: int | None = None
    stopped_early: bool = False
    interrupted: str | None = None

    @property
    def final_loss(self) -> float:
        return self.metrics[-1]["train_loss"] if self.metrics else float("nan")


class NonFiniteError(FloatingPointError):
    """The loss or a gradient went non-finite; the run stopped without taking that step."""


def _accepts_num_data(fn) -> bool:
    try:
        return "num_data" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _validate_whole(model, datasets: dict) -> None:
    """If the model is a method of an object with ``validate(x)`` (as :class:`pyro_vae.VAE`), run it once
    on every data set that has a free full view, naming the data set in its error."""
    validate = getattr(getattr(model, "__self__", None), "validate", None)
    if not callable(validate):
        return
    for name, dataset in datasets.items():
        x = full_view(dataset) if dataset is not None else None
        if x is not None:
            try:
                validate(x)
            except (ValueError, TypeError) as error:
                raise type(error)(f"the {name} set is refused before training: {error}") from None


def _discover_params(elbo, model, guide, args, kwargs, has_loss) -> dict[str, torch.Tensor]:
    """Run the objective once (with validation on) and collect its parameters, as Pyro's SVI does."""
    with poutine.trace(param_only=True) as capture, pyro.validation_enabled(True):
        loss = backward(elbo, model, guide, *args, **kwargs)
    if has_loss and not torch.isfinite(loss):
        raise NonFiniteError(f"the loss is {loss.item()} before any training step: check the data and the initialization")
    params = traced_params(capture.trace)
    if all(p.grad is None for p in params.values()):  # estimators without differentiable_loss skip backward silently
        raise ValueError(NO_GRADIENT)
    return params


def _check_arguments(model, args, kwargs) -> None:
    """Refuse batches that the model cannot take as its arguments (labels given to an unconditional model)."""
    try:
        signature = inspect.signature(model)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as error:
        name = getattr(model, "__qualname__", type(model).__name__)
        raise TypeError(
            f"the data set's batches give {len(args)} argument(s) but {name}{signature} cannot take them ({error}): "
            f"an unconditional model takes x alone (serve the data without labels); a conditional one "
            f"(pyro_vae.ConditionalVAE) takes (x, y), from data.with_labels()"
        ) from None


def _bad_rows(args, index) -> str | None:
    """The data set indices of the batch rows that hold NaN or inf (in any argument), or ``None`` if every value is finite."""
    floats = [a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point() and a.dim() > 0]
    if all(torch.isfinite(a).all() for a in floats):
        return None
    rows = index[torch.cat([nonfinite_rows(a) for a in floats]).unique().cpu()]
    return f"{len(rows)} row{'s' if len(rows) != 1 else ''} {listed(rows.tolist())}"


def _diagnose(model, guide, args, kwargs, params) -> str:
    """Name the sites whose log-density and the parameters whose gradient are not finite."""
    found = []
    try:
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        for where, trace in (("guide", guide_trace), ("model", model_trace)):
            for name, site in trace.nodes.items():
                if site["type"] == "sample":
                    value_ok = torch.isfinite(site["value"]).all()
                    logp_ok = torch.isfinite(site["fn"].log_prob(site["value"])).all()
                    if not (value_ok and logp_ok):
                        found.append(f"site {name!r} in the {where}")
    except Exception as error:  # the diagnosis must not hide the original problem
        found.append(f"(tracing failed: {error})")
    bad_grads = [n for n, p in params.items() if p.grad is not None and not torch.isfinite(p.grad).all()]
    if bad_grads:
        found.append(f"gradients of {', '.join(bad_grads[:5])}{' ...' if len(bad_grads) > 5 else ''}")
    return "; ".join(found) or "no single site (the loss overflowed)"


def _validation_metrics(model, guide, data, batch_size, device, num_samples: int = 1, world: World = World()) -> dict:
    """Per-datum ELBO, reconstruction and KL on a data set, and with ``num_samples`` K > 1
    the K-sample bound ``val_iwae`` (from the same K samples of z per datum); in a process
    group each rank scores its shard and the sums are reduced."""
    sums = torch.zeros(4, dtype=torch.float64)
    budget = batch_size * num_samples
    shard_data = Shard(data, world) if world.distributed else data
    for _, w in iter_log_weights(model, guide, shard_data, num_samples=num_samples, budget=budget, device=device,
                                 progress=False):
        iwae = torch.logsumexp(w.log_w, 0) - math.log(num_samples)
        terms = [w.log_w.mean(0), w.log_lik.mean(0), (w.log_q - w.log_prior).mean(0), iwae]
        sums += torch.stack([t.sum() for t in terms]).cpu()
    elbo, rec, kl, iwae = (torch.tensor(all_sum(sums.tolist(), world)) / len(data)).tolist()
    row = {"val_elbo": elbo, "val_reconstruction": rec, "val_kl": kl}
    return row | {"val_iwae": iwae} if num_samples > 1 else row


def fit(
    model: Callable,
    guide: Callable,
    data,
    *,
    validation=None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    callbacks: Sequence[Callable[[dict], None]] = (),
    progress: bool = True,
    device: str | torch.device | None = None,
    beta: Factor = 1.0,
    lr_schedule=None,
    reshard: bool = False,
    **settings,
) -> FitResult:
    """Fit ``guide`` to ``model`` by minibatch SVI.

    ``model`` and ``guide`` are any Pyro programs taking a batch ``x`` (or, when the
    data set's ``batch(index)`` gives a tuple such as ``(x, y)``, its entries); if the
    model takes a ``num_data`` keyword (as :class:`pyro_vae.VAE` does) it gets
    the data set's size, so that its ``"data"`` plate scales the loss to the
    full-data ELBO. The reported ``train_loss`` is per datum.

    :param data: a tensor ``(N, ...)`` or a data set with ``__len__`` and ``batch(index)``.
        Data checks: if ``model`` is a method of an object with a ``validate(x)``
        method (:meth:`pyro_vae.VAE.validate`: shape, NaN or inf, the likelihood's
        support), a tensor data set (and validation set) is checked whole
        before the first step, once, and a bad row is named by its index; a
        data set served only by ``batch(index)`` is checked on its first batch
        (with Pyro's validation, as are the model's and guide's arguments),
        not on later ones: a :class:`pyro_vae.data.ImageData`'s representation
        gives every batch values of the same kind, but a hand-made data set
        that changes later goes unchecked.
        Under ``estimator="tail_adaptive"``, which gives gradients but no loss
        value, ``train_loss`` is NaN: watch the validation ELBO instead.
    :param validation: data for the per-epoch validation ELBO, reconstruction and KL.
    :param run_dir: where ``checkpoint.pt`` and ``metrics.csv`` go (nothing is saved if ``None``).
    :param resume: continue the run saved in ``run_dir``; its settings must match.
    :param callbacks: called with each epoch's metrics dict.
    :param beta: the KL weight: a number or a schedule of the step (see :mod:`inference.scaling`).
    :param lr_schedule: a schedule of the epoch from :mod:`inference.lr_schedules` (e.g.
        ``Staged()``, ``Cosine(epochs=100)``): its factor multiplies ``lr``.
        Early stopping (``patience``) needs ``validation``.
    :param reshard: resume a checkpoint made by another number of processes (see
        below); the ranks without a saved random-number state get fresh seeds, so
        the continuation is not the one the original group would have drawn.

    Under ``torchrun`` (see :mod:`inference.distributed`) ``fit`` trains data-parallel
    on every process: each epoch's order is sharded across the ranks (``batch_size``
    per rank), gradients are averaged by ``DistributedDataParallel``, the metrics are
    global, rank 0 alone writes files, and a group restarted by ``torchrun
    --max-restarts`` resumes from the last checkpoint by itself.
    :param settings: the fields of :class:`FitConfig` (``estimator``, ``lr``, ``epochs``, ``compile``, ...).

    Compiled steps (``compile=True``; see :mod:`inference.compiled`): the
    estimator's loss of a *static* model and guide is captured once per batch
    shape and compiled; the last, smaller batch of an epoch is captured once
    more (cached), not skipped. The beta schedule's factor is a graph input,
    so schedules, free bits, ``num_data`` scaling, clipping, the NaN guard,
    metrics, checkpoints and the progress bar work as in eager steps. The
    first step of each shape takes the compile time (``FitResult.compile_seconds``).
    A model whose structure changes between steps is stopped with
    :class:`~inference.compiled.NotStaticError`. Resuming a compiled run
    gives bitwise the same parameters as running it uninterrupted, on the
    same machine and compiler (the RNG state is saved, and capturing draws
    nothing from it); compiled and eager runs draw different noise under
    inductor, so they agree in distribution, not bit for bit.
    :raises NonFiniteError: the loss or a gradient went non-finite (the message names
        the step, the sites and remedies; the last checkpoint is left as it was).
    :raises ~inference.run_lock.RunInUseError: another live process is training into
        ``run_dir`` (one process per run folder: two would overwrite each other's checkpoints).

    >>> import torch, pyro, pyro.distributions as dist
    >>> def model(x):
    ...     loc = pyro.param("loc", torch.tensor(0.0))
    ...     with pyro.plate("data", len(x)):
    ...         z = pyro.sample("z", dist.Normal(loc, 1.0))
    ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> def guide(x):
    ...     w = pyro.param("w", torch.tensor(0.1))
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("z", dist.Normal(w * x, 0.7))
    >>> pyro.clear_param_store()
    >>> result = fit(model, guide, torch.randn(256) + 3.0, epochs=30, batch_size=64, lr=0.05, progress=False)
    >>> round(pyro.param("loc").item())  # the maximum-likelihood mean, 3
    3
    """
    if lr_schedule is not None and not isinstance(lr_schedule, dict):
        lr_schedule = schedule_to_dict(lr_schedule, LR_SCHEDULES)
    config = FitConfig(beta=schedule_to_dict(beta), lr_schedule=lr_schedule, **settings)
    if config.patience is not None and validation is None:
        raise ValueError("early stopping (patience) watches the validation bound: pass validation=...")
    data = as_dataset(data)
    validation = as_dataset(validation) if validation is not None else None
    n = len(data)
    world, device = join(device)
    run_dir = Path(run_dir) if run_dir is not None else None
    checkpoint_path = run_dir / CHECKPOINT_NAME if run_dir is not None else None
    if world.restarts and checkpoint_path is not None and checkpoint_path.exists():
        resume = True  # torchrun restarted the group after a failure: continue from the last checkpoint
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs the run_dir of the run to continue")
    saved = None
    if checkpoint_path is not None:
        if resume:
            saved = load_checkpoint(checkpoint_path) if checkpoint_path.exists() else None
            if saved is None:
                raise FileNotFoundError(f"nothing to resume: no {CHECKPOINT_NAME} in {run_dir}; drop resume=True to start")
            _check_same_run(FitConfig.from_dict(saved["config"]), config, checkpoint_path)
            made_by = saved.get("world_size", 1)
            if made_by != world.size and not reshard:
                raise CheckpointError(
                    f"{checkpoint_path} was made by {made_by} process(es) and this run has {world.size}: each rank's "
                    f"random numbers and shard depend on the world size; resume with {made_by}, or pass "
                    f"reshard=True (pyro-vae train --reshard) to continue with {world.size}"
                )
        elif checkpoint_path.exists():
            raise CheckpointError(
                f"{run_dir} already holds a run; pass resume=True to continue it, or choose another run_dir"
            )

    if config.beta == schedule_to_dict(1.0):  # beta = 1 is the plain ELBO: no handler, no per-site overhead
        scaled = BetaScaled(model, guide, ScaleSites({site: 1.0 for site in config.latent_sites}), config.latent_sites)
    else:
        scaled = beta_scale(model, guide, beta=schedule_from_dict(config.beta), sites=config.latent_sites)
    elbo = make_elbo(config.estimator, num_particles=config.num_particles, tc_weight=config.tc_weight)
    if config.free_bits is not None:
        elbo = with_free_bits(elbo, config.free_bits, sites=config.latent_sites)
    step_loss_fn = graph_loss(elbo) if config.compile else None  # refuses estimators that cannot be captured
    kwargs = {"num_data": n} if _accepts_num_data(model) else {}
    per_datum = n if kwargs else None  # the loss covers the data set, else the batch

    _validate_whole(model, {"training": data, "validation": validation})
    before = data_state(data)
    probe = args_to(as_args(data.batch(torch.arange(min(n, config.batch_size)))), device)
    _check_arguments(model, probe, kwargs)
    # tail_adaptive gives gradients only: its loss value is +inf by design
    has_loss = config.estimator != "tail_adaptive"
    params = _discover_params(elbo, scaled.model, scaled.guide, probe, kwargs, has_loss)
    load_data_state(data, before)
    param_list = list(params.values())
    step_loss = None
    if step_loss_fn is not None:
        step_loss = Captured(
            lambda *args: step_loss_fn(scaled.model, scaled.guide, *args, **kwargs),
            params=param_list,
            gradients=True,
            scales=[scaled.handler],
            compiler=config.compiler,
            mode="reduce-overhead" if probe[0].device.type == "cuda" and config.compiler == "inductor" else None,
        )
    del probe
    ddp = None
    if world.distributed and step_loss is None:
        if not hasattr(elbo, "differentiable_loss"):
            usable = [name for name in ESTIMATORS if hasattr(make_elbo(name, num_particles=2), "differentiable_loss")]
            raise ValueError(f"estimator {config.estimator!r} has no differentiable loss, which DistributedDataParallel "
                             f"differentiates; train it in one process, or choose one of {', '.join(usable)}")
        constraints = pyro.get_param_store().get_state()["constraints"]
        holder = ParamModule(params, lambda *args: elbo.differentiable_loss(scaled.model, scaled.guide, *args, **kwargs),
                             constraints={name: constraints[name] for name in params if name in constraints})
        cuda = device is not None and torch.device(device).type == "cuda"
        ddp = torch.nn.parallel.DistributedDataParallel(holder, device_ids=[torch.device(device).index] if cuda else None)
        params = dict(zip(params, holder.trained))  # the same storage; what the optimizer steps
        param_list = holder.trained
    elif world.distributed:  # compiled steps: every rank starts from rank 0's parameters, as DDP would
        with torch.no_grad():
            for p in param_list:
                torch.distributed.broadcast(p, src=0)
    make_optimizer = choose(OPTIMIZERS, config.optimizer, what="optimizer")
    optimizer = make_optimizer(param_list, lr=config.lr, betas=config.betas, eps=config.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, config.lr_factor)
    watched = "val_iwae" if config.validation_samples > 1 else "val_elbo"
    best = {"value": -math.inf, "epoch": None, "waited": 0, "stopped": False}
    best_params = None
    shuffle = torch.Generator().manual_seed(config.seed)

    step, epoch, position, order, metrics, trained = 0, 0, 0, None, [], 0.0
    if saved is not None:
        restore_params(params, saved["params"], checkpoint_path)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict({"lr_lambdas": [None], **saved["scheduler"]})  # older runs saved ExponentialLR's
        best = dict(saved.get("best", best))
        best_path = run_dir / BEST_NAME
        if best["epoch"] is not None and best_path.exists():
            best_params = load_checkpoint(best_path)["params"]
        shuffle.set_state(saved["shuffle"])
        ranks = saved.get("ranks") or [{"rng": saved["rng"], "data_state": saved["data_state"]}]
        if world.rank < len(ranks):
            load_data_state(data, ranks[world.rank]["data_state"])
            set_rng_state(ranks[world.rank]["rng"])
        else:  # reshard=True onto more ranks than saved their state
            pyro.set_rng_seed(config.seed + world.rank + 7919 * saved["step"])
        step, epoch, position, metrics = saved["step"], saved["epoch"], saved["position"], list(saved["metrics"])
        trained = saved["train_seconds"]
        order = saved["order"] if position else None
        epoch_loss = saved.get("epoch_loss", (0.0, 0)) if position else (0.0, 0)  # a stopped epoch's loss so far
        log.info("resumed %s at epoch %d, step %d", checkpoint_path, epoch, step)
    else:
        pyro.set_rng_seed(config.seed + world.rank)
        epoch_loss = (0.0, 0)

    def checkpoint():
        if checkpoint_path is None:
            return
        ranks = gather({"rng": rng_state(), "data_state": data_state(data)}, world)  # every rank takes part
        if not world.is_main:
            return
        save_checkpoint(
            checkpoint_path,
            {
                "config": dataclasses.asdict(config),
                "params": {name: p.detach().cpu() for name, p in params.items()},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "shuffle": shuffle.get_state(),
                "data_state": data_state(data),
                "rng": rng_state(),
                "step": step,
                "epoch": epoch,
                "position": position,
                "order": order if order is not None else torch.empty(0, dtype=torch.long),
                "epoch_loss": [loss_sum, seen] if position else [0.0, 0],  # so a resumed epoch reports all its steps
                "metrics": metrics,
                "train_seconds": trained,
                "best": best,
                "world_size": world.size,
                "ranks": ranks,
            },
        )

    num_batches = num_steps(n, config.batch_size, world.size)
    span = config.batch_size * world.size  # data per global step
    total = config.epochs * num_batches if config.max_steps is None else min(config.max_steps, config.epochs * num_batches)
    started = time.perf_counter()
    bar = tqdm(total=total, initial=min(step, total), desc="fit", unit="step", disable=not (progress and world.is_main))
    clock = trained  # the time budget's clock: in a process group, the ranks' mean, the same on every rank

    def signalled() -> str | None:  # alone, this process's signal; in a group, the one all ranks agreed on
        return stopping if world.distributed else stop.requested

    def budget_left() -> bool:
        return not signalled() and (config.max_steps is None or step < config.max_steps) and (
            config.max_seconds is None or clock < config.max_seconds
        )

    how_to_resume = resume_hint(run_dir) if run_dir else "nothing is saved (no run_dir)"
    stopping = None  # in a group, the signal that stops the run: every rank learns it at the same step
    try:
        with hold_run_dir(run_dir if world.is_main else None), pyro.validation_enabled(False), \
                stop_on_signals(message=f"stopping after this step; {how_to_resume}") as stop:
            while epoch < config.epochs and budget_left() and not best["stopped"]:
                epoch_start = time.perf_counter()
                if order is None:
                    order = torch.randperm(n, generator=shuffle)
                loss_sum, seen = epoch_loss
                epoch_loss = (0.0, 0)
                while position < num_batches and budget_left():
                    step_start = time.perf_counter()
                    index = shard(order, position, config.batch_size, world)
                    step_len = min(span, n - position * span)  # data in this step over all ranks
                    args = args_to(as_args(data.batch(index)), device)
                    scaled.step = step
                    optimizer.zero_grad(set_to_none=True)
                    grad_sum = None
                    if step_loss is not None:
                        if step_loss.num_graphs == 0:
                            bar.set_postfix_str("capturing and compiling the step", refresh=True)
                        loss, step_grads, grad_sum = step_loss(*args)
                        average_gradients(step_grads, world)
                        for p, g in zip(param_list, step_grads):
                            p.grad = g
                    elif ddp is not None:  # DDP averages the gradients over the ranks during backward
                        loss = ddp(*args)
                        loss.backward()
                        loss = loss.detach()
                    else:
                        loss = backward(elbo, scaled.model, scaled.guide, *args, **kwargs)
                    grads = [p.grad for p in param_list if p.grad is not None]
                    if config.clip_norm is not None:
                        gauge_name, gauge = "norm", torch.nn.utils.get_total_norm(grads)
                        torch.nn.utils.clip_grads_with_norm_(param_list, config.clip_norm, gauge)
                    elif grad_sum is not None:  # a compiled step's graph sums the gradients
                        gauge_name, gauge = "sum", grad_sum
                    else:  # a sum is non-finite when any entry is, and costs half a norm
                        gauge_name = "sum"
                        gauge = torch.stack([g.sum() for g in grads]).sum() if grads else loss.new_zeros(())
                    value, gauge = torch.stack([loss, gauge.to(loss)]).tolist()  # one synchronization
                    if world.distributed:  # the global loss; every rank sees a non-finite value; one clock; one stop
                        value, gauge, clock, stops = all_sum([value, gauge, trained + time.perf_counter() - step_start,
                                                              float(stop.requested is not None)], world)
                        value, clock = value / world.size, clock / world.size
                        stopping = stopping or (stop.requested or "a signal on another rank" if stops else None)
                    value = value if has_loss else math.nan
                    # a sum of finite entries can still overflow: look closer before stopping
                    finite_grads = math.isfinite(gauge) or (
                        gauge_name == "sum" and all(bool(torch.isfinite(g).all()) for g in grads)
                    )
                    if not (finite_grads and (math.isfinite(value) or not has_loss)):
                        intact = f" The last checkpoint, {checkpoint_path}, is intact." if checkpoint_path else ""
                        rows = _bad_rows(args, index)
                        if rows is not None:  # the cause is the data, not the model: say so first
                            raise NonFiniteError(
                                f"step {step} (epoch {epoch}): the batch holds NaN or inf in {rows} of the data set "
                                f"(data set indices), so the loss is {value}; the model and guide are not at fault: "
                                f"clean or drop those observations.{intact}"
                            )
                        raise NonFiniteError(
                            f"step {step} (epoch {epoch}): the loss is {value} and the gradient {gauge_name} {gauge}; "
                            f"non-finite: {_diagnose(scaled.model, scaled.guide, args, kwargs, params)}. "
                            f"Remedies: a lower lr (now {optimizer.param_groups[0]['lr']:g}), clip_norm=10, "
                            f"optimizer='clipped_adam', a KL warm-up (beta schedule), or check the data.{intact}"
                        )
                    optimizer.step()
                    step, position = step + 1, position + 1
                    scale = per_datum or step_len / world.size  # data behind one rank's loss value
                    loss_sum += value / scale * step_len
                    seen += step_len
                    bar.update(1)
                    bar.set_postfix(loss=f"{value / scale:.4g}", beta=f"{scaled.beta:.3g}", refresh=False)
                    trained += time.perf_counter() - step_start
                    clock = clock if world.distributed else trained
                    if config.checkpoint_every and step % config.checkpoint_every == 0 and position < num_batches:
                        checkpoint()
                if position < num_batches:  # stopped by max_steps, max_seconds or a signal inside an epoch
                    checkpoint()
                    break
                row = {
                    "epoch": epoch + 1,
                    "step": step,
                    "train_loss": loss_sum / max(seen, 1),
                    "beta": scaled.beta,
                    "lr": optimizer.param_groups[0]["lr"],
                    "seconds": time.perf_counter() - epoch_start,
                    "train_seconds": trained,
                }
                if validation is not None:
                    row.update(_validation_metrics(model, guide, validation, config.batch_size, device,
                                                   config.validation_samples, world))
                    if config.patience is not None:
                        best_params = _watch(best, row[watched], epoch, params, best_params, config.patience,
                                             run_dir if world.is_main else None)
                metrics.append(row)
                scheduler.step()
                epoch, position, order = epoch + 1, 0, None
                checkpoint()
                _append_csv(run_dir if world.is_main else None, row)
                log.info("epoch %d: %s", epoch, row)
                for callback in callbacks:
                    callback(row)
    finally:
        bar.close()
    if world.distributed:  # return on every rank once rank 0's files are written (a next fit may read them)
        torch.distributed.barrier()
    if best_params is not None and (best["stopped"] or epoch >= config.epochs):  # end with the best parameters
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(best_params[name])
    compile_seconds = step_loss.compile_seconds if step_loss is not None else 0.0
    stopping = signalled()
    if stopping:
        log.warning("fit stopped by %s at step %d (epoch %d); %s", stopping, step, epoch, how_to_resume)
    return FitResult(config, metrics, step, epoch, time.perf_counter() - started, run_dir, trained, compile_seconds,
                     best_epoch=best["epoch"], stopped_early=best["stopped"], interrupted=stopping)


def _watch(best: dict, value: float, epoch: int, params: dict, best_params, patience: int, run_dir) -> dict | None:
    """Early stopping's bookkeeping after an epoch: keep the best parameters (in memory and in
    ``best.pt``), count the epochs without improvement, and mark the run stopped at ``patience``."""
    if value > best["value"]:
        best.update(value=value, epoch=epoch + 1, waited=0)
        best_params = {name: p.detach().cpu().clone() for name, p in params.items()}
        if run_dir is not None:
            save_checkpoint(run_dir / BEST_NAME, {"params": best_params, "epoch": epoch + 1, "value": value})
    else:
        best["waited"] += 1
        best["stopped"] = best["waited"] >= patience
    return best_params


def _check_same_run(saved: FitConfig, requested: FitConfig, path: Path) -> None:
    saved_d, requested_d = dataclasses.asdict(saved), dataclasses.asdict(requested)
    differ = [k for k in saved_d if k not in RESUMABLE_CHANGES and saved_d[k] != requested_d[k]]
    if differ:
        details = ", ".join(f"{k}={saved_d[k]!r} there but {requested_d[k]!r} here" for k in differ)
        raise CheckpointError(
            f"{path} was made by another run ({details}); resume with the same settings or choose another run_dir"
        )


def _append_csv(run_dir: Path | None, row: dict) -> None:
    if run_dir is None:
        return
    path = run_dir / METRICS_NAME
    new = not path.exists()
    try:
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
    except OSError as error:
        raise write_failed(path, error) from error
