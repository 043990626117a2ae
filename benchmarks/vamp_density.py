"""The VampPrior's density at evaluation scale: Pyro's generic mixture against the matrix product.

A K = 5000 importance-sampled log p(x) evaluates log p(z) of 5000 draws per image under a mixture of
500 diagonal Gaussians (vamp-1l). Pyro's ``MixtureSameFamily`` computes every (draw, component,
dimension) term, a 10^8-number tensor per image; ``pyro_vae.priors._DiagonalNormalMixture`` does the
same sum as one matrix product. This script scores the same images with the same draws (one seed)
both ways, side by side, and prints the seconds of each and the largest difference in log p(x).

    python benchmarks/vamp_density.py [--images 8] [--params benchmarks/stash/vamp-1l/best.pt]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import pyro_vae.priors
from inference import evaluate, load_params
from reproduce import PRESETS, training_data

HERE = Path(__file__).resolve().parent


def score(model, x, generic: bool, samples: int, seed: int = 0):
    """``evaluate``'s per-image log p(x) and its seconds, with the prior's generic mixture or not."""
    fast = pyro_vae.priors._is_diagonal_normal
    if generic:
        pyro_vae.priors._is_diagonal_normal = lambda d: False
    try:
        torch.manual_seed(seed)
        started = time.perf_counter()
        result = evaluate(model.model, model.guide, x, num_samples=samples, ks=(1, samples), progress=False)
        return result, time.perf_counter() - started
    finally:
        pyro_vae.priors._is_diagonal_normal = fast


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--params", default=str(HERE / "stash" / "vamp-1l" / "best.pt"),
                        help="trained parameters (a run's best.pt); the preset's initial ones where the file is missing")
    args = parser.parse_args(argv)
    preset = PRESETS["vamp-1l"]
    train, validation = training_data(preset)
    x = validation.batch(torch.arange(args.images))  # one binarization for both
    torch.manual_seed(0)
    model = preset.build(train)
    trained = Path(args.params).exists()
    if trained:
        load_params(args.params, model.model, model.guide, x, num_data=len(train))
    generic, generic_seconds = score(model, x, generic=True, samples=args.samples)
    fast, fast_seconds = score(model, x, generic=False, samples=args.samples)
    row = {"images": args.images, "samples": args.samples, "trained": trained,
           "generic_seconds": generic_seconds, "matrix_product_seconds": fast_seconds,
           "speed_up": generic_seconds / fast_seconds,
           "log_px": fast.log_px, "log_px_difference": abs(fast.log_px - generic.log_px),
           "elbo_difference": abs(fast.elbo - generic.elbo)}
    print(f"{args.images} images x K = {args.samples} ({'trained' if trained else 'initial'} parameters): generic "
          f"mixture {generic_seconds:.1f} s, matrix product {fast_seconds:.1f} s ({row['speed_up']:.0f}x); "
          f"log p(x) {fast.log_px:.4f}, differing by {row['log_px_difference']:.1e} (ELBO by {row['elbo_difference']:.1e})")
    return row


if __name__ == "__main__":
    main()
