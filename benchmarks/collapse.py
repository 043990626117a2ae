"""Does the top layer of Burda et al.'s two-layer VAE collapse early, and does KL warm-up prevent it?

Our 400-epoch ``burda-2l-vae`` run ended with 13 of 100 units active in z1 and none of 50 in z2
(BENCHMARKS.md). This script trains the same model with the paper's first-stage settings (Adam
lr 1e-3, eps 1e-4, batch 20) for a few epochs per variant and counts the active units of each layer
(posterior-mean variance > 0.01, Burda et al.'s criterion) on held-out test images after every
epoch, so that a collapse and its remedy are seen within minutes instead of hours:

    python benchmarks/collapse.py --epochs 12 --variants plain warmup:10 free_bits:0.1

``plain`` is the paper's objective; ``warmup:W`` raises the KL weight of both layers linearly from 0
to 1 over W epochs (Sønderby et al. 2016); ``free_bits:L`` floors each dimension's batch KL at L nats
(Kingma et al. 2016); ``glorot``, ``exp_scale`` and ``data_bias`` change the model towards Burda et al.'s
code (see their functions). Writes ``benchmarks/results/collapse.json`` (a rerun of a variant replaces
its entry) and prints one line per epoch.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from inference import LinearWarmup, evaluate, fit
from pyro_vae import HierarchicalVAE, load_dataset
from recording import git_commit  # benchmarks/recording.py

HERE = Path(__file__).resolve().parent


def options(variant: str, steps_per_epoch: int) -> dict:
    """The fit options of a variant: ``+``-joined parts, of which ``warmup:W`` (epochs) and
    ``free_bits:L`` (nats) change the objective; ``plain`` and the model parts change nothing here."""
    found = {}
    for part in variant.split("+"):
        kind, _, value = part.partition(":")
        if kind in ("plain", *MODEL_PARTS) and not value:
            continue
        if kind == "warmup" and value:
            found["beta"] = LinearWarmup(steps=int(float(value) * steps_per_epoch))
        elif kind == "free_bits" and value:
            found["free_bits"] = float(value)
        else:
            raise ValueError(f"unknown variant part {part!r}: use plain, warmup:EPOCHS, free_bits:NATS or one of "
                             f"{', '.join(MODEL_PARTS)}, joined by +")
    return found


@torch.no_grad()
def glorot(model, train) -> None:
    """Glorot-uniform weights and zero biases in every linear layer (Burda et al.'s initialisation)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(module.weight)
            torch.nn.init.zeros_(module.bias)


def exp_scale(model, train) -> None:
    """Standard deviations exp(raw) instead of softplus(raw), as in Burda et al.'s code."""
    for layer in [*model.encoders, *model.decoders]:
        family = layer.family
        family._scale = lambda raw, floor=family.min_scale: raw.exp() + floor


@torch.no_grad()
def data_bias(model, train) -> None:
    """The decoder's output bias set to the logit of the mean training image."""
    mean = train.batch(torch.arange(min(len(train), 10000))).float().mean(0).flatten()
    model.decoder[-1].bias.copy_(torch.logit(mean.clamp(1e-3, 1 - 1e-3)))


MODEL_PARTS = {"glorot": glorot, "exp_scale": exp_scale, "data_bias": data_bias}


def trace_variant(variant: str, train, held_out, *, epochs: int, seed: int, compile: bool, samples: int) -> list[dict]:
    """Train one variant; after each epoch, the training loss, the held-out ELBO and each layer's
    active units, with E_q[z2 | x] averaged over ``samples`` draws of z1 (fewer overcount z2's units)."""
    torch.manual_seed(seed)
    model = HierarchicalVAE(train.x_shape, z_dims=(100, 50), hidden=((200, 200), (100, 100)))
    for part in variant.split("+"):  # glorot before data_bias, whatever the order written
        if part == "glorot":
            glorot(model, train)
    for part in variant.split("+"):
        if part in MODEL_PARTS and part != "glorot":
            MODEL_PARTS[part](model, train)
    rows = []

    def score(metrics: dict) -> None:
        result = evaluate(model.model, model.guide, held_out, num_samples=samples, ks=(1,), latent_site="z2",
                          mi_data=2, progress=False)
        rows.append({"variant": variant, "epoch": metrics["epoch"], "train_loss": metrics["train_loss"],
                     "beta": metrics["beta"], "held_out_elbo": result.elbo,
                     "active_z1": result.active_units_by_site["z1"], "active_z2": result.active_units_by_site["z2"]})
        print(json.dumps(rows[-1]), flush=True)

    fit(model.model, model.guide, train, epochs=epochs, batch_size=20, lr=1e-3, eps=1e-4, seed=seed,
        latent_sites=model.latent_sites, compile=compile, progress=False, callbacks=[score],
        **options(variant, math.ceil(len(train) / 20)))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["plain", "warmup:10", "free_bits:0.1"])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--held-out", type=int, default=1000, help="test images scored after each epoch")
    parser.add_argument("--samples", type=int, default=256, help="draws of z1 behind each E_q[z2 | x]")
    parser.add_argument("--limit", type=int, default=None, help="the first N training images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--results", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    for variant in args.variants:
        options(variant, 1)  # fail on a bad name before any training
    train = load_dataset("mnist", split="train", representation="dynamic", seed=args.seed, limit=args.limit)
    held_out = load_dataset("mnist", split="test", representation="dynamic", seed=args.seed + 1,
                            limit=args.held_out)
    started = time.perf_counter()
    rows = [row for variant in args.variants
            for row in trace_variant(variant, train, held_out, epochs=args.epochs, seed=args.seed,
                                     compile=args.compile, samples=args.samples)]
    seconds = (time.perf_counter() - started) / len(args.variants)
    out = Path(args.results) / "collapse.json"
    runs = json.loads(out.read_text())["runs"] if out.exists() else []
    runs = [r for r in runs if r["variant"] not in args.variants]  # a rerun replaces its variant
    runs += [{"variant": variant, "rows": [row for row in rows if row["variant"] == variant],
              "seconds": seconds, "threads": torch.get_num_threads(), "seed": args.seed,
              "command": " ".join(["python", "benchmarks/collapse.py", *sys.argv[1:]]), "commit": git_commit()}
             for variant in args.variants]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": runs}, indent=2) + "\n")

if __name__ == "__main__":
    main()
