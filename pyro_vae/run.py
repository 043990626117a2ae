"""A training run on disk: its configuration, the trained model, and how to rebuild them.

A run folder holds ``run.json`` (the :class:`RunConfig`), ``checkpoint.pt``
and ``metrics.csv`` (written by :func:`inference.fit`), ``model.pt`` (the
trained weights, weights-only), ``summary.json`` and ``figures/``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from inference import load_checkpoint, save_checkpoint
from pyro_vae.data import ImageData, load_dataset
from pyro_vae.likelihoods import REPRESENTATION_FOR
from pyro_vae.vae import VAE

RUN_FORMAT = "pyro-vae-run/1"


class RunError(RuntimeError):
    """A run folder that cannot be used as asked."""


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run's data and model (training settings live in ``inference.FitConfig``)."""

    dataset: str = "mnist"
    representation: str | None = None  # None: the one that fits the likelihood
    prior: str = "standard_normal"
    likelihood: str = "bernoulli"
    guide: str = "diagonal"
    encoder: str = "mlp"
    decoder: str = "mlp"
    hidden: tuple[int, ...] = (400,)
    z_dim: int = 2
    limit: int | None = None
    test_limit: int | None = 2000
    validation: int = 1000
    seed: int = 0
    x_shape: tuple[int, ...] = (1, 28, 28)

    @property
    def data_representation(self) -> str:
        return self.representation or REPRESENTATION_FOR[self.likelihood]

    def build(self) -> VAE:
        return VAE(self.x_shape, self.z_dim, prior=self.prior, likelihood=self.likelihood, guide=self.guide,
                   encoder=self.encoder, decoder=self.decoder, hidden=self.hidden)

    def load_data(self) -> tuple[ImageData, ImageData, ImageData]:
        """(train, validation, test) as this run defines them."""
        train = load_dataset(self.dataset, split="train", representation=self.data_representation, seed=self.seed,
                             limit=self.limit)
        validation = min(self.validation, len(train) // 10)
        train, val = train.split(max(validation, 1), seed=self.seed)
        test = load_dataset(self.dataset, split="test", representation=self.data_representation, seed=self.seed + 1,
                            limit=self.test_limit)
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
        values["hidden"] = tuple(values.get("hidden", ()))
        values["x_shape"] = tuple(values.get("x_shape", (1, 28, 28)))
        return cls(**values)


def read_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise RunError(f"no run in {run_dir} (run.json is missing); train one with: pyro-vae train --out {run_dir}")
    return RunConfig.from_json(json.loads(path.read_text()), path)


def write_config(run_dir: Path, config: RunConfig) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.json").write_text(json.dumps(config.to_json(), indent=2) + "\n")


def save_model(run_dir: Path, vae: VAE, config: RunConfig) -> None:
    save_checkpoint(Path(run_dir) / "model.pt", {"run": config.to_json(), "state_dict": vae.state_dict()})


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
