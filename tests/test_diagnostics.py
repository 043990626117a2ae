"""Diagnostics checked on probabilistic PCA, whose posterior is known exactly."""

import warnings

import arviz as az
import pyro
import pytest
import torch

from inference import fit
from inference.diagnostics import (
    PosteriorCollapseWarning,
    collapse_report,
    psis_khat,
    reference_posterior,
    to_inference_data,
)
from pyro_vae import PPCA, VAE


@pytest.fixture
def ppca():
    return PPCA.random(x_dim=4, z_dim=2, sigma=0.5, seed=0)


def test_nuts_recovers_the_exact_posterior(ppca):
    x = ppca.sample(1, seed=1)
    reference = reference_posterior(ppca.vae(exact_guide=True).model, x, num_samples=400, warmup=200, chains=4)
    exact = ppca.posterior(x)
    assert reference.rhat < 1.01 and reference.ess > 400
    error = (reference.mean - exact.loc[0]).abs()
    assert (error < 4 * (exact.covariance_matrix[0].diagonal() / reference.ess).sqrt()).all(), error
    assert torch.allclose(reference.covariance, exact.covariance_matrix[0], atol=0.15 * exact.covariance_matrix.max())
    with pytest.raises(ValueError, match="one datum"):
        reference_posterior(ppca.vae().model, ppca.sample(2))


def test_khat_is_low_for_the_exact_guide_and_high_for_a_narrow_one(ppca):
    x = ppca.sample(20, seed=2)
    vae = ppca.vae(exact_guide=True)
    exact = psis_khat(vae.model, vae.guide, x, num_samples=500)
    assert (exact.khat < 0.5).all() and exact.share_above_05 == 0.0
    with torch.no_grad():  # the exact posterior's standard deviations divided by about 8
        vae.guide_family.head.bias[2:4] -= 3.0
        vae.guide_family.head.bias[4:] /= 8
    narrow = psis_khat(vae.model, vae.guide, x, num_samples=2000)
    assert narrow.share_above_07 > 0.9
    assert narrow.worst(3).tolist() == narrow.khat.argsort(descending=True)[:3].tolist()
    assert narrow.histogram().axes[0].get_title().startswith("PSIS k-hat")


def test_inference_data_round_trips_through_netcdf(ppca, tmp_path):
    x = ppca.sample(5, seed=3)
    vae = ppca.vae(exact_guide=True)
    idata = to_inference_data(vae.model, vae.guide, x, num_samples=200)
    assert idata.posterior["z"].dims == ("chain", "draw", "datum", "z_dim")
    assert idata.sample_stats["khat"].dims == ("datum",) and idata.observed_data["x"].shape == (5, 4)
    # the guide is exact: its draws have the posterior's mean
    draws = torch.as_tensor(idata.posterior["z"].values[0])
    assert torch.allclose(draws.mean(0), ppca.posterior(x).loc, atol=4 * 0.6 / 200**0.5)
    idata.to_netcdf(tmp_path / "d.nc")
    again = az.from_netcdf(tmp_path / "d.nc")
    assert (again.posterior["z"].values == idata.posterior["z"].values).all()
    summary = az.summary(again, var_names=["z"])
    assert len(summary) == 10 and "ess_bulk" in summary.columns
    import matplotlib.pyplot as plt

    axes = az.plot_posterior(again, var_names=["z"], coords={"datum": [0]})
    assert len(axes.flatten()) == 2
    axes = az.plot_pair(again, var_names=["z"], coords={"datum": [0]})
    assert axes is not None
    plt.close("all")


def test_collapse_warning_fires_for_a_strong_beta_only():
    truth = PPCA.random(x_dim=6, z_dim=2, sigma=0.5, seed=5)
    x = truth.sample(600, seed=6).float()

    def trained(beta):
        pyro.clear_param_store()
        torch.manual_seed(0)
        vae = VAE((6,), z_dim=4, likelihood="gaussian_learned", hidden=(16,))
        fit(vae.model, vae.guide, x, estimator="mean_field", beta=beta, epochs=20, batch_size=100, lr=0.01,
            progress=False)
        return vae

    strong = trained(200.0)
    with pytest.warns(PosteriorCollapseWarning, match="Remedies: a KL warm-up"):
        report = collapse_report(strong.model, strong.guide, x[:300])
    assert report.active_units <= 1 and report.warning
    healthy = trained(1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PosteriorCollapseWarning)
        report = collapse_report(healthy.model, healthy.guide, x[:300])
    assert report.active_units >= 2 and report.warning is None


def test_amortization_gap_on_ppca(ppca):
    from inference.diagnostics import amortization_gap

    x = ppca.sample(20, seed=1)
    exact_lp = ppca.log_marginal(x)
    vae = ppca.vae(exact_guide=True)
    tight = amortization_gap(vae.model, vae.guide, x, local_guide=vae.local_guide, steps=300).summary()
    assert abs(tight["approximation_gap"]) < 1e-4 and abs(tight["amortization_gap"]) < 1e-4
    assert tight["log_px"] == pytest.approx(exact_lp.mean().item(), abs=1e-4)

    with torch.no_grad():  # an amortized guide that is off; the full-covariance family still holds the posterior
        vae.guide_family.head.bias.add_(0.3)
    gap = amortization_gap(vae.model, vae.guide, x, local_guide=vae.local_guide, steps=300)
    summary = gap.summary()
    assert abs(summary["approximation_gap"]) < 1e-3  # the per-datum fit finds the exact posterior
    assert summary["amortization_gap"] > 10 * summary["amortization_gap_se"] > 0
    assert torch.allclose(gap.log_px, exact_lp, atol=1e-3)


def test_local_guide_needs_free_parameters():
    with pytest.raises(ValueError, match="needs guide='diagonal', 'low_rank' or 'full'"):
        VAE((1, 4, 4), z_dim=2, guide="iaf", hidden=(8,)).local_guide(torch.zeros(2, 1, 4, 4))
