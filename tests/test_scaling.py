"""The beta handler multiplies exactly the KL part of the ELBO by beta, in any model/guide pair."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from torch.distributions import kl_divergence

from inference import Cyclical, LinearWarmup, ScaleSites, Sigmoid, beta_scale, make_elbo, make_schedule, scale_sites
from inference.scaling import schedule_from_dict, schedule_to_dict
from pyro_vae import VAE


def _monte_carlo_kl(model, guide, sites, *args, seed, **kwargs):
    """sum over `sites` of log q(z) - log p(z) at the guide's draw with this seed (unscaled)."""
    pyro.set_rng_seed(seed)
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    total = 0.0
    for name in sites:
        z = guide_trace.nodes[name]["value"]
        total += (guide_trace.nodes[name]["fn"].log_prob(z) - model_trace.nodes[name]["fn"].log_prob(z)).sum()
    return total


def _loss(elbo, model, guide, *args, seed, **kwargs):
    pyro.set_rng_seed(seed)
    return elbo.loss(model, guide, *args, **kwargs)


@pytest.fixture
def vae_and_x():
    x = torch.bernoulli(torch.full((10, 1, 4, 4), 0.3, dtype=torch.float64))
    return VAE((1, 4, 4), z_dim=3, hidden=(8,)).double(), x


@pytest.mark.parametrize("beta", [0.0, 0.25, 4.0])
@pytest.mark.parametrize("num_data", [None, 100])
def test_trace_elbo_difference_is_beta_minus_one_times_kl(vae_and_x, beta, num_data):
    vae, x = vae_and_x
    elbo = make_elbo("trace")
    scaled = beta_scale(vae.model, vae.guide, beta=beta)
    one = _loss(elbo, vae.model, vae.guide, x, num_data=num_data, seed=3)
    weighted = _loss(elbo, scaled.model, scaled.guide, x, num_data=num_data, seed=3)
    kl = _monte_carlo_kl(vae.model, vae.guide, ["z"], x, num_data=num_data, seed=3).item()
    plate_scale = (num_data or len(x)) / len(x)
    assert weighted - one == pytest.approx((beta - 1) * kl * plate_scale, rel=1e-9, abs=1e-9)


def test_mean_field_difference_is_beta_minus_one_times_analytic_kl(vae_and_x):
    vae, x = vae_and_x
    elbo, beta = make_elbo("mean_field"), 3.0
    scaled = beta_scale(vae.model, vae.guide, beta=beta)
    one = _loss(elbo, vae.model, vae.guide, x, seed=5)
    weighted = _loss(elbo, scaled.model, scaled.guide, x, seed=5)
    kl = kl_divergence(vae.posterior(x), vae.prior()).sum().item()
    assert weighted - one == pytest.approx((beta - 1) * kl, rel=1e-9)


def test_likelihood_site_is_untouched(vae_and_x):
    vae, x = vae_and_x
    scaled = beta_scale(vae.model, vae.guide, beta=4.0)
    guide_trace = poutine.trace(scaled.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(scaled.model, trace=guide_trace)).get_trace(x)
    assert model_trace.nodes["x"]["scale"] == 1.0
    assert model_trace.nodes["z"]["scale"] == 4.0 and guide_trace.nodes["z"]["scale"] == 4.0


def test_kl_only_and_reconstruction_only(vae_and_x):
    """Scaling x by 0 leaves the KL; scaling z by 0 leaves the reconstruction term."""
    vae, x = vae_and_x
    elbo = make_elbo("trace")
    kl = _monte_carlo_kl(vae.model, vae.guide, ["z"], x, seed=7).item()
    kl_only = _loss(elbo, scale_sites(vae.model, {"x": 0.0}), scale_sites(vae.guide, {"x": 0.0}), x, seed=7)
    assert kl_only == pytest.approx(kl, rel=1e-9)
    full = _loss(elbo, vae.model, vae.guide, x, seed=7)
    rec_only = beta_scale(vae.model, vae.guide, beta=0.0)
    assert _loss(elbo, rec_only.model, rec_only.guide, x, seed=7) == pytest.approx(full - kl, rel=1e-9)


def _hierarchical_model(x):
    loc = pyro.sample("loc", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(loc, 1.0))
        pyro.sample("x", dist.Normal(z, 0.5), obs=x)


def _hierarchical_guide(x):
    m = pyro.param("m", torch.tensor(0.2, dtype=torch.float64))
    loc = pyro.sample("loc", dist.Normal(m, 0.3))
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(0.5 * x + 0.1 * loc, 0.7))


@pytest.mark.parametrize("estimator", ["trace", "graph"])
def test_plain_pyro_model_only_named_site_is_scaled(estimator):
    x = torch.linspace(-1, 2, 6, dtype=torch.float64)
    elbo, beta = make_elbo(estimator), 2.5
    scaled = beta_scale(_hierarchical_model, _hierarchical_guide, beta=beta, sites=["z"])
    one = _loss(elbo, _hierarchical_model, _hierarchical_guide, x, seed=11)
    weighted = _loss(elbo, scaled.model, scaled.guide, x, seed=11)
    kl_z = _monte_carlo_kl(_hierarchical_model, _hierarchical_guide, ["z"], x, seed=11).item()
    kl_loc = _monte_carlo_kl(_hierarchical_model, _hierarchical_guide, ["loc"], x, seed=11).item()
    assert weighted - one == pytest.approx((beta - 1) * kl_z, rel=1e-9)
    assert abs(kl_loc) > 1e-3  # the unscaled site does contribute, and is left alone


def test_schedule_follows_the_step(vae_and_x):
    vae, x = vae_and_x
    scaled = beta_scale(vae.model, vae.guide, beta=LinearWarmup(steps=10))
    elbo = make_elbo("trace")
    kl = _monte_carlo_kl(vae.model, vae.guide, ["z"], x, seed=1).item()
    one = _loss(elbo, vae.model, vae.guide, x, seed=1)
    for step, beta in [(0, 0.0), (5, 0.5), (10, 1.0), (50, 1.0)]:
        scaled.step = step
        assert scaled.beta == beta
        assert _loss(elbo, scaled.model, scaled.guide, x, seed=1) - one == pytest.approx((beta - 1) * kl, abs=1e-9)


def test_schedules():
    assert [LinearWarmup(steps=4)(s) for s in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    cyc = Cyclical(period=10, ratio=0.5)
    assert [cyc(s) for s in (0, 2, 5, 7, 10, 12)] == [0.0, 0.4, 1.0, 1.0, 0.0, 0.4]
    sig = Sigmoid(steps=100, steepness=10)
    assert sig(50) == 0.5 and sig(0) == pytest.approx(1 / (1 + math.exp(5)))
    assert all(sig(s) < sig(s + 1) for s in range(100))
    assert make_schedule("constant", value=2.0)(123) == 2.0
    for schedule in [LinearWarmup(steps=3, end=2.0), Cyclical(period=4), Sigmoid(steps=9), 4.0]:
        rebuilt = schedule_from_dict(schedule_to_dict(schedule))
        assert [rebuilt(s) for s in range(12)] == [(schedule(s) if callable(schedule) else 4.0) for s in range(12)]


def test_bad_scales_are_refused():
    with pytest.raises(ValueError, match=">= 0"):
        ScaleSites({"z": -1.0})
    with pytest.raises(ValueError, match=">= 0"):
        ScaleSites({"z": float("nan")})
    with pytest.raises(ValueError, match="name at least one site"):
        ScaleSites({})
    with pytest.raises(ValueError, match="valid choices: 'constant', 'linear', 'cyclical', 'sigmoid'"):
        make_schedule("exponential", steps=3)
