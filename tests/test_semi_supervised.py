"""M2 (Kingma et al. 2014): the classifier learns from a few hundred labels with enumeration over the
unknown ones; unlabelled data score like a VAE's; bad labels are named."""

import pyro
import pytest
import torch

from inference import evaluate, fit, make_elbo
from pyro_vae import load_dataset
from pyro_vae.semi_supervised import SemiSupervisedVAE


def test_the_classifier_learns_from_300_labels():
    train = load_dataset("mnist", split="train", representation="dynamic", limit=2000)
    labelled = train.with_labels(300, seed=0)
    torch.manual_seed(0)
    m2 = SemiSupervisedVAE(train.x_shape, z_dim=10, hidden=(128,), alpha=10.0)
    test = load_dataset("mnist", split="test", representation="dynamic", limit=1000)
    before = m2.error_rate(test)
    fit(m2.model, m2.guide, labelled, estimator="enum", epochs=3, batch_size=100, lr=2e-3, progress=False)
    error = m2.error_rate(test)
    assert before > 0.75 and error < 0.4, (before, error)  # chance: 0.9
    # unlabelled test images (every label -1) are scored as by a VAE, y and z importance-sampled
    scored = evaluate(m2.model, m2.guide, test.subset(slice(0, 100)).with_labels(0), num_samples=20, ks=(1, 20),
                      progress=False)
    assert scored.elbo <= scored.log_px < 0 and scored.num_data == 100


def test_labelled_and_unlabelled_terms():
    """A batch of labelled rows only, and of unlabelled rows only, give the sites of each part."""
    m2 = SemiSupervisedVAE((1, 4, 4), z_dim=2, num_classes=3, hidden=(8,))
    x = torch.bernoulli(torch.full((4, 1, 4, 4), 0.5))
    for y, sites in [(torch.tensor([0, 1, 2, 0]), {"y_labelled", "z_labelled", "x_labelled", "y_classified"}),
                     (torch.full((4,), -1), {"y", "z", "x"})]:
        trace = pyro.poutine.trace(pyro.poutine.enum(pyro.infer.config_enumerate(m2.guide), first_available_dim=-2))
        guide_trace = trace.get_trace(x, y)
        model_trace = pyro.poutine.trace(pyro.poutine.replay(m2.model, trace=guide_trace)).get_trace(x, y)
        assert {n for n, s in model_trace.nodes.items() if s["type"] == "sample" and n not in ("data", "labelled")} == sites
    # the enumerated bound is finite and the classifier term makes labelled rows cheaper to fit when alpha = 0
    loss = make_elbo("enum").loss(m2.model, m2.guide, x, torch.tensor([0, -1, 2, -1]))
    assert torch.isfinite(torch.tensor(loss))


def test_bad_labels_are_named():
    m2 = SemiSupervisedVAE((1, 4, 4), z_dim=2, num_classes=3, hidden=(8,))
    x = torch.bernoulli(torch.full((3, 1, 4, 4), 0.5))
    with pytest.raises(ValueError, match=r"labels must be classes 0..2 or -1 \(unknown\); rows \[1\] hold \[-2\]"):
        m2.validate(x, torch.tensor([0, -2, 1]))
    with pytest.raises(ValueError, match="3 labels for 2 observations"):
        m2.validate(x[:2], torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="alpha weighs log q"):
        SemiSupervisedVAE((1, 4, 4), alpha=-1.0)


def test_the_benchmark_runs_and_writes_its_table(tmp_path):
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import semi_supervised

    (tmp_path / "BENCHMARKS.md").write_text("# Benchmarks\n")
    semi_supervised.main(["--labels", "20", "100", "--limit", "300", "--epochs", "1", "--no-progress", "--out",
                          str(tmp_path / "runs"), "--results", str(tmp_path / "results"), "--table",
                          str(tmp_path / "BENCHMARKS.md")])
    record = json.loads((tmp_path / "results" / "m2-labels-100.json").read_text())
    assert record["status"] == "finished" and 0 <= record["test_error_percent"] <= 100
    assert record["reference"]["test_error_percent"] == 11.97 and len(record["per_epoch"]) == 1
    # validation error recorded each epoch, and the test error at the epoch of the lowest one reported
    assert "validation_error" in record["per_epoch"][0] and record["selected_epoch"] == 1
    assert record["test_error_at_selected_percent"] == pytest.approx(100 * record["per_epoch"][0]["test_error"])
    # Kingma et al.'s alpha (0.1 N / labels: here 250 training images) unless --alpha names another
    assert record["alpha"] == pytest.approx(0.1 * 250 / 100)
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| 20 | 1.25 | -% |" in text and "| 100 | 0.25 | 11.97% |" in text
    assert text.index("| 20 |") < text.index("| 100 |")
    # --alpha replaces Kingma et al.'s value, and the run folder and result file carry it
    semi_supervised.main(["--labels", "20", "--alpha", "3", "--limit", "300", "--epochs", "1", "--no-progress", "--out",
                          str(tmp_path / "runs"), "--results", str(tmp_path / "results"), "--table",
                          str(tmp_path / "BENCHMARKS.md")])
    chosen = json.loads((tmp_path / "results" / "m2-labels-20-alpha-3.json").read_text())
    assert chosen["alpha"] == 3.0 and chosen["alpha_source"] == "--alpha" and (tmp_path / "runs" / "labels-20-alpha-3").is_dir()
    assert "| 20 | 3 | -% |" in (tmp_path / "BENCHMARKS.md").read_text()
