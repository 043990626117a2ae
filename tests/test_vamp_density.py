"""benchmarks/vamp_density.py: both VampPrior densities score the same draws to the same log p(x)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import reproduce  # noqa: E402
import vamp_density  # noqa: E402

import pyro_vae.priors  # noqa: E402


def test_the_two_densities_agree_on_initial_and_trained_parameters_and_the_switch_is_undone(tmp_path):
    fast = pyro_vae.priors._is_diagonal_normal
    initial = vamp_density.main(["--images", "2", "--samples", "20", "--params", str(tmp_path / "missing.pt")])
    assert pyro_vae.priors._is_diagonal_normal is fast  # the generic density was switched on for one score only
    reproduce.main(["vamp-1l", "--limit", "120", "--epochs", "1", "--eval-samples", "2", "--no-progress",
                    "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")])
    best = tmp_path / "runs" / "vamp-1l-e1-n120" / "best.pt"
    trained = vamp_density.main(["--images", "2", "--samples", "20", "--params", str(best)])
    assert (initial["trained"], trained["trained"]) == (False, True)
    assert trained["log_px"] != pytest.approx(initial["log_px"], abs=1e-3)  # the saved parameters were scored
    for row in (initial, trained):
        # the same draws under one seed: the two densities differ by float32 rounding only
        assert row["log_px_difference"] < 1e-3 and row["elbo_difference"] < 1e-3
        assert row["speed_up"] == pytest.approx(row["generic_seconds"] / row["matrix_product_seconds"])
