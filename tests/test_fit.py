"""fit() trains any Pyro model/guide pair: a hand-written one, probabilistic PCA to
its closed-form maximum likelihood, and the options change what they promise."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from inference import LinearWarmup, evaluate, fit, make_elbo, with_free_bits
from inference.svi import fused_adam
from pyro_vae import PPCA, VAE
from pyro_vae.likelihoods import Gaussian

SIGMA = 0.8


def conjugate_model(x):
    """z ~ N(0, 1), x | z ~ N(z, SIGMA^2): p(z | x) = N(x / (1 + SIGMA^2), SIGMA^2 / (1 + SIGMA^2))."""
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, SIGMA), obs=x)


def conjugate_guide(x):
    a = pyro.param("a", torch.tensor(0.0))
    b = pyro.param("b", torch.tensor(0.5))
    s = pyro.param("s", torch.tensor(1.0), constraint=dist.constraints.positive)
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(a * x + b, s))


def test_hand_written_model_trains_to_the_exact_posterior_and_is_scored():
    x = torch.randn(512) * (1 + SIGMA**2) ** 0.5
    result = fit(conjugate_model, conjugate_guide, x, estimator="mean_field", epochs=60, batch_size=128, lr=0.03, progress=False)
    assert len(result.metrics) == 60 and result.metrics[-1]["train_loss"] < result.metrics[0]["train_loss"]
    assert pyro.param("a").item() == pytest.approx(1 / (1 + SIGMA**2), abs=0.03)
    assert pyro.param("b").item() == pytest.approx(0.0, abs=0.05)
    assert pyro.param("s").item() == pytest.approx((SIGMA**2 / (1 + SIGMA**2)) ** 0.5, abs=0.03)
    scored = evaluate(conjugate_model, conjugate_guide, x, num_samples=100, ks=(1, 10, 100), progress=False)
    exact = dist.Normal(0.0, (1 + SIGMA**2) ** 0.5).log_prob(x).mean().item()
    assert scored.log_px == pytest.approx(exact, abs=0.01)
    assert scored.elbo <= scored.log_px + 1e-6


def test_ppca_reaches_the_closed_form_maximum_likelihood():
    truth = PPCA.random(x_dim=5, z_dim=2, sigma=0.5, seed=0)
    x = truth.sample(1000, seed=1).float()
    best = PPCA.maximum_likelihood(x.double(), z_dim=2).log_marginal(x.double()).mean().item()
    start = PPCA(torch.randn(5, 2), torch.zeros(5), 1.0)
    vae = start.vae(exact_guide=False, learn_scale=True)
    fit(vae.model, vae.guide, x, estimator="mean_field", epochs=150, batch_size=250, lr=0.03, lr_decay=0.98,
        progress=False)
    scored = evaluate(vae.model, vae.guide, x, num_samples=200, ks=(1, 200), progress=False)
    # the guide family holds the exact posterior, so at the optimum the ELBO is the maximum log-likelihood
    assert scored.log_px == pytest.approx(best, abs=0.01)
    assert scored.elbo == pytest.approx(best, abs=0.01)
    assert scored.log_px <= best + 3 * scored.log_px_se + 1e-3


def test_importance_weighted_log_px_matches_the_exact_marginal():
    ppca = PPCA.random(x_dim=5, z_dim=2, sigma=0.5, seed=0)
    x = ppca.sample(200, seed=2)
    vae = ppca.vae(exact_guide=True)
    with torch.no_grad():  # a guide that is off, so the bound is not trivially tight
        vae.guide_family.head.bias.add_(0.3)
    exact = ppca.log_marginal(x)
    scored = evaluate(vae.model, vae.guide, x, num_samples=2000, ks=(1, 10, 100, 1000), budget=8000, progress=False)
    mean_exact = exact.mean().item()
    assert abs(scored.log_px - mean_exact) < 0.05
    assert abs(scored.log_px - mean_exact) < 3 * scored.log_px_se + 0.01
    assert scored.elbo < scored.log_px
    curve = list(scored.iwae_curve.values())
    assert curve == sorted(curve) and curve[0] == pytest.approx(scored.elbo, abs=1e-9)
    assert scored.reconstruction - scored.kl == pytest.approx(scored.elbo, abs=1e-9)
    # datum by datum: each estimate near its exact marginal, and log p(x) >= IWAE-k >= ELBO (Jensen, per datum)
    per_datum = scored.per_datum
    assert per_datum["log_px"].shape == (200,) and per_datum["log_px"].mean().item() == pytest.approx(scored.log_px)
    errors = (per_datum["log_px"] - exact.double()).abs()  # in the data's order: the data differ by nats
    assert errors.mean() < 0.1 and errors.max() < 1.0 and exact.std() > 1.0
    assert (per_datum["log_px"] >= per_datum[100] - 1e-9).all() and (per_datum[10] >= per_datum["elbo"] - 1e-9).all()


def test_evaluation_does_not_depend_on_the_memory_budget():
    ppca = PPCA.random(x_dim=5, z_dim=2, sigma=0.5, seed=0)
    x = ppca.sample(30, seed=2)
    vae = ppca.vae(exact_guide=True)
    small = evaluate(vae.model, vae.guide, x, num_samples=100, ks=(1, 10), budget=50, progress=False)
    large = evaluate(vae.model, vae.guide, x, num_samples=100, ks=(1, 10), budget=10**6, progress=False)
    assert small.log_px == pytest.approx(large.log_px, abs=1e-7)  # exact guide: every weight is log p(x)
    with pytest.raises(ValueError, match="must divide num_samples=100; \\[30\\]"):
        evaluate(vae.model, vae.guide, x, num_samples=100, ks=(1, 30), progress=False)


def test_two_true_dimensions_give_two_active_units():
    truth = PPCA.random(x_dim=10, z_dim=2, sigma=0.3, seed=3)
    x = truth.sample(2000, seed=4).float()
    likelihood = Gaussian((10,), scale=1.0, learn_scale=True, per_pixel=False)  # isotropic noise, as in the data
    vae = VAE((10,), z_dim=6, likelihood=likelihood, hidden=(64,))
    fit(vae.model, vae.guide, x, estimator="mean_field", epochs=40, batch_size=200, lr=0.01, progress=False)
    scored = evaluate(vae.model, vae.guide, x[:500], num_samples=10, ks=(1,), progress=False)
    assert scored.active_units == 2, scored.latent_variance
    assert sorted(scored.kl_per_dim, reverse=True)[2] < 0.05  # the other four have collapsed to the prior
    assert 0.5 < scored.mutual_information <= torch.log(torch.tensor(500.0)).item()


def test_free_bits_change_the_gradient_only_below_the_floor():
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((32, 1, 4, 4), 0.3))
    vae = VAE((1, 4, 4), z_dim=4, hidden=(8,))
    with torch.no_grad():  # dims 0, 1 far from the prior (KL > floor), dims 2, 3 close (KL < floor)
        vae.guide_family.head.weight.mul_(0.01)
        vae.guide_family.head.bias.copy_(torch.tensor([2.0, -2.0, 0.05, 0.0, 0.54, 0.54, 0.54, 0.54]))
    kl = torch.distributions.kl_divergence(vae.posterior(x).base_dist, vae.prior().base_dist).mean(0)
    floor = 0.5
    assert (kl[:2] > floor).all() and (kl[2:] < floor).all()

    def head_grad(elbo, beta_zero=False):
        model, guide = vae.model, vae.guide
        if beta_zero:
            from inference import beta_scale

            scaled = beta_scale(model, guide, beta=0.0)
            model, guide = scaled.model, scaled.guide
        vae.zero_grad()
        pyro.set_rng_seed(1)
        elbo.differentiable_loss(model, guide, x).backward()
        return vae.guide_family.head.bias.grad.clone()

    plain = head_grad(make_elbo("mean_field"))
    floored = head_grad(with_free_bits(make_elbo("mean_field"), floor))
    reconstruction_only = head_grad(make_elbo("mean_field"), beta_zero=True)
    above, below = [0, 1, 4, 5], [2, 3, 6, 7]  # loc and scale entries of each dim
    assert torch.allclose(floored[above], plain[above], atol=1e-6)
    assert torch.allclose(floored[below], reconstruction_only[below], atol=1e-6)
    assert not torch.allclose(floored[below], plain[below], atol=1e-3)


def test_free_bits_and_beta_change_training():
    truth = PPCA.random(x_dim=6, z_dim=2, sigma=0.5, seed=5)
    x = truth.sample(600, seed=6).float()
    validation = truth.sample(200, seed=7).float()

    def final_kl(**options):
        pyro.clear_param_store()
        torch.manual_seed(0)
        vae = VAE((6,), z_dim=3, likelihood="gaussian_learned", hidden=(16,))
        result = fit(vae.model, vae.guide, x, validation=validation, estimator="mean_field", epochs=15,
                     batch_size=100, lr=0.01, progress=False, **options)
        return result.metrics[-1]["val_kl"], result

    kl_one, _ = final_kl()
    kl_strong, _ = final_kl(beta=30.0)
    kl_floor, _ = final_kl(beta=30.0, free_bits=1.0)
    assert kl_strong < 0.3 * kl_one  # a strong beta squeezes the KL
    assert kl_floor > 2.7 and kl_floor > 1.5 * kl_strong  # free bits hold the 3 dims near 1 nat each
    _, warm = final_kl(beta=LinearWarmup(steps=60))
    betas = [row["beta"] for row in warm.metrics]
    assert betas[0] == pytest.approx(5 / 60) and betas[-1] == 1.0  # beta of each epoch's last step (6 steps an epoch)


def _params_after(**options):
    pyro.clear_param_store()
    x = torch.linspace(-2, 2, 64)
    fit(conjugate_model, conjugate_guide, x, batch_size=16, progress=False, **options)
    return {name: pyro.param(name).detach().clone() for name in ("a", "b", "s")}


def test_training_options_take_effect():
    start = {"a": torch.tensor(0.0), "b": torch.tensor(0.5), "s": torch.tensor(1.0)}
    moved = _params_after(epochs=2, lr=0.05)
    clipped = _params_after(epochs=2, lr=0.05, clip_norm=1e-12)  # a vanishing gradient: Adam's eps dominates
    assert (moved["b"] - start["b"]).abs() > 0.05 and (clipped["b"] - start["b"]).abs() < 1e-3
    assert torch.equal(_params_after(epochs=2, seed=3)["a"], _params_after(epochs=2, seed=3)["a"])
    assert not torch.equal(_params_after(epochs=2, seed=3)["a"], _params_after(epochs=2, seed=4)["a"])

    seen = []
    result = fit(conjugate_model, conjugate_guide, torch.randn(32), batch_size=16, epochs=3, lr_decay=0.5,
                 optimizer="clipped_adam", callbacks=[seen.append], progress=False)
    assert [row["lr"] for row in result.metrics] == [1e-3, 5e-4, 2.5e-4]
    assert seen == result.metrics
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'; valid choices: 'adam', 'clipped_adam'"):
        fit(conjugate_model, conjugate_guide, torch.randn(32), optimizer="sgd", progress=False)
    with pytest.raises(ValueError, match="free bits work with estimator 'trace' or 'mean_field'"):
        fit(conjugate_model, conjugate_guide, torch.randn(32), estimator="iwae", num_particles=2, free_bits=0.5,
            progress=False)


@pytest.mark.parametrize("estimator", ["trace", "mean_field", "graph", "iwae", "renyi", "tail_adaptive", "stl", "dreg"])
def test_fit_trains_under_every_estimator(estimator):
    """RenyiELBO has no differentiable_loss and DReG is no Pyro ELBO subclass: fit must drive all of them."""
    x = torch.randn(64) * (1 + SIGMA**2) ** 0.5
    result = fit(conjugate_model, conjugate_guide, x, estimator=estimator, num_particles=4, epochs=8, batch_size=32,
                 lr=0.05, progress=False)
    assert pyro.param("a").item() > 0.3  # from 0 towards the exact 1 / (1 + SIGMA^2) = 0.61
    losses = [row["train_loss"] for row in result.metrics]
    if estimator == "tail_adaptive":  # gradients only: no loss value to report
        assert all(loss != loss for loss in losses)
    else:
        assert all(abs(loss) < 1e3 for loss in losses)


def test_a_second_vae_in_the_same_param_store_is_the_one_trained():
    """pyro.module hands back the param store's tensors for a known name: the VAE must make its own win."""
    truth = PPCA.random(x_dim=5, z_dim=2, sigma=0.5, seed=0)
    x = truth.sample(100, seed=1).float()
    first, second = VAE((5,), z_dim=2, likelihood="gaussian", hidden=(8,)), VAE((5,), z_dim=2, likelihood="gaussian", hidden=(8,))
    fit(first.model, first.guide, x, epochs=1, batch_size=50, progress=False)
    before = {k: v.detach().clone() for k, v in second.state_dict().items()}
    first_after = {k: v.detach().clone() for k, v in first.state_dict().items()}
    fit(second.model, second.guide, x, epochs=1, batch_size=50, progress=False)  # no clear_param_store in between
    assert all(not torch.equal(before[k], v) for k, v in second.state_dict().items() if k in dict(second.named_parameters()))
    assert all(torch.equal(first_after[k], v) for k, v in first.state_dict().items())


def test_max_seconds_is_a_wall_clock_budget():
    x = torch.randn(4096)
    result = fit(conjugate_model, conjugate_guide, x, batch_size=8, epochs=1000, max_seconds=0.5, progress=False)
    assert 0 < result.step < 1000 * 512 and result.epoch < 1000
    assert result.seconds < 5  # stopped by the budget, not by the epochs


def test_fused_adam_takes_the_steps_of_the_default_adam():
    target = torch.randn(50, 7)
    runs = {}
    for name, make in {"fused": fused_adam, "default": lambda ps, lr: torch.optim.Adam(ps, lr=lr)}.items():
        w = torch.zeros(50, 7, requires_grad=True)
        optimizer = make([w], lr=0.05)
        for _ in range(30):
            optimizer.zero_grad()
            ((w - target) ** 4).sum().backward()
            optimizer.step()
        runs[name] = (w.detach(), optimizer.defaults["fused"])
    assert runs["fused"][1] is True and runs["default"][1] is None
    assert not torch.equal(runs["fused"][0], torch.zeros(50, 7))
    torch.testing.assert_close(runs["fused"][0], runs["default"][0], rtol=1e-5, atol=1e-6)


def test_fused_adam_falls_back_where_torch_has_no_fused_kernel():
    w = torch.zeros(3, dtype=torch.complex64, requires_grad=True)
    optimizer = fused_adam([w], lr=0.1)
    (w.abs() ** 2 - 2 * w.real).sum().backward()
    optimizer.step()  # a fused optimizer would raise here: complex tensors have no fused kernel
    assert optimizer.defaults["fused"] is None and w.real[0].item() == pytest.approx(0.1, rel=1e-4)
