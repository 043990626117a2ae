"""Reproduce a published MNIST test log-likelihood: one preset, one command, resumable for hours.

Built on the public API only (a worked example of it): a model from `pyro_vae`, `inference.fit`
with the paper's schedule, checkpoints and early stopping, then `inference.evaluate` with
K = 5000 importance samples on the 10 000 test images (dynamically binarized MNIST).

    python benchmarks/reproduce.py PRESET [--resume] [--device cuda] [--compile] [--max-hours H]
    python benchmarks/reproduce.py --table BENCHMARKS.md   # only rewrite the table from the result files

The run folder (``runs/reproduce/PRESET``, git-ignored) holds the checkpoints; run the same command
with ``--resume`` to continue after an interruption, session after session (``--stash benchmarks/stash``
carries an unfinished run's checkpoint in git, for machines that do not keep ``runs/``). When training ends (its
epochs, or early stopping) the model is scored and ``benchmarks/results/PRESET.json`` is written;
when ``--max-hours`` (this call's hours of training) ends a session first, the file records the partial progress (``status:
"partial"``, epochs done, the last validation bound). ``--epochs N`` (the paper's stages squeezed in
proportion) and ``--limit N`` (the first N images) shorten a run: its folder and file are then named
``PRESET-eN`` / ``PRESET-nN``, apart from the full run's; ``--seed S`` trains another seed as ``PRESET-sS``
(the test images are one fixed draw for every run, so ``benchmarks/paired.py`` pairs any two). ``--table`` rewrites the results table in
BENCHMARKS.md from every result file, with their learning curves (kept in the result files) in
``docs/reproductions.png``; ``--eval-samples`` shrinks the final K for a smoke test.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch

from inference import RenyiBound, Staged, evaluate, fit, load_checkpoint, make_elbo
from pyro_vae import HierarchicalVAE, VAE, load_dataset
from pyro_vae.guides import DiagonalNormal
from pyro_vae.priors import VampPrior
from recording import command_line, git_commit, write_block  # benchmarks/recording.py

HERE = Path(__file__).resolve().parent
TEST_SEED = 1  # the test images' one binarization, whatever the training seed: any two runs pair image by image
BURDA = "Burda et al. 2016, Table 1"
BURDA_SETUP = ("Adam (0.9, 0.999, eps 1e-4), batch 20, lr 1e-3 x 10^(-i/7) for 3^i epochs, i = 0..7 "
               "(3280 epochs); no validation set, the last parameters are scored; as in the paper's code, "
               "Glorot-uniform weights, exp standard deviations and the decoder's output bias at the logit of "
               "the mean training image")


@dataclass(frozen=True)
class Preset:
    paper: str
    reference: float  # the paper's test negative log-likelihood, nats
    z_dims: tuple[int, ...]
    hidden: tuple[tuple[int, ...], ...]
    estimator: str = "trace"
    particles: int = 1
    batch_size: int = 20
    lr: float = 1e-3
    eps: float = 1e-4
    epochs: int = 3280
    staged: bool = True
    # "burda": HierarchicalVAE initialised as Burda et al.'s code; "tomczak": pyro_vae's VAE with its default
    # parts; "tomczak-code": pyro_vae's VAE built as Tomczak & Welling's code builds theirs
    network: str = "burda"
    optimizer: str = "adam"  # a name from inference.svi.OPTIMIZERS
    vamp_components: int | None = None  # a VampPrior with this many pseudo-inputs; None: the standard normal prior
    warmup_epochs: int = 0
    validation: int = 0  # training images held out for early stopping
    # how the training images are binarized: "dynamic" (a fresh draw each time one is served) or "static" (one
    # fixed draw, as in static MNIST); the test images are binarized once, with a fixed seed, either way
    binarization: str = "dynamic"
    patience: int | None = None
    setup: str = BURDA_SETUP
    deviations: tuple[str, ...] = field(default_factory=tuple)

    @property
    def fit_settings(self) -> dict:
        """What ``fit`` needs to take the preset's steps: its estimator, particles, batch and optimizer
        (``reproduce.py`` adds the schedule, warm-up and stopping; ``preset_pace.py`` times the steps)."""
        return dict(estimator=self.estimator, num_particles=self.particles, batch_size=self.batch_size,
                    optimizer=self.optimizer, lr=self.lr, eps=self.eps)

    @property
    def bound(self) -> str:
        """The name of the bound it trains, as logs and tables print its negative, read off the
        estimator ``fit`` builds: ``IWAE-5 bound`` for a :class:`~inference.RenyiBound` at alpha 0
        with five particles (``iwae``, ``dreg``), ``ELBO`` for the single-sample-bound estimators."""
        elbo = make_elbo(self.estimator, num_particles=self.particles)
        if not isinstance(elbo, RenyiBound):
            return "ELBO"
        return f"IWAE-{self.particles} bound" if elbo.alpha == 0 else f"Renyi-{elbo.alpha:g} bound (K = {self.particles})"

    def build(self, train):
        """The model, initialised as the paper's code does (for Burda et al.'s: Glorot weights, exp
        scales, the output bias at the mean training image, which ``benchmarks/collapse.py`` shows
        to matter: ten nats of held-out ELBO after 16 epochs, and units kept in the top layer); for
        Tomczak & Welling's, the library's one-layer VAE under a VampPrior or the standard normal
        prior: with its default parts (``"tomczak"``), or with those of the paper's code
        (``"tomczak-code"``: gated hidden units, He-normal weights, the encoder's log-variance
        clipped to [-6, 2], pseudo-inputs starting at 0.05 +- 0.01)."""
        z_dim, hidden = self.z_dims[0], self.hidden[0]
        if self.network == "tomczak":
            return VAE(train.x_shape, z_dim, prior=self.tomczak_prior(train), hidden=hidden)
        if self.network == "tomczak-code":
            prior = self.tomczak_prior(train, init_mean=0.05, init_std=0.01)
            guide = DiagonalNormal(hidden[-1], z_dim, scale="clipped_log_variance", min_scale=0.0)
            return VAE(train.x_shape, z_dim, prior=prior, encoder="gated_mlp", decoder="gated_mlp", guide=guide,
                       hidden=hidden, init="he")
        model = HierarchicalVAE(train.x_shape, z_dims=self.z_dims, hidden=self.hidden, init="glorot", scale="exp")
        model.set_output_bias(train.mean_image())
        return model

    def tomczak_prior(self, train, **start):
        """A Tomczak preset's prior: a VampPrior of ``vamp_components`` pseudo-inputs (``start``: their
        initial mean and spread) or, without components, the standard normal."""
        if not self.vamp_components:
            return "standard_normal"
        return VampPrior(self.z_dims[0], train.x_shape, num_components=self.vamp_components, **start)


ONE, TWO = ((200, 200),), ((200, 200), (100, 100))
# what differs from the paper's code (github.com/jmtomczak/vae_vampprior) in every Tomczak preset: small
TOMCZAK_MINOR_TRAINING = ("the Bernoulli means are not clamped to [1e-5, 1 - 1e-5] (at most 0.008 nats)",
                          "early stopping after 50 epochs without improvement, not 51")
# ... and, on dynamic binarization, the held-out images (its dynamic-MNIST loader holds out the last 10 000)
TOMCZAK_MINOR = (*TOMCZAK_MINOR_TRAINING, "the 10 000 validation images are drawn at random, not the last 10 000")
# the paper's code can train on either MNIST; the runs its repository logs (vae_experiment_log.txt) used static MNIST
TOMCZAK_DATA = ("dynamically binarized training images, where the runs logged in the paper's code "
                "(vae_experiment_log.txt) train on static MNIST, one fixed binarization")
TOMCZAK = dict(network="tomczak", batch_size=100, lr=5e-4, eps=1e-8, epochs=2000, staged=False, warmup_epochs=100,
               validation=10000, patience=50,
               deviations=("softplus MLPs instead of the paper's gated units",
                           "PyTorch's default initialisation instead of He-normal weights",
                           "softplus standard deviations (floor 1e-3) instead of a log-variance clipped to [-6, 2]",
                           "plain Adam instead of Adam on unit-norm gradients (the code's AdamNormGrad)",
                           TOMCZAK_DATA, *TOMCZAK_MINOR),
               setup="Adam lr 5e-4, batch 100, KL warm-up over 100 epochs, early stopping (patience 50) on 10 000 "
                     "held-out training images")
# as the paper's code trains and builds its models
TOMCZAK_CODE = {**TOMCZAK, "network": "tomczak-code", "optimizer": "normalized_adam",
                "deviations": (TOMCZAK_DATA, *TOMCZAK_MINOR),
                "setup": TOMCZAK["setup"] + "; as the paper's code: gated units, He-normal weights, log-variance "
                                            "clipped to [-6, 2], Adam on unit-norm gradients (its AdamNormGrad)"}
TOMCZAK_CODE_STATIC = {**TOMCZAK_CODE, "binarization": "static",
                       "setup": TOMCZAK_CODE["setup"] + "; trained on one fixed binarization of the training images",
                       "deviations": (*TOMCZAK_MINOR_TRAINING,
                                      "a fixed binarization of its own (seeded) and 10 000 random validation images, "
                                      "not the static MNIST files (Larochelle's) the paper's code reads")}
PRESETS = {
    "burda-1l-vae": Preset(BURDA, 86.76, (50,), ONE),
    "burda-1l-iwae5": Preset(BURDA, 85.54, (50,), ONE, estimator="iwae", particles=5),
    "burda-1l-iwae50": Preset(BURDA, 84.78, (50,), ONE, estimator="iwae", particles=50),
    "burda-2l-vae": Preset(BURDA, 85.33, (100, 50), TWO),
    "burda-2l-iwae50": Preset(BURDA, 82.90, (100, 50), TWO, estimator="iwae", particles=50),
    "vamp-1l": Preset("Tomczak & Welling 2018, Table 2", 85.57, (40,), ((300, 300),), vamp_components=500,
                      **{**TOMCZAK, "deviations": (*TOMCZAK["deviations"],
                                                   "pseudo-inputs start at 0.5 +- 0.05 instead of 0.05 +- 0.01")}),
    # vamp-1l's network and schedule under the standard normal prior: the paper's own baseline row, and the
    # control that says whether vamp-1l's margin over its paper comes from the prior or from the setup
    "vamp-1l-standard": Preset("Tomczak & Welling 2018, Table 2 (standard prior)", 88.56, (40,), ((300, 300),),
                               **TOMCZAK),
    # the two rows above as the paper's code builds and trains them: how much of their margin over the paper
    # comes from the library's default parts and plain Adam
    "vamp-1l-code": Preset("Tomczak & Welling 2018, Table 2", 85.57, (40,), ((300, 300),), vamp_components=500,
                           **TOMCZAK_CODE),
    "vamp-1l-standard-code": Preset("Tomczak & Welling 2018, Table 2 (standard prior)", 88.56, (40,), ((300, 300),),
                                    **TOMCZAK_CODE),
    # the two rows above trained on one fixed binarization, as static MNIST is: the data of the runs the paper's
    # code logs, and most likely of its table (vamp-1l-standard-code-static lands 0.08 nats from its row)
    "vamp-1l-code-static": Preset("Tomczak & Welling 2018, Table 2", 85.57, (40,), ((300, 300),), vamp_components=500,
                                  **TOMCZAK_CODE_STATIC),
    "vamp-1l-standard-code-static": Preset("Tomczak & Welling 2018, Table 2 (standard prior)", 88.56, (40,),
                                           ((300, 300),), **TOMCZAK_CODE_STATIC),
}


def run_name(preset: str, epochs: int | None = None, limit: int | None = None, seed: int = 0) -> str:
    """The name of a run's folder and result file: the preset's for its paper's schedule, with
    ``-eN`` for N epochs instead, ``-sS`` for training seed S other than 0 and ``-nN`` for the first N
    images, so a shortened run or another seed never resumes or overwrites the full one
    (``burda-1l-vae``, ``burda-1l-vae-e400``, ``vamp-1l-s1``)."""
    name = preset
    if epochs is not None and epochs != PRESETS[preset].epochs:
        name += f"-e{epochs}"
    if seed:
        name += f"-s{seed}"
    return name + (f"-n{limit}" if limit else "")


class RunName(NamedTuple):
    preset: str
    epochs: int
    limit: int | None
    seed: int


def parse_run_name(name: str) -> RunName:
    """The inverse of :func:`run_name`, so that a stashed run can be resumed from its name alone.

    >>> parse_run_name("burda-2l-vae-e400"), parse_run_name("vamp-1l-s2")
    (RunName(preset='burda-2l-vae', epochs=400, limit=None, seed=0), RunName(preset='vamp-1l', epochs=2000, limit=None, seed=2))
    """
    preset, epochs, seed, limit = re.fullmatch(r"(.*?)(?:-e(\d+))?(?:-s(\d+))?(?:-n(\d+))?", name).groups()
    if preset not in PRESETS:
        raise ValueError(f"{name!r} is not a reproduction run's name: PRESET[-eEPOCHS][-sSEED][-nLIMIT] with PRESET "
                         f"one of {', '.join(PRESETS)}")
    return RunName(preset, int(epochs) if epochs else PRESETS[preset].epochs, int(limit) if limit else None,
                   int(seed) if seed else 0)


def training_data(preset: Preset, seed: int = 0, limit: int | None = None) -> tuple:
    """``(train, validation)``: the images a run of ``preset`` trains on and those it holds out for early
    stopping (``None`` for a preset without), binarized as ``preset.binarization`` says (a ``"static"`` draw
    is made once, before the split); the first ``limit`` training images only."""
    train = load_dataset("mnist", split="train", representation=preset.binarization, seed=seed, limit=limit)
    if not preset.validation:
        return train, None
    return train.split(min(preset.validation, len(train) // 6), seed=seed)


def run(args) -> dict:
    preset = PRESETS[args.preset]
    epochs = args.epochs or preset.epochs
    train, validation = training_data(preset, args.seed, args.limit)
    test = load_dataset("mnist", split="test", representation="dynamic", seed=TEST_SEED,
                        limit=args.limit and min(args.limit, 10000))
    torch.manual_seed(args.seed)
    model = preset.build(train).to(args.device)
    sites = getattr(model, "latent_sites", ("z",))
    steps_per_epoch = math.ceil(len(train) / preset.batch_size)
    beta = 1.0
    if preset.warmup_epochs:
        from inference import LinearWarmup

        beta = LinearWarmup(steps=preset.warmup_epochs * steps_per_epoch)
    name = run_name(args.preset, epochs, args.limit, args.seed)
    run_dir = Path(args.out) / name
    deviations = list(preset.deviations)
    if epochs != preset.epochs:
        deviations.append(f"{epochs} epochs instead of {preset.epochs}" +
                          (" (the same stages, squeezed in proportion)" if preset.staged else ""))
    if args.limit:
        deviations.append(f"first {args.limit} training images")
    if args.stash and args.resume:
        unstash(Path(args.stash) / name, run_dir)
    checkpoint = run_dir / "checkpoint.pt"
    resume = args.resume and checkpoint.exists()  # --resume goes on from a checkpoint, or starts a run that has none
    if args.resume and not resume:
        print(f"nothing to resume in {run_dir}" + (f" or {Path(args.stash) / name}" if args.stash else "") +
              f": starting {name}")
    done = load_checkpoint(checkpoint)["train_seconds"] if resume else 0.0  # earlier sessions' training
    budget = done + args.max_hours * 3600 if args.max_hours else None  # this call's hours on top of those
    result = fit(model.model, model.guide, train, validation=validation, run_dir=run_dir, resume=resume,
                 device=args.device, compile=args.compile, progress=not args.no_progress,
                 **preset.fit_settings, epochs=epochs, latent_sites=sites, beta=beta,
                 lr_schedule=Staged(length=epochs) if preset.staged else None, patience=preset.patience,
                 max_seconds=budget, seed=args.seed,
                 callbacks=[report_epoch(epochs, bound=preset.bound)] if args.no_progress else ())
    finished = result.epoch >= epochs or result.stopped_early
    device = torch.cuda.get_device_name(args.device) if str(args.device).startswith("cuda") else "cpu"
    results = Path(args.results)
    if args.stash:  # before the hour-long scoring, which a session's end may cut short
        stash(run_dir, Path(args.stash) / name)
    record = {
        "preset": args.preset,
        "run": name,
        "seed": args.seed,
        "reference": {"paper": preset.paper, "test_nll": preset.reference},
        "setup": preset.setup,
        "deviations": deviations,
        "status": "finished" if finished else "partial",
        **({"stopped_by": result.interrupted} if result.interrupted else {}),
        "epochs": result.epoch,
        "epochs_planned": epochs,
        "steps": result.step,
        "train_seconds": result.train_seconds,
        "last_metrics": result.metrics[-1] if result.metrics else None,
        "curve": curve(result.metrics),
        "device": device,
        "devices": trained_on(results / f"{name}.json", before=done, device=device,
                              seconds=result.train_seconds - done),
        "threads": torch.get_num_threads(),
        "command": args.command,
        "commit": git_commit(),
    }
    if finished:
        started = time.perf_counter()
        score = evaluate(model.model, model.guide, test, num_samples=args.eval_samples, ks=(1, args.eval_samples),
                         latent_site=sites[-1], device=args.device, compile=args.compile, progress=not args.no_progress)
        record.update(test_nll=-score.log_px, test_nll_se=score.log_px_se, test_elbo=score.elbo,
                      num_samples=args.eval_samples, test_images=score.num_data, active_units=score.active_units,
                      active_units_by_site=score.active_units_by_site,
                      eval_seconds=time.perf_counter() - started)
    results.mkdir(parents=True, exist_ok=True)
    if finished:  # for paired comparisons of two runs on the same images (benchmarks/paired.py)
        record["scores"] = save_scores(results / "scores" / f"{name}.pt", score, test_seed=test.seed,
                                       limit=args.limit).relative_to(results).as_posix()
    (results / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    if args.stash and finished:  # scored: the run's numbers are in its result file
        shutil.rmtree(Path(args.stash) / name, ignore_errors=True)
    return record


def trained_on(previous: Path, *, before: float, device: str, seconds: float) -> dict[str, float]:
    """The seconds of training each device gave a run, which may move between this CPU and a lent GPU
    (``benchmarks/device_train.sh``): the split in the run's ``previous`` result file, rescaled to the
    ``before`` seconds its checkpoint had trained (a file that lags the checkpoint, or predates this
    field and names one device), plus this call's ``seconds`` on ``device``.

    >>> trained_on(Path("/nonexistent.json"), before=0.0, device="cpu", seconds=60.0)
    {'cpu': 60.0}
    """
    devices: dict[str, float] = {}
    if before > 0 and previous.exists():
        old = json.loads(previous.read_text())
        devices = dict(old.get("devices") or {old["device"]: old["train_seconds"]})
        total = sum(devices.values())
        devices = {k: v * before / total for k, v in devices.items()} if total > 0 else {old["device"]: before}
    devices[device] = devices.get(device, 0.0) + seconds
    return devices


def device_hours(record: dict) -> str:
    """A result's devices for the table: one name, or each device's hours of training when it moved."""
    devices = record.get("devices") or {record["device"]: record["train_seconds"]}
    if len(devices) == 1:
        return next(iter(devices))
    return " + ".join(f"{k} {v / 3600:.2f} h" for k, v in devices.items())


def save_scores(path: Path, score, *, test_seed: int, limit: int | None) -> Path:
    """Keep a scored run's per-image test log p(x) and ELBO (float32, in the test set's order) with what
    fixes those images (the binarization's seed, the subset), so that two runs can be compared image by
    image long after their run folders are gone: ``benchmarks/paired.py``. 80 KB for 10 000 images."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"log_px": score.per_datum["log_px"].float(), "elbo": score.per_datum["elbo"].float(),
                "test_seed": test_seed, "limit": limit, "num_samples": score.num_samples}, path)
    return path


def report_epoch(epochs: int, bound: str = "ELBO"):
    """A line per epoch on standard output, for a run without a progress bar (a detached run's log):
    the negative training ``bound`` (:attr:`Preset.bound`; during a KL warm-up the KL is weighted by
    the epoch's last beta, which the line names), the learning rate, the epoch's seconds, the
    hours trained and the hours of training left at this call's pace: the training seconds an epoch
    since its first report (the first, which may hold a compile or a part-epoch, at the run's mean
    pace). A resumed run's earlier pace may have been another device's (``benchmarks/device_train.sh``)."""
    first: dict = {}  # this call's first report: epoch and training seconds

    def report(row: dict) -> None:
        validated = f", validation ELBO {row['val_elbo']:.2f}" if "val_elbo" in row else ""
        weighted = f" (KL weight {row['beta']:.3g})" if row.get("beta", 1.0) != 1.0 else ""
        if not first:
            first.update(epoch=row["epoch"], train_seconds=row["train_seconds"])
        if row["epoch"] > first["epoch"]:
            pace = (row["train_seconds"] - first["train_seconds"]) / (row["epoch"] - first["epoch"])
        else:
            pace = row["train_seconds"] / row["epoch"]
        left = (epochs - row["epoch"]) * pace / 3600
        print(f"epoch {row['epoch']}/{epochs}: training -{bound}{weighted} {row['train_loss']:.2f}{validated}, "
              f"lr {row['lr']:.3g}, {row['seconds']:.1f} s, {row['train_seconds'] / 3600:.2f} h of training, "
              f"about {left:.2f} h left",
              flush=True)

    return report


STASHED = ("checkpoint.pt", "best.pt", "metrics.csv")  # what resuming needs (best.pt: early stopping's parameters)


def _copy_run_files(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in STASHED:
        if (source / name).exists():
            shutil.copy2(source / name, target / name)


def stash(run_dir: Path, folder: Path) -> None:
    """Copy a run's checkpoint into ``folder`` (one kept in git; :func:`run` deletes the copy once the run is
    scored): the run can then resume on a machine that did not keep ``runs/`` (a new clone, a lent GPU)."""
    _copy_run_files(run_dir, folder)


def unstash(folder: Path, run_dir: Path) -> None:
    """Put a stashed checkpoint back where ``fit`` resumes from, unless the run folder has its own (newer) one."""
    if (run_dir / "checkpoint.pt").exists() or not (folder / "checkpoint.pt").exists():
        return
    _copy_run_files(folder, run_dir)
    print(f"resuming from the checkpoint stashed in {folder}")


def _records(results: Path) -> list[dict]:
    """The result files of this script's runs (the folder holds other benchmarks' results too)."""
    records = [json.loads(p.read_text()) for p in sorted(Path(results).glob("*.json"))]
    return [r for r in records if r.get("preset") in PRESETS]


def curve(metrics: list[dict]) -> list[dict]:
    """The learning curve kept in the result file (the run folder need not outlive the session):
    per epoch the training -ELBO, the learning rate and, where validated, the validation bound."""
    keep = ("epoch", "train_loss", "lr", "val_elbo")
    return [{k: m[k] for k in keep if k in m} for m in metrics]


def figure(results: Path, path: Path) -> Path | None:
    """One panel per paper: each run's learning curve against its paper's test NLL (dotted) and, for a
    finished run, our test NLL (a dot at its last epoch). A curve is what the run is judged by while it
    trains: the validation -ELBO where the preset holds images out (Tomczak & Welling's early stopping;
    their training loss is not comparable across epochs under KL warm-up), else the training loss (-ELBO,
    or the -IWAE bound of an IWAE run). The presets' own runs come first, in strong colours; other
    seeds, shortened and set-aside runs (``PRESET-s1``, ``PRESET-e400``, ``PRESET-lost``) follow in thin,
    pale lines, each its own colour."""
    records = [r for r in _records(results) if r.get("curve")]
    if not records:
        return None
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    records.sort(key=lambda r: r.get("run", r["preset"]) != r["preset"])  # stable: each group keeps its order
    def paper(r):  # "Tomczak & Welling 2018, Table 2 (standard prior)": the paper and table, not the row
        return r["reference"]["paper"].split(" (")[0]

    papers = list(dict.fromkeys(map(paper, records)))
    pairs = colormaps["tab20"].colors  # ten hues, each strong then pale: twenty colours, none repeated
    palette = pairs[0::2] + pairs[1::2]
    fig = Figure(figsize=(6 * len(papers), 4.8), layout="constrained")
    axes = fig.subplots(1, len(papers), squeeze=False)[0]
    for ax, name in zip(axes, papers):
        group = [r for r in records if paper(r) == name]
        validated = all(PRESETS[r["preset"]].validation for r in group)  # the presets that hold images out
        for i, r in enumerate(group):
            own = r.get("run", r["preset"]) == r["preset"]
            points = [(c["epoch"], -c["val_elbo"] if validated else c["train_loss"]) for c in r["curve"]
                      if not validated or "val_elbo" in c]
            line, = ax.plot(*zip(*points), lw=1.3 if own else 0.8, color=palette[i % len(palette)],
                            alpha=1.0 if own else 0.7,
                            label=f"{r.get('run', r['preset'])} ({r['epochs']}/{r['epochs_planned']} epochs)")
            ax.axhline(r["reference"]["test_nll"], ls=":", color=line.get_color())
            if "test_nll" in r:
                ax.plot([r["curve"][-1]["epoch"]], [r["test_nll"]], "o", color=line.get_color())
        low = min(min(r["reference"]["test_nll"], r.get("test_nll", math.inf)) for r in group)
        ax.set(xscale="linear" if validated else "log", ylim=(low - 1.5, low + (15 if validated else 25)),
               xlabel="epoch", ylabel="nats",
               title=f"{name}: " + ("validation -ELBO" if validated else "training loss (-ELBO, or -IWAE bound)") +
                     "\npaper's test NLL (dotted), ours (dot)")
        ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def units_text(by_site: dict[str, int]) -> str:
    """Active units for a table cell: ``21`` for one latent site, ``18 (z1) + 5 (z2)`` for several."""
    if len(by_site) == 1:
        return str(*by_site.values())
    return " + ".join(f"{v} ({site})" for site, v in by_site.items())


def table(results: Path) -> str:
    """The Markdown results table of every result file, a row per run (its name: the preset, then
    ``-eN`` for a shortened schedule and any suffix a set-aside run's file was given)."""
    rows = ["| run | reference (paper) | ours | difference | active units | epochs | train time | device | "
            "deviations |", "|---|---|---|---|---|---|---|---|---|"]
    for r in _records(results):
        ref = r["reference"]["test_nll"]
        if r["status"] == "finished":
            ours = f"{r['test_nll']:.2f} ± {r['test_nll_se']:.2f}"
            diff = f"{r['test_nll'] - ref:+.2f}"
            units = units_text(r.get("active_units_by_site") or {"": r["active_units"]})
        else:
            last = r.get("last_metrics") or {}
            if "val_elbo" in last:
                ours = f"partial (validation ELBO {last['val_elbo']:.2f})"
            else:
                bound = PRESETS[r["preset"]].bound
                ours = "partial" + (f" (training -{bound} {last['train_loss']:.2f})" if "train_loss" in last else "")
            diff, units = "", ""
        rows.append(f"| {r.get('run', r['preset'])} | {ref:.2f} ({r['reference']['paper']}) | {ours} | {diff} | {units} | "
                    f"{r['epochs']}/{r['epochs_planned']} | {r['train_seconds'] / 3600:.2f} h | {device_hours(r)} | "
                    f"{'; '.join(r['deviations']) or 'none'} |")
    return "\n".join(rows)


def write_table(benchmarks: Path, results: Path, docs: Path | None = None) -> None:
    """The results table in ``benchmarks`` and, with ``docs``, the learning curves in
    ``docs/reproductions.png`` (linked under the table)."""
    text = table(results)
    if docs is not None and figure(results, docs / "reproductions.png"):
        link = docs.resolve() / "reproductions.png"
        try:
            link = link.relative_to(benchmarks.resolve().parent)
        except ValueError:
            pass
        text += f"\n\n![learning curves]({link.as_posix()})"
    write_block(benchmarks, "reproductions", text, "Published MNIST likelihoods reproduced (`benchmarks/reproduce.py`)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", nargs="?", choices=list(PRESETS),
                        help="the run's preset; none with --table: only rewrite the table and figure from the result files")
    parser.add_argument("--resume", action="store_true",
                        help="go on from the run's checkpoint (in --out, or else in --stash); a run without one starts")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--max-hours", type=float, default=None,
                        help="train at most this many more hours in this call (resumably; a resumed run's "
                             "earlier hours do not count)")
    parser.add_argument("--eval-samples", type=int, default=5000)
    parser.add_argument("--limit", type=int, default=None, help="first N training (and test) images: smoke tests")
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's epochs (a staged schedule is squeezed in proportion): "
                             "a shorter run, recorded as a deviation")
    parser.add_argument("--seed", type=int, default=0,
                        help="the training seed: initial weights, validation split, training binarization (a static "
                             "preset's one draw too); the test images stay one draw. A seed other than 0 names the "
                             "run PRESET-sSEED")
    parser.add_argument("--out", default="runs/reproduce")
    parser.add_argument("--results", default=str(HERE / "results"))
    parser.add_argument("--table", default=None, help="rewrite this BENCHMARKS.md's results table")
    parser.add_argument("--docs", default=str(HERE.parent / "docs"), help="where the learning-curve figure goes")
    parser.add_argument("--stash", default=None,
                        help="a folder kept in git (benchmarks/stash): an unfinished run's checkpoint is copied there "
                             "and --resume takes it from there when the run folder has none, so a run goes on from a "
                             "fresh clone; the copy is dropped once the run is scored")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    args.command = command_line("reproduce.py", argv)
    if args.preset is None:
        if not args.table:
            parser.error("name a PRESET to run, or pass --table BENCHMARKS.md alone to rewrite the results table")
        write_table(Path(args.table), Path(args.results), Path(args.docs))
        return
    record = run(args)
    print(json.dumps({k: record[k] for k in ("preset", "status", "epochs", "steps")} |
                     ({"test_nll": record["test_nll"]} if "test_nll" in record else {})))
    if record["status"] == "partial":
        again = args.command if args.resume else f"{args.command} --resume"
        print(f"{record['run']} is unfinished, {record['epochs']} of {record['epochs_planned']} epochs trained: go on with {again}")
    if args.table:
        write_table(Path(args.table), Path(args.results), Path(args.docs))


if __name__ == "__main__":
    main()
