"""One training process per run folder: a second one is refused while the first lives, and the
folder is free again once it dies, however it dies (the operating system drops the lock)."""

import signal
import subprocess
import sys
import textwrap

import pyro
import pytest
import torch

from inference import RunInUseError, fit
from inference.run_lock import LOCK_NAME
import toy  # tests/toy.py: a hand-written model and guide

HOLDER = textwrap.dedent("""
    import sys, time
    from inference.run_lock import hold_run_dir
    with hold_run_dir(sys.argv[1]):
        print("holding", flush=True)
        time.sleep(600)
""")


def _fit(run_dir, model=toy.model, **options):
    pyro.clear_param_store()
    options.setdefault("epochs", 1)
    return fit(model, toy.guide, torch.randn(40), batch_size=10, run_dir=run_dir, progress=False, **options)


def test_a_second_process_is_refused_while_the_first_trains_and_goes_on_once_it_is_killed(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(RunInUseError, match=rf"is being trained by process {holder.pid} on .*\(kill {holder.pid}: "):
            _fit(tmp_path)
        assert not (tmp_path / "checkpoint.pt").exists()  # refused before writing anything
    finally:
        holder.send_signal(signal.SIGKILL)  # no clean-up runs: the lock must still go
        holder.wait()
    assert (tmp_path / LOCK_NAME).exists()  # the killed holder's file, not locked any more
    result = _fit(tmp_path)
    assert result.epoch == 1 and (tmp_path / "checkpoint.pt").exists()


def test_the_folder_is_released_when_fit_ends_or_fails(tmp_path):
    _fit(tmp_path, epochs=1)
    _fit(tmp_path, epochs=2, resume=True)  # the same process, one fit after another
    calls = []

    def failing(x):  # fails inside the training loop, where the folder is held
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("a bug in the model")
        return toy.model(x)

    with pytest.raises(RuntimeError, match="a bug in the model"):
        _fit(tmp_path, model=failing, epochs=3, resume=True)
    _fit(tmp_path, epochs=3, resume=True)  # a failed fit does not keep the folder
    assert not (tmp_path / LOCK_NAME).exists()  # and the run folder holds the run's files only
