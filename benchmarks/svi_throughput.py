"""Per-step cost of `fit` against a hand-written pure-torch loop of the same maths.

The same 784-400-20 MLP VAE (Bernoulli likelihood, diagonal Gaussian guide,
single-sample Monte Carlo ELBO, Adam, batch 128, dynamic binarization) is
trained by six loops, interleaved in rounds so that machine noise hits all
of them alike. All but the last two step the optimizer `fit` uses,
`torch.optim.Adam` with ``fused=True`` (`inference.svi.fused_adam`), so
that their differences are the cost of Pyro and of `fit`, not of the optimizer:

- ``torch``: the ELBO written by hand in torch, with log q(z|x) computed from
  the noise ``eps`` (the cheapest form);
- ``torch_dists``: the same loop with every log-density from
  `torch.distributions` (``Normal(loc, scale).log_prob(z)``), as Pyro computes them;
- ``pyro_bare``: `Trace_ELBO.differentiable_loss` on `pyro_vae.VAE` with the
  optimizer and nothing else: the floor that Pyro's tracing sets;
- ``fit``: `inference.fit` on `pyro_vae.VAE` (estimator "trace");
- ``torch_adam``: the ``torch`` loop with the default (unfused) `torch.optim.Adam`,
  the optimizer most hand-written loops use;
- ``svi``: the textbook `pyro.infer.SVI.step` loop with `pyro.optim.Adam` (unfused).

It prints the median seconds per step of each loop and the median of the
per-round ratios to ``torch`` (each round's loops run back to back, so a
round's ratio is not disturbed by slow drifts of the machine).

    python benchmarks/svi_throughput.py [--steps 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics
import time

import pyro
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Normal

from inference import fit, make_elbo
from inference.svi import fused_adam
from pyro_vae import VAE, load_dataset


def torch_loop(vae: VAE, data, steps: int, batch_size: int, make_optimizer=fused_adam) -> float:
    """The same maths as VAE.model/guide under Trace_ELBO, by hand."""
    optimizer = make_optimizer(vae.parameters(), lr=1e-3)
    n = len(data)
    order = torch.randperm(n)
    log2pi = math.log(2 * math.pi)
    start = time.perf_counter()
    for i in range(steps):
        x = data.batch(order[(i * batch_size) % (n - batch_size) :][:batch_size])
        loc, raw = vae.guide_family.head(vae.encoder(x)).chunk(2, dim=-1)
        scale = F.softplus(raw) + vae.guide_family.min_scale
        eps = torch.randn_like(loc)
        z = loc + scale * eps
        logits = vae.decoder(z).reshape(x.shape)
        log_lik = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        log_p = -0.5 * (z**2 + log2pi).sum(1)
        log_q = (-0.5 * (eps**2 + log2pi) - scale.log()).sum(1)
        loss = -(log_lik + log_p - log_q).sum() * (n / len(x))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()  # fit reads the loss every step too
    return (time.perf_counter() - start) / steps


def torch_dists_loss(vae: VAE, x: torch.Tensor, n: int) -> torch.Tensor:
    """The negative ELBO of VAE.model/guide with every log-density from torch.distributions."""
    loc, raw = vae.guide_family.head(vae.encoder(x)).chunk(2, dim=-1)
    q = Normal(loc, F.softplus(raw) + vae.guide_family.min_scale)
    z = q.rsample()
    log_lik = Bernoulli(logits=vae.decoder(z).reshape(x.shape)).log_prob(x).flatten(1).sum(1)
    log_p = Normal(torch.zeros_like(z), 1.0).log_prob(z).sum(1)
    return -(log_lik + log_p - q.log_prob(z).sum(1)).sum() * (n / len(x))


def torch_dists_loop(vae: VAE, data, steps: int, batch_size: int) -> float:
    """As torch_loop, with the log-densities from torch.distributions."""
    optimizer = fused_adam(vae.parameters(), lr=1e-3)
    n = len(data)
    order = torch.randperm(n)
    start = time.perf_counter()
    for i in range(steps):
        x = data.batch(order[(i * batch_size) % (n - batch_size) :][:batch_size])
        loss = torch_dists_loss(vae, x, n)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()
    return (time.perf_counter() - start) / steps


def pyro_bare_loop(vae: VAE, data, steps: int, batch_size: int) -> float:
    """Pyro's loss with a torch optimizer and no trainer around it."""
    optimizer = fused_adam(vae.parameters(), lr=1e-3)
    elbo = make_elbo("trace")
    n = len(data)
    order = torch.randperm(n)
    start = time.perf_counter()
    for i in range(steps):
        x = data.batch(order[(i * batch_size) % (n - batch_size) :][:batch_size])
        optimizer.zero_grad(set_to_none=True)
        loss = elbo.differentiable_loss(vae.model, vae.guide, x, num_data=n)
        loss.backward()
        optimizer.step()
        loss.item()
    return (time.perf_counter() - start) / steps


def fit_loop(vae: VAE, data, steps: int, batch_size: int) -> float:
    """The steps of `fit`, timed by fit itself (``train_seconds``), as the other
    loops time their steps: the one-off set-up (a validated discovery pass that
    finds the parameters, the optimizer) is left out, as theirs is."""
    result = fit(vae.model, vae.guide, data, estimator="trace", batch_size=batch_size, epochs=10**6, max_steps=steps,
                 checkpoint_every=None, progress=False)
    return result.train_seconds / steps


def svi_loop(vae: VAE, data, steps: int, batch_size: int) -> float:
    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), make_elbo("trace"))
    n = len(data)
    order = torch.randperm(n)
    start = time.perf_counter()
    for i in range(steps):
        x = data.batch(order[(i * batch_size) % (n - batch_size) :][:batch_size])
        svi.step(x, num_data=n)
    return (time.perf_counter() - start) / steps


LOOPS = {
    "torch": torch_loop,
    "torch_dists": torch_dists_loop,
    "pyro_bare": pyro_bare_loop,
    "fit": fit_loop,
    "torch_adam": functools.partial(torch_loop, make_optimizer=torch.optim.Adam),
    "svi": svi_loop,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    pyro.enable_validation(False)
    data = load_dataset("mnist", split="train", representation="dynamic")
    times = {name: [] for name in LOOPS}
    for round_ in range(args.rounds + 1):  # round 0 warms up
        for name, loop in LOOPS.items():
            pyro.clear_param_store()
            torch.manual_seed(round_)
            vae = VAE((1, 28, 28), z_dim=20, hidden=(400,))
            seconds = loop(vae, data, args.steps, args.batch_size)
            if round_:
                times[name].append(seconds)
    print(f"threads={torch.get_num_threads()} steps={args.steps} rounds={args.rounds} batch={args.batch_size}")
    print(f"{'loop':11s} {'ms/step':>8s} {'ratio':>6s}  per-round ratios")
    for name, values in times.items():
        ratios = " ".join(f"{v / t:.3f}" for v, t in zip(values, times["torch"], strict=True))
        ratio = statistics.median(v / t for v, t in zip(values, times["torch"], strict=True))
        print(f"{name:11s} {1000 * statistics.median(values):8.2f} {ratio:6.3f}  {ratios}")


if __name__ == "__main__":
    main()
