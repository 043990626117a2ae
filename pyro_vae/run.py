"""A training run on disk: its configuration, the trained model, and how to rebuild them.

A run folder holds ``run.json`` (the :class:`RunConfig`), ``checkpoint.pt``
and ``metrics.csv`` (written by :func:`inference.fit`), ``model.pt`` (the
trained weights, weights-only), ``summary.json`` and ``figures/``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from inference import CheckpointError, load_checkpoint, save_checkpoint
from inference.checkpoint import write_text
from pyro_vae.conditional import ConditionalVAE
from pyro_vae.data import load_dataset
from pyro_vae.hierarchical import HierarchicalVAE
from pyro_vae.likelihoods import REPRESENTATION_FOR
from pyro_vae.semi_supervised import SemiSupervisedVAE
from pyro_vae.vae import VAE

#: ``--model``: the unconditional VAE (one layer, or several with several z sizes), the conditional
#: VAE (every training label observed) and M2 (``labels`` of them observed, the rest inferred)
MODELS = ("vae", "cvae", "m2")

RUN_FORMAT = "pyro-vae-run/1"


class RunError(RuntimeError):
    """A run folder that cannot be used as asked."""


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run's data and model (training settings live in ``inference.FitConfig``).

    ``z_dim`` is one size (a :class:`~pyro_vae.vae.VAE`, ``hidden`` its MLP's sizes) or one
    size per stochastic layer, bottom to top (a :class:`~pyro_vae.hierarchical.HierarchicalVAE`,
    ``hidden`` one tuple of sizes per layer). ``model`` picks the kind (:data:`MODELS`);
    ``labels`` is how many training labels M2 sees.
    """

    dataset: str = "mnist"
    representation: str | None = None  # None: the one that fits the likelihood
    prior: str = "standard_normal"
    likelihood: str = "bernoulli"
    guide: str = "diagonal"
    encoder: str = "mlp"
    decoder: str = "mlp"
    hidden: tuple[int, ...] | tuple[tuple[int, ...], ...] = (400,)
    z_dim: int | tuple[int, ...] = 2
    limit: int | None = None
    test_limit: int | None = 2000
    validation: int = 1000
    seed: int = 0
    x_shape: tuple[int, ...] = (1, 28, 28)
    model: str = "vae"
    labels: int | None = None
    num_classes: int = 10
    alpha: float | None = None  # M2's weight of log q(y|x) per labelled datum

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; valid choices: {', '.join(map(repr, MODELS))}")
        if self.labels is not None and self.model != "m2":
            raise ValueError(f"--labels {self.labels} given to --model {self.model}: only the semi-supervised m2 "
                             f"hides labels (the vae takes none, the cvae all); drop --labels or use --model m2")
        if self.model == "m2" and self.labels is None:
            raise ValueError("--model m2 learns from a few labels: say how many with --labels N (e.g. 3000)")
        if self.model != "vae" and not isinstance(self.z_dim, int):
            raise ValueError(f"--model {self.model} has one latent layer: give one --z-dim")

    @property
    def conditional(self) -> bool:
        """Whether batches are ``(x, y)`` pairs (cvae, m2)."""
        return self.model != "vae"

    @property
    def data_representation(self) -> str:
        return self.representation or REPRESENTATION_FOR[self.likelihood]

    @property
    def z_dims(self) -> tuple[int, ...]:
        return (self.z_dim,) if isinstance(self.z_dim, int) else tuple(self.z_dim)

    def build(self, train=None) -> VAE | HierarchicalVAE | ConditionalVAE | SemiSupervisedVAE:
        """The model. Given the training data (an :class:`~pyro_vae.data.ImageData`), a hierarchical
        VAE with a Bernoulli likelihood starts p(x | z_1) at the mean training image
        (:meth:`~pyro_vae.hierarchical.HierarchicalVAE.set_output_bias`), which keeps its top layer
        from collapsing at once (``benchmarks/collapse.py``); a resumed or loaded run's weights replace it."""
        if self.model == "cvae":
            return ConditionalVAE(self.x_shape, self.z_dim, self.num_classes, prior=self.prior,
                                  likelihood=self.likelihood, guide=self.guide, hidden=self.hidden)
        if self.model == "m2":
            return SemiSupervisedVAE(self.x_shape, self.z_dim, self.num_classes, prior=self.prior,
                                     likelihood=self.likelihood, hidden=self.hidden,
                                     alpha=self.alpha if self.alpha is not None else 10.0)
        if isinstance(self.z_dim, int):
            return VAE(self.x_shape, self.z_dim, prior=self.prior, likelihood=self.likelihood, guide=self.guide,
                       encoder=self.encoder, decoder=self.decoder, hidden=self.hidden)
        other = [f"--{name} {getattr(self, name)}" for name in ("guide", "encoder", "decoder")
                 if getattr(self, name) != getattr(RunConfig, name)]
        if other:
            raise ValueError(f"{' '.join(other)}: a hierarchical VAE (--z-dim with {len(self.z_dims)} sizes) has "
                             f"diagonal Gaussian MLP layers; drop these options or give one --z-dim")
        vae = HierarchicalVAE(self.x_shape, z_dims=self.z_dims, hidden=self.hidden, prior=self.prior,
                              likelihood=self.likelihood)
        if train is not None and self.likelihood == "bernoulli":
            vae.set_output_bias(train.mean_image())
        return vae

    def load_data(self) -> tuple:
        """(train, validation, test) as this run defines them: :class:`ImageData`, or for a
        conditional model their ``with_labels`` views (M2: ``labels`` training labels, none in
        validation and test, whose log p(x) it scores without them)."""
        train = load_dataset(self.dataset, split="train", representation=self.data_representation, seed=self.seed,
                             limit=self.limit)
        validation = min(self.validation, len(train) // 10)
        train, val = train.split(max(validation, 1), seed=self.seed)
        test = load_dataset(self.dataset, split="test", representation=self.data_representation, seed=self.seed + 1,
                            limit=self.test_limit)
        if self.model == "cvae":
            return train.with_labels(), val.with_labels(), test.with_labels()
        if self.model == "m2":
            return train.with_labels(self.labels, seed=self.seed), val.with_labels(0), test.with_labels(0)
        return train, val, test

    def to_json(self) -> dict:
        return {"format": RUN_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict, where: Path) -> RunConfig:
        if data.get("format") != RUN_FORMAT:
            raise RunError(
                f"{where} was made by an incompatible pyro-vae (format {data.get('format')!r}, this version reads "
                f"{RUN_FORMAT!r}); train it again with this version"
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        hidden = values.get("hidden", ())
        values["hidden"] = tuple(tuple(h) if isinstance(h, list) else h for h in hidden)
        if isinstance(values.get("z_dim"), list):
            values["z_dim"] = tuple(values["z_dim"])
        values["x_shape"] = tuple(values.get("x_shape", (1, 28, 28)))
        return cls(**values)


def _intact(run_dir: Path, damaged: Path) -> list[str]:
    """The other files of a run folder that still read."""
    readers = {"run.json": lambda p: json.loads(p.read_text()), "summary.json": lambda p: json.loads(p.read_text()),
               "metrics.csv": _parse_metrics, "model.pt": load_checkpoint, "checkpoint.pt": load_checkpoint}
    intact = []
    for name, read in readers.items():
        path = run_dir / name
        if path != damaged and path.is_file():
            try:
                read(path)
                intact.append(name)
            except (ValueError, KeyError, CheckpointError, OSError, UnicodeDecodeError):
                pass
    return intact


REPAIRS = {
    "run.json": "model.pt holds a copy of the configuration: pyro_vae.run.restore_config(RUN) rewrites run.json from it",
    "summary.json": "pyro-vae evaluate RUN computes it again",
    "metrics.csv": "the training curves cannot be redrawn; the model and its scores do not depend on it",
}


def damaged(path: Path, error: Exception) -> RunError:
    """A :class:`RunError` for a file of a run folder that does not read: which file, what is intact, what to do."""
    run_dir = path.parent
    intact = _intact(run_dir, path)
    repair = REPAIRS.get(path.name, "train the run again").replace("RUN", str(run_dir))
    if path.name == "run.json" and "model.pt" not in intact:
        repair = f"train the run again (pyro-vae train --out {run_dir})"
    return RunError(
        f"{path} is damaged ({type(error).__name__}: {error}): the run folder {run_dir} was corrupted; "
        f"still intact: {', '.join(intact) or 'nothing'}; {repair}"
    )


def read_json(path: Path) -> dict:
    """A run folder's JSON file; a damaged one is a :class:`RunError` naming it (see :func:`damaged`)."""
    try:
        data = json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise damaged(Path(path), error) from None
    if not isinstance(data, dict):
        raise damaged(Path(path), ValueError(f"expected a JSON object, found a {type(data).__name__}"))
    return data


def _parse_metrics(path: Path) -> list[dict]:
    with Path(path).open(newline="") as f:
        rows = list(csv.DictReader(f))
    for i, row in enumerate(rows, start=2):
        if None in row or any(v is None or v == "" for v in row.values()):
            raise ValueError(f"line {i} has {len(row) - (None in row)} fields where the header names {len(rows[0])}")
        for key, value in row.items():
            if not math.isfinite(float(value)) and key not in ("train_loss", "val_elbo", "val_reconstruction", "val_kl"):
                raise ValueError(f"line {i}: {key} = {value}")
    return rows


def read_metrics(run_dir: Path) -> list[dict] | None:
    """The per-epoch metrics of a run (``metrics.csv``), ``None`` if it has none; damaged: a :class:`RunError`."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        return None
    try:
        return _parse_metrics(path)
    except (ValueError, UnicodeDecodeError, csv.Error) as error:
        raise damaged(path, error) from None


def read_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise RunError(f"no run in {run_dir} (run.json is missing); train one with: pyro-vae train --out {run_dir}")
    return RunConfig.from_json(read_json(path), path)


def write_config(run_dir: Path, config: RunConfig) -> None:
    write_text(Path(run_dir) / "run.json", json.dumps(config.to_json(), indent=2) + "\n")


def restore_config(run_dir: Path) -> RunConfig:
    """Rewrite a damaged ``run.json`` from the copy of the configuration inside ``model.pt``."""
    run_dir = Path(run_dir)
    try:
        saved = load_checkpoint(run_dir / "model.pt")["run"]
    except (CheckpointError, OSError, KeyError) as error:
        raise RunError(f"cannot restore {run_dir / 'run.json'}: model.pt does not read ({error})") from None
    config = RunConfig.from_json(saved, run_dir / "model.pt")
    write_config(run_dir, config)
    return config


def save_model(run_dir: Path, vae: VAE, config: RunConfig) -> None:
    save_checkpoint(Path(run_dir) / "model.pt", {"run": config.to_json(), "state_dict": vae.state_dict()},
                    remedy=f"pyro-vae train --out {run_dir} --resume finishes the run and writes model.pt")


def load_model(run_dir: Path, device: str | torch.device = "cpu") -> tuple[RunConfig, VAE]:
    """The run's config and its trained VAE (weights loaded weights-only)."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    path = run_dir / "model.pt"
    if not path.is_file():
        raise RunError(f"{run_dir} has no trained model (model.pt): its training did not finish; "
                       f"continue it with: pyro-vae train --out {run_dir} --resume")
    state = load_checkpoint(path, map_location=device)
    vae = config.build().to(device)
    vae.load_state_dict(state["state_dict"])
    return config, vae
