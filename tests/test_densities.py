"""Every prior and every likelihood is a normalized density (or mass function)."""

import pytest
import torch

from pyro_vae.guides import DiagonalNormal
from pyro_vae.likelihoods import LIKELIHOODS, make_likelihood
from pyro_vae.nets import MLPEncoder
from pyro_vae.priors import PRIORS, make_prior


def _perturb(module, scale=0.1):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def _grid_2d(lo, hi, n):
    t = torch.linspace(lo, hi, n, dtype=torch.float64)
    zz = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    return zz, (t[1] - t[0]) ** 2


@pytest.fixture
def float64():
    # Pyro's affine autoregressive inverse allocates in the default dtype
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize("name", list(PRIORS))
def test_prior_integrates_to_one(name, float64):
    x_shape = (1, 4, 4)
    prior = make_prior(name, z_dim=2, x_shape=x_shape).double()
    _perturb(prior)
    encoder = MLPEncoder(x_shape, hidden=(8,)).double()
    head = DiagonalNormal(8, 2).double()
    p = prior(lambda x: head(encoder(x)))
    zz, area = _grid_2d(-12, 12, 481)
    with torch.no_grad():
        total = p.log_prob(zz).exp().sum() * area
    assert total.item() == pytest.approx(1.0, abs=2e-3)
    # and it is not trivially the standard normal after perturbation (except the fixed one)
    if name != "standard_normal":
        standard = make_prior("standard_normal", z_dim=2, x_shape=x_shape).double()()
        assert not torch.allclose(p.log_prob(zz[:50]), standard.log_prob(zz[:50]))


def _params(likelihood, batch=5):
    """Decoder outputs for a one-pixel likelihood: a few settings of each map."""
    g = torch.Generator().manual_seed(0)
    out = torch.randn(batch, likelihood.out_features, generator=g, dtype=torch.float64)
    if type(likelihood).__name__ == "Beta":
        out = 1.0 + 2.0 * out.abs()  # concentrations > 1: no singular endpoints for the quadrature
    return out


SUPPORT = {
    "continuous_bernoulli": (0.0, 1.0),
    "gaussian": (-15.0, 15.0),
    "gaussian_learned": (-15.0, 15.0),
    "laplace": (-15.0, 15.0),
    "beta": (0.0, 1.0),
}


@pytest.mark.parametrize("name", list(LIKELIHOODS))
def test_likelihood_integrates_to_one(name):
    lik = make_likelihood(name, x_shape=(1,)).double()
    p = lik(_params(lik))  # batch (5,), event (1,)
    if name == "bernoulli":
        values = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
        total = p.log_prob(values.unsqueeze(1)).exp().sum(0)
    elif name == "discretized_logistic":
        values = (torch.arange(256, dtype=torch.float64) / 255).reshape(-1, 1, 1)
        total = p.log_prob(values).exp().sum(0)
    else:
        lo, hi = SUPPORT[name]
        eps = 1e-7 if name == "beta" else 0.0
        grid = torch.linspace(lo + eps, hi - eps, 300001, dtype=torch.float64)
        with torch.no_grad():
            dens = p.log_prob(grid.reshape(-1, 1, 1)).exp()
        total = torch.trapezoid(dens, grid, dim=0)
    assert torch.allclose(total, torch.ones(5, dtype=torch.float64), atol=1e-4), total


def test_discretized_logistic_is_stable_in_the_tails():
    from pyro_vae.discretized_logistic import DiscretizedLogistic

    grid = torch.arange(256) / 255
    for loc, scale in [(-3.0, 1e-4), (4.0, 1e-4), (0.5, 1e-4), (0.5, 50.0), (0.2, 0.003)]:
        d = DiscretizedLogistic(torch.tensor(loc), torch.tensor(scale))
        logp = d.log_prob(grid)
        assert torch.isfinite(logp).all()
        assert logp.exp().sum().item() == pytest.approx(1.0, abs=1e-4)
        assert d.mean.item() == pytest.approx((logp.exp() * grid).sum().item(), abs=1e-5)
    sample = DiscretizedLogistic(torch.full((1000,), 0.3), torch.full((1000,), 0.05)).sample()
    assert torch.allclose(sample * 255, (sample * 255).round())
    assert abs(sample.mean().item() - 0.3) < 0.01
