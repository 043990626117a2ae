"""The VampPrior's density at evaluation scale: Pyro's generic mixture against the matrix product.

A K = 5000 importance-sampled log p(x) evaluates log p(z) of 5000 draws per image under a mixture of
500 diagonal Gaussians (vamp-1l). Pyro's ``MixtureSameFamily`` computes every (draw, component,
dimension) term, a 10^8-number tensor per image; ``pyro_vae.priors._DiagonalNormalMixture`` does the
same sum as one matrix product. This script scores the same images with the same draws (one seed)
both ways, side by side, and prints the seconds of each and the difference in log p(x); with
``--train-steps`` also the compiled training step of each (batch 100), in alternating rounds.

    python benchmarks/vamp_density.py [--images 8] [--params runs/reproduce/vamp-1l/best.pt] [--train-steps 200]
                                      [--device cuda]

The trained parameters are those ``reproduce.py vamp-1l`` left in its git-ignored run folder; where they are
missing (a fresh clone, the lent GPU machine) the preset's initial ones are scored, and the output says so.
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from pathlib import Path

import torch

import preset_pace  # benchmarks/preset_pace.py: a preset's step, timed
import pyro_vae.priors
from inference import evaluate, load_params
from reproduce import PRESETS, training_data


@contextmanager
def density(generic: bool):
    """The VampPrior's density inside: Pyro's generic mixture, or (the default) the matrix product."""
    fast = pyro_vae.priors._is_diagonal_normal
    if generic:
        pyro_vae.priors._is_diagonal_normal = lambda d: False
    try:
        yield
    finally:
        pyro_vae.priors._is_diagonal_normal = fast


def score(model, x, generic: bool, samples: int, seed: int = 0, device: str = "cpu"):
    """``evaluate``'s per-image log p(x) and its seconds, with the prior's generic mixture or not."""
    with density(generic):
        torch.manual_seed(seed)
        started = time.perf_counter()
        result = evaluate(model.model, model.guide, x, num_samples=samples, ks=(1, samples), progress=False,
                          device=device)
        return result, time.perf_counter() - started


def step_seconds(train, generic: bool, steps: int, device: str = "cpu") -> float:
    """Seconds a compiled training step of vamp-1l (batch 100) takes, compile time left out."""
    with density(generic):
        return preset_pace.step_seconds("vamp-1l", train, steps=steps, compile=True, device=device)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--params", default="runs/reproduce/vamp-1l/best.pt",
                        help="trained parameters (the run's best.pt); the preset's initial ones where it is missing")
    parser.add_argument("--train-steps", type=int, default=0,
                        help="also time this many compiled training steps with each density, in alternating rounds")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    preset = PRESETS["vamp-1l"]
    train, validation = training_data(preset)
    x = validation.batch(torch.arange(args.images)).to(args.device)  # one binarization for both
    torch.manual_seed(0)
    model = preset.build(train).to(args.device)
    trained = Path(args.params).exists()
    if trained:
        load_params(args.params, model.model, model.guide, x, num_data=len(train))
    generic, generic_seconds = score(model, x, generic=True, samples=args.samples, device=args.device)
    fast, fast_seconds = score(model, x, generic=False, samples=args.samples, device=args.device)
    row = {"images": args.images, "samples": args.samples, "trained": trained,
           "generic_seconds": generic_seconds, "matrix_product_seconds": fast_seconds,
           "speed_up": generic_seconds / fast_seconds,
           "log_px": fast.log_px, "log_px_difference": abs(fast.log_px - generic.log_px),
           "elbo_difference": abs(fast.elbo - generic.elbo)}
    print(f"{args.images} images x K = {args.samples} on {args.device} ({'trained' if trained else 'initial'} "
          f"parameters): generic mixture {generic_seconds:.1f} s, matrix product {fast_seconds:.1f} s "
          f"({row['speed_up']:.0f}x); log p(x) {fast.log_px:.4f}, differing by {row['log_px_difference']:.1e} "
          f"(ELBO by {row['elbo_difference']:.1e})")
    if args.train_steps:
        paces = {"generic": [], "matrix_product": []}
        for _ in range(args.rounds):
            for name in paces:
                paces[name].append(step_seconds(train, name == "generic", args.train_steps, args.device))
        row.update({f"{name}_step_ms": 1000 * min(p) for name, p in paces.items()})
        print(f"compiled training step (batch {PRESETS['vamp-1l'].batch_size}, best of {args.rounds} rounds of "
              f"{args.train_steps}): generic mixture {row['generic_step_ms']:.1f} ms, matrix product "
              f"{row['matrix_product_step_ms']:.1f} ms ({row['generic_step_ms'] / row['matrix_product_step_ms']:.2f}x)")
    return row


if __name__ == "__main__":
    main()
