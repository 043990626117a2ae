"""Where a Pyro training step spends the time that a hand-written torch step does not.

The 784-400-20 MLP VAE of ``svi_throughput.py`` at batch 128. Two parts,
each interleaved step by step so that machine noise hits every variant alike:

1. a step split into forward (the loss), backward and optimizer, for the
   loss written with `torch.distributions` (``torch_dists``: the same
   densities Pyro computes) and for `Trace_ELBO.differentiable_loss` on
   `pyro_vae.VAE` (``pyro``), both with fit's optimizer;
2. the forward pass alone without gradients: with Pyro's validation on
   (which also runs the VAE's data checks), then off (as in ``fit``'s steps),
   then also without the ``pyro.param`` registration of the VAE's networks
   (a subclass whose ``_register`` does nothing; only valid once the
   parameters are known), then also without the subsampled plate
   (``num_data`` left out). The variants take turns going first.

It prints medians in milliseconds.

    python benchmarks/step_split.py [--steps 400]
"""

from __future__ import annotations

import argparse
import statistics
import time

import pyro
import torch

from inference import make_elbo
from inference.svi import fused_adam
from pyro_vae import VAE, load_dataset
from svi_throughput import torch_dists_loss  # the same hand-written loss (this folder is on sys.path when run)


class UnregisteredVAE(VAE):
    """The VAE without its ``pyro.module`` registration (not a usable model:
    nothing would find its parameters)."""

    @staticmethod
    def _register(name, module):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    pyro.enable_validation(False)
    data = load_dataset("mnist", split="train", representation="dynamic")
    n, warmup = len(data), 20
    torch.manual_seed(0)
    vae = VAE((1, 28, 28), z_dim=20, hidden=(400,))
    elbo = make_elbo("trace")
    optimizer = fused_adam(vae.parameters(), lr=1e-3)
    losses = {
        "torch_dists": lambda x: torch_dists_loss(vae, x, n),
        "pyro": lambda x: elbo.differentiable_loss(vae.model, vae.guide, x, num_data=n),
    }
    split = {name: {"forward": [], "backward": [], "optimizer": []} for name in losses}
    for step in range(args.steps + warmup):
        x = data.batch(torch.randint(0, n, (args.batch_size,)))
        for name, loss_fn in losses.items():
            t0 = time.perf_counter()
            loss = loss_fn(x)
            t1 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            t2 = time.perf_counter()
            optimizer.step()
            loss.item()
            t3 = time.perf_counter()
            if step >= warmup:
                for part, seconds in zip(split[name], (t1 - t0, t2 - t1, t3 - t2), strict=True):
                    split[name][part].append(seconds)
    print(f"threads={torch.get_num_threads()} batch={args.batch_size} steps={args.steps}")
    print("1. one training step, ms (medians)")
    print(f"{'loss':12s} {'forward':>8s} {'backward':>8s} {'optimizer':>9s}")
    for name, parts in split.items():
        print(f"{name:12s} " + " ".join(f"{1000 * statistics.median(v):{len(p)}.3f}" for p, v in parts.items()))

    unregistered = UnregisteredVAE((1, 28, 28), z_dim=20, hidden=(400,))
    unregistered.load_state_dict(vae.state_dict())

    def validated(x):
        with pyro.validation_enabled(True):
            return elbo.differentiable_loss(vae.model, vae.guide, x, num_data=n)

    forwards = {
        "torch_dists": lambda x: torch_dists_loss(vae, x, n),
        "validation on": validated,
        "VAE": lambda x: elbo.differentiable_loss(vae.model, vae.guide, x, num_data=n),
        "- registration": lambda x: elbo.differentiable_loss(unregistered.model, unregistered.guide, x, num_data=n),
        "- subsampling": lambda x: elbo.differentiable_loss(unregistered.model, unregistered.guide, x),
    }
    times = {name: [] for name in forwards}
    names = list(forwards)
    with torch.no_grad():
        for step in range(args.steps + warmup):
            x = data.batch(torch.randint(0, n, (args.batch_size,)))
            for name in names[step % len(names) :] + names[: step % len(names)]:  # rotated: no variant always first
                loss_fn = forwards[name]
                start = time.perf_counter()
                loss_fn(x)
                if step >= warmup:
                    times[name].append(time.perf_counter() - start)
    print("2. forward pass without gradients, ms (medians); from 'VAE' on, each row also drops the rows above it")
    base = statistics.median(times["torch_dists"])
    for name, values in times.items():
        print(f"{name:15s} {1000 * statistics.median(values):7.3f}  (+{1000 * (statistics.median(values) - base):.3f})")


if __name__ == "__main__":
    main()
