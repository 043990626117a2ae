"""The estimator registry, and the analytic KL agreeing with the Monte Carlo KL."""

import pyro
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO, TraceTailAdaptive_ELBO

from inference import ESTIMATORS, make_elbo
from inference.renyi import RenyiBound
from inference.tcvae import TCVAE_ELBO
from pyro_vae import VAE


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_mean_field_and_trace_agree_in_expectation(likelihood):
    """A z-test: the two estimators differ only in how they estimate the KL."""
    torch.manual_seed(0)
    x_shape = (1, 4, 4)
    x = torch.rand(12, *x_shape)
    x = torch.bernoulli(x) if likelihood == "bernoulli" else x
    vae = VAE(x_shape, z_dim=3, likelihood=likelihood, hidden=(8,))
    with torch.no_grad():  # move q away from the prior so that the KL is large
        vae.guide_family.head.bias.add_(torch.linspace(-1.0, 1.0, 6))

    def estimates(name):
        elbo = make_elbo(name, num_particles=200)
        return torch.tensor([elbo.loss(vae.model, vae.guide, x) for _ in range(30)])

    trace, mean_field = estimates("trace"), estimates("mean_field")
    se = (trace.var() / len(trace) + mean_field.var() / len(mean_field)).sqrt()
    assert abs(trace.mean() - mean_field.mean()) < 4 * se
    assert mean_field.std() < trace.std()  # the analytic KL removes variance


def test_registry_names_and_classes():
    assert list(ESTIMATORS) == ["trace", "mean_field", "graph", "iwae", "renyi", "tail_adaptive", "stl", "dreg", "enum",
                                "tcvae"]
    assert isinstance(make_elbo("mean_field"), TraceMeanField_ELBO)
    iwae = make_elbo("iwae", num_particles=7)
    assert isinstance(iwae, RenyiBound) and iwae.alpha == 0 and iwae.num_particles == 7 and iwae.vectorize_particles
    assert make_elbo("renyi", num_particles=3, alpha=0.3).alpha == 0.3
    assert isinstance(make_elbo("tail_adaptive", num_particles=4), TraceTailAdaptive_ELBO)
    tcvae = make_elbo("tcvae", num_particles=3, tc_weight=6.0)
    assert isinstance(tcvae, TCVAE_ELBO) and tcvae.tc_weight == 6.0 and tcvae.mi_weight == tcvae.dim_kl_weight == 1.0
    assert not tcvae.vectorize_particles and tcvae.num_particles == 3


def test_bad_estimator_options():
    with pytest.raises(ValueError, match="unknown estimator 'elbo'; valid choices: 'trace', 'mean_field'"):
        make_elbo("elbo")
    with pytest.raises(ValueError, match="alpha = 1 is the ELBO"):
        make_elbo("renyi", alpha=1.0, num_particles=2)
    with pytest.raises(ValueError, match="alpha is an option of estimator='renyi' only"):
        make_elbo("trace", alpha=0.5)
    with pytest.raises(ValueError, match="num_particles >= 2"):
        make_elbo("tail_adaptive")
    with pytest.raises(ValueError, match="num_particles must be >= 1"):
        make_elbo("trace", num_particles=0)


def test_tail_adaptive_trains():
    x = torch.bernoulli(torch.full((8, 1, 4, 4), 0.3))
    vae = VAE((1, 4, 4), z_dim=2, hidden=(8,))
    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), make_elbo("tail_adaptive", num_particles=4))
    before = vae.guide_family.head.weight.detach().clone()
    svi.step(x)
    assert not torch.equal(before, vae.guide_family.head.weight)
