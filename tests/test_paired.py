"""Paired differences of two scores of the same data: ``inference.paired_difference`` against the
closed form of a linear-Gaussian model, and ``benchmarks/paired.py`` on two scored reproduction runs."""

import json
import math
import sys
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch

from inference import evaluate, paired_difference

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import paired  # noqa: E402
import reproduce  # noqa: E402


def _exact(loc: float):
    """z ~ N(loc, 1), x | z ~ N(z, 1), with the exact posterior N((x + loc) / 2, 1/2) as guide:
    every importance weight is p(x) = N(x; loc, 2), so evaluate's log p(x) is exact datum by datum."""

    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(loc, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal((x + loc) / 2, 0.5**0.5))

    return model, guide


def test_the_paired_difference_of_two_models_is_the_closed_form_and_its_error_the_paired_one():
    x = torch.randn(400) * 2**0.5
    a, b = (evaluate(*_exact(loc), x, num_samples=8, ks=(1,), progress=False) for loc in (0.0, 0.1))
    d = paired_difference(a, b)
    exact = (0.01 - 0.2 * x) / 4  # log N(x; 0, 2) - log N(x; 0.1, 2), datum by datum: std 0.07
    assert d.mean == pytest.approx(exact.mean().item(), abs=1e-5)
    assert d.se == pytest.approx((exact.std() / 20).item(), rel=1e-4)
    # each mean's own error is that of log p(x) = -x^2 / 4 + c over the data, std 0.7: ten times larger
    assert d.unpaired_se == pytest.approx(math.hypot(a.log_px_se, b.log_px_se)) and d.unpaired_se > 8 * d.se
    assert d.correlation > 0.98 and d.num_data == 400
    assert paired_difference(a, b, key="elbo").mean == pytest.approx(d.mean, abs=1e-5)  # an exact guide: ELBO = log p(x)


def test_a_paired_difference_refuses_scores_of_different_data():
    with pytest.raises(ValueError, match="the same data scored twice: 3 scores against 4"):
        paired_difference(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="at least two data"):
        paired_difference(torch.zeros(1), torch.zeros(1))


def _score(tmp_path, epochs: int, limit: int = 120) -> dict:
    results = tmp_path / "results"
    reproduce.main(["burda-1l-vae", "--limit", str(limit), "--epochs", str(epochs), "--eval-samples", "4",
                    "--no-progress", "--out", str(tmp_path / "runs"), "--results", str(results)])
    return json.loads((results / f"{reproduce.run_name('burda-1l-vae', epochs, limit)}.json").read_text())


def test_two_scored_runs_are_compared_image_by_image(tmp_path, capsys):
    one, two = _score(tmp_path, 1), _score(tmp_path, 2)
    results = tmp_path / "results"
    scores = torch.load(results / two["scores"])
    assert scores["log_px"].shape == (120,) and scores["limit"] == 120 and scores["num_samples"] == 4
    assert -scores["log_px"].double().mean().item() == pytest.approx(two["test_nll"], abs=1e-3)
    differences = paired.compare(results, one["run"], two["run"])
    assert differences["test_nll"].mean == pytest.approx(one["test_nll"] - two["test_nll"], abs=1e-3)
    assert differences["test_neg_elbo"].mean == pytest.approx(two["test_elbo"] - one["test_elbo"], abs=1e-3)
    capsys.readouterr()  # the runs' own output
    paired.main([one["run"], two["run"], "--results", str(results)])
    out = capsys.readouterr().out
    assert out.startswith(f"{one['run']} against {two['run']}: 120 test images, K = 4\n  test NLL: ")
    assert "the papers' test NLL: 86.76 against 86.76, +0.00" in out


def test_runs_scored_on_other_images_or_never_kept_are_refused_with_the_remedy(tmp_path, capsys):
    one, other = _score(tmp_path, 1), _score(tmp_path, 1, limit=60)
    results = tmp_path / "results"
    with pytest.raises(ValueError, match="different test images \\(limit 120 against 60\\)"):
        paired.compare(results, one["run"], other["run"])
    (results / "scores" / f"{other['run']}.pt").unlink()  # a run scored before the scores were kept
    with pytest.raises(SystemExit):
        paired.main([one["run"], other["run"], "--results", str(results)])
    assert "Score it again with `python benchmarks/reproduce.py PRESET --resume --compile`" in capsys.readouterr().err


def test_a_side_that_joins_runs_with_plus_is_their_mean_image_by_image(tmp_path, capsys):
    one, two, other = _score(tmp_path, 1), _score(tmp_path, 2), _score(tmp_path, 1, limit=60)
    results = tmp_path / "results"
    both = f"{one['run']}+{two['run']}"  # as the seeds of one preset
    mean = paired.compare(results, both, one["run"])["test_nll"]
    assert mean.mean == pytest.approx((one["test_nll"] + two["test_nll"]) / 2 - one["test_nll"], abs=1e-3)
    alone = paired.compare(results, two["run"], one["run"])["test_nll"]
    assert mean.mean == pytest.approx(alone.mean / 2, abs=1e-6) and mean.se == pytest.approx(alone.se / 2, rel=1e-6)
    capsys.readouterr()
    paired.main([both, one["run"], "--results", str(results)])
    assert capsys.readouterr().out.startswith(f"{both} against {one['run']}: 120 test images")
    with pytest.raises(ValueError, match="different test images \\(limit 120 against 60\\)"):
        paired.compare(results, f"{one['run']}+{other['run']}", one["run"])
    record = json.loads((results / f"{two['run']}.json").read_text())
    record["reference"]["test_nll"] = 85.57  # as a run of another row
    (results / f"{two['run']}.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="reproduce different rows .* average only the seeds of one preset"):
        paired.report(results, both, one["run"])
