"""Data-parallel training on ``torch.distributed``: what :func:`inference.fit` does under ``torchrun``.

Launch any script that calls ``fit`` (or ``pyro-vae train``) with ``torchrun``
and it trains on every process of the group without a change::

    torchrun --nproc_per_node 2 -m pyro_vae.cli train --out runs/ddp        # one machine, two processes
    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 4 \\
        --rdzv_backend c10d --rdzv_endpoint HOST:29400 -m pyro_vae.cli train --out runs/ddp   # and node_rank 1

``fit`` sees the environment that ``torchrun`` sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``), joins the process group (NCCL on CUDA, with ``device="cuda"``
meaning ``cuda:LOCAL_RANK``; Gloo on CPU) and then:

- **Shards** every epoch's shuffled order (the same on every rank): global step
  ``j`` covers ``batch_size x world_size`` consecutive entries of the order and
  rank ``r`` takes the ``r``-th of their ``world_size`` near-equal parts
  (:func:`shard`). ``batch_size`` is per rank. The last global batch is split in
  the same way; if fewer data than ranks remain, they are left out of that epoch
  (at most ``world_size - 1`` per epoch, different ones each epoch).
- **Averages gradients with** :class:`~torch.nn.parallel.DistributedDataParallel`
  around a :class:`ParamModule`: a module that holds the trained parameters
  (a ``pyro.module``'s own ``nn.Parameter``\\ s, and for ``pyro.param`` tensors an
  ``nn.Parameter`` sharing their storage, substituted into the program) and whose
  ``forward`` returns the estimator's ``differentiable_loss``. Each rank's loss,
  scaled by the ``"data"`` plate with ``num_data = len(data)``, estimates the
  full-data ELBO, so the average of the ranks' gradients is a gradient estimate
  of the full-data ELBO from ``world_size x batch_size`` data. Compiled steps
  (``compile=True``) compute their gradients inside the captured graph, where
  DDP's autograd hooks cannot see them: they are averaged by one all-reduce
  of the flattened gradients instead.
- **Reports global numbers**: the training loss and the NaN guard use every
  rank's loss (one all-reduce of three numbers per step, which also shares the
  time budget so that every rank stops at the same step), and validation data
  are sharded and their sums reduced.
- **Writes from rank 0 only** (checkpoints, ``best.pt``, ``metrics.csv``, the
  progress bar). The checkpoint holds every rank's random-number state (torch,
  Python, NumPy and the data set's own, gathered to rank 0), so each rank
  resumes its own stream. Resuming under another world size is refused unless
  ``fit(..., reshard=True)``.
- **Elastic restarts**: under ``torchrun --max-restarts R`` a restarted group
  (``TORCHELASTIC_RESTART_COUNT > 0``) resumes from the last checkpoint by
  itself. With ``checkpoint_every`` steps it loses at most that many steps, and
  it ends with the parameters of an uninterrupted run of the same world size,
  bit for bit on CPU (Gloo reduces in a fixed order); see ``tests/test_distributed.py``.
- **Leaves the group at exit**: a group that ``fit`` created is destroyed when the
  process exits normally, before Python shuts down (:func:`leave`).
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from pyro import poutine
from torch import nn
from torch.distributions import transform_to


@dataclass(frozen=True)
class World:
    """This process's place in the group: ``rank`` of ``size`` (``size == 1``: not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    restarts: int = 0  # how often torchrun has restarted the group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or another launcher that sets ``RANK`` and ``WORLD_SIZE``)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def join(device: str | torch.device | None) -> tuple[World, torch.device | None]:
    """Join the process group that ``torchrun`` set up (initializing it if needed) and
    return this process's :class:`World` and its device (``cuda`` becomes ``cuda:LOCAL_RANK``).
    Outside ``torchrun``: ``World()`` and ``device`` unchanged."""
    if not launched() and not dist.is_initialized():
        return World(), device
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device(device) if device is not None else None
    cuda = device is not None and device.type == "cuda"
    if cuda and device.index is None:
        device = torch.device("cuda", local_rank)
    restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0))
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(device)
        # torchrun's rendezvous store outlives a restart and still holds the previous attempt's
        # addresses (pytorch/pytorch#135712): a restarted group could connect to a dead peer.
        # Keys under a prefix per attempt keep the attempts apart.
        store, rank, size = next(dist.rendezvous("env://"))
        dist.init_process_group(backend="nccl" if cuda else "gloo", store=dist.PrefixStore(f"attempt-{restarts}", store),
                                rank=rank, world_size=size)
        atexit.register(leave)
    world = World(rank=dist.get_rank(), size=dist.get_world_size(), local_rank=local_rank, restarts=restarts)
    return world, device


def leave() -> None:
    """Destroy the default process group, if there is one; :func:`join` registers it to run at exit.

    Left to the interpreter's shutdown, Gloo's worker threads can release tensors after Python has
    gone, and the process aborts ("terminate called without an active exception", SIGABRT:
    pytorch/pytorch#190489 and #179291). ``torchrun`` counts that as a failed rank, and a finished run
    could end as a failure or spend one of its ``--max-restarts``. Call it yourself to leave earlier.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def num_steps(n: int, batch_size: int, world_size: int = 1) -> int:
    """Global steps in an epoch of ``n`` data: the last one is kept if it has at least one datum per rank.

    >>> num_steps(100, 10, 1), num_steps(100, 10, 3), num_steps(92, 10, 3), num_steps(93, 10, 3)
    (10, 4, 3, 4)
    """
    full, rest = divmod(n, batch_size * world_size)
    return full + (rest >= world_size)


def shard(order: torch.Tensor, step: int, batch_size: int, world: World) -> torch.Tensor:
    """The entries of ``order`` that ``world.rank`` trains on at global step ``step`` of the epoch.

    >>> order = torch.arange(11)
    >>> [shard(order, 0, 2, World(r, 2)).tolist() for r in (0, 1)], [shard(order, 2, 2, World(r, 2)).tolist() for r in (0, 1)]
    ([[0, 1], [2, 3]], [[8, 9], [10]])
    """
    span = batch_size * world.size
    return order[step * span : (step + 1) * span].tensor_split(world.size)[world.rank]


class Shard:
    """This rank's part of a data set (every ``size``-th datum from ``rank``), for sharded validation."""

    def __init__(self, data, world: World) -> None:
        self.data, self.index = data, torch.arange(world.rank, len(data), world.size)

    def __len__(self) -> int:
        return len(self.index)

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        return self.data.batch(self.index[index])


class ParamModule(nn.Module):
    """The trained parameters of a Pyro program as one ``nn.Module`` whose ``forward(*batch)`` is ``loss(*batch)``:
    what :class:`~torch.nn.parallel.DistributedDataParallel` needs.

    ``params`` maps names to the unconstrained tensors Pyro's param store holds.
    An ``nn.Parameter`` (what ``pyro.module`` registers) is held as it is, so the
    program's networks use the very tensor DDP watches. A plain ``pyro.param``
    tensor gets an ``nn.Parameter`` that shares its storage (the optimizer's
    in-place updates reach the param store); ``forward`` substitutes its
    constrained value for the ``pyro.param`` site, so the gradient reaches it. ``forward`` takes
    the batch's arguments (``x``, or ``x, y, ...``).
    :attr:`trained` lists the tensors to optimize, in the order of ``params``.
    """

    def __init__(self, params: dict[str, torch.Tensor], loss, constraints: dict | None = None) -> None:
        super().__init__()
        self.loss, self.names = loss, list(params)
        self.constraints = constraints or {}
        self.substituted: dict[str, nn.Parameter] = {}
        self.trained: list[torch.Tensor] = []
        for i, (name, tensor) in enumerate(params.items()):
            held = tensor if isinstance(tensor, nn.Parameter) else nn.Parameter(tensor.detach())
            if held is not tensor:
                self.substituted[name] = held
            self.register_parameter(f"p{i}", held)
            self.trained.append(held)

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        if not self.substituted:
            return self.loss(*args)
        values = {name: transform_to(self.constraints[name])(p) if name in self.constraints else p
                  for name, p in self.substituted.items()}
        with poutine.substitute(data=values):
            return self.loss(*args)


def all_sum(values: list[float], world: World, device=None) -> list[float]:
    """The sums over ranks of a few numbers (the numbers themselves outside a group)."""
    if not world.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def average_gradients(grads: list[torch.Tensor], world: World) -> None:
    """Average gradients computed outside autograd's hooks (a compiled step's) over the ranks, in place,
    with one all-reduce of their concatenation."""
    if not world.distributed or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world.size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def gather(value, world: World) -> list | None:
    """Every rank's ``value`` on rank 0 (a list by rank), ``None`` on the others; ``[value]`` outside a group."""
    if not world.distributed:
        return [value]
    out = [None] * world.size if world.is_main else None
    dist.gather_object(value, out, dst=0)
    return out


def broadcast(value, world: World):
    """Rank 0's ``value`` on every rank."""
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
