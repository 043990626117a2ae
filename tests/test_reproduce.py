"""benchmarks/reproduce.py: every preset runs end to end on a tiny budget and writes a well-formed
result file; an interrupted run records its partial progress and resumes; the results table."""

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import pytest

from inference.run_lock import hold_run_dir

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import reproduce  # noqa: E402

TINY = ["--limit", "120", "--epochs", "1", "--eval-samples", "4", "--no-progress"]


@pytest.mark.parametrize("preset", list(reproduce.PRESETS))
def test_every_preset_runs_end_to_end_and_writes_its_result(preset, tmp_path):
    results = tmp_path / "results"
    reproduce.main([preset, *TINY, "--out", str(tmp_path / "runs"), "--results", str(results)])
    record = json.loads((results / f"{preset}-e1-n120.json").read_text())
    assert record["run"] == f"{preset}-e1-n120" and (tmp_path / "runs" / record["run"] / "checkpoint.pt").exists()
    for key in ("preset", "reference", "test_nll", "test_nll_se", "num_samples", "active_units", "epochs", "steps",
                "train_seconds", "device", "command", "commit", "scores"):
        assert key in record, key
    assert len(reproduce.torch.load(results / record["scores"])["log_px"]) == 120  # kept for paired comparisons
    assert record["status"] == "finished" and record["epochs"] == 1 and record["num_samples"] == 4
    assert record["reference"]["test_nll"] == reproduce.PRESETS[preset].reference
    assert 50 < record["test_nll"] < 800 and record["test_nll_se"] > 0
    assert "first 120 training images" in record["deviations"]
    layers = 2 if preset.startswith("burda-2l") else 1
    assert len(record["active_units_by_site"]) == layers  # a hierarchy's collapse is seen per layer


def test_burda_presets_start_as_the_papers_code_does():
    """Glorot weights with zero biases, exp scales, and p(x | z) starting at the mean training image."""
    import torch
    from pyro_vae import load_dataset

    train = load_dataset("mnist", split="train", limit=500)
    model = reproduce.PRESETS["burda-2l-vae"].build(train)
    grey = train.images.float().mean(0).flatten() / 255.0
    assert torch.allclose(torch.sigmoid(model.decoder[-1].bias), grey.clamp(1e-3, 1 - 1e-3), atol=1e-6)
    assert all(torch.all(layer.bias == 0) for layer in model.encoders.modules() if isinstance(layer, torch.nn.Linear))
    assert {layer.family.scale for layer in [*model.encoders, *model.decoders]} == {"exp"}


def test_another_seed_is_its_own_run_scored_on_the_same_test_images(tmp_path):
    results = tmp_path / "results"
    argv = ["burda-1l-vae", *TINY, "--out", str(tmp_path / "runs"), "--results", str(results)]
    reproduce.main(argv)
    reproduce.main([*argv, "--seed", "1"])
    first, second = (json.loads((results / f"burda-1l-vae-e1{s}-n120.json").read_text()) for s in ("", "-s1"))
    assert (first["seed"], second["seed"]) == (0, 1) and second["run"] == "burda-1l-vae-e1-s1-n120"
    assert first["last_metrics"]["train_loss"] != second["last_metrics"]["train_loss"]  # another start, other batches
    scores = [reproduce.torch.load(results / r["scores"]) for r in (first, second)]
    assert scores[0]["test_seed"] == scores[1]["test_seed"] == reproduce.TEST_SEED  # so paired.py pairs them


def test_the_code_presets_build_and_train_as_tomczak_and_wellings_code(tmp_path):
    """Gated units, He-normal weights, a clipped log-variance, pseudo-inputs at 0.05, AdamNormGrad."""
    import torch
    from pyro_vae import load_dataset
    from pyro_vae.nets import GatedDense

    train = load_dataset("mnist", split="train", limit=500)
    torch.manual_seed(0)
    model = reproduce.PRESETS["vamp-1l-code"].build(train)
    assert [type(m) for m in model.encoder.net] == [GatedDense, GatedDense] and model.guide_family.scale == "clipped_log_variance"
    assert model.decoder.net[0].linear.weight.std().item() == pytest.approx((2 / 40) ** 0.5, rel=0.02)
    assert model.prior.pseudo_inputs.mean().item() == pytest.approx(0.05, abs=1e-3)
    standard = reproduce.PRESETS["vamp-1l-standard-code"]
    assert standard.build(train).prior.__class__.__name__ == "StandardNormal" and standard.optimizer == "normalized_adam"
    reproduce.main(["vamp-1l-standard-code", *TINY, "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")])
    saved = torch.load(tmp_path / "runs" / "vamp-1l-standard-code-e1-n120" / "checkpoint.pt", weights_only=False)
    assert saved["config"]["optimizer"] == "normalized_adam"


def test_a_static_preset_trains_on_one_fixed_binarization_of_the_same_split():
    """The same held-out split as its dynamic twin, but each image binarized once: the same 0/1 pixels every
    time it is served, and on only where the grey image has ink."""
    import torch

    static, dynamic = reproduce.PRESETS["vamp-1l-standard-code-static"], reproduce.PRESETS["vamp-1l-standard-code"]
    train, validation = reproduce.training_data(static, limit=600)
    grey_train, grey_validation = reproduce.training_data(dynamic, limit=600)
    index = torch.arange(60)
    served = train.batch(index)
    assert torch.equal(served, train.batch(index)) and set(served.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(validation.batch(index), validation.batch(index))
    assert not torch.equal(grey_train.batch(index), grey_train.batch(index))  # a fresh draw each time
    assert len(validation) == len(grey_validation) == 100
    assert bool(((train.images > 0) <= (grey_train.images > 0)).all())  # the same images, in the same order
    assert bool(((validation.images > 0) <= (grey_validation.images > 0)).all())
    assert reproduce.TOMCZAK_DATA in dynamic.deviations and reproduce.TOMCZAK_DATA not in static.deviations


def test_a_run_without_a_progress_bar_reports_each_epoch(tmp_path, capsys):
    reproduce.main(["burda-1l-vae", "--limit", "40", "--epochs", "2", "--eval-samples", "2", "--no-progress",
                    "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert "training -ELBO" in lines[0] and "h of training" in lines[0] and lines[1].endswith("about 0.00 h left")


def test_an_iwae_run_names_its_bound_not_the_elbo(capsys):
    assert reproduce.PRESETS["burda-1l-vae"].bound == "ELBO"
    assert reproduce.PRESETS["burda-1l-iwae5"].bound == "IWAE-5 bound"
    preset = reproduce.PRESETS["burda-1l-vae"]
    assert dataclasses.replace(preset, estimator="mean_field").bound == "ELBO"  # an ELBO, analytic KL or not
    assert dataclasses.replace(preset, estimator="dreg", particles=50).bound == "IWAE-50 bound"
    reproduce.report_epoch(10, bound=reproduce.PRESETS["burda-1l-iwae5"].bound)(
        {"epoch": 5, "train_loss": 104.37, "lr": 5e-4, "seconds": 18.2, "train_seconds": 90.0})
    assert capsys.readouterr().out == ("epoch 5/10: training -IWAE-5 bound 104.37, lr 0.0005, 18.2 s, "
                                       "0.03 h of training, about 0.03 h left\n")


def test_the_hours_left_follow_this_calls_pace_not_the_runs(capsys):
    """A run trained at 18 s an epoch on a GPU, now resumed on a CPU at 60 s: its hours left at 60 s."""
    report = reproduce.report_epoch(10, bound="ELBO")
    report({"epoch": 5, "train_loss": 100.0, "lr": 1e-3, "seconds": 30.0, "train_seconds": 90.0})  # 18 s mean
    report({"epoch": 6, "train_loss": 99.0, "lr": 1e-3, "seconds": 60.0, "train_seconds": 150.0})
    first, second = capsys.readouterr().out.splitlines()
    assert first.endswith("about 0.03 h left") and second.endswith("about 0.07 h left")  # 5 x 18 s; 4 x 60 s


def test_a_warm_up_epoch_names_the_kl_weight_its_loss_carries(capsys):
    reproduce.report_epoch(2000, bound="ELBO")(  # a KL warm-up (vamp-1l): the weighted loss says so
        {"epoch": 6, "train_loss": 76.8, "beta": 0.06, "lr": 5e-4, "seconds": 16.0, "train_seconds": 90.0,
         "val_elbo": -140.01})
    assert capsys.readouterr().out.startswith(
        "epoch 6/2000: training -ELBO (KL weight 0.06) 76.80, validation ELBO -140.01, lr 0.0005,")


def test_a_partial_run_is_recorded_and_resumes_to_the_end(tmp_path, capsys):
    results, runs = tmp_path / "results", tmp_path / "runs"
    argv = ["burda-1l-vae", "--limit", "120", "--epochs", "2", "--eval-samples", "4", "--no-progress",
            "--out", str(runs), "--results", str(results), "--docs", str(tmp_path / "docs")]
    reproduce.main([*argv, "--resume", "--max-hours", "1e-9"])  # no checkpoint yet: it starts; the budget ends after a step
    out = capsys.readouterr().out
    assert f"nothing to resume in {runs / 'burda-1l-vae-e2-n120'}: starting burda-1l-vae-e2-n120" in out
    assert ("burda-1l-vae-e2-n120 is unfinished, 0 of 2 epochs trained: go on with python benchmarks/reproduce.py "
            "burda-1l-vae --limit 120 --epochs 2") in out and out.endswith("--resume --max-hours 1e-9\n")  # its own command
    record = json.loads((results / "burda-1l-vae-e2-n120.json").read_text())
    assert record["status"] == "partial" and record["steps"] == 1 and "test_nll" not in record
    reproduce.main([*argv, "--resume", "--max-hours", "1e-9"])  # this call's own budget: one more step
    assert "nothing to resume" not in capsys.readouterr().out
    record = json.loads((results / "burda-1l-vae-e2-n120.json").read_text())
    assert record["status"] == "partial" and record["steps"] == 2
    assert record["devices"] == {"cpu": pytest.approx(record["train_seconds"])}  # both calls' seconds, on one device
    (tmp_path / "BENCHMARKS.md").write_text("# Benchmarks\n")
    (results / "m2-labels-100.json").write_text('{"labels": 100}')  # another benchmark's result: not a row here
    reproduce.main([*argv, "--resume", "--table", str(tmp_path / "BENCHMARKS.md")])
    record = json.loads((results / "burda-1l-vae-e2-n120.json").read_text())
    assert record["status"] == "finished" and record["steps"] == 12
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| burda-1l-vae-e2-n120 | 86.76 (Burda et al. 2016, Table 1) |" in text and "2/2" in text
    # the learning curve travels in the result file (both epochs, across the resume) and is drawn under the table
    assert [c["epoch"] for c in record["curve"]] == [1, 2] and all(c["train_loss"] > 0 for c in record["curve"])
    assert (tmp_path / "docs" / "reproductions.png").stat().st_size > 0 and "docs/reproductions.png" in text
    reproduce.main([*argv, "--resume", "--table", str(tmp_path / "BENCHMARKS.md")])  # the table is replaced, not added
    assert (tmp_path / "BENCHMARKS.md").read_text().count("<!-- reproductions -->") == 1
    (tmp_path / "BENCHMARKS.md").write_text("# Benchmarks\n")
    reproduce.main(["--table", str(tmp_path / "BENCHMARKS.md"), "--results", str(results), "--docs", str(tmp_path / "docs")])
    assert (tmp_path / "BENCHMARKS.md").read_text().count("| burda-1l-vae-e2-n120 |") == 1  # no preset: the table only
    with pytest.raises(SystemExit):
        reproduce.main([])  # neither a preset nor a table


def test_a_run_that_moves_between_devices_keeps_each_ones_hours(tmp_path):
    previous = tmp_path / "run.json"
    previous.write_text(json.dumps({"device": "NVIDIA H200", "train_seconds": 100.0,
                                    "devices": {"cpu": 60.0, "NVIDIA H200": 40.0}}))
    assert reproduce.trained_on(previous, before=100.0, device="cpu", seconds=30.0) == {"cpu": 90.0, "NVIDIA H200": 40.0}
    # a file from before the split: its seconds on the device it names, rescaled to the checkpoint's when it lags
    previous.write_text(json.dumps({"device": "cpu", "train_seconds": 50.0}))
    assert reproduce.trained_on(previous, before=100.0, device="NVIDIA H200", seconds=10.0) == {
        "cpu": 100.0, "NVIDIA H200": 10.0}
    assert reproduce.trained_on(previous, before=0.0, device="cpu", seconds=5.0) == {"cpu": 5.0}  # a fresh start
    assert reproduce.device_hours({"device": "cpu", "train_seconds": 9000.0,
                                   "devices": {"cpu": 7200.0, "NVIDIA H200": 1800.0}}) == "cpu 2.00 h + NVIDIA H200 0.50 h"
    assert reproduce.device_hours({"device": "cpu", "train_seconds": 9000.0}) == "cpu"  # an older file


def test_a_stashed_run_resumes_on_a_machine_without_its_run_folder(tmp_path):
    stash, runs = tmp_path / "stash", tmp_path / "runs"
    argv = ["burda-1l-vae", "--limit", "120", "--epochs", "2", "--eval-samples", "4", "--no-progress", "--out",
            str(runs), "--results", str(tmp_path / "results"), "--docs", str(tmp_path / "docs"), "--stash", str(stash)]
    reproduce.main([*argv, "--max-hours", "1e-9"])  # one step, then the budget ends (no epoch yet: no metrics.csv)
    assert [p.name for p in (stash / "burda-1l-vae-e2-n120").iterdir()] == ["checkpoint.pt"]
    shutil.rmtree(runs)  # a new clone: no runs/
    reproduce.main([*argv, "--resume", "--max-hours", "1e-9"])
    record = json.loads((tmp_path / "results" / "burda-1l-vae-e2-n120.json").read_text())
    assert record["steps"] == 2  # it went on from the stashed step, not from the start
    reproduce.main([*argv, "--resume"])
    assert not (stash / "burda-1l-vae-e2-n120").exists()  # scored: the copy is dropped


def test_a_shortened_run_never_shares_the_full_runs_folder_or_file():
    assert reproduce.run_name("burda-1l-vae") == reproduce.run_name("burda-1l-vae", 3280) == "burda-1l-vae"
    assert reproduce.run_name("burda-1l-vae", 400) == "burda-1l-vae-e400"
    assert reproduce.run_name("vamp-1l", 2000, limit=500) == "vamp-1l-n500"
    assert reproduce.run_name("vamp-1l", 2000, seed=0) == "vamp-1l"  # seed 0: the runs made before seeds had names
    assert reproduce.run_name("vamp-1l", 400, limit=500, seed=3) == "vamp-1l-e400-s3-n500"


def test_the_readme_names_every_preset():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in reproduce.PRESETS)


@pytest.mark.parametrize("seed", [0, 12])
@pytest.mark.parametrize("epochs", [None, 3280, 400])
@pytest.mark.parametrize("limit", [None, 120])
@pytest.mark.parametrize("preset", list(reproduce.PRESETS))
def test_a_run_name_gives_back_its_preset_schedule_limit_and_seed(preset, epochs, limit, seed):
    name = reproduce.run_name(preset, epochs, limit, seed)
    assert reproduce.parse_run_name(name) == (preset, epochs or reproduce.PRESETS[preset].epochs, limit, seed)


@pytest.mark.parametrize("name", ["burda-1l-vae-lost", "", "-e400", "burda-1l-vae-n5-e400", "vamp-1l-s1-e400"])
def test_a_name_that_is_no_run_is_refused_with_the_form(name):
    with pytest.raises(ValueError, match=r"PRESET\[-eEPOCHS\]\[-sSEED\]\[-nLIMIT\] with PRESET one of burda-1l-vae"):
        reproduce.parse_run_name(name)


def test_long_runs_resumes_the_stashed_runs_or_only_the_named_ones(tmp_path):
    """benchmarks/long_runs.sh, with a Python that records the command lines instead of training."""
    import os
    import socket
    import subprocess
    import time

    root = tmp_path / "repo"
    (root / "benchmarks").mkdir(parents=True)
    here = Path(__file__).resolve().parent.parent / "benchmarks"
    for name in ("long_runs.sh", "reproduce.py", "recording.py"):
        shutil.copy(here / name, root / "benchmarks" / name)
    for stashed in ("burda-2l-vae-e400", "burda-1l-vae-n120", "burda-2l-iwae50"):
        (root / "benchmarks" / "stash" / stashed).mkdir(parents=True)
        (root / "benchmarks" / "stash" / stashed / "checkpoint.pt").write_bytes(b"")
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "python"  # name parsing runs in the real Python; a training run is only written down
    fake.write_text(f'#!/usr/bin/env bash\nif [[ "$1" == -c ]]; then exec {sys.executable} "$@"; fi\n'
                    f'echo "OMP=$OMP_NUM_THREADS $*" >> {calls}\n')
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "CORES": "2"}
    common = " --compile --resume --max-hours 1.5 --stash benchmarks/stash --table BENCHMARKS.md --no-progress"

    def long_runs(*names: str, runs: int) -> tuple[subprocess.CompletedProcess, list[str]]:
        calls.unlink(missing_ok=True)
        out = subprocess.run(["bash", str(root / "benchmarks" / "long_runs.sh"), "1.5", *names], env=env,
                             capture_output=True, text=True, check=True)
        for _ in range(50):  # the runs are started in the background
            if calls.exists() and len(calls.read_text().splitlines()) == runs:
                break
            time.sleep(0.1)
        return out, sorted(calls.read_text().splitlines()) if calls.exists() else []

    with hold_run_dir(root / "runs" / "reproduce" / "burda-1l-iwae5"):  # as a run still training from an earlier call
        out, lines = long_runs("burda-1l-vae", "burda-2l-vae-e400", "vamp-1l-s2", "not-a-run", "burda-1l-iwae5",
                               "burda-1l-vae-n120", "vamp-1l-s2", runs=3)
    assert lines == [  # --resume: reproduce.py goes on from a checkpoint where there is one and starts the run otherwise
        "OMP=1 benchmarks/reproduce.py burda-1l-vae --epochs 3280 --seed 0" + common,  # named, nothing to resume
        "OMP=1 benchmarks/reproduce.py burda-2l-vae --epochs 400 --seed 0" + common,  # named and stashed
        "OMP=1 benchmarks/reproduce.py vamp-1l --epochs 2000 --seed 2" + common,  # another seed, named twice: one run
    ]  # burda-2l-iwae50, stashed but not named, is left alone
    assert "skipping burda-1l-vae-n120: a --limit smoke run" in out.stderr
    assert "skipping not-a-run: not a run name" in out.stderr
    assert (f"skipping burda-1l-iwae5: already running (process {os.getpid()} on {socket.gethostname()}, "
            f"log runs/burda-1l-iwae5.log)") in out.stderr  # not a second trainer
    assert "running burda-1l-vae (burda-1l-vae, 3280 epochs) on 1 thread(s)" in out.stdout
    assert "burda-2l-iwae50" not in out.stdout + out.stderr

    out, lines = long_runs(runs=2)  # none named: every stashed run (but the --limit one), a core each
    assert lines == ["OMP=1 benchmarks/reproduce.py burda-2l-iwae50 --epochs 3280 --seed 0" + common,
                     "OMP=1 benchmarks/reproduce.py burda-2l-vae --epochs 400 --seed 0" + common]
    out, lines = long_runs("burda-2l-iwae50", runs=1)  # a lone run trains on both cores
    assert lines == ["OMP=2 benchmarks/reproduce.py burda-2l-iwae50 --epochs 3280 --seed 0" + common]
    assert "running burda-2l-iwae50 (burda-2l-iwae50, 3280 epochs) on 2 thread(s)" in out.stdout
    with hold_run_dir(root / "runs" / "reproduce" / "burda-1l-iwae5"):  # ... but not beside one still training
        out, lines = long_runs("burda-2l-iwae50", "burda-1l-iwae5", runs=1)
    assert lines == ["OMP=1 benchmarks/reproduce.py burda-2l-iwae50 --epochs 3280 --seed 0" + common]


def test_device_train_runs_a_stashed_run_on_the_card_and_takes_its_checkpoint_back(tmp_path):
    """benchmarks/device_train.sh: there, the stashed run resumes on cuda from a copy under $OUT for the minutes
    given (a Python that records the command stands in for the card); here, --take puts the card's checkpoint
    over the stash's and the run folder's, and refuses while this machine still trains the run."""
    import os
    import subprocess

    root = tmp_path / "repo"
    (root / "benchmarks").mkdir(parents=True)
    here = Path(__file__).resolve().parent.parent / "benchmarks"
    for name in ("device_train.sh", "device_env.sh", "reproduce.py", "recording.py"):
        shutil.copy(here / name, root / "benchmarks" / name)
    stashed = root / "benchmarks" / "stash" / "burda-1l-iwae50"
    stashed.mkdir(parents=True)
    (stashed / "checkpoint.pt").write_bytes(b"epoch 87")
    bin_dir, calls, out = tmp_path / "bin", tmp_path / "calls.txt", tmp_path / "out"
    bin_dir.mkdir()
    fake = bin_dir / "python3"  # the small Python calls run; the training run is only written down
    fake.write_text(f'#!/usr/bin/env bash\nif [[ "$1" == -c ]]; then exec {sys.executable} "$@"; fi\n'
                    f'echo "$*" >> {calls}\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "OUT": str(out), "PYTHON": sys.executable}
    subprocess.run(["bash", str(root / "benchmarks" / "device_train.sh"), "6", "burda-1l-iwae50", "burda-2l-iwae50"],
                   env=env, capture_output=True, text=True, check=True)
    common = f" --epochs 3280 --seed 0 --device cuda --compile --resume --max-hours 0.1 --stash {out}/stash " \
             f"--results {out}/results --no-progress"
    assert sorted(calls.read_text().splitlines()) == [  # side by side on the card
        "benchmarks/reproduce.py burda-1l-iwae50" + common, "benchmarks/reproduce.py burda-2l-iwae50" + common]
    assert (out / "stash" / "burda-1l-iwae50" / "checkpoint.pt").read_bytes() == b"epoch 87"  # it resumes from this
    assert not (out / "stash" / "burda-2l-iwae50").exists()  # nothing stashed: it starts
    no_name = subprocess.run(["bash", str(root / "benchmarks" / "device_train.sh"), "6"], env=env, capture_output=True,
                             text=True)
    assert no_name.returncode == 2 and "name a run" in no_name.stderr

    # what the device tool brings back: the card's newer checkpoint, the result file, the log
    (out / "stash" / "burda-1l-iwae50" / "checkpoint.pt").write_bytes(b"epoch 289")
    (out / "results").mkdir()
    (out / "results" / "burda-1l-iwae50.json").write_text(json.dumps(
        {"run": "burda-1l-iwae50", "epochs": 289, "epochs_planned": 3280, "steps": 869394, "train_seconds": 5940.0}))
    (out / "burda-1l-iwae50.log").write_text("epoch 289/3280: ...\n")
    run_dir = root / "runs" / "reproduce" / "burda-1l-iwae50"
    run_dir.mkdir(parents=True)
    (run_dir / "checkpoint.pt").write_bytes(b"epoch 87")  # this machine's own, older copy
    take = ["bash", str(root / "benchmarks" / "device_train.sh"), "--take", str(out)]
    with hold_run_dir(run_dir):  # as a run training here
        refused = subprocess.run(take, env=env, capture_output=True, text=True, cwd=root)
    assert refused.returncode == 1 and "burda-1l-iwae50 still trains here" in refused.stderr
    assert (stashed / "checkpoint.pt").read_bytes() == b"epoch 87"  # nothing taken
    took = subprocess.run(take, env=env, capture_output=True, text=True, check=True, cwd=root)
    assert took.stdout == "took burda-1l-iwae50: 289 of 3280 epochs, 869394 steps, 1.65 h of training\n"
    assert (stashed / "checkpoint.pt").read_bytes() == (run_dir / "checkpoint.pt").read_bytes() == b"epoch 289"
    assert (root / "runs" / "burda-1l-iwae50.log").read_text() == "epoch 289/3280: ...\n"
    assert json.loads((root / "benchmarks" / "results" / "burda-1l-iwae50.json").read_text())["epochs"] == 289
