"""benchmarks/reproduce.py: every preset runs end to end on a tiny budget and writes a well-formed
result file; an interrupted run records its partial progress and resumes; the results table."""

import json
import shutil
import sys
from pathlib import Path

import pytest

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
                "train_seconds", "device", "command", "commit"):
        assert key in record, key
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


def test_a_partial_run_is_recorded_and_resumes_to_the_end(tmp_path):
    results, runs = tmp_path / "results", tmp_path / "runs"
    argv = ["burda-1l-vae", "--limit", "120", "--epochs", "2", "--eval-samples", "4", "--no-progress",
            "--out", str(runs), "--results", str(results), "--docs", str(tmp_path / "docs")]
    reproduce.main([*argv, "--max-hours", "1e-9"])  # the budget ends after the first step
    record = json.loads((results / "burda-1l-vae-e2-n120.json").read_text())
    assert record["status"] == "partial" and record["steps"] == 1 and "test_nll" not in record
    reproduce.main([*argv, "--resume", "--max-hours", "1e-9"])  # this call's own budget: one more step
    record = json.loads((results / "burda-1l-vae-e2-n120.json").read_text())
    assert record["status"] == "partial" and record["steps"] == 2
    (tmp_path / "BENCHMARKS.md").write_text("# Benchmarks\n")
    (results / "m2-labels-100.json").write_text('{"labels": 100}')  # another benchmark's result: not a row here
    reproduce.main([*argv, "--resume", "--table", str(tmp_path / "BENCHMARKS.md")])
    record = json.loads((results / "burda-1l-vae-e2-n120.json").read_text())
    assert record["status"] == "finished" and record["steps"] == 12
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| burda-1l-vae | 86.76 (Burda et al. 2016, Table 1) |" in text and "2/2" in text
    # the learning curve travels in the result file (both epochs, across the resume) and is drawn under the table
    assert [c["epoch"] for c in record["curve"]] == [1, 2] and all(c["train_loss"] > 0 for c in record["curve"])
    assert (tmp_path / "docs" / "reproductions.png").stat().st_size > 0 and "docs/reproductions.png" in text
    reproduce.main([*argv, "--resume", "--table", str(tmp_path / "BENCHMARKS.md")])  # the table is replaced, not added
    assert (tmp_path / "BENCHMARKS.md").read_text().count("<!-- reproductions -->") == 1


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


def test_the_readme_names_every_preset():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in reproduce.PRESETS)
