"""Why does the top layer of Burda et al.'s two-layer VAE collapse, and what prevents it?

Our 400-epoch ``burda-2l-vae`` run ended with 13 of 100 units active in z1 and none of 50 in z2
(BENCHMARKS.md). This script trains the same model with the paper's first-stage settings (Adam
lr 1e-3, eps 1e-4, batch 20) for a few epochs per variant and counts the active units of each layer
(posterior-mean variance > 0.01, Burda et al.'s criterion) on held-out test images after every
epoch, so that a collapse and its remedy are seen within minutes instead of hours:

    python benchmarks/collapse.py --epochs 20 --compile --variants plain warmup:10 data_bias --figure docs/collapse.png

``plain`` is the paper's objective; ``warmup:W`` raises the KL weight of both layers linearly from 0
to 1 over W epochs (Sønderby et al. 2016); ``free_bits:L`` floors each dimension's batch KL at L nats
(Kingma et al. 2016); ``glorot``, ``exp_scale`` and ``data_bias`` change the model towards Burda et al.'s
code (HierarchicalVAE's ``init="glorot"``, ``scale="exp"`` and ``set_output_bias``). Writes
``benchmarks/results/collapse.json`` (a rerun of a variant replaces its entry) and prints one line per
epoch; ``--figure`` and ``--table`` show every recorded variant (a bare ``--variants`` redraws them
without training).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from inference import LinearWarmup, evaluate, fit
from pyro_vae import HierarchicalVAE, load_dataset
from recording import command_line, git_commit, write_block  # benchmarks/recording.py

HERE = Path(__file__).resolve().parent


def options(variant: str, steps_per_epoch: int) -> dict:
    """The fit options of a variant: ``+``-joined parts, of which ``warmup:W`` (epochs) and
    ``free_bits:L`` (nats) change the objective; ``plain`` and the model parts change nothing here."""
    found = {}
    for part in variant.split("+"):
        kind, _, value = part.partition(":")
        try:
            number = float(value) if value else None
        except ValueError:
            number = None
            kind = ""  # not a number: refused below
        if kind in ("plain", *MODEL_PARTS) and not value:
            continue
        if kind == "warmup" and number:
            found["beta"] = LinearWarmup(steps=int(number * steps_per_epoch))
        elif kind == "free_bits" and number is not None:
            found["free_bits"] = number
        else:
            raise ValueError(f"unknown variant part {part!r}: use plain, warmup:EPOCHS, free_bits:NATS or one of "
                             f"{', '.join(MODEL_PARTS)}, joined by +")
    return found


def data_bias(model, train) -> None:
    """The decoder's output bias set to the logit of the mean of (up to) 10 000 training images."""
    model.set_output_bias(train.batch(torch.arange(min(len(train), 10000))))


MODEL_PARTS = ("glorot", "exp_scale", "data_bias")  # glorot: init="glorot"; exp_scale: scale="exp"


def trace_variant(variant: str, train, held_out, *, epochs: int, seed: int, compile: bool, samples: int) -> list[dict]:
    """Train one variant; after each epoch, the training loss, the held-out ELBO and each layer's
    active units, with E_q[z2 | x] averaged over ``samples`` draws of z1 (fewer overcount z2's units)."""
    torch.manual_seed(seed)
    parts = variant.split("+")
    model = HierarchicalVAE(train.x_shape, z_dims=(100, 50), hidden=((200, 200), (100, 100)),
                            init="glorot" if "glorot" in parts else "torch",
                            scale="exp" if "exp_scale" in parts else "softplus")
    if "data_bias" in parts:
        data_bias(model, train)
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
    parser.add_argument("--variants", nargs="*", default=["plain", "warmup:10", "data_bias"],
                        help="none (a bare --variants) trains nothing: with --figure, redraws the recorded ones")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--held-out", type=int, default=1000, help="test images scored after each epoch")
    parser.add_argument("--samples", type=int, default=256, help="draws of z1 behind each E_q[z2 | x]")
    parser.add_argument("--limit", type=int, default=None, help="the first N training images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--results", default=str(HERE / "results"))
    parser.add_argument("--figure", default=None, help="draw every recorded variant here (docs/collapse.png)")
    parser.add_argument("--table", default=None, help="rewrite the table of recorded variants in this BENCHMARKS.md")
    args = parser.parse_args(argv)
    args.command = command_line("collapse.py", argv)
    for variant in args.variants:
        options(variant, 1)  # fail on a bad name before any training
    if not args.variants and not (args.figure or args.table):
        parser.error("nothing to do: name --variants to train, or --figure/--table to show the recorded ones")
    train = load_dataset("mnist", split="train", representation="dynamic", seed=args.seed, limit=args.limit)
    held_out = load_dataset("mnist", split="test", representation="dynamic", seed=args.seed + 1,
                            limit=args.held_out)
    out = Path(args.results) / "collapse.json"
    for variant in args.variants:  # each variant's record is written as soon as it ends
        started = time.perf_counter()
        rows = trace_variant(variant, train, held_out, epochs=args.epochs, seed=args.seed, compile=args.compile,
                             samples=args.samples)
        record = {"variant": variant, "rows": rows, "seconds": time.perf_counter() - started,
                  "threads": torch.get_num_threads(), "seed": args.seed,
                  "command": args.command, "commit": git_commit()}
        runs = json.loads(out.read_text())["runs"] if out.exists() else []
        runs = [r for r in runs if r["variant"] != variant] + [record]  # a rerun replaces its variant
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    if (args.figure or args.table) and not out.exists():
        parser.error(f"no recorded variants in {out}: train some with --variants first")
    if args.figure:
        print(figure(json.loads(out.read_text())["runs"], Path(args.figure)))
    if args.table:
        write_block(Path(args.table), "collapse", table(json.loads(out.read_text())["runs"]),
                    "The two-layer VAE's first epochs (`benchmarks/collapse.py`)")


def table(runs: list[dict], epochs=(1, 5, 10, 20)) -> str:
    """Held-out ELBO and active units (z1 + z2) at a few epochs, one row per variant, best last epoch first."""
    head = "| variant | " + " | ".join(f"epoch {e}" for e in epochs) + " | seconds |"
    lines = [head, "|---" * (len(epochs) + 2) + "|"]
    for run in sorted(runs, key=lambda r: -r["rows"][-1]["held_out_elbo"]):
        at = {r["epoch"]: r for r in run["rows"]}
        cells = [f"{at[e]['held_out_elbo']:.1f} ({at[e]['active_z1']} + {at[e]['active_z2']})" if e in at else ""
                 for e in epochs]
        lines.append(f"| {run['variant']} | " + " | ".join(cells) + f" | {run['seconds']:.0f} |")
    return "\n".join(lines)


def figure(runs: list[dict], path: Path) -> Path:
    """Held-out ELBO and the top layer's active units per epoch, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for run in runs:
        epochs = [r["epoch"] for r in run["rows"]]
        style = "-" if "data_bias" in run["variant"] else "--"  # the part that matters most
        line, = left.plot(epochs, [r["held_out_elbo"] for r in run["rows"]], style, marker=".", label=run["variant"])
        right.plot(epochs, [r["active_z2"] for r in run["rows"]], style, marker=".", color=line.get_color())
    left.set(xlabel="epoch", ylabel="held-out ELBO (nats; higher is better)", ylim=(-135, -100),
             title="Burda et al.'s two-layer VAE, lr 1e-3, batch 20")
    right.set(xlabel="epoch", ylabel="active units in z2 (of 50)", title="the top layer")
    left.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
