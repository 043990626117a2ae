"""Gradient estimators: unbiasedness for their own objectives, STL's zero variance at
the exact posterior, and Rainforth et al.'s signal-to-noise effect."""

import pyro.distributions as dist
import pytest
import torch
from torch.distributions import kl_divergence

from inference import make_elbo
from inference.compare import gradient_stats, parameter_groups
from inference.estimators import backward
from pyro_vae import PPCA
import toy  # tests/toy.py: a hand-written model and guide


def _off_posterior_ppca(x_dim=3, z_dim=1, shift=0.2):
    ppca = PPCA.random(x_dim=x_dim, z_dim=z_dim, sigma=0.5, seed=0)
    vae = ppca.vae(exact_guide=True)
    with torch.no_grad():
        vae.guide_family.head.bias.add_(shift)
    return ppca, vae


def _exact_elbo(vae, x):
    """The linear-Gaussian ELBO in closed form (the reference of the test, not library code)."""
    q = vae.posterior(x)
    W, b = vae.decoder.net[0].weight, vae.decoder.net[0].bias
    sigma = vae.likelihood.scale
    mean_fit = dist.Normal(q.loc @ W.T + b, sigma).log_prob(x).sum()
    spread = torch.einsum("ij,njk,ik->", W, q.covariance_matrix, W) / (2 * sigma**2)
    prior = dist.MultivariateNormal(torch.zeros_like(q.loc), scale_tril=torch.eye(q.loc.shape[-1], dtype=x.dtype))
    return mean_fit - spread - kl_divergence(q, prior).sum()


def _flat_grads(vae):
    return torch.cat([p.grad.flatten() for p in vae.parameters() if p.requires_grad])


def _mean_gradient(vae, x, name, num_particles, repeats, copies):
    """Mean and standard error of the gradient per datum, each draw averaging `copies` independent copies of x."""
    data = x.expand(copies, x.shape[-1])
    elbo = make_elbo(name, num_particles=num_particles)
    draws = []
    for _ in range(repeats):
        vae.zero_grad()
        backward(elbo, vae.model, vae.guide, data)
        draws.append(_flat_grads(vae) / copies)
    draws = torch.stack(draws)
    return draws.mean(0), draws.std(0) / repeats**0.5


@pytest.mark.parametrize("name", ["trace", "mean_field", "graph", "stl", "iwae"])
def test_elbo_gradients_are_unbiased(name):
    ppca, vae = _off_posterior_ppca()
    x = ppca.sample(1, seed=1)
    vae.zero_grad()
    (-_exact_elbo(vae, x)).backward()
    exact = _flat_grads(vae)
    mean, se = _mean_gradient(vae, x, name, num_particles=1, repeats=20, copies=2000)
    z = (mean - exact) / se
    assert z.abs().max() < 4.5, z
    assert (exact.abs() > 1e-3).sum() >= 8  # a real gradient, not zeros agreeing with zeros


def test_dreg_is_unbiased_for_the_iwae_bound():
    ppca, vae = _off_posterior_ppca(shift=0.4)
    x = ppca.sample(1, seed=1)
    dreg, dreg_se = _mean_gradient(vae, x, "dreg", num_particles=5, repeats=20, copies=2000)
    iwae, iwae_se = _mean_gradient(vae, x, "iwae", num_particles=5, repeats=20, copies=2000)
    elbo, _ = _mean_gradient(vae, x, "trace", num_particles=1, repeats=5, copies=2000)
    z = (dreg - iwae) / (dreg_se**2 + iwae_se**2).sqrt()
    assert z.abs().max() < 4.5, z
    assert ((iwae - elbo).abs() / iwae_se).max() > 10  # IWAE_5 is a different objective from the ELBO


def test_stl_guide_gradient_has_zero_variance_at_the_exact_posterior():
    ppca = PPCA.random(x_dim=4, z_dim=2, sigma=0.5, seed=0)
    vae = ppca.vae(exact_guide=True)
    x = ppca.sample(10, seed=1)
    stats = gradient_stats(vae.model, vae.guide, x, estimators=["trace", "stl", "dreg"], num_particles=3, repeats=30)
    assert stats["trace"].groups["guide"].variance > 1.0
    assert stats["stl"].groups["guide"].variance < 1e-20
    assert stats["dreg"].groups["guide"].variance < 1e-20
    assert stats["stl"].groups["model"].variance > 1.0  # the decoder's gradient is still random
    assert stats["stl"].loss == pytest.approx(-ppca.log_marginal(x).sum().item()) and stats["stl"].loss_se < 1e-10


def test_rainforth_signal_to_noise_effect():
    ppca, vae = _off_posterior_ppca(x_dim=5, z_dim=2, shift=0.05)
    x = ppca.sample(1, seed=1)
    snr = {}
    for K in (1, 10, 100):
        stats = gradient_stats(vae.model, vae.guide, x, estimators=["iwae", "dreg"], num_particles=K, repeats=200)
        snr[K] = {name: (s.groups["guide"].snr, s.groups["model"].snr) for name, s in stats.items()}
    # the guide's SNR falls with K (at K = 100 it is near the floor ~ 1/sqrt(repeats) of the SNR estimate itself)
    assert snr[100]["iwae"][0] < snr[10]["iwae"][0] < snr[1]["iwae"][0] and snr[100]["iwae"][0] < 0.5 * snr[1]["iwae"][0]
    assert snr[100]["dreg"][0] > 2 * snr[1]["dreg"][0]  # DReG's does not
    assert snr[100]["iwae"][1] > 3 * snr[1]["iwae"][1]  # the model's rises


def test_compare_a_hand_written_model():
    x = torch.randn(16) + 1.0
    assert parameter_groups(toy.model, toy.guide, x) == {"guide": ["s", "w"], "model": ["loc"]}
    stats = gradient_stats(toy.model, toy.guide, x, estimators=["trace", "mean_field", "stl", "iwae", "dreg"],
                           num_particles=4, repeats=40)
    for s in stats.values():
        assert s.groups["guide"].num_params == 2 and s.groups["model"].num_params == 1
        assert s.seconds_per_step > 0 and s.loss_se > 0
        assert s.groups["model"].snr > 1  # the prior mean's gradient is strong at loc = 0 < mean of x
    assert stats["mean_field"].groups["guide"].variance < stats["trace"].groups["guide"].variance


def test_race_on_a_hand_written_model():
    from inference.compare import race

    def make_pair():
        return toy.model, toy.guide

    data, test = torch.randn(128) + 1.5, torch.randn(64) + 1.5
    result = race(make_pair, data, test, estimators=["trace", "stl", ("iwae", 5), ("dreg", 5)], max_steps=60,
                  batch_size=32, lr=0.05, eval_samples=50)
    assert [(e.estimator, e.num_particles, e.steps) for e in result.entries] == [
        ("trace", 1, 60), ("stl", 1, 60), ("iwae", 5, 60), ("dreg", 5, 60)]
    exact = dist.Normal(1.5, 2**0.5).log_prob(test).mean().item()  # the model's best log-likelihood, about
    for e in result.entries:
        assert len(e.curve) == 15 and e.train_seconds > 0
        assert e.elbo <= e.log_px + 1e-6 and abs(e.log_px - exact) < 0.5
    assert result.table().count("\n") == 5 and "| dreg | 5 | 60 |" in result.table()
    assert result.csv().splitlines()[0] == "estimator,num_particles,steps,train_seconds,log_px,log_px_se,elbo"
    assert len(result.figure().axes[0].lines) == 4
