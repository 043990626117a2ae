"""Resident memory of importance-weighted evaluation, pass after pass.

Runs the passes of `inference.weights.iter_log_weights` (what `evaluate`
does) over MNIST test images with the untrained 784-400-20 VAE and prints,
every few passes, the process's resident size, the number of live tensors
and of live Python objects. Live tensors and objects stay flat: what grows,
if anything, is the C allocator's heap. Compare with the allocator told to
map mid-sized blocks on their own:

    python benchmarks/iw_memory.py
    MALLOC_MMAP_THRESHOLD_=65536 python benchmarks/iw_memory.py
"""

from __future__ import annotations

import argparse
import gc

import torch

from inference.weights import iter_log_weights
from iw_eval import build  # the same untrained network as iw_eval.py (this folder is on sys.path when run)
from pyro_vae import load_dataset


def resident_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def live_counts() -> tuple[int, int]:
    """Live tensors and live (garbage-collected) Python objects; the list of
    objects is dropped before returning, so that no snapshot keeps the last alive."""
    objects = gc.get_objects()
    return sum(1 for o in objects if isinstance(o, torch.Tensor)), len(objects)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-data", type=int, default=5000)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--budget", type=int, default=2**16)
    parser.add_argument("--every", type=int, default=8)
    args = parser.parse_args()
    data = load_dataset("mnist", split="test", representation="static", limit=args.num_data)
    vae = build()
    print(f"images={args.num_data} K={args.samples} budget={args.budget}")
    print(f"{'pass':>5s} {'RSS MiB':>8s} {'tensors':>8s} {'objects':>8s}")
    with torch.no_grad():
        passes = iter_log_weights(vae.model, vae.guide, data, num_samples=args.samples, budget=args.budget)
        for i, _ in enumerate(passes):
            if i % args.every == 0:
                tensors, objects = live_counts()
                print(f"{i:5d} {resident_mib():8.0f} {tensors:8d} {objects:8d}", flush=True)


if __name__ == "__main__":
    main()
