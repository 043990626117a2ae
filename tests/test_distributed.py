"""Data-parallel fit under torchrun (two CPU processes, Gloo): the shards, the gradient averaging
against one process on the union of the batches, the global metrics, rank 0's writes, an elastic
restart after SIGKILL, and the world-size check on resume. The workers are tests/ddp_worker.py."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from inference import CheckpointError, fit, load_checkpoint
from inference.distributed import Shard, World, num_steps, shard

WORKER = Path(__file__).with_name("ddp_worker.py")
ROOT = WORKER.parent.parent


def _run(out: Path, *options, ranks: int = 2, restarts: int = 0, fails: bool = False) -> str:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if ranks:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
                   f"--max-restarts={restarts}", str(WORKER), str(out), *options]
    else:
        command = [sys.executable, str(WORKER), str(out), "--reference", *options]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert (done.returncode != 0) == fails, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def _params(out: Path) -> dict:
    return torch.load(out / "params.pt")


def _losses(out: Path) -> list[float]:
    with (out / "run" / "metrics.csv").open() as f:
        return [float(row["train_loss"]) for row in csv.DictReader(f)]


@pytest.mark.parametrize("n, batch, ranks", [(64, 8, 2), (61, 8, 2), (100, 7, 3), (10, 4, 4), (5, 4, 1)])
def test_the_shards_of_an_epoch_partition_it(n, batch, ranks):
    """Every datum is seen once, except at most ranks - 1 left over at the end of the epoch; shards differ in size by <= 1."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    seen = []
    for step in range(num_steps(n, batch, ranks)):
        parts = [shard(order, step, batch, World(r, ranks)) for r in range(ranks)]
        sizes = [len(p) for p in parts]
        assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1 and max(sizes) <= batch
        seen += [i for p in parts for i in p.tolist()]
    assert len(seen) == len(set(seen)) and set(seen) <= set(order.tolist())
    assert n - len(seen) < ranks
    assert n - len(seen) == ((n % (batch * ranks)) if n % (batch * ranks) < ranks else 0)
    validation = [i for r in range(ranks) for i in Shard(torch.zeros(n, 1), World(r, ranks)).index.tolist()]
    assert sorted(validation) == list(range(n))  # validation shards: every datum once


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    _run(root / "vae")
    _run(root / "vae-reference", ranks=0)
    return root


@pytest.mark.parametrize("style, compile", [("vae", None), ("param", None), ("vae", "graph")])
def test_two_ranks_step_as_one_process_on_the_union_of_their_batches(runs, style, compile):
    """With the same draws of z (rank r's stream replayed in one process), the averaged gradient of the two ranks
    is the gradient of the mean of their losses: the parameters agree to float precision, for pyro.module
    parameters (the VAE), constrained pyro.param's (substituted through ParamModule), and compiled steps;
    the reported training loss is the global one."""
    if (style, compile) == ("vae", None):
        ranks, reference = runs / "vae", runs / "vae-reference"
    else:
        ranks, reference = runs / f"{style}-{compile}", runs / f"{style}-{compile}-reference"
        options = ["--style", style]
        _run(ranks, *options, *(["--compile", compile] if compile else []))
        _run(reference, *options, ranks=0)
    got, expected = _params(ranks), _params(reference)
    assert set(got) == set(expected)
    for name in expected:
        assert torch.allclose(got[name], expected[name], rtol=1e-5, atol=1e-6), name
    assert _losses(ranks) == pytest.approx(json.loads((reference / "train_loss.json").read_text()), rel=1e-6)
    if compile:  # and the compiled ranks agree with the eager ranks
        eager = _params(runs / "vae")
        assert all(torch.allclose(got[k], eager[k], rtol=1e-5, atol=1e-6) for k in got)


def test_only_rank_zero_writes(runs):
    writes = [json.loads((runs / "vae" / f"writes-{r}.json").read_text()) for r in (0, 1)]
    assert writes[1] == []
    assert any(w.startswith("save_checkpoint") for w in writes[0]) and any(w.startswith("_append_csv") for w in writes[0])
    assert sorted(p.name for p in (runs / "vae" / "run").iterdir()) == ["checkpoint.pt", "metrics.csv"]


def test_a_killed_worker_is_restarted_and_the_run_ends_as_if_uninterrupted(runs, tmp_path):
    """SIGKILL on rank 1 in the middle of epoch 2 under torchrun --max-restarts 1: the group restarts, resumes
    from the last checkpoint (every 2 steps) with each rank's saved random state, and ends with the same
    parameters, bit for bit, and the same metrics as the uninterrupted run of two processes."""
    _run(tmp_path / "killed", "--kill-at", "7", restarts=1)
    straight, killed = _params(runs / "vae"), _params(tmp_path / "killed")
    assert all(torch.equal(straight[k], killed[k]) for k in straight)
    assert _losses(tmp_path / "killed") == _losses(runs / "vae")  # three epochs, none written twice


def test_a_signal_on_one_rank_stops_every_rank_at_the_same_step_and_the_run_resumes_exactly(runs, tmp_path):
    """SIGTERM on rank 1 only, in the middle of epoch 2: both ranks finish that step, rank 0 writes the checkpoint,
    both return (rank 0 learns of it through the step's all-reduce); resuming ends as the uninterrupted run."""
    _run(tmp_path / "stopped", "--term-at", "7")
    results = [json.loads((tmp_path / "stopped" / f"result-{r}.json").read_text()) for r in (0, 1)]
    # rank 1's 7th batch is its 6th step's (the first batch is also served once to check it): 4 steps an epoch
    assert results == [{"interrupted": "a signal on another rank", "step": 6}, {"interrupted": "SIGTERM", "step": 6}]
    assert load_checkpoint(tmp_path / "stopped" / "run" / "checkpoint.pt")["position"] == 2
    _run(tmp_path / "stopped", "--resume")
    straight, resumed = _params(runs / "vae"), _params(tmp_path / "stopped")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert _losses(tmp_path / "stopped") == _losses(runs / "vae")


def test_resuming_with_another_world_size_is_refused_unless_resharded(runs, tmp_path):
    import pyro

    sys.path.insert(0, str(WORKER.parent))
    import ddp_worker

    run = tmp_path / "run"
    shutil.copytree(runs / "vae" / "run", run)
    model, guide = ddp_worker.program("vae")
    options = dict(batch_size=ddp_worker.BATCH, lr=ddp_worker.LR, seed=ddp_worker.SEED, progress=False,
                   checkpoint_every=2)
    with pytest.raises(CheckpointError, match=r"made by 2 process\(es\) and this run has 1.*reshard=True"):
        fit(model, guide, ddp_worker.images(), run_dir=run, resume=True, epochs=4, **options)
    pyro.clear_param_store()
    model, guide = ddp_worker.program("vae")
    result = fit(model, guide, ddp_worker.images(), run_dir=run, resume=True, reshard=True, epochs=4, **options)
    assert result.epoch == 4 and result.step == 12 + 8  # one more epoch of 8 single-process steps


def test_pyro_vae_train_runs_under_torchrun(tmp_path):
    """The command line as documented: rank 0 writes the whole run folder once; the summary says how many processes."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "pyro_vae.cli",
               "train", "--limit", "300", "--test-limit", "40", "--validation", "30", "--epochs", "2", "--hidden", "16",
               "--batch-size", "32", "--eval-samples", "20", "--no-progress", "--out", str(out)]
    done = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("training bernoulli VAE") == 1 and "on 2 processes" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["elbo"] <= summary["log_px"] + 1e-6
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    # 270 training images, 32 per rank: 5 global steps of 64 (the last one 14 images, 7 per rank) per epoch
    assert [int(r["step"]) for r in rows] == [5, 10] and all("val_elbo" in r for r in rows)


def test_an_estimator_without_a_differentiable_loss_is_refused_with_the_choices(tmp_path):
    output = _run(tmp_path / "graph", "--estimator", "graph", fails=True)
    assert "estimator 'graph' has no differentiable loss" in output
    assert "choose one of trace, mean_field, iwae, renyi, tail_adaptive, stl, dreg, enum" in output


def test_a_group_that_fit_joins_is_destroyed_at_exit_before_python_shuts_down(tmp_path):
    """Left to the interpreter's shutdown, Gloo's threads can abort a finished rank (SIGABRT, which torchrun
    counts as a failure): ``join`` registers ``leave`` at exit. The handler registered first runs last."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = ("import atexit, torch.distributed as dist\n"
              "from inference.distributed import join\n"
              "atexit.register(lambda: print('a group at exit:', dist.is_initialized()))\n"
              "world, _ = join(None)\n"
              "print('joined a group of', world.size, dist.is_initialized())\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["joined a group of 1 True", "a group at exit: False"]
