"""The K-sample bounds: Pyro's RenyiELBO where it is right, the full-data bound under subsampling,
and IWAE_K between the ELBO and log p(x) on the linear-Gaussian model."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import RenyiELBO

from inference import beta_scale, make_elbo
from inference.estimators import backward
from inference.renyi import RenyiBound
import toy  # tests/toy.py: a hand-written model and guide


def subsampled_model(x):
    """toy.model with its data plate subsampled from a data set of 400 (only the scale changes)."""
    loc = pyro.param("loc")
    with pyro.plate("data", 400, subsample=torch.arange(len(x))):
        z = pyro.sample("z", dist.Normal(loc, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def subsampled_guide(x):
    w, s = pyro.param("w"), pyro.param("s")
    with pyro.plate("data", 400, subsample=torch.arange(len(x))):
        pyro.sample("z", dist.Normal(w * x, s))


def _loss_and_grads(elbo, model, guide, x, seed):
    pyro.set_rng_seed(seed)
    for name in ("loc", "w", "s"):  # make sure every parameter exists before zeroing the gradients
        pyro.param(name)
    for p in pyro.get_param_store().values():
        p.unconstrained().grad = None
    loss = backward(elbo, model, guide, x)
    return loss.item(), {name: pyro.param(name).unconstrained().grad.clone() for name in ("loc", "w", "s")}


@pytest.mark.parametrize("alpha", [0.0, 0.5, -1.0], ids=["iwae", "renyi_0.5", "renyi_-1"])
def test_equals_pyros_renyi_elbo_without_subsampling(alpha):
    x = torch.tensor([0.3, -1.2, 2.0, 0.7])
    toy.model(x), toy.guide(x)  # create the parameters
    ours = _loss_and_grads(RenyiBound(alpha, num_particles=6), toy.model, toy.guide, x, seed=1)
    pyros = _loss_and_grads(RenyiELBO(alpha, num_particles=6, vectorize_particles=True, max_plate_nesting=1),
                            toy.model, toy.guide, x, seed=1)
    assert ours[0] == pytest.approx(pyros[0], rel=1e-5)
    for name in ours[1]:
        assert torch.allclose(ours[1][name], pyros[1][name], rtol=1e-4, atol=1e-6), name


def test_subsampled_plate_scales_the_bound_not_the_weights():
    """With a plate of 400 around a batch of 4, the loss and gradients are 100x the batch's
    own; Pyro's RenyiELBO instead raises the weights to the 100th power (another objective)."""
    x = torch.tensor([0.3, -1.2, 2.0, 0.7])
    toy.model(x), toy.guide(x)
    elbo = RenyiBound(num_particles=6)
    full, full_grads = _loss_and_grads(elbo, subsampled_model, subsampled_guide, x, seed=2)
    batch, batch_grads = _loss_and_grads(elbo, toy.model, toy.guide, x, seed=2)
    assert full == pytest.approx(100 * batch, rel=1e-5)
    for name in full_grads:
        assert torch.allclose(full_grads[name], 100 * batch_grads[name], rtol=1e-4, atol=1e-5), name
    pyros = RenyiELBO(0.0, num_particles=6, vectorize_particles=True, max_plate_nesting=1)
    pyro.set_rng_seed(2)
    assert pyros.loss(subsampled_model, subsampled_guide, x) < full - 1.0


def test_iwae_bound_lies_between_the_elbo_and_log_px():
    """toy's model has log p(x) = N(x; loc, 2) in closed form; the guide N(0.2 x, 1) is not the posterior."""
    x = torch.linspace(-1.0, 3.0, 8)
    toy.model(x), toy.guide(x)
    exact = dist.Normal(0.0, math.sqrt(2.0)).log_prob(x).sum().item()
    estimates = {K: torch.tensor([-RenyiBound(num_particles=K).loss(toy.model, toy.guide, x) for _ in range(200)])
                 for K in (1, 10, 1000)}
    means = {K: v.mean().item() for K, v in estimates.items()}
    elbo = -make_elbo("trace", num_particles=2000).loss(toy.model, toy.guide, x)
    assert means[1] == pytest.approx(elbo, abs=4 * estimates[1].std().item() / 200**0.5 + 0.05)
    se_1000 = estimates[1000].std().item() / 200**0.5
    assert means[1] < means[10] < means[1000] < exact + 3 * se_1000  # IWAE_1000 is within noise of log p(x)
    assert exact - means[1000] < 0.1 * (exact - means[1])


def test_beta_weighs_the_latent_terms_inside_the_weights():
    """With K = 1 the bound is the ELBO, and beta multiplies exactly its KL part (same draws)."""
    x = torch.tensor([0.3, -1.2, 2.0, 0.7])
    toy.model(x), toy.guide(x)
    elbo = RenyiBound(num_particles=1)
    scaled = beta_scale(toy.model, toy.guide, beta=3.0)
    losses = {}
    for beta, pair in (("1", (toy.model, toy.guide)), ("3", (scaled.model, scaled.guide))):
        pyro.set_rng_seed(3)
        losses[beta] = elbo.loss(*pair, x)
    pyro.set_rng_seed(3)
    trace = pyro.poutine.trace(toy.guide).get_trace(x)
    replay = pyro.poutine.trace(pyro.poutine.replay(toy.model, trace=trace)).get_trace(x)
    kl = (trace.nodes["z"]["fn"].log_prob(trace.nodes["z"]["value"]) - replay.nodes["z"]["fn"].log_prob(
        trace.nodes["z"]["value"])).sum().item()
    assert losses["3"] - losses["1"] == pytest.approx(2.0 * kl, rel=1e-4)


def test_needs_reparameterized_guide_sites():
    def guide(x):
        p = pyro.param("p", torch.tensor(0.5), constraint=dist.constraints.unit_interval)
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Bernoulli(p))

    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    with pytest.raises(ValueError, match="'z' is not: use estimator='graph'"):
        RenyiBound(num_particles=2).loss(model, guide, torch.zeros(3))
