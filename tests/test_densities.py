"""Every prior and every likelihood is a normalized density (or mass function)."""

import math

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


def _generic_mixture(components):
    """Pyro's mixture of the same components: the reference for the VampPrior's matrix-product density."""
    import pyro.distributions as dist

    logits = torch.zeros(components.batch_shape, device=components.mean.device)
    return dist.MixtureSameFamily(dist.Categorical(logits=logits), components)


CUDA = pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/device_check.sh runs these on one)")])


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_a_mixture_of_diagonal_gaussians_is_pyros_mixture_in_value_and_gradient(device):
    """Points on top of tight components (s down to 1e-3: the expanded square cancels terms of 10^6)
    and far from all of them, in float32 as training runs, against Pyro's mixture in float64."""
    import pyro.distributions as dist
    from pyro_vae.priors import _DiagonalNormalMixture

    g = torch.Generator().manual_seed(0)
    num_components, z_dim = 30, 6
    loc = (2 * torch.randn(num_components, z_dim, generator=g)).to(device).requires_grad_()
    scale = (10 ** (-3 + 3.5 * torch.rand(num_components, z_dim, generator=g))).to(device).requires_grad_()
    near = loc.detach()[:8] + scale.detach()[:8] * torch.randn(8, z_dim, generator=g).to(device)
    far = 6 * torch.randn(4, z_dim, generator=g).to(device)
    z = torch.cat([near, far]).reshape(3, 4, z_dim).requires_grad_()
    fast = _DiagonalNormalMixture(dist.Categorical(logits=torch.zeros(num_components, device=device)),
                                  dist.Normal(loc, scale).to_event(1)).log_prob(z)
    exact = _generic_mixture(dist.Normal(loc.double(), scale.double()).to_event(1)).log_prob(z.double())
    assert fast.dtype == torch.float32 and fast.shape == (3, 4)
    assert torch.allclose(fast.double(), exact, rtol=1e-6, atol=1e-4), (fast, exact)
    assert exact.max() > 5 and exact.min() < -1e4  # the test covers sharp peaks and the far tails
    leaves = (z, loc, scale)
    for a, b in zip(torch.autograd.grad(fast.sum(), leaves), torch.autograd.grad(exact.sum(), leaves)):
        assert torch.allclose(a.double(), b.double(), rtol=1e-5, atol=1e-6 * b.abs().max().item())


@pytest.mark.parametrize("guide", ["diagonal", "low_rank", "full", "iaf"])
def test_the_vamp_prior_is_the_mixture_of_its_pseudo_inputs_posteriors(guide):
    """Whichever guide family defines it (the diagonal one takes the matrix-product density)."""
    from pyro_vae.guides import make_guide
    from pyro_vae.priors import _DiagonalNormalMixture

    x_shape = (1, 4, 4)
    prior = make_prior("vamp", z_dim=3, x_shape=x_shape)
    _perturb(prior)
    encoder = MLPEncoder(x_shape, hidden=(8,))
    head = make_guide(guide, feature_dim=8, z_dim=3)
    _perturb(head)
    posterior = lambda x: head(encoder(x))  # noqa: E731
    p = prior(posterior)
    assert isinstance(p, _DiagonalNormalMixture) == (guide == "diagonal")
    z = torch.randn(7, 2, 3, generator=torch.Generator().manual_seed(0))
    num_components = prior.pseudo_inputs.shape[0]
    components = posterior(prior.pseudo_inputs.clamp(0.0, 1.0))  # the definition: log (1/K) sum_k q(z | u_k)
    reference = torch.logsumexp(components.log_prob(z.unsqueeze(-2).expand(7, 2, num_components, 3)), -1)
    assert torch.allclose(p.log_prob(z), reference - math.log(num_components), atol=1e-5)
    assert torch.allclose(p.expand((7, 2)).log_prob(z), reference - math.log(num_components), atol=1e-5)  # a plate's


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
