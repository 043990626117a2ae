"""A training script for tests/test_distributed.py: run under ``torchrun`` (one rank per process) or
alone (``--reference``: one process replaying two ranks' draws on the union of their batches).

It fits a tiny model on 64 fixed binary 6x6 images and saves the final parameters (``params.pt``),
and each rank's list of checkpoint and metrics writes (``writes-RANK.json``).

    torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py OUT [--style vae|param] [--kill-at N] [--term-at N]
    python tests/ddp_worker.py OUT --reference [--style ...]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

import inference.svi as svi
from inference import fit
from inference.batching import TensorData
from inference.checkpoint import rng_state, set_rng_state
from inference.distributed import World, num_steps, shard
from inference.estimators import make_elbo
from pyro_vae import VAE

N, BATCH, EPOCHS, LR, SEED = 64, 8, 3, 0.02, 0


def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.bernoulli(torch.rand(N, 1, 6, 6, generator=g).pow(2), generator=g)


def program(style: str):
    """(model, guide): a VAE's (pyro.module parameters) or a hand-written pair with constrained pyro.param's."""
    torch.manual_seed(0)
    if style == "vae":
        vae = VAE((1, 6, 6), z_dim=2, hidden=(8,))
        return vae.model, vae.guide

    def model(x, num_data=None):
        w = pyro.param("w", lambda: 0.1 * torch.randn(36, 2))
        p0 = pyro.param("p0", lambda: torch.full((36,), 0.3), constraint=constraints.unit_interval)
        with pyro.plate("data", num_data or len(x), subsample_size=len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            logits = (z @ w.T) + torch.logit(p0)
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x.flatten(1))

    def guide(x, num_data=None):
        a = pyro.param("a", lambda: 0.1 * torch.randn(2, 36))
        s = pyro.param("s", lambda: torch.full((2,), 0.5), constraint=constraints.positive)
        with pyro.plate("data", num_data or len(x), subsample_size=len(x)):
            pyro.sample("z", dist.Normal(x.flatten(1) @ a.T, s).to_event(1))

    return model, guide


class KillingData(TensorData):
    """Serves batches; on rank 1 of the first attempt, sends ``sig`` (SIGKILL) to its own process at the
    ``kill_at``-th batch."""

    def __init__(self, tensor, kill_at, sig=signal.SIGKILL):
        super().__init__(tensor)
        self.kill_at, self.calls, self.sig = kill_at, 0, sig
        self.armed = os.environ.get("RANK") == "1" and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"

    def batch(self, index):
        self.calls += 1
        if self.armed and self.calls == self.kill_at:
            os.kill(os.getpid(), self.sig)
        return super().batch(index)


def distributed(args) -> None:
    writes = []
    for name in ("save_checkpoint", "_append_csv"):  # record every write fit makes on this rank
        original = getattr(svi, name)

        def recording(path, *rest, _original=original, _name=name):
            if path is not None:
                writes.append(f"{_name} {path}")
            return _original(path, *rest)

        setattr(svi, name, recording)
    model, guide = program(args.style)
    data = KillingData(images(), args.kill_at or args.term_at, signal.SIGTERM if args.term_at else signal.SIGKILL)
    result = fit(model, guide, data, run_dir=args.out / "run", resume=args.resume, batch_size=BATCH, epochs=EPOCHS, lr=LR,
        seed=SEED, progress=False, checkpoint_every=2, max_steps=args.max_steps, reshard=args.reshard,
        compile=args.compile or False, estimator=args.estimator)
    rank = int(os.environ.get("RANK", 0))
    (args.out / f"writes-{rank}.json").write_text(json.dumps(writes))
    (args.out / f"result-{rank}.json").write_text(json.dumps({"interrupted": result.interrupted, "step": result.step}))
    if rank == 0:
        torch.save({k: v.detach().clone() for k, v in pyro.get_param_store().items()}, args.out / "params.pt")


def reference(args, ranks: int = 2) -> None:
    """One process: at each step, rank r's batch with rank r's random stream, the mean of their losses."""
    model, guide = program(args.style)
    x = images()
    elbo = make_elbo("trace")
    elbo.differentiable_loss(model, guide, x[:BATCH], num_data=N)  # create the parameters (fit's discovery pass)
    params = [p.unconstrained() for p in pyro.get_param_store().values()]
    optimizer = svi.fused_adam(params, lr=LR)
    shuffle = torch.Generator().manual_seed(SEED)
    states = []
    for r in range(ranks):
        pyro.set_rng_seed(SEED + r)
        states.append(rng_state())
    epoch_losses = []
    with pyro.validation_enabled(False):
        for _ in range(EPOCHS):
            order = torch.randperm(N, generator=shuffle)
            loss_sum, seen = 0.0, 0
            for j in range(num_steps(N, BATCH, ranks)):
                losses = []
                for r in range(ranks):
                    set_rng_state(states[r])
                    index = shard(order, j, BATCH, World(r, ranks))
                    losses.append(elbo.differentiable_loss(model, guide, x[index], num_data=N))
                    states[r] = rng_state()
                optimizer.zero_grad()
                loss = sum(losses) / ranks
                loss.backward()
                optimizer.step()
                step_len = sum(len(shard(order, j, BATCH, World(r, ranks))) for r in range(ranks))
                loss_sum, seen = loss_sum + loss.item() / N * step_len, seen + step_len
            epoch_losses.append(loss_sum / seen)
    (args.out / "train_loss.json").write_text(json.dumps(epoch_losses))
    torch.save({k: v.detach().clone() for k, v in pyro.get_param_store().items()}, args.out / "params.pt")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--style", choices=["vae", "param"], default="vae")
    parser.add_argument("--kill-at", type=int, default=0)
    parser.add_argument("--term-at", type=int, default=0, help="SIGTERM instead of SIGKILL")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--reshard", action="store_true")
    parser.add_argument("--compile", default=None)
    parser.add_argument("--reference", action="store_true")
    parser.add_argument("--estimator", default="trace")
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    reference(arguments) if arguments.reference else distributed(arguments)
