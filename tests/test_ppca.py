"""Probabilistic PCA: the closed forms, and the VAE machinery checked against them."""

import pytest
import torch
from torch.distributions import kl_divergence

from inference import make_elbo
from pyro_vae import PPCA


@pytest.fixture
def ppca():
    return PPCA.random(x_dim=5, z_dim=2, sigma=0.5, seed=0)


def test_posterior_is_bayes_rule(ppca):
    """log p(z) + log p(x|z) - log p(x) == log p(z|x) at arbitrary points."""
    x = ppca.sample(7, seed=1)
    z = torch.randn(7, 2, dtype=torch.float64)
    prior = torch.distributions.Normal(torch.zeros(2, dtype=torch.float64), 1.0).log_prob(z).sum(-1)
    lik = torch.distributions.Normal(z @ ppca.W.T + ppca.mu, ppca.sigma).log_prob(x).sum(-1)
    assert torch.allclose(prior + lik - ppca.log_marginal(x), ppca.posterior(x).log_prob(z), atol=1e-10)


@pytest.mark.parametrize("estimator", ["trace", "mean_field", "iwae"])
def test_exact_guide_elbo_equals_log_marginal(ppca, estimator):
    x = ppca.sample(50, seed=1)
    vae = ppca.vae(exact_guide=True)
    exact = ppca.log_marginal(x).sum().item()
    for _ in range(3):  # every draw of z gives the same value: the bound is tight
        elbo = -make_elbo(estimator, num_particles=1 if estimator != "iwae" else 5).loss(vae.model, vae.guide, x)
        assert elbo == pytest.approx(exact, abs=1e-8 * abs(exact))


def test_other_guides_are_lower_by_the_kl_to_the_posterior(ppca):
    """ELBO = log p(x) - KL(q || p(z|x)): check the gap against the closed-form KL."""
    x = ppca.sample(20, seed=1)
    vae = ppca.vae(exact_guide=True)
    with torch.no_grad():
        for p in vae.guide_family.parameters():
            p.add_(0.2 * torch.randn_like(p))
    exact = ppca.log_marginal(x)
    gap = kl_divergence(vae.posterior(x), ppca.posterior(x)).detach()
    assert (gap > 1e-3).all()
    estimates = torch.tensor([-make_elbo("trace", num_particles=500).loss(vae.model, vae.guide, x) for _ in range(20)])
    target = (exact - gap).sum().item()
    assert estimates.mean().item() < exact.sum().item() - 5 * estimates.std().item() / 20**0.5
    assert estimates.mean().item() == pytest.approx(target, abs=4 * estimates.std().item() / 20**0.5 + 1e-6)


def test_iwae_tightens_the_bound(ppca):
    x = ppca.sample(20, seed=2)
    vae = ppca.vae(exact_guide=True)
    with torch.no_grad():
        vae.guide_family.head.bias.add_(0.5)
    elbo = torch.tensor([-make_elbo("trace", num_particles=10).loss(vae.model, vae.guide, x) for _ in range(30)])
    iwae = torch.tensor([-make_elbo("iwae", num_particles=10).loss(vae.model, vae.guide, x) for _ in range(30)])
    exact = ppca.log_marginal(x).sum().item()
    assert elbo.mean() < iwae.mean() < exact


def test_maximum_likelihood_is_a_maximum(ppca):
    x = ppca.sample(2000, seed=3)
    fit = PPCA.maximum_likelihood(x, z_dim=2)
    best = fit.log_marginal(x).sum()
    assert best > ppca.log_marginal(x).sum()  # beats the true parameters on their own sample
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        W = fit.W + 0.01 * torch.randn(fit.W.shape, generator=g, dtype=fit.W.dtype)
        mu = fit.mu + 0.01 * torch.randn(fit.mu.shape, generator=g, dtype=fit.mu.dtype)
        sigma = fit.sigma * (1 + 0.01 * torch.randn((), generator=g).item())
        assert PPCA(W, mu, sigma).log_marginal(x).sum() < best
    # and it recovers the generating covariance
    C_fit, C_true = fit.marginal().covariance_matrix, ppca.marginal().covariance_matrix
    assert torch.linalg.norm(C_fit - C_true) < 0.1 * torch.linalg.norm(C_true)
