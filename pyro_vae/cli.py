"""The ``pyro-vae`` command: train a VAE, and evaluate, sample from and plot a saved run.

    pyro-vae train                      # MNIST, Bernoulli, N(0, I) prior, diagonal guide, z_dim 2
    pyro-vae train --z-dim 20 --likelihood continuous_bernoulli --epochs 30 --out runs/cb
    pyro-vae evaluate RUN | pyro-vae sample RUN | pyro-vae plot RUN
    pyro-vae compare --seconds 60       # estimators: gradient SNR table and a timed race
    pyro-vae diagnose RUN               # k-hat per image, NUTS references, amortization gap, collapse

Errors a user can make print one line that names the fix, and exit non-zero.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import signal
import sys
import time
from pathlib import Path

import torch

from inference import ESTIMATORS, SCHEDULES, CheckpointError, NonFiniteError, evaluate, fit, make_schedule
from inference.checkpoint import WriteError, write_failed, write_text
from inference.compiled import COMPILERS, NotStaticError
from inference.lr_schedules import Cosine, Staged
from pyro_vae.data import DATASETS, REPRESENTATIONS, DatasetNotFoundError, load_dataset
from pyro_vae.guides import GUIDES
from pyro_vae.likelihoods import LIKELIHOODS
from pyro_vae.nets import DECODERS, ENCODERS
from pyro_vae.plots import all_figures, class_samples, samples, training_curves
from pyro_vae.priors import PRIORS
from pyro_vae.run import (
    MODELS,
    RunConfig,
    RunError,
    load_model,
    read_config,
    read_json,
    read_metrics,
    save_model,
    write_config,
)
from pyro_vae.semi_supervised import SemiSupervisedVAE
from pyro_vae.vae import VAE

USER_ERRORS = (DatasetNotFoundError, CheckpointError, RunError, FileNotFoundError, ValueError, NonFiniteError,
               NotStaticError, WriteError)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyro-vae", description="Variational autoencoders as Pyro models and guides.")
    commands = parser.add_subparsers(dest="command", required=True)
    defaults = RunConfig()

    train = commands.add_parser("train", help="train a VAE and write a run folder",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    data = train.add_argument_group("data")
    data.add_argument("--dataset", choices=list(DATASETS), default=defaults.dataset)
    data.add_argument("--representation", choices=REPRESENTATIONS, default=None,
                      help="how pixels are served (default: the one the likelihood needs)")
    data.add_argument("--limit", type=int, default=None, help="use only the first N training images (quick runs)")
    data.add_argument("--test-limit", type=int, default=defaults.test_limit, help="test images to evaluate on")
    data.add_argument("--validation", type=int, default=defaults.validation, help="training images held out for validation")
    model = train.add_argument_group("model")
    model.add_argument("--model", choices=list(MODELS), default=defaults.model,
                       help="vae; cvae: conditioned on the label; m2: semi-supervised (Kingma et al. 2014)")
    model.add_argument("--labels", type=int, default=None, help="m2: how many training labels it sees")
    model.add_argument("--alpha", type=float, default=None,
                       help="m2: weight of log q(y|x) per labelled image (default Kingma et al.'s 0.1 N / labels)")
    model.add_argument("--prior", choices=list(PRIORS), default=defaults.prior)
    model.add_argument("--likelihood", choices=list(LIKELIHOODS), default=defaults.likelihood)
    model.add_argument("--guide", choices=list(GUIDES), default=defaults.guide)
    model.add_argument("--encoder", choices=list(ENCODERS), default=defaults.encoder)
    model.add_argument("--decoder", choices=list(DECODERS), default=defaults.decoder)
    model.add_argument("--hidden", nargs="*", default=None,
                       help="MLP hidden sizes (default 400); with several --z-dim sizes one comma-separated group "
                            "per layer, e.g. 200,200 100,100 (default: Burda et al.'s shapes, 200,200 then "
                            "the layer below's size twice)")
    model.add_argument("--z-dim", type=int, nargs="+", default=[defaults.z_dim],
                       help="latent size; several sizes (bottom to top, e.g. 100 50) give a hierarchical VAE")
    fitting = train.add_argument_group("training")
    fitting.add_argument("--estimator", choices=list(ESTIMATORS), default=None,
                         help="default: enum for m2 (its label summed out), trace otherwise")
    fitting.add_argument("--particles", type=int, default=1)
    fitting.add_argument("--beta", type=float, default=1.0, help="KL weight (the end value of a schedule)")
    fitting.add_argument("--beta-schedule", choices=list(SCHEDULES), default="constant")
    fitting.add_argument("--beta-steps", type=int, default=1000, help="warm-up length (period for 'cyclical')")
    fitting.add_argument("--free-bits", type=float, default=None, help="KL floor per latent dim, in nats")
    fitting.add_argument("--epochs", type=int, default=20)
    fitting.add_argument("--batch-size", type=int, default=128)
    fitting.add_argument("--lr", type=float, default=1e-3)
    fitting.add_argument("--lr-schedule", choices=list(LR_SCHEDULE_CHOICES), default="constant",
                         help="staged: Burda et al. 2016 (8 stages of 3^i epochs at lr x 10^(-i/7), squeezed into --epochs); "
                              "cosine: to 0 over --epochs")
    fitting.add_argument("--adam-eps", type=float, default=1e-8, help="Adam's eps (Burda et al.: 1e-4)")
    fitting.add_argument("--validation-samples", type=int, default=1, help="K of the validation bound (val_iwae)")
    fitting.add_argument("--patience", type=int, default=None,
                         help="stop when the validation bound has not improved for this many epochs; keep the best model")
    fitting.add_argument("--seed", type=int, default=0)
    fitting.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    _compile_option(fitting)
    fitting.add_argument("--eval-samples", type=int, default=1000, help="importance samples per test image")
    fitting.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<dataset>-<time>)")
    fitting.add_argument("--resume", action="store_true", help="continue the run in --out")
    fitting.add_argument("--reshard", action="store_true",
                         help="with --resume under torchrun: continue a run saved by another number of processes")
    fitting.add_argument("--no-progress", action="store_true", help="hide the progress bars")

    compare = commands.add_parser("compare", help="compare gradient estimators: an SNR table and a timed race",
                                  formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    compare.add_argument("--dataset", choices=list(DATASETS), default="mnist")
    compare.add_argument("--limit", type=int, default=10000, help="training images")
    compare.add_argument("--test-limit", type=int, default=1000, help="held-out images for the race's scores")
    compare.add_argument("--z-dim", type=int, default=20)
    compare.add_argument("--hidden", type=int, nargs="*", default=[200])
    compare.add_argument("--estimators", nargs="+", choices=list(ESTIMATORS), default=["trace", "stl", "iwae", "dreg"])
    compare.add_argument("--particles", type=int, nargs="+", default=[1, 10, 100], help="K values of the SNR table")
    compare.add_argument("--repeats", type=int, default=50, help="gradient draws per estimator and K")
    compare.add_argument("--warmup-epochs", type=int, default=1, help="epochs of 'trace' training before the SNR table")
    compare.add_argument("--race-particles", type=int, default=10, help="K of the multi-sample estimators in the race")
    compare.add_argument("--seconds", type=float, default=60.0, help="training seconds per estimator in the race")
    compare.add_argument("--batch-size", type=int, default=128)
    compare.add_argument("--lr", type=float, default=1e-3)
    compare.add_argument("--eval-samples", type=int, default=100)
    compare.add_argument("--seed", type=int, default=0)
    compare.add_argument("--out", type=Path, default=None, help="output folder (default: runs/compare-<time>)")
    compare.add_argument("--no-progress", action="store_true")
    _compile_option(compare, what="the race's training steps and scores")

    diagnose = commands.add_parser("diagnose", help="posterior diagnostics of a run: k-hat, NUTS, gaps, collapse "
                                   "(a hierarchical VAE: collapse per layer, NUTS on its top layer, no amortization gap)",
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    diagnose.add_argument("run", type=Path, help="the run folder")
    diagnose.add_argument("--data", type=int, default=500, help="test images for k-hat and the collapse report")
    diagnose.add_argument("--samples", type=int, default=500, help="guide draws per image")
    diagnose.add_argument("--nuts", type=int, default=2, help="test images with a NUTS reference posterior")
    diagnose.add_argument("--nuts-samples", type=int, default=300, help="NUTS draws per chain (4 chains)")
    diagnose.add_argument("--nuts-warmup", type=int, default=200)
    diagnose.add_argument("--gap-data", type=int, default=20, help="test images for the amortization gap")
    diagnose.add_argument("--gap-steps", type=int, default=300, help="optimizer steps of the per-image guides")
    diagnose.add_argument("--idata", type=int, default=10, help="test images in posterior.nc")
    diagnose.add_argument("--device", default="cpu")

    for name, text in [("evaluate", "recompute a run's summary.json"), ("sample", "draw new samples from a run"),
                       ("plot", "redraw a run's figures")]:
        command = commands.add_parser(name, help=text)
        command.add_argument("run", type=Path, help="the run folder")
        command.add_argument("--device", default="cpu")
        if name == "evaluate":
            command.add_argument("--eval-samples", type=int, default=None, help="default: as in training")
            _compile_option(command, what="the importance-weight passes")
        if name == "sample":
            command.add_argument("-n", type=int, default=64, help="how many samples")
            command.add_argument("--seed", type=int, default=None)
    return parser


def _compile_option(group, what: str = "the training step and the evaluation passes") -> None:
    group.add_argument("--compile", nargs="?", const="inductor", default=False, choices=list(COMPILERS),
                       help=f"capture {what} as a graph and compile it (default compiler: inductor); "
                            f"static models only, see inference.compiled")


LR_SCHEDULE_CHOICES = {"constant": lambda args: None, "staged": lambda args: Staged(length=args.epochs),
                       "cosine": lambda args: Cosine(epochs=args.epochs)}


def _shape(z_dims: list[int], hidden: list[str] | None):
    """``(z_dim, hidden)`` of a RunConfig from ``--z-dim`` and ``--hidden``."""
    try:
        groups = [tuple(int(v) for v in token.split(",") if v) for token in hidden or ()]
    except ValueError:
        raise ValueError(f"--hidden {' '.join(hidden)}: sizes must be whole numbers (groups joined by commas, "
                         f"e.g. --hidden 200,200 100,100)") from None
    if len(z_dims) == 1:
        if hidden is None:
            return z_dims[0], RunConfig().hidden
        sizes = groups[0] if len(groups) == 1 else tuple(size for group in groups for size in group)
        return z_dims[0], sizes
    if hidden is None:
        return tuple(z_dims), ((200, 200), *((z, z) for z in z_dims[:-1]))
    if len(groups) != len(z_dims):
        raise ValueError(f"--z-dim {' '.join(map(str, z_dims))} has {len(z_dims)} stochastic layers but --hidden gives "
                         f"{len(groups)} group(s): give one comma-separated group per layer, e.g. --hidden "
                         f"{' '.join(['200,200'] + ['100,100'] * (len(z_dims) - 1))}")
    return tuple(z_dims), tuple(groups)


def _beta(args):
    if args.beta_schedule == "constant":
        return args.beta
    if args.beta_schedule == "cyclical":
        return make_schedule("cyclical", period=args.beta_steps, end=args.beta)
    return make_schedule(args.beta_schedule, steps=args.beta_steps, end=args.beta)


def _device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA device is available here; use --device cpu")
    return device


def _sites(vae) -> tuple[str, ...]:
    """The latent sites, bottom to top (``("z",)`` for a one-layer VAE)."""
    return getattr(vae, "latent_sites", ("z",))


def _summary(vae, test, config: RunConfig, num_samples: int, device, progress: bool, compile=False) -> dict:
    ks = [k for k in (1, 10, 100, 1000, 5000) if k <= num_samples and num_samples % k == 0]
    result = evaluate(vae.model, vae.guide, test, num_samples=num_samples, ks=ks, device=device, progress=progress,
                      compile=compile, latent_site=_sites(vae)[-1])
    extra = {"test_error": vae.error_rate(test.data)} if config.model == "m2" else {}  # the classifier's
    scores = dataclasses.asdict(result)
    del scores["per_datum"]  # thousands of numbers, for paired comparisons in Python, not for a summary
    return {"test_images": result.num_data, **scores, **extra}


def _write_summary(run_dir: Path, summary: dict) -> None:
    write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n",
               remedy=f"pyro-vae evaluate {run_dir} computes the scores again and writes it")


def _save_figure(figure, path: Path, remedy: str) -> None:
    try:
        figure.savefig(path, dpi=100)
    except (OSError, RuntimeError) as error:
        raise write_failed(path, error, remedy) from error


def _figures(run_dir: Path, vae, config: RunConfig, test, device) -> list[Path]:
    metrics = read_metrics(run_dir)
    folder = run_dir / "figures"
    folder.mkdir(exist_ok=True)
    if config.conditional:  # class by class: what a label-conditioned generator is for
        figures = {"class_samples": class_samples(vae)}
        if metrics:
            figures["training_curves"] = training_curves(metrics)
    else:
        index = torch.arange(min(len(test), 2000))
        figures = all_figures(vae, test.batch(index).to(device), test.labels[index], metrics)
    paths = []
    for name, figure in figures.items():
        path = folder / f"{name}.png"
        _save_figure(figure, path, remedy=f"pyro-vae plot {run_dir} draws the figures again")
        paths.append(path)
    return paths


def train(args) -> int:
    from inference.distributed import broadcast, join

    world, device = join(_device(args.device))  # under torchrun: this rank's place and device
    args.resume = args.resume or (world.restarts > 0 and args.out is not None and (args.out / "run.json").exists())
    z_dim, hidden = _shape(args.z_dim, args.hidden)
    config = RunConfig(dataset=args.dataset, representation=args.representation, prior=args.prior,
                       likelihood=args.likelihood, guide=args.guide, encoder=args.encoder, decoder=args.decoder,
                       hidden=hidden, z_dim=z_dim, limit=args.limit, test_limit=args.test_limit,
                       validation=args.validation, seed=args.seed, model=args.model, labels=args.labels,
                       alpha=args.alpha)
    estimator = args.estimator or ("enum" if config.model == "m2" else "trace")
    run_dir = broadcast(args.out or Path("runs") / f"{args.dataset}-{time.strftime('%Y%m%d-%H%M%S')}", world)
    refused = None
    if world.is_main:  # rank 0 checks the run folder; every rank stops on its word
        try:
            _check_run_dir(args, config, run_dir)
        except RunError as error:
            refused = str(error)
    refused = broadcast(refused, world)
    if refused:
        raise RunError(refused)
    train_data, validation, test = config.load_data()
    config = dataclasses.replace(config, x_shape=train_data.x_shape)
    if config.model == "m2" and config.alpha is None:
        config = dataclasses.replace(config, alpha=SemiSupervisedVAE.kingma_alpha(train_data))
    torch.manual_seed(args.seed)
    vae = config.build(train_data).to(device)
    if world.is_main:
        write_config(run_dir, config)
        what = (f"z_dim={config.z_dim}, {config.prior} prior, {config.guide} guide" if isinstance(config.z_dim, int)
                else f"{len(config.z_dims)} stochastic layers z_dims={config.z_dims}, {config.prior} prior on the top one")
        kind = {"vae": "VAE", "cvae": "conditional VAE"}.get(config.model) or (
            f"M2 semi-supervised VAE ({config.labels} labels, alpha {config.alpha:.3g})")
        ranks = f" on {world.size} processes" if world.distributed else ""
        print(f"training {config.likelihood} {kind} ({what}) on {len(train_data)} {config.dataset} images "
              f"({config.data_representation}){ranks}; run folder {run_dir}")
    started = time.perf_counter()
    result = fit(vae.model, vae.guide, train_data, validation=validation, run_dir=run_dir, resume=args.resume,
                 progress=not args.no_progress, device=device, beta=_beta(args), estimator=estimator,
                 num_particles=args.particles, free_bits=args.free_bits, epochs=args.epochs,
                 batch_size=args.batch_size, lr=args.lr, seed=args.seed, compile=args.compile,
                 lr_schedule=LR_SCHEDULE_CHOICES[args.lr_schedule](args), eps=args.adam_eps,
                 validation_samples=args.validation_samples, patience=args.patience, latent_sites=_sites(vae),
                 reshard=args.reshard)
    train_seconds = time.perf_counter() - started
    if not world.is_main:  # rank 0 scores the model and writes the rest of the run folder
        return 0
    save_model(run_dir, vae, config)
    if result.interrupted:  # the user asked to stop: keep what was trained, score nothing, say how to go on
        print(f"stopped by {result.interrupted} at epoch {result.epoch} of {args.epochs} (step {result.step}); "
              f"wrote {run_dir}/checkpoint.pt and model.pt; continue with the same command and --resume")
        return 128 + getattr(signal, result.interrupted, signal.SIGINT)
    summary = {"train_seconds": train_seconds, "epochs": result.epoch, "steps": result.step,
               "eval_samples": args.eval_samples, **({"processes": world.size} if world.distributed else {}),
               **_summary(vae, test, config, args.eval_samples, device, not args.no_progress, args.compile)}
    _write_summary(run_dir, summary)
    figures = _figures(run_dir, vae, config, test, device)
    _print_summary(summary)
    print(f"wrote {run_dir}/: run.json checkpoint.pt model.pt metrics.csv summary.json figures/ ({len(figures)} PNGs)")
    return 0


def _check_run_dir(args, config: RunConfig, run_dir: Path) -> None:
    """A new run needs an empty folder; a resumed one the same data and model options."""
    if args.resume:
        saved = dataclasses.asdict(read_config(run_dir))
        asked = dataclasses.asdict(config)
        differ = [f"--{k.replace('_', '-')} {saved[k]!r} there but {asked[k]!r} here" for k in asked
                  if k != "x_shape" and saved[k] != asked[k] and not (k == "alpha" and asked[k] is None)]
        if differ:
            raise RunError(f"{run_dir} was trained with other data or model options ({'; '.join(differ)}); "
                           f"repeat them exactly to resume")
    elif (run_dir / "run.json").exists():
        raise RunError(f"{run_dir} already holds a run; add --resume to continue it, or choose another --out")


def _print_summary(summary: dict) -> None:
    print(f"test log p(x) >= {summary['log_px']:.2f} +- {summary['log_px_se']:.2f} nats "
          f"(importance-weighted, K={summary['num_samples']}, {summary['test_images']} images)")
    units = summary.get("active_units_by_site") or {}
    layers = (" (" + ", ".join(f"{site}: {n}" for site, n in units.items()) + ")") if len(units) > 1 else ""
    print(f"test ELBO {summary['elbo']:.2f} = reconstruction {summary['reconstruction']:.2f} - KL {summary['kl']:.2f}; "
          f"active units {summary['active_units']} of {len(summary['latent_variance'])}{layers}")
    if "test_error" in summary:
        print(f"test classification error {100 * summary['test_error']:.2f}% (the classifier q(y|x))")


def evaluate_run(args) -> int:
    device = _device(args.device)
    config, vae = load_model(args.run, device)
    old = {}
    if (args.run / "summary.json").exists():
        try:
            old = read_json(args.run / "summary.json")
        except RunError as error:  # evaluate writes it anew: a damaged one only loses its training figures
            print(f"pyro-vae: note: {error}; writing a new one", file=sys.stderr)
    num_samples = args.eval_samples or old.get("eval_samples", 1000)
    _, _, test = config.load_data()
    summary = {**{k: old[k] for k in ("train_seconds", "epochs", "steps") if k in old}, "eval_samples": num_samples,
               **_summary(vae, test, config, num_samples, device, progress=True, compile=args.compile)}
    _write_summary(args.run, summary)
    _print_summary(summary)
    return 0


def sample_run(args) -> int:
    device = _device(args.device)
    config, vae = load_model(args.run, device)
    if args.seed is not None:
        torch.manual_seed(args.seed)
    name, figure = (("class_samples", class_samples(vae, max(1, args.n // config.num_classes))) if config.conditional
                    else ("samples", samples(vae, args.n)))
    path = args.run / "figures" / f"{name}.png"
    path.parent.mkdir(exist_ok=True)
    _save_figure(figure, path, remedy=f"pyro-vae sample {args.run}")
    print(f"wrote {path}")
    return 0


def plot_run(args) -> int:
    device = _device(args.device)
    config, vae = load_model(args.run, device)
    _, _, test = config.load_data()
    for path in _figures(args.run, vae, config, test, device):
        print(f"wrote {path}")
    return 0


def diagnose_run(args) -> int:
    import warnings

    from inference import diagnostics as dg
    from inference.weights import log_weights
    from pyro_vae.plots import worst_fitted

    device = _device(args.device)
    config, vae = load_model(args.run, device)
    if config.conditional:
        raise RunError(f"pyro-vae diagnose reads unconditional models (vae, hierarchical) so far; {args.run} holds a "
                       f"{config.model}: use inference.diagnostics from Python with its (x, y) arguments")
    _, _, test = config.load_data()
    folder = args.run / "figures"
    folder.mkdir(exist_ok=True)
    x = test.batch(torch.arange(min(args.data, len(test)))).to(device)
    report = {}

    psis = dg.psis_khat(vae.model, vae.guide, x, num_samples=args.samples)
    finite = psis.khat[torch.isfinite(psis.khat)]
    report["psis"] = {"num_data": len(x), "num_samples": args.samples, "share_above_0.5": psis.share_above_05,
                      "share_above_0.7": psis.share_above_07,
                      "khat_quantiles": {q: finite.quantile(q).item() for q in (0.5, 0.9, 0.99)} if len(finite) else {}}
    psis.histogram().savefig(folder / "khat.png", dpi=100)
    worst_fitted(vae, x, psis.khat).savefig(folder / "worst_fitted.png", dpi=100)

    sites = _sites(vae)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", dg.PosteriorCollapseWarning)
        collapses = {site: dg.collapse_report(vae.model, vae.guide, x, site=site) for site in sites}
    report["collapse"] = (dataclasses.asdict(collapses["z"]) if sites == ("z",) else
                          {site: dataclasses.asdict(c) for site, c in collapses.items()})

    gap_x = x[: args.gap_data]
    if hasattr(getattr(vae, "guide_family", None), "head"):
        gap = dg.amortization_gap(vae.model, vae.guide, gap_x, local_guide=vae.local_guide, steps=args.gap_steps,
                                  num_samples=args.samples)
        report["amortization_gap"] = gap.summary()
    else:
        report["amortization_gap"] = None  # an IAF guide, or a hierarchy's chain of guides: no local guide

    idata = dg.to_inference_data(vae.model, vae.guide, x[: args.idata], num_samples=args.samples, site=sites)
    idata.to_netcdf(args.run / "posterior.nc")

    report["nuts"] = []
    top = sites[-1]  # NUTS samples every latent; the figure and the means show the top layer's marginal
    for i in range(min(args.nuts, len(x))):
        reference = dg.reference_posterior(vae.model, x[i : i + 1], site=top, num_samples=args.nuts_samples,
                                           warmup=args.nuts_warmup, seed=i)
        weights = log_weights(vae.model, vae.guide, x[i : i + 1], num_samples=args.samples)
        draws = weights.samples[top][:, 0]
        dg.overlay(draws, reference, title=f"test image {i}: {top} under the guide (blue) vs NUTS (orange), R-hat "
                                           f"{reference.rhat:.3f}").savefig(folder / f"nuts_{i}.png", dpi=100)
        log_w = weights.log_w[:, 0].double()
        kl = (torch.logsumexp(log_w, 0) - math.log(len(log_w)) - log_w.mean()).item()  # log p(x) - ELBO
        report["nuts"].append({"datum": i, "site": top, "rhat": reference.rhat, "ess": reference.ess, "kl_q_posterior": kl,
                               "nuts_mean": reference.mean.tolist(),
                               "guide_mean": draws.reshape(len(draws), -1).mean(0).tolist()})
    write_text(args.run / "diagnostics.json", json.dumps(report, indent=2) + "\n", remedy=f"pyro-vae diagnose {args.run}")

    print(f"PSIS k-hat over {len(x)} test images: {100 * psis.share_above_05:.1f}% above 0.5, "
          f"{100 * psis.share_above_07:.1f}% above 0.7")
    if report["amortization_gap"]:
        g = report["amortization_gap"]
        print(f"log p(x) - ELBO = {g['log_px'] - g['elbo_amortized']:.2f} nats: approximation gap "
              f"{g['approximation_gap']:.2f} +- {g['approximation_gap_se']:.2f}, amortization gap "
              f"{g['amortization_gap']:.2f} +- {g['amortization_gap_se']:.2f} ({len(gap_x)} images)")
    for row in report["nuts"]:
        print(f"NUTS on test image {row['datum']}: R-hat {row['rhat']:.3f}, ESS {row['ess']:.0f}; "
              f"KL(q || p(z|x)) = {row['kl_q_posterior']:.2f} nats")
    for site, collapse in collapses.items():
        print(f"active units{'' if sites == ('z',) else ' of ' + site}: {collapse.active_units} of {collapse.num_dims}")
    for warning in caught:
        print(f"warning: {warning.message}")
    print(f"wrote {args.run}/: diagnostics.json posterior.nc figures/khat.png figures/worst_fitted.png "
          f"figures/nuts_*.png")
    return 0


MULTI_SAMPLE = {"iwae", "renyi", "dreg", "tail_adaptive"}


def compare_estimators(args) -> int:
    from inference.compare import gradient_stats, race

    out = args.out or Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and any(out.iterdir()):
        raise RunError(f"{out} is not empty; choose another --out")
    (out / "figures").mkdir(parents=True)
    train_data = load_dataset(args.dataset, split="train", representation="dynamic", seed=args.seed, limit=args.limit)
    test = load_dataset(args.dataset, split="test", representation="dynamic", seed=args.seed + 1, limit=args.test_limit)

    def make_vae():
        return VAE(train_data.x_shape, args.z_dim, hidden=tuple(args.hidden))

    torch.manual_seed(args.seed)
    vae = make_vae()
    if args.warmup_epochs:
        fit(vae.model, vae.guide, train_data, epochs=args.warmup_epochs, batch_size=args.batch_size, lr=args.lr,
            seed=args.seed, progress=not args.no_progress)
    batch = train_data.batch(torch.arange(64))
    rows = ["| estimator | K | loss per image | guide SNR | model SNR | guide variance | ms/step |",
            "|---|---|---|---|---|---|---|"]
    lines = ["estimator,num_particles,loss,loss_se,guide_snr,model_snr,guide_variance,model_variance,seconds_per_step"]
    for k in args.particles:
        stats = gradient_stats(vae.model, vae.guide, batch, estimators=args.estimators, num_particles=k,
                               repeats=args.repeats)
        for name, st in stats.items():
            g, m = st.groups["guide"], st.groups["model"]
            rows.append(f"| {name} | {k} | {st.loss / len(batch):.2f} ± {st.loss_se / len(batch):.2f} | {g.snr:.3f} | {m.snr:.3f} | "
                        f"{g.variance:.4g} | {1000 * st.seconds_per_step:.1f} |")
            lines.append(f"{name},{k},{st.loss},{st.loss_se},{g.snr},{m.snr},{g.variance},{m.variance},"
                         f"{st.seconds_per_step}")
    (out / "snr.md").write_text("\n".join(rows) + "\n")
    (out / "snr.csv").write_text("\n".join(lines) + "\n")
    print(f"gradient signal-to-noise on one batch of 64 after {args.warmup_epochs} warm-up epoch(s), "
          f"{args.repeats} draws each:")
    print("\n".join(rows))

    def make_pair():
        fresh = make_vae()
        return fresh.model, fresh.guide

    entrants = [(name, args.race_particles if name in MULTI_SAMPLE else 1) for name in args.estimators]
    result = race(make_pair, train_data, test, estimators=entrants, max_seconds=args.seconds,
                  eval_samples=args.eval_samples, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                  progress=not args.no_progress, compile=args.compile)
    (out / "race.md").write_text(result.table() + "\n")
    (out / "race.csv").write_text(result.csv())
    result.figure().savefig(out / "figures" / "race.png", dpi=100)
    print(f"race: {args.seconds:g} training seconds each, scored on {len(test)} held-out images "
          f"(K={args.eval_samples}):")
    print(result.table())
    print(f"wrote {out}/: snr.md snr.csv race.md race.csv figures/race.png")
    return 0


COMMANDS = {"train": train, "evaluate": evaluate_run, "sample": sample_run, "plot": plot_run,
            "compare": compare_estimators, "diagnose": diagnose_run}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except USER_ERRORS as error:
        print(f"pyro-vae: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pyro-vae: interrupted; continue the run with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
