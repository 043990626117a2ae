"""Data-parallel scaling of `fit` under torchrun: steps and images per second for 1, 2, ... processes.

The 784-400-20 MLP VAE of `svi_throughput.py` (Bernoulli likelihood, diagonal Gaussian guide, trace
ELBO, fused Adam, dynamically binarized MNIST) is trained by `inference.fit` for ``--steps`` steps at
a fixed per-rank batch (``--batch-size``), first in one plain process (``--threads`` threads, no
process group), then under ``torchrun --nproc_per_node P`` for each P of ``--processes`` (each rank
with ``--threads`` / P threads on CPU, so that all configurations use the same cores; one GPU per rank
with ``--device cuda``). Each configuration times its steps only (`FitResult.train_seconds`, after
``--warmup`` untimed steps), and reports steps/s, images/s (steps x batch x P) and the ratio of
images/s to the single process. Configurations alternate over ``--rounds`` rounds; medians are printed.

    python benchmarks/ddp_scaling.py [--processes 1 2] [--steps 300] [--rounds 3] [--batch-size 128]
        [--threads 2] [--device cpu|cuda] [--compile]

On a 2-core CPU the comparison is two single-threaded ranks against one two-threaded process: data
parallelism can only win there if one thread per process uses the cores better than two threads in
one process, and it pays an all-reduce of the 0.66 M gradients per step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def worker(args) -> None:
    """One training run (a rank, or the whole of a plain process); rank 0 writes the timing."""
    torch.set_num_threads(args.worker_threads)
    from inference import fit
    from inference.distributed import join
    from pyro_vae import VAE, load_dataset

    world, device = join(args.device)
    data = load_dataset("mnist", split="train", representation="dynamic", seed=world.rank, limit=20000)
    torch.manual_seed(0)
    vae = VAE(data.x_shape, 20, hidden=(400,)).to(device)
    common = dict(batch_size=args.batch_size, lr=1e-3, progress=False, device=device, compile=args.compile,
                  epochs=10**6, checkpoint_every=0)
    with tempfile.TemporaryDirectory() as scratch:  # warm-up (and compile) untimed; then resume and time
        from inference.distributed import broadcast

        run = Path(broadcast(str(Path(scratch) / "run"), world))  # rank 0's folder: it alone writes
        first = fit(vae.model, vae.guide, data, run_dir=run, max_steps=args.warmup, **common)
        second = fit(vae.model, vae.guide, data, run_dir=run, resume=True, max_steps=args.warmup + args.steps,
                     **common)
        seconds = second.train_seconds - first.train_seconds - second.compile_seconds
        if world.is_main:
            Path(args.result).write_text(json.dumps({"seconds": seconds, "steps": second.step - first.step,
                                                     "processes": world.size}))


def measure(args, processes: int | None) -> dict:
    """Run one configuration: ``processes=None`` is the plain process, else torchrun with that many ranks."""
    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        threads = args.threads if processes is None else max(1, args.threads // processes)
        options = [str(Path(__file__)), "--worker", "--result", result.name, "--worker-threads", str(threads),
                   "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch-size", str(args.batch_size),
                   "--device", args.device, *(["--compile"] if args.compile else [])]
        if processes is None:
            command = [sys.executable, *options]
        else:
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                       *options]
        # the repository first, then what the caller's path held (a GPU machine's carried wheels, say)
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": str(threads)}
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        return json.loads(Path(result.name).read_text())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128, help="per rank")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads in all (split among the ranks)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--worker-threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    configurations = [None, *args.processes]
    times: dict = {c: [] for c in configurations}
    for _ in range(args.rounds):
        for c in configurations:
            r = measure(args, c)
            times[c].append(r["seconds"] / r["steps"])
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu, {args.threads} threads in all"
    print(f"fit under torchrun, {name}, batch {args.batch_size} per rank, {args.steps} timed steps, "
          f"median of {args.rounds} rounds{', compiled' if args.compile else ''}")
    print("| configuration | s/step | steps/s | images/s | images/s vs one process |")
    print("|---|---|---|---|---|")
    base = None
    for c in configurations:
        per_step = statistics.median(times[c])
        ranks = 1 if c is None else c
        images = ranks * args.batch_size / per_step
        base = base or images
        label = (f"one process, {args.threads} threads" if c is None
                 else f"torchrun, {c} rank{'s' if c > 1 else ''} x {max(1, args.threads // c)} thread(s)")
        if args.device.startswith("cuda"):
            label = "one process" if c is None else f"torchrun, {c} rank(s), one GPU each"
        print(f"| {label} | {per_step * 1000:.2f} ms | {1 / per_step:.1f} | {images:.0f} | {images / base:.2f} |")


if __name__ == "__main__":
    main()
