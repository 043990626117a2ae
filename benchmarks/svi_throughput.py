"""Per-step cost of `fit`, eager and compiled, against a hand-written pure-torch loop of the same maths.

The same 784-400-20 MLP VAE (Bernoulli likelihood, diagonal Gaussian guide,
single-sample Monte Carlo ELBO, or with ``--particles K`` the K-sample IWAE
bound; Adam, batch 128, dynamic binarization) is trained by eight loops,
interleaved in rounds so that machine noise hits all of them alike. All but
``torch_adam`` and ``svi`` step the optimizer `fit` uses,
`torch.optim.Adam` with ``fused=True`` (`inference.svi.fused_adam`), so
that their differences are the cost of Pyro and of `fit`, not of the optimizer:

- ``torch``: the loss written by hand in torch, with log q(z|x) computed from
  the noise ``eps`` (the cheapest form);
- ``torch_compiled``: the same hand-written loss under `torch.compile`
  (forward and backward; the optimizer step outside, as in ``fit_compiled``);
- ``torch_dists``: the ``torch`` loop with every log-density from
  `torch.distributions` (``Normal(loc, scale).log_prob(z)``), as Pyro computes them;
- ``pyro_bare``: Pyro's ``differentiable_loss`` on `pyro_vae.VAE` with the
  optimizer and nothing else: the floor that Pyro's tracing sets;
- ``fit``: `inference.fit` on `pyro_vae.VAE`;
- ``fit_compiled``: `inference.fit(..., compile=True)`: the step captured once
  and compiled by inductor (`inference.compiled`);
- ``torch_adam``: the ``torch`` loop with the default (unfused) `torch.optim.Adam`,
  the optimizer most hand-written loops use;
- ``svi``: the textbook `pyro.infer.SVI.step` loop with `pyro.optim.Adam` (unfused).

Every loop times its steps only: the compiled loops leave out their one-off
compile (reported on its own line), as every loop leaves out its set-up.
It prints the median seconds per step of each loop and the median of the
per-round ratios to ``torch`` (each round's loops run back to back, so a
round's ratio is not disturbed by slow drifts of the machine), and ends with
the line ``fit_compiled/torch = R``.

    python benchmarks/svi_throughput.py [--steps 200] [--rounds 9] [--batch-size 128] [--particles 1]
        [--device cpu] [--only torch,fit_compiled]
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


def _synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _batches(data, steps: int, batch_size: int, device):
    n = len(data)
    order = torch.randperm(n)
    for i in range(steps):
        yield data.batch(order[(i * batch_size) % (n - batch_size) :][:batch_size]).to(device)


def _bound(log_w: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k w_k per datum from log-weights (K, batch); the ELBO's one term at K = 1."""
    return log_w[0] if log_w.shape[0] == 1 else torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


def hand_loss(vae: VAE, x: torch.Tensor, n: int, particles: int = 1) -> torch.Tensor:
    """Minus the K-sample bound (the ELBO at K = 1) of VAE.model/guide, by hand, scaled to n data."""
    log2pi = math.log(2 * math.pi)
    loc, raw = vae.guide_family.head(vae.encoder(x)).chunk(2, dim=-1)
    scale = F.softplus(raw) + vae.guide_family.min_scale
    eps = torch.randn((particles, *loc.shape), device=loc.device)
    z = loc + scale * eps
    logits = vae.decoder(z).reshape(particles, *x.shape)
    log_lik = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").flatten(2).sum(-1)
    log_p = -0.5 * (z**2 + log2pi).sum(-1)
    log_q = (-0.5 * (eps**2 + log2pi) - scale.log()).sum(-1)
    return -_bound(log_lik + log_p - log_q).sum() * (n / len(x))


def torch_loop(vae: VAE, data, steps: int, batch_size: int, particles: int, device, make_optimizer=fused_adam,
               compiled: bool = False) -> tuple[float, float]:
    """The same maths as VAE.model/guide under the ELBO (IWAE for K > 1), by hand; (s/step, compile s)."""
    optimizer = make_optimizer(vae.parameters(), lr=1e-3)
    n = len(data)
    loss_fn = torch.compile(hand_loss, fullgraph=True, dynamic=False) if compiled else hand_loss
    batches = _batches(data, steps + 1, batch_size, device)
    compile_seconds = 0.0
    if compiled:  # the first call compiles: time it on its own
        started = time.perf_counter()
        loss_fn(vae, next(batches), n, particles).backward()
        _synchronize(device)
        compile_seconds = time.perf_counter() - started
        optimizer.zero_grad(set_to_none=True)
    else:
        next(batches)
    start = time.perf_counter()
    for x in batches:
        loss = loss_fn(vae, x, n, particles)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()  # fit reads the loss every step too
    return (time.perf_counter() - start) / steps, compile_seconds


def torch_dists_loss(vae: VAE, x: torch.Tensor, n: int, particles: int = 1) -> torch.Tensor:
    """Minus the K-sample bound of VAE.model/guide with every log-density from torch.distributions."""
    loc, raw = vae.guide_family.head(vae.encoder(x)).chunk(2, dim=-1)
    q = Normal(loc, F.softplus(raw) + vae.guide_family.min_scale)
    z = q.rsample((particles,))
    log_lik = Bernoulli(logits=vae.decoder(z).reshape(particles, *x.shape)).log_prob(x).flatten(2).sum(-1)
    log_p = Normal(torch.zeros_like(z), 1.0).log_prob(z).sum(-1)
    return -_bound(log_lik + log_p - q.log_prob(z).sum(-1)).sum() * (n / len(x))


def torch_dists_loop(vae: VAE, data, steps: int, batch_size: int, particles: int, device) -> tuple[float, float]:
    """As torch_loop, with the log-densities from torch.distributions."""
    optimizer = fused_adam(vae.parameters(), lr=1e-3)
    n = len(data)
    start = time.perf_counter()
    for x in _batches(data, steps, batch_size, device):
        loss = torch_dists_loss(vae, x, n, particles)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()
    return (time.perf_counter() - start) / steps, 0.0


def _estimator(particles: int) -> dict:
    return {"estimator": "trace"} if particles == 1 else {"estimator": "iwae", "num_particles": particles}


def pyro_bare_loop(vae: VAE, data, steps: int, batch_size: int, particles: int, device) -> tuple[float, float]:
    """Pyro's loss with a torch optimizer and no trainer around it."""
    optimizer = fused_adam(vae.parameters(), lr=1e-3)
    options = _estimator(particles)
    elbo = make_elbo(options["estimator"], num_particles=particles)
    n = len(data)
    start = time.perf_counter()
    for x in _batches(data, steps, batch_size, device):
        optimizer.zero_grad(set_to_none=True)
        loss = elbo.differentiable_loss(vae.model, vae.guide, x, num_data=n)
        loss.backward()
        optimizer.step()
        loss.item()
    return (time.perf_counter() - start) / steps, 0.0


def fit_loop(vae: VAE, data, steps: int, batch_size: int, particles: int, device, compile=False) -> tuple[float, float]:
    """The steps of `fit`, timed by fit itself (``train_seconds``), as the other
    loops time their steps: the one-off set-up (a validated discovery pass that
    finds the parameters, the optimizer) is left out, as theirs is, and so is
    the compile of the first compiled step (``compile_seconds``), reported apart."""
    extra = 1 if compile else 0  # the compiling step is not timed
    result = fit(vae.model, vae.guide, data, batch_size=batch_size, epochs=10**6, max_steps=steps + extra,
                 checkpoint_every=None, progress=False, device=device, compile=compile, **_estimator(particles))
    return (result.train_seconds - result.compile_seconds) / steps, result.compile_seconds


def svi_loop(vae: VAE, data, steps: int, batch_size: int, particles: int, device) -> tuple[float, float]:
    options = _estimator(particles)
    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}),
                         make_elbo(options["estimator"], num_particles=particles))
    n = len(data)
    start = time.perf_counter()
    for x in _batches(data, steps, batch_size, device):
        svi.step(x, num_data=n)
    return (time.perf_counter() - start) / steps, 0.0


LOOPS = {
    "torch": torch_loop,
    "torch_compiled": functools.partial(torch_loop, compiled=True),
    "torch_dists": torch_dists_loop,
    "pyro_bare": pyro_bare_loop,
    "fit": fit_loop,
    "fit_compiled": functools.partial(fit_loop, compile=True),
    "torch_adam": functools.partial(torch_loop, make_optimizer=torch.optim.Adam),
    "svi": svi_loop,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--particles", type=int, default=1, help="K > 1: every loop trains the IWAE_K bound")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", default=",".join(LOOPS), help="comma-separated loops (torch is always run)")
    args = parser.parse_args()
    names = ["torch"] + [name for name in args.only.split(",") if name in LOOPS and name != "torch"]
    pyro.enable_validation(False)
    data = load_dataset("mnist", split="train", representation="dynamic")
    times = {name: [] for name in names}
    compile_times = {name: [] for name in names}
    for round_ in range(args.rounds + 1):  # round 0 warms up
        for name in names:
            pyro.clear_param_store()
            torch.manual_seed(round_)
            vae = VAE((1, 28, 28), z_dim=20, hidden=(400,)).to(args.device)
            seconds, compile_seconds = LOOPS[name](vae, data, args.steps, args.batch_size, args.particles, args.device)
            compile_times[name].append(compile_seconds)
            if round_:
                times[name].append(seconds)
    device = torch.cuda.get_device_name(args.device) if torch.device(args.device).type == "cuda" else "cpu"
    print(f"device={device} threads={torch.get_num_threads()} steps={args.steps} rounds={args.rounds} "
          f"batch={args.batch_size} particles={args.particles}")
    print(f"{'loop':14s} {'ms/step':>8s} {'ratio':>6s}  per-round ratios")
    ratios = {}
    for name, values in times.items():
        per_round = [v / t for v, t in zip(values, times["torch"], strict=True)]
        ratios[name] = statistics.median(per_round)
        print(f"{name:14s} {1000 * statistics.median(values):8.2f} {ratios[name]:6.3f}  "
              + " ".join(f"{r:.3f}" for r in per_round))
    for name, values in compile_times.items():
        if any(values):
            print(f"compile {name}: first {values[0]:.1f} s, later rounds {min(values[1:] or values):.1f}-"
                  f"{max(values[1:] or values):.1f} s (torch's caches warm)")
    if "torch_compiled" in ratios and "fit_compiled" in ratios:
        per_round = [f / t for f, t in zip(times["fit_compiled"], times["torch_compiled"], strict=True)]
        print(f"fit_compiled/torch_compiled = {statistics.median(per_round):.3f}")
    if "fit_compiled" in ratios:
        print(f"fit_compiled/torch = {ratios['fit_compiled']:.2f}")


if __name__ == "__main__":
    main()
