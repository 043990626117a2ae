"""Checkpoints: exact resumption, survival of SIGKILL, the NaN guard, and refusal of bad files."""

import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pyro
import pytest
import torch

from inference import CheckpointError, NonFiniteError, fit, load_checkpoint, save_checkpoint
from pyro_vae import VAE, load_dataset
import toy  # tests/toy.py: a hand-written model and guide

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train_vae(run_dir, *, init_seed, signal_at=None, **options):
    """``signal_at=(n, sig)``: the model sends ``sig`` to this process in its n-th step, as ``kill`` would."""
    pyro.clear_param_store()
    torch.manual_seed(init_seed)  # a resumed run starts from other random weights: the checkpoint must overwrite them
    data = load_dataset("mnist", split="train", representation="dynamic", limit=192, seed=0)
    vae = VAE(data.x_shape, z_dim=4, hidden=(32,))
    calls = []

    def model(x, num_data=None):
        calls.append(1)
        if signal_at and len(calls) == signal_at[0]:
            os.kill(os.getpid(), signal_at[1])
        return vae.model(x, num_data=num_data)

    result = fit(model, vae.guide, data, batch_size=64, run_dir=run_dir, progress=False, **options)
    return {k: v.detach().clone() for k, v in vae.state_dict().items()}, result


def _assert_bitwise_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_after_an_epoch_is_bitwise_exact(tmp_path):
    straight, result = _train_vae(tmp_path / "straight", init_seed=0, epochs=2)
    _train_vae(tmp_path / "split", init_seed=0, epochs=1)
    resumed, resumed_result = _train_vae(tmp_path / "split", init_seed=99, epochs=2, resume=True)
    _assert_bitwise_equal(straight, resumed)
    assert [m["train_loss"] for m in resumed_result.metrics] == [m["train_loss"] for m in result.metrics]
    lines = (tmp_path / "split" / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,step,train_loss,beta") and len(lines) == 3


def test_resume_inside_an_epoch_is_bitwise_exact(tmp_path):
    straight, straight_result = _train_vae(tmp_path / "straight", init_seed=0, epochs=2)
    _, partial = _train_vae(tmp_path / "split", init_seed=0, epochs=2, max_steps=4)  # 3 steps an epoch
    assert partial.step == 4 and load_checkpoint(tmp_path / "split" / "checkpoint.pt")["position"] == 1
    resumed, result = _train_vae(tmp_path / "split", init_seed=7, epochs=2, resume=True)
    _assert_bitwise_equal(straight, resumed)
    assert [m["train_loss"] for m in result.metrics] == [m["train_loss"] for m in straight_result.metrics]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_a_signal_stops_after_the_step_with_a_checkpoint_and_the_run_resumes_exactly(tmp_path, sig):
    before = signal.getsignal(sig)
    straight, straight_result = _train_vae(tmp_path / "straight", init_seed=0, epochs=2)
    # 3 steps an epoch; the model's 5th call falls in the second epoch (the first batch's check calls it too)
    _, stopped = _train_vae(tmp_path / "split", init_seed=0, epochs=2, signal_at=(5, sig))
    assert stopped.interrupted == sig.name and stopped.epoch == 1 and 3 < stopped.step < 6
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["position"] == stopped.step - 3
    assert signal.getsignal(sig) is before  # fit leaves the process's handlers as it found them
    resumed, result = _train_vae(tmp_path / "split", init_seed=7, epochs=2, resume=True)
    _assert_bitwise_equal(straight, resumed)
    assert result.interrupted is None and result.epoch == 2
    # the stopped epoch's loss covers its steps before the stop too
    assert [m["train_loss"] for m in result.metrics] == [m["train_loss"] for m in straight_result.metrics]


def test_a_second_ctrl_c_interrupts_at_once():
    from inference.stopping import stop_on_signals

    # Python's own Ctrl-C handler before the block: a shell's background job (nohup pytest &) starts with
    # SIGINT ignored, and the second Ctrl-C would then do what it did before the block: nothing
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with stop_on_signals() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.requested == "SIGINT"
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)  # the handler runs between bytecodes; it never gets this far
    finally:
        signal.signal(signal.SIGINT, previous)


SCRIPT = textwrap.dedent(
    """
    import sys, torch, pyro
    torch.set_num_threads(1)
    sys.path.insert(0, {repo!r})
    from inference import fit
    from pyro_vae import PPCA
    ppca = PPCA.random(x_dim=8, z_dim=2, sigma=0.5, seed=0)
    x = ppca.sample(4000, seed=1).float()
    torch.manual_seed(int(sys.argv[2]))
    vae = PPCA(torch.randn(8, 2), torch.zeros(8), 1.0).vae(exact_guide=False).float()
    fit(vae.model, vae.guide, x, batch_size=8, epochs=2, checkpoint_every=50, run_dir=sys.argv[1],
        resume=sys.argv[3] == "resume", progress=False, compile={compile!r})
    torch.save(vae.state_dict(), sys.argv[1] + "/final.pt")
    """
)


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
def test_sigkill_mid_epoch_loses_only_the_work_since_the_last_checkpoint(tmp_path, compile):
    """Compiled too: fit's docstring promises that a resumed compiled run equals the uninterrupted one bit for bit."""
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(repo=REPO, compile=compile))
    run = lambda folder, seed, mode: [sys.executable, str(script), str(folder), str(seed), mode]  # noqa: E731
    subprocess.run(run(tmp_path / "straight", 0, "new"), check=True, timeout=300)

    victim = subprocess.Popen(run(tmp_path / "killed", 0, "new"))
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not (checkpoint.exists() and load_checkpoint(checkpoint)["step"] >= 100):
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    state = load_checkpoint(checkpoint)  # intact, whatever moment the kill came
    assert state["step"] % 50 == 0 and state["epoch"] == 0, "killed mid-epoch, at a step checkpoint"
    assert not (tmp_path / "killed" / "final.pt").exists()

    subprocess.run(run(tmp_path / "killed", 5, "resume"), check=True, timeout=300)
    _assert_bitwise_equal(
        torch.load(tmp_path / "straight" / "final.pt", weights_only=True),
        torch.load(tmp_path / "killed" / "final.pt", weights_only=True),
    )


@pytest.mark.filterwarnings("ignore:Encountered NaN")
@pytest.mark.parametrize("compile", [False, "graph"], ids=["eager", "compiled"])
def test_nan_guard_names_the_bad_rows_and_keeps_the_last_checkpoint(tmp_path, compile):
    x = torch.randn(64)
    x[40] = float("nan")
    with pytest.raises(NonFiniteError) as info:
        fit(toy.model, toy.guide, x, batch_size=8, epochs=1, checkpoint_every=1, run_dir=tmp_path, progress=False,
            compile=compile)
    message = str(info.value)
    failed_step = int(re.search(r"step (\d+)", message).group(1))
    # the cause, the data, comes first with its index, and nothing blames the guide
    assert re.search(r"the batch holds NaN or inf in 1 row \[40\] of the data set", message), message
    assert "clean or drop those observations" in message and "intact" in message
    assert "site 'z'" not in message
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == failed_step and torch.isfinite(state["params"]["loc"])


@pytest.mark.parametrize("compile", [False, "graph"], ids=["eager", "compiled"])
@pytest.mark.parametrize("clip_norm", [None, 10.0])
def test_nan_guard_catches_a_non_finite_gradient_under_a_finite_loss(clip_norm, compile):
    def guide(x):  # d sqrt(r)/dr is infinite at r = 0, while the loss is finite
        r = pyro.param("r", torch.tensor(0.0))
        with pyro.plate("data", len(x)):
            pyro.sample("z", pyro.distributions.Normal(x / 2, torch.sqrt(r) + 0.7))

    pyro.clear_param_store()
    with pytest.raises(NonFiniteError, match=r"step 0 .*the loss is [-0-9.e+]+ and the gradient (norm|sum) (inf|nan)") as info:
        fit(toy.model, guide, torch.randn(16), batch_size=8, epochs=1, clip_norm=clip_norm, progress=False,
            compile=compile)
    assert "gradients of r" in str(info.value)
    assert pyro.param("r").item() == 0.0  # the step was not taken


def test_nan_guard_lets_finite_gradients_whose_sum_overflows_through():
    def model(x):
        r = pyro.param("r", torch.zeros(2))
        pyro.factor("huge", (torch.tensor([3e38, 3e38]) * r).sum())  # gradient (3e38, 3e38): its sum is inf
        toy.model(x)

    pyro.clear_param_store()
    result = fit(model, toy.guide, torch.randn(8), batch_size=8, epochs=1, progress=False)
    assert result.step == 1 and torch.isfinite(pyro.param("r")).all()  # no false stop


def test_bad_checkpoints_are_refused_and_left_alone(tmp_path):
    x = torch.randn(32)
    fit(toy.model, toy.guide, x, batch_size=8, epochs=1, run_dir=tmp_path / "run", progress=False)
    path = tmp_path / "run" / "checkpoint.pt"
    original = path.read_bytes()

    with pytest.raises(CheckpointError, match="already holds a run; pass resume=True"):
        fit(toy.model, toy.guide, x, batch_size=8, epochs=1, run_dir=tmp_path / "run", progress=False)
    with pytest.raises(CheckpointError, match=r"made by another run \(lr=0.001 there but 0.01 here\)"):
        fit(toy.model, toy.guide, x, batch_size=8, epochs=2, lr=0.01, run_dir=tmp_path / "run", resume=True, progress=False)
    assert path.read_bytes() == original

    path.write_bytes(original[: len(original) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a pyro-vae checkpoint"):
        fit(toy.model, toy.guide, x, batch_size=8, epochs=2, run_dir=tmp_path / "run", resume=True, progress=False)
    assert path.read_bytes() == original[: len(original) // 2]

    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="is not a pyro-vae-checkpoint/1 checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        fit(toy.model, toy.guide, x, batch_size=8, run_dir=tmp_path / "empty", resume=True, progress=False)


def test_checkpoints_hold_data_only(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"config": {"lr": 0.1}, "params": {"w": torch.ones(2)}})
    assert load_checkpoint(tmp_path / "c.pt")["config"] == {"lr": 0.1}
    assert not list(tmp_path.glob("*.tmp"))  # the temporary file was moved into place


def test_a_full_disk_stops_training_with_the_last_checkpoint_intact_and_it_resumes(tmp_path, monkeypatch):
    """torch reports a full disk while saving as a RuntimeError about an 'unexpected pos'."""
    from inference import WriteError

    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1216 vs 1138")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    x = torch.randn(64)
    with pytest.raises(WriteError) as info:
        fit(toy.model, toy.guide, x, batch_size=8, epochs=1, checkpoint_every=2, run_dir=tmp_path, progress=False)
    message = str(info.value)
    assert f"could not write {tmp_path / 'checkpoint.pt'}: the disk is full" in message
    assert "the previous checkpoint.pt is intact" in message and "resume=True" in message
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 4 and not list(tmp_path.glob("*.tmp"))
    monkeypatch.setattr(torch, "save", real_save)
    result = fit(toy.model, toy.guide, x, batch_size=8, epochs=1, checkpoint_every=2, run_dir=tmp_path,
                 progress=False, resume=True)
    assert result.step == 8
