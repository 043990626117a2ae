"""The pyro-vae command end to end on a tiny subset, and its one-line errors."""

import json
import subprocess
import sys

import matplotlib.image
import pytest

from pyro_vae.cli import main

TINY = ["--limit", "300", "--test-limit", "60", "--validation", "30", "--epochs", "1", "--hidden", "32",
        "--eval-samples", "50", "--no-progress"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *TINY, "--out", str(folder)]) == 0
    return folder


def test_train_writes_the_whole_run(run):
    names = {"run.json", "checkpoint.pt", "model.pt", "metrics.csv", "summary.json", "figures"}
    assert names <= {p.name for p in run.iterdir()}
    summary = json.loads((run / "summary.json").read_text())
    for key in ("elbo", "log_px", "log_px_se", "kl", "active_units", "train_seconds", "iwae_curve"):
        assert key in summary
    assert summary["elbo"] <= summary["log_px"] + 1e-6 and summary["test_images"] == 60
    pngs = sorted((run / "figures").glob("*.png"))
    assert {p.stem for p in pngs} == {"reconstructions", "samples", "training_curves", "latent_scatter", "manifold",
                                      "interpolation"}
    for png in pngs:
        assert matplotlib.image.imread(png).std() > 0.01, f"{png.name} is blank"


def test_evaluate_reproduces_the_summary(run, capsys):
    before = json.loads((run / "summary.json").read_text())
    assert main(["evaluate", str(run)]) == 0
    after = json.loads((run / "summary.json").read_text())
    assert after["num_samples"] == before["num_samples"] == 50
    # same model, same test images (seeded binarization): only the Monte Carlo draws differ
    assert abs(after["elbo"] - before["elbo"]) < min(1.0, before["elbo_se"])
    assert abs(after["log_px"] - before["log_px"]) < min(1.0, before["log_px_se"])
    assert "test log p(x)" in capsys.readouterr().out


def test_compiled_training_and_evaluation_match_the_eager_scores(run, tmp_path):
    """--compile graph draws as eager code does: the same training, step for step; --compile on evaluate too."""
    folder = tmp_path / "compiled"
    assert main(["train", *TINY, "--compile", "graph", "--out", str(folder)]) == 0
    eager, compiled = ((f / "metrics.csv").read_text().splitlines() for f in (run, folder))
    drop_times = lambda line: [v for i, v in enumerate(line.split(",")) if i not in (5, 6)]  # noqa: E731
    assert eager[0].split(",")[5:7] == ["seconds", "train_seconds"]
    assert [drop_times(line) for line in compiled] == [drop_times(line) for line in eager]
    compiled = json.loads((folder / "summary.json").read_text())
    assert main(["evaluate", str(folder), "--compile", "graph"]) == 0
    again = json.loads((folder / "summary.json").read_text())
    assert abs(again["log_px"] - compiled["log_px"]) < min(1.0, compiled["log_px_se"])


def test_schedule_and_early_stopping_flags(tmp_path):
    folder = tmp_path / "staged"
    argv = ["train", *TINY, "--epochs", "3", "--lr-schedule", "cosine", "--adam-eps", "1e-4",
            "--validation-samples", "5", "--patience", "1", "--out", str(folder)]
    assert main(argv) == 0
    rows = (folder / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert "val_iwae" in header and float(rows[1].split(",")[header.index("lr")]) == 1e-3
    assert (folder / "best.pt").exists()


def test_sample_and_plot(run, capsys):
    (run / "figures" / "samples.png").unlink()
    assert main(["sample", str(run), "-n", "16", "--seed", "3"]) == 0
    assert matplotlib.image.imread(run / "figures" / "samples.png").std() > 0.01
    assert "samples.png" in capsys.readouterr().out
    assert main(["plot", str(run)]) == 0
    assert capsys.readouterr().out.count("wrote") == 6


def _error(argv, capsys) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("pyro-vae: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_missing_data_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYRO_VAE_DATA_DIR", str(tmp_path / "nowhere"))
    err = _error(["train", *TINY, "--out", str(tmp_path / "r")], capsys)
    assert "PYRO_VAE_DATA_DIR" in err and "train-images-idx3-ubyte" in err


def test_run_folder_errors(run, tmp_path, capsys):
    assert "already holds a run; add --resume" in _error(["train", *TINY, "--out", str(run)], capsys)
    assert "no run in" in _error(["train", *TINY, "--out", str(tmp_path / "none"), "--resume"], capsys)
    assert "no run in" in _error(["evaluate", str(tmp_path / "none")], capsys)
    old = tmp_path / "old"
    old.mkdir()
    (old / "run.json").write_text(json.dumps({"format": "pyro-vae-run/0", "z_dim": 2}))
    assert "incompatible pyro-vae" in _error(["plot", str(old)], capsys)
    err = _error(["train", *TINY, "--z-dim", "3", "--out", str(run), "--resume"], capsys)
    assert "(--z-dim 2 there but 3 here); repeat them exactly to resume" in err


@pytest.mark.parametrize("argv,message", [
    (["train", "--prior", "nope"], "invalid choice: 'nope'"),
    (["train", "--dataset", "cifar"], "invalid choice: 'cifar'"),
    (["train", "--epochs", "many"], "invalid int value"),
])
def test_wrong_option_values(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_help_lists_the_choices():
    out = subprocess.run([sys.executable, "-m", "pyro_vae.cli", "train", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for choice in ("standard_normal", "vamp", "continuous_bernoulli", "iaf", "mean_field", "cyclical", "dequantized"):
        assert choice in out


def test_beta_flags_build_the_schedule():
    from pyro_vae.cli import _beta, _parser

    def beta(*flags):
        return _beta(_parser().parse_args(["train", *flags]))

    assert beta("--beta", "4") == 4.0
    linear = beta("--beta", "2", "--beta-schedule", "linear", "--beta-steps", "10")
    assert (linear(0), linear(5), linear(20)) == (0.0, 1.0, 2.0)
    cyclical = beta("--beta-schedule", "cyclical", "--beta-steps", "10")
    assert (cyclical(2), cyclical(7), cyclical(12)) == (0.4, 1.0, 0.4)
    assert beta("--beta-schedule", "sigmoid", "--beta-steps", "10")(5) == 0.5


def test_compare_writes_tables_and_figure(tmp_path, capsys):
    out = tmp_path / "compare"
    argv = ["compare", "--limit", "200", "--test-limit", "40", "--z-dim", "3", "--hidden", "16", "--particles", "1", "4",
            "--repeats", "5", "--seconds", "0.5", "--eval-samples", "10", "--race-particles", "4", "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    snr = (out / "snr.csv").read_text().splitlines()
    assert len(snr) == 1 + 2 * 4 and snr[1].startswith("trace,1,")
    race = (out / "race.csv").read_text().splitlines()
    assert sorted(line.split(",")[0] for line in race[1:]) == ["dreg", "iwae", "stl", "trace"]
    assert matplotlib.image.imread(out / "figures" / "race.png").std() > 0.01
    assert "race: 0.5 training seconds each" in capsys.readouterr().out
    assert "is not empty" in _error(argv, capsys)


def test_diagnose_writes_its_report(run, capsys):
    argv = ["diagnose", str(run), "--data", "40", "--samples", "50", "--nuts", "1", "--nuts-samples", "30",
            "--nuts-warmup", "20", "--gap-data", "4", "--gap-steps", "10", "--idata", "3"]
    assert main(argv) == 0
    report = json.loads((run / "diagnostics.json").read_text())
    assert set(report) == {"psis", "collapse", "amortization_gap", "nuts"}
    assert 0 <= report["psis"]["share_above_0.7"] <= report["psis"]["share_above_0.5"] <= 1
    assert report["collapse"]["num_dims"] == 2 and len(report["nuts"]) == 1 and report["nuts"][0]["kl_q_posterior"] >= 0
    gap = report["amortization_gap"]
    assert gap["log_px"] - gap["elbo_amortized"] == pytest.approx(gap["approximation_gap"] + gap["amortization_gap"])
    for name in ("khat", "worst_fitted", "nuts_0"):
        assert matplotlib.image.imread(run / "figures" / f"{name}.png").std() > 0.01
    import arviz as az

    assert az.from_netcdf(run / "posterior.nc").posterior["z"].shape == (1, 50, 3, 2)
    assert "PSIS k-hat over 40 test images" in capsys.readouterr().out


def _copy(run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    return copy


def test_a_damaged_run_json_is_named_with_what_is_intact_and_restored(run, tmp_path, capsys):
    from pyro_vae.run import restore_config

    copy = _copy(run, tmp_path)
    (copy / "run.json").write_text('{"format": "pyro-vae-run/1", z_dim: 2')  # truncated, not JSON
    err = _error(["plot", str(copy)], capsys)
    assert f"{copy / 'run.json'} is damaged" in err and "was corrupted" in err
    assert "still intact: summary.json, metrics.csv, model.pt, checkpoint.pt" in err and "restore_config" in err
    restore_config(copy)  # from the copy of the configuration inside model.pt
    assert main(["plot", str(copy)]) == 0


def test_damaged_summary_and_metrics_are_named(run, tmp_path, capsys):
    copy = _copy(run, tmp_path)
    text = (run / "metrics.csv").read_text()
    (copy / "metrics.csv").write_text(text[: len(text) - len(text.splitlines()[-1]) // 2])  # the last row cut in half
    err = _error(["plot", str(copy)], capsys)
    assert f"{copy / 'metrics.csv'} is damaged" in err and "model.pt" in err and "do not depend on it" in err
    (copy / "summary.json").write_text("{\"elbo\": ")
    assert main(["evaluate", str(copy), "--eval-samples", "50"]) == 0  # a damaged old summary is only noted
    captured = capsys.readouterr()
    assert f"{copy / 'summary.json'} is damaged" in captured.err and "writing a new one" in captured.err
    assert json.loads((copy / "summary.json").read_text())["num_samples"] == 50


def test_a_full_disk_while_writing_the_summary_says_so(run, tmp_path, capsys, monkeypatch):
    import errno

    import inference.checkpoint

    copy = _copy(run, tmp_path)
    before = (copy / "summary.json").read_text()

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(inference.checkpoint.os, "replace", full)
    assert main(["evaluate", str(copy)]) == 1
    err = capsys.readouterr().err  # after evaluate's progress bar
    assert f"\rpyro-vae: error: could not write {copy / 'summary.json'}: the disk is full" in err and "Traceback" not in err
    assert "the previous summary.json is intact" in err and f"pyro-vae evaluate {copy}" in err
    assert (copy / "summary.json").read_text() == before
    assert not list(copy.glob("*.tmp"))


def test_a_hierarchical_run_trains_evaluates_plots_and_diagnoses(tmp_path, capsys):
    """--z-dim with two sizes: a two-layer VAE whose run folder, figures and diagnostics name the layers."""
    folder = tmp_path / "hvae"
    tiny = [a for a in TINY if a not in ("--hidden", "32")]
    assert main(["train", *tiny, "--z-dim", "4", "2", "--hidden", "32", "16", "--out", str(folder)]) == 0
    config = json.loads((folder / "run.json").read_text())
    assert config["z_dim"] == [4, 2] and config["hidden"] == [[32], [16]]
    out = capsys.readouterr().out
    assert "2 stochastic layers" in out and "(z1: " in out and ", z2: " in out
    summary = json.loads((folder / "summary.json").read_text())
    assert set(summary["active_units_by_site"]) == {"z1", "z2"} and len(summary["latent_variance"]) == 2
    assert summary["elbo"] <= summary["log_px"] + 1e-6
    stems = {p.stem for p in (folder / "figures").glob("*.png")}
    assert {"latent_scatter_z1", "traversals_z1", "latent_scatter_z2", "manifold_z2", "interpolation"} <= stems
    assert main(["evaluate", str(folder)]) == 0
    argv = ["diagnose", str(folder), "--data", "30", "--samples", "40", "--nuts", "1", "--nuts-samples", "20",
            "--nuts-warmup", "20", "--idata", "3"]
    assert main(argv) == 0
    report = json.loads((folder / "diagnostics.json").read_text())
    assert set(report["collapse"]) == {"z1", "z2"} and report["collapse"]["z2"]["num_dims"] == 2
    assert report["amortization_gap"] is None and report["nuts"][0]["site"] == "z2"
    import arviz as az

    posterior = az.from_netcdf(folder / "posterior.nc").posterior
    assert posterior["z1"].shape == (1, 40, 3, 4) and posterior["z2"].shape == (1, 40, 3, 2)
    assert "active units of z1" in capsys.readouterr().out


def test_hierarchical_options_that_do_not_fit_are_named(tmp_path, capsys):
    base = ["train", "--limit", "300", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "x")]
    err = _error([*base, "--z-dim", "4", "2", "--hidden", "32"], capsys)
    assert "2 stochastic layers but --hidden gives 1 group" in err and "--hidden 200,200 100,100" in err
    err = _error([*base, "--z-dim", "4", "2", "--guide", "iaf"], capsys)
    assert "--guide iaf: a hierarchical VAE" in err and "give one --z-dim" in err
    err = _error([*base, "--hidden", "32,x"], capsys)
    assert "sizes must be whole numbers" in err


@pytest.mark.parametrize("model", ["cvae", "m2"])
def test_conditional_and_semi_supervised_runs(tmp_path, capsys, model):
    folder = tmp_path / model
    extra = ["--labels", "50"] if model == "m2" else []
    assert main(["train", *TINY, "--model", model, *extra, "--out", str(folder)]) == 0
    out = capsys.readouterr().out
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["elbo"] <= summary["log_px"] + 1e-6
    assert {p.stem for p in (folder / "figures").glob("*.png")} == {"class_samples", "training_curves"}
    config = json.loads((folder / "run.json").read_text())
    if model == "m2":
        assert 0 <= summary["test_error"] <= 1 and "test classification error" in out and "M2 semi-supervised" in out
        assert config["alpha"] == pytest.approx(0.1 * 270 / 50)  # Kingma et al.'s choice
    assert main(["sample", str(folder), "-n", "20"]) == 0 and (folder / "figures" / "class_samples.png").exists()
    assert main(["evaluate", str(folder)]) == 0
    capsys.readouterr()
    assert "reads unconditional models" in _error(["diagnose", str(folder)], capsys)


def test_label_options_that_do_not_fit_are_named(tmp_path, capsys):
    base = ["train", "--limit", "300", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "x")]
    assert "--labels 10 given to --model vae" in _error([*base, "--labels", "10"], capsys)
    assert "--model m2 learns from a few labels: say how many with --labels" in _error([*base, "--model", "m2"], capsys)
    assert "400 labels asked of a data set of 270 images" in _error([*base, "--model", "m2", "--labels", "400"], capsys)


def test_a_killed_training_keeps_its_weights_scores_nothing_and_resumes(tmp_path, monkeypatch, capsys):
    import os
    import signal

    import pyro_vae.cli

    def fit_then_kill(*args, **kwargs):  # `kill` arrives as the first epoch ends
        return fit(*args, callbacks=[lambda row: os.kill(os.getpid(), signal.SIGTERM)], **kwargs)

    fit = pyro_vae.cli.fit
    monkeypatch.setattr(pyro_vae.cli, "fit", fit_then_kill)
    folder = tmp_path / "run"
    options = [*TINY, "--epochs", "2", "--out", str(folder)]  # the last --epochs counts
    assert main(["train", *options]) == 128 + signal.SIGTERM
    assert "stopped by SIGTERM at epoch 1 of 2" in capsys.readouterr().out
    assert (folder / "model.pt").exists() and not (folder / "summary.json").exists()
    monkeypatch.setattr(pyro_vae.cli, "fit", fit)
    assert main(["train", *options, "--resume"]) == 0
    assert json.loads((folder / "summary.json").read_text())["epochs"] == 2
