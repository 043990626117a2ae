"""benchmarks/probe.py: an unfinished reproduction's log p(x) on held-out images, never on the test set."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import probe  # noqa: E402
import reproduce  # noqa: E402


@pytest.mark.parametrize("preset, split, parameters", [("vamp-1l", "validation", "best.pt"),
                                                       ("burda-1l-iwae5", "training", "checkpoint.pt")])
def test_a_probe_scores_held_out_images_and_never_loads_the_test_set(preset, split, parameters, tmp_path, monkeypatch):
    runs, results = tmp_path / "runs", tmp_path / "results"
    reproduce.main([preset, "--limit", "120", "--epochs", "1", "--eval-samples", "4", "--no-progress",
                    "--out", str(runs), "--results", str(results)])  # one epoch: early stopping keeps a best.pt
    name = f"{preset}-e1-n120"
    result_file = (results / f"{name}.json").read_text()
    loaded = reproduce.load_dataset

    def no_test_set(name, *, split, **options):
        assert split != "test", "a probe loaded the test set"
        return loaded(name, split=split, **options)

    monkeypatch.setattr(reproduce, "load_dataset", no_test_set)
    first = probe.main([name, "--images", "12", "--samples", "20", "--out", str(runs), "--results", str(results),
                        "--no-progress"])
    assert (first["split"], first["parameters"], first["images"], first["num_samples"]) == (split, parameters, 12, 20)
    curve = first["iwae_curve"]
    k = str(reproduce.PRESETS[preset].particles)
    # per image, the K-sample estimate bounds the mean of its groups' k-sample bounds, which bound the ELBO (Jensen)
    assert first["log_px"] >= curve[k] >= curve["1"] == first["elbo"]
    assert first["log_px"] > first["elbo"] + 0.1 and first["log_px_se"] > 0
    assert first["slack"] == pytest.approx(first["log_px"] - curve[k]) and first["slack"] >= 0 <= first["slack_se"]
    base = first["best_validation_bound"] if split == "validation" else -first["train_loss"]  # the bound on all images
    assert first["estimate"]["value"] == pytest.approx(base + first["slack"])
    second = probe.main([name, "--images", "6", "--samples", "10", "--out", str(runs), "--results", str(results),
                         "--no-progress"])
    history = json.loads((results / "probes" / f"{name}.json").read_text())
    assert [r["images"] for r in history] == [12, 6] and history[-1] == second
    assert (results / f"{name}.json").read_text() == result_file  # the run's own record is left alone


def test_a_run_without_a_checkpoint_is_refused_with_the_command_that_starts_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="start the run with python benchmarks/reproduce.py burda-2l-vae "):
        probe.probe("burda-2l-vae-e10", out=tmp_path / "runs", stash=tmp_path / "stash", results=tmp_path / "r")


def test_a_probe_scores_one_snapshot_while_the_run_replaces_its_checkpoint(tmp_path, monkeypatch):
    runs, results = tmp_path / "runs", tmp_path / "results"
    reproduce.main(["burda-1l-vae", "--limit", "60", "--epochs", "1", "--eval-samples", "2", "--no-progress",
                    "--out", str(runs), "--results", str(results)])
    name = "burda-1l-vae-e1-n60"
    checkpoint = runs / name / "checkpoint.pt"
    epoch = reproduce.load_checkpoint(checkpoint)["epoch"]
    read = probe.load_checkpoint

    def read_then_replace(path):  # the training run writes its next checkpoint right after the probe's first read
        state = read(path)
        checkpoint.write_bytes(b"the next epoch's checkpoint, half written")
        return state

    monkeypatch.setattr(probe, "load_checkpoint", read_then_replace)
    record = probe.probe(name, images=4, samples=4, out=runs, stash=tmp_path / "stash", results=results,
                         progress=False)
    assert record["epoch"] == epoch and record["parameters"] == "checkpoint.pt"
    assert checkpoint.read_bytes().startswith(b"the next epoch")  # the run's own file was not touched by the probe
