"""Importance-weighted log p(x): `inference.evaluate` against a hand-written
vectorized torch estimator on the same network, side by side.

Each estimator runs in its own process (so that its peak memory can be read),
alternating for ``--rounds`` rounds. With ``--compile`` a third process runs
``evaluate(..., compile=True)`` (the passes captured and compiled by inductor,
see `inference.compiled`; its compile time is included and also printed). Both draw ``K`` samples per test
image in passes of at most ``--budget`` (samples x images) particles. The
script prints seconds, the ratio, peak resident memory, and the two
estimates of log p(x) with their standard errors (they must agree).

    python benchmarks/iw_eval.py [--num-data 10000] [--samples 5000] [--budget 65536] [--compile]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F


def build(seed: int = 0):
    from pyro_vae import VAE

    torch.manual_seed(seed)
    return VAE((1, 28, 28), z_dim=20, hidden=(400,))


@torch.no_grad()
def torch_estimator(vae, x: torch.Tensor, num_samples: int, budget: int) -> torch.Tensor:
    """log (1/K) sum_k p(x, z_k) / q(z_k | x) per image, by hand."""
    log2pi = math.log(2 * math.pi)
    samples = min(num_samples, budget)
    batch = max(1, budget // samples)
    out = []
    for first in range(0, len(x), batch):
        xb = x[first : first + batch]
        loc, raw = vae.guide_family.head(vae.encoder(xb)).chunk(2, dim=-1)
        scale = F.softplus(raw) + vae.guide_family.min_scale
        chunks = []
        for done in range(0, num_samples, samples):
            s = min(samples, num_samples - done)
            eps = torch.randn(s, *loc.shape)
            z = loc + scale * eps
            logits = vae.decoder(z).reshape(s, *xb.shape)
            log_lik = -F.binary_cross_entropy_with_logits(logits, xb.expand_as(logits), reduction="none").flatten(2).sum(-1)
            log_p = -0.5 * (z**2 + log2pi).sum(-1)
            log_q = (-0.5 * (eps**2 + log2pi) - scale.log()).sum(-1)
            chunks.append(log_lik + log_p - log_q)
        log_w = torch.cat(chunks).double()
        out.append(torch.logsumexp(log_w, 0) - math.log(num_samples))
    return torch.cat(out)


def run_one(method: str, num_data: int, num_samples: int, budget: int) -> dict:
    from inference import evaluate
    from pyro_vae import load_dataset

    torch.set_num_threads(torch.get_num_threads())
    data = load_dataset("mnist", split="test", representation="static", limit=num_data)
    vae = build()
    torch.manual_seed(1)
    start = time.perf_counter()
    compile_seconds = 0.0
    if method in ("fit", "compiled"):
        if method == "compiled":  # a cold compile of both pass shapes (full and last), timed on its own;
            per_pass = max(1, budget // num_samples)  # the timed run below recompiles with torch's caches warm
            started = time.perf_counter()
            evaluate(vae.model, vae.guide, data.batch(torch.arange(min(len(data), per_pass + len(data) % per_pass))),
                     num_samples=num_samples, ks=(1,), budget=budget, progress=False, compile=True)
            compile_seconds = time.perf_counter() - started
            torch.manual_seed(1)
            start = time.perf_counter()
        result = evaluate(vae.model, vae.guide, data, num_samples=num_samples, ks=(1, num_samples), budget=budget,
                          progress=False, compile=method == "compiled")
        estimate, se = result.log_px, result.log_px_se
    else:
        values = torch_estimator(vae, data.batch(torch.arange(len(data))), num_samples, budget)
        estimate, se = values.mean().item(), (values.std() / math.sqrt(len(values))).item()
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"method": method, "seconds": seconds, "peak_mib": peak_mib, "log_px": estimate, "se": se,
            "compile_seconds": compile_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-data", type=int, default=10000)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--budget", type=int, default=2**16)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="also time evaluate(..., compile=True)")
    parser.add_argument("--only", choices=["fit", "torch", "compiled"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        print(json.dumps(run_one(args.only, args.num_data, args.samples, args.budget)))
        return
    methods = ("torch", "fit", "compiled") if args.compile else ("torch", "fit")
    results = {method: [] for method in methods}
    for _ in range(args.rounds):
        for method in methods:
            command = [sys.executable, __file__, "--only", method, "--num-data", str(args.num_data),
                       "--samples", str(args.samples), "--budget", str(args.budget)]
            line = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            results[method].append(json.loads(line))
    print(f"images={args.num_data} K={args.samples} budget={args.budget} threads={torch.get_num_threads()} rounds={args.rounds}")
    for method, runs in results.items():
        seconds = min(r["seconds"] for r in runs)
        print(f"{method:6s} {seconds:8.1f} s  peak {max(r['peak_mib'] for r in runs):7.0f} MiB  "
              f"log p(x) = {runs[0]['log_px']:.3f} +- {runs[0]['se']:.3f}")
    for method in methods[1:]:
        ratio = min(r["seconds"] for r in results[method]) / min(r["seconds"] for r in results["torch"])
        print(f"ratio {method}/torch = {ratio:.3f}")
    if args.compile:
        print(f"compile of the pass shapes with cold caches (not included above, where a warm recompile is): {results['compiled'][0]['compile_seconds']:.1f} s")


if __name__ == "__main__":
    main()
