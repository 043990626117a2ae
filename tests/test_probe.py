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
    benchmarks = tmp_path / "BENCHMARKS.md"
    benchmarks.write_text("# Benchmarks\n")
    second = probe.main([name, "--images", "6", "--samples", "10", "--out", str(runs), "--results", str(results),
                         "--no-progress", "--table", str(benchmarks)])
    history = json.loads((results / "probes" / f"{name}.json").read_text())
    assert [r["images"] for r in history] == [12, 6] and history[-1] == second
    rows = [row for row in benchmarks.read_text().splitlines() if row.startswith(f"| {name} |")]
    assert [row.split(" | ")[3] for row in rows] == [f"12 {split}", f"6 {split}"]  # both probes, in order
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


def test_the_probe_table_has_a_row_per_probe_with_its_figures_and_replaces_its_block(tmp_path):
    def record(run, epoch, log_px, bound, curve, units, estimate=None):
        return {"run": run, "epoch": epoch, "parameters": "checkpoint.pt", "split": "training", "images": 1000,
                "num_samples": 5000, "log_px": log_px, "log_px_se": 0.65, "elbo": curve["1"], "iwae_curve": curve,
                "active_units_by_site": units, "bound": bound, "date": "2026-12-05 17:30 UTC"} | (
               {"estimate": {"of": "training log p(x): the last epoch's training IWAE-50 bound + the slack",
                             "value": estimate}} if estimate is not None else {})

    probes = tmp_path / "results" / "probes"
    probes.mkdir(parents=True)
    (probes / "burda-1l-iwae50.json").write_text(json.dumps([
        record("burda-1l-iwae50", 300, -85.236, "IWAE-50 bound", {"1": -98.77, "50": -87.387, "5000": -85.236},
               {"z1": 25}, estimate=-86.284),
        record("burda-1l-iwae50", 2319, -83.204, "IWAE-50 bound", {"1": -93.81, "50": -84.68, "5000": -83.204},
               {"z1": 25})]))
    (probes / "burda-2l-vae.json").write_text(json.dumps([
        record("burda-2l-vae", 10, -90.0, "ELBO", {"1": -95.5, "5000": -90.0}, {"z1": 18, "z2": 5})]))
    rows = probe.table(tmp_path / "results").splitlines()[2:]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert [(c[0], c[1]) for c in cells] == [("burda-1l-iwae50", "300"), ("burda-1l-iwae50", "2319"),
                                             ("burda-2l-vae", "10")]  # by run, each in the order probed
    assert cells[0][5:10] == ["-85.24 ± 0.65", "IWAE-50 bound -87.39", "-98.77", "25", "-86.28 (training)"]
    assert cells[1][9] == "" and cells[2][6:9] == ["ELBO -95.50", "-95.50", "18 (z1) + 5 (z2)"]
    benchmarks = tmp_path / "BENCHMARKS.md"
    benchmarks.write_text("# Benchmarks\n\n<!-- probes -->\nold\n<!-- /probes -->\n\n## Next section\n")
    probe.write_table(benchmarks, tmp_path / "results")
    probe.write_table(benchmarks, tmp_path / "results")
    text = benchmarks.read_text()
    assert "old" not in text and text.count("| burda-1l-iwae50 |") == 2 and text.endswith("## Next section\n")
