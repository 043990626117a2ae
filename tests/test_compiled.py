"""Compiled steps: the captured loss and gradients equal eager Pyro's draw for draw, the compiled
gradient is unbiased under inductor's own RNG, schedules stay live, non-static models are refused,
and compiled training reaches the closed-form optimum (resumption after SIGKILL: test_checkpoint.py)."""

import itertools

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch._inductor.config

from inference import LinearWarmup, evaluate, fit, make_elbo, with_free_bits
from inference.compiled import Captured, NotStaticError
from inference.estimators import backward
from inference.graph_loss import graph_loss
from inference.scaling import beta_scale
from pyro_vae import PPCA, VAE
from test_compare import _exact_elbo, _flat_grads, _off_posterior_ppca
import toy  # tests/toy.py: a hand-written model and guide


def _eager_and_captured(model, guide, params, elbo, x, *, scales=(), compiler="graph", mode=None, **kwargs):
    """(loss, grads) of the eager estimator and of its captured graph, from the same random draws."""
    results = []
    for captured in (False, True):
        for p in params:
            p.grad = None
        pyro.set_rng_seed(1)
        if captured:
            step = Captured(lambda x: graph_loss(elbo)(model, guide, x, **kwargs), params=params, gradients=True,
                            scales=scales, compiler=compiler, mode=mode)
            loss, grads, grad_sum = step(x)
            assert torch.allclose(grad_sum, sum(g.sum() for g in grads if g is not None), rtol=1e-4, atol=1e-4)
            for p, g in zip(params, grads):
                p.grad = g
        else:
            loss = backward(elbo, model, guide, x, **kwargs)
        results.append((loss.detach().double(), [None if p.grad is None else p.grad.clone() for p in params]))
    return results


def _assert_same(eager, captured, rtol=1e-5, atol=1e-6):
    (eager_loss, eager_grads), (captured_loss, captured_grads) = eager, captured
    assert torch.allclose(captured_loss, eager_loss, rtol=rtol, atol=atol), (captured_loss, eager_loss)
    assert sum(g is not None for g in eager_grads) > 0
    for i, (a, b) in enumerate(zip(eager_grads, captured_grads)):
        assert (a is None) == (b is None), i
        if a is not None:
            assert torch.allclose(b, a, rtol=rtol, atol=atol), (i, (b - a).abs().max())


def _vae(**parts):
    torch.manual_seed(0)
    return VAE((1, 4, 4), z_dim=2, hidden=(8,), **parts)


def _binary_batch(n=12):
    return torch.bernoulli(torch.full((n, 1, 4, 4), 0.3))


PRIORS, GUIDES = ["standard_normal", "learned_normal", "mixture", "vamp", "flow"], ["diagonal", "low_rank", "full", "iaf"]


@pytest.mark.parametrize("prior,guide", list(itertools.product(PRIORS, GUIDES)), ids=lambda v: v)
def test_every_prior_and_guide_captures_to_the_eager_loss_and_gradients(prior, guide):
    vae = _vae(prior=prior, guide=guide)
    x = _binary_batch()
    _assert_same(*_eager_and_captured(vae.model, vae.guide, list(vae.parameters()), make_elbo("trace"), x,
                                      num_data=120))


LIKELIHOOD_DATA = {
    "bernoulli": lambda: _binary_batch(),
    "continuous_bernoulli": lambda: torch.rand(12, 1, 4, 4),
    "gaussian": lambda: torch.rand(12, 1, 4, 4),
    "gaussian_learned": lambda: torch.rand(12, 1, 4, 4),
    "laplace": lambda: torch.rand(12, 1, 4, 4),
    "beta": lambda: torch.rand(12, 1, 4, 4).clamp(0.01, 0.99),
    "discretized_logistic": lambda: torch.randint(0, 256, (12, 1, 4, 4)).float() / 255,
}


@pytest.mark.parametrize("likelihood", list(LIKELIHOOD_DATA))
def test_every_likelihood_captures_to_the_eager_loss_and_gradients(likelihood):
    vae = _vae(likelihood=likelihood)
    x = LIKELIHOOD_DATA[likelihood]()
    _assert_same(*_eager_and_captured(vae.model, vae.guide, list(vae.parameters()), make_elbo("mean_field"), x,
                                      num_data=120))


ESTIMATORS = {
    "trace": lambda: make_elbo("trace"),
    "trace_particles": lambda: make_elbo("trace", num_particles=3),
    "mean_field": lambda: make_elbo("mean_field"),
    "stl": lambda: make_elbo("stl"),
    "iwae": lambda: make_elbo("iwae", num_particles=3),
    "renyi": lambda: make_elbo("renyi", num_particles=3, alpha=0.5),
    "dreg": lambda: make_elbo("dreg", num_particles=3),
    "trace_free_bits": lambda: with_free_bits(make_elbo("trace"), 0.5),
    "mean_field_free_bits": lambda: with_free_bits(make_elbo("mean_field"), 0.5),
}


@pytest.mark.parametrize("estimator", list(ESTIMATORS))
def test_every_estimator_captures_under_beta_and_subsampling(estimator):
    """beta = 2.5 through the handler (a graph input) and a plate of 120 around a batch of 12."""
    vae = _vae(guide="diagonal")
    scaled = beta_scale(vae.model, vae.guide, beta=2.5)
    x = _binary_batch()
    _assert_same(*_eager_and_captured(scaled.model, scaled.guide, list(vae.parameters()), ESTIMATORS[estimator](), x,
                                      scales=[scaled.handler], num_data=120))


def two_layer_model(x):
    """z1 ~ N(loc, 1), z2 | z1 ~ N(z1, 1), x | z2 ~ N(z2, 1): two latent sites under the data plate."""
    loc = pyro.param("loc", torch.tensor(0.3))
    with pyro.plate("data", len(x)):
        z1 = pyro.sample("z1", dist.Normal(loc, 1.0))
        z2 = pyro.sample("z2", dist.Normal(z1, 1.0))
        pyro.sample("x", dist.Normal(z2, 1.0), obs=x)


def two_layer_guide(x):
    a = pyro.param("a", torch.tensor(0.4))
    b = pyro.param("b", torch.tensor(0.2))
    s = pyro.param("s", torch.tensor(0.8), constraint=dist.constraints.positive)
    with pyro.plate("data", len(x)):
        z2 = pyro.sample("z2", dist.Normal(a * x, s))
        pyro.sample("z1", dist.Normal(b * z2, s))


# the guide draws z2 before z1, so Pyro rightly warns that the analytic KLs of "mean_field" are not those of a
# mean-field guide; this test asks only that the captured step computes what the eager one does
@pytest.mark.filterwarnings("ignore:Failed to verify mean field restriction:UserWarning")
@pytest.mark.parametrize("estimator", ["trace", "mean_field", "stl", "iwae", "dreg"])
def test_a_hand_written_model_with_two_latent_sites_captures(estimator):
    x = torch.linspace(-2.0, 2.0, 10)
    two_layer_model(x), two_layer_guide(x)
    params = [pyro.param(n).unconstrained() for n in ("loc", "a", "b", "s")]
    scaled = beta_scale(two_layer_model, two_layer_guide, beta=0.7, sites=("z1", "z2"))
    elbo = make_elbo(estimator, num_particles=1 if estimator in ("trace", "mean_field", "stl") else 4)
    _assert_same(*_eager_and_captured(scaled.model, scaled.guide, params, elbo, x, scales=[scaled.handler]))


def test_inductor_with_eager_random_draws_computes_the_eager_loss_and_gradients():
    vae = _vae(guide="diagonal")
    scaled = beta_scale(vae.model, vae.guide, beta=1.5)
    with torch._inductor.config.patch(fallback_random=True):
        eager, compiled = _eager_and_captured(scaled.model, scaled.guide, list(vae.parameters()), make_elbo("trace"),
                                              _binary_batch(), scales=[scaled.handler], compiler="inductor",
                                              num_data=120)
    _assert_same(eager, compiled, rtol=1e-4, atol=1e-5)  # inductor fuses and reorders float arithmetic


def test_compiled_gradient_is_unbiased_under_inductors_own_random_numbers():
    """A z-test against the closed-form ELBO gradient of an off-posterior linear-Gaussian VAE."""
    ppca, vae = _off_posterior_ppca()
    x = ppca.sample(1, seed=1)
    vae.zero_grad()
    (-_exact_elbo(vae, x)).backward()
    exact = _flat_grads(vae)
    copies, repeats = 2000, 20
    data = x.expand(copies, x.shape[-1]).contiguous()
    loss = graph_loss(make_elbo("trace"))
    step = Captured(lambda x: loss(vae.model, vae.guide, x), params=list(vae.parameters()), gradients=True,
                    compiler="inductor")
    draws = []
    for _ in range(repeats):
        _, grads, _ = step(data)
        draws.append(torch.cat([g.flatten() for g in grads]) / copies)
    draws = torch.stack(draws)
    z = (draws.mean(0) - exact) / (draws.std(0) / repeats**0.5)
    assert z.abs().max() < 4.5, z
    assert (draws[0] != draws[1]).any()  # the graph draws fresh noise at every call


def _fit_vae(**options):
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = VAE((1, 4, 4), z_dim=3, hidden=(8,))
    x = torch.bernoulli(torch.full((100, 1, 4, 4), 0.3), generator=torch.Generator().manual_seed(0))
    result = fit(vae.model, vae.guide, x, batch_size=32, epochs=3, progress=False, lr=0.01, **options)
    return torch.cat([p.detach().flatten() for p in vae.parameters()]), result


@pytest.mark.parametrize("options", [
    {"beta": LinearWarmup(steps=10)},
    {"free_bits": 0.5, "estimator": "mean_field"},
], ids=["warmup", "free_bits"])
def test_schedules_and_free_bits_change_a_compiled_run_as_an_eager_one(options):
    """Same draws ("graph" compiler): the compiled run equals the eager run step for step. A beta
    frozen at its captured value would not: the runs with and without the option differ."""
    eager, eager_result = _fit_vae(**options)
    compiled, result = _fit_vae(compile="graph", **options)
    assert torch.allclose(compiled, eager, rtol=1e-5, atol=1e-6)
    assert [r["train_loss"] for r in result.metrics] == pytest.approx([r["train_loss"] for r in eager_result.metrics])
    frozen = {"beta": 0.0} if "beta" in options else {"estimator": "mean_field"}  # warm-up starts at beta = 0
    without, _ = _fit_vae(compile="graph", **frozen)
    assert not torch.allclose(compiled, without, atol=1e-4)


def test_the_last_partial_batch_is_captured_once_more():
    x = torch.linspace(-1, 1, 10)
    loss = graph_loss(make_elbo("trace"))
    step = Captured(lambda x: loss(toy.model, toy.guide, x), gradients=True, compiler="graph")
    step(x[:4]), step(x[4:8]), step(x[8:])
    assert step.num_graphs == 2
    assert step(x[:2])[0].shape == () and step.num_graphs == 2  # the cached graph of batch size 2


def test_data_dependent_control_flow_is_refused():
    def model(x):
        loc = pyro.param("loc", torch.tensor(0.0))
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(loc, 1.0))
            if z.mean() > 0:  # reads a tensor's value
                z = z * 2
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    with pytest.raises(NotStaticError, match=r"reads a tensor's value .*drop compile=True"):
        fit(model, toy.guide, torch.randn(20), batch_size=10, epochs=1, compile="graph", progress=False)


def test_a_model_whose_sites_change_between_steps_is_stopped():
    calls = []

    def model(x):
        calls.append(1)
        loc = pyro.param("loc", torch.tensor(0.0))
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(loc, 1.0))
            if len(calls) > 3:  # Python state: a new site from the fourth run on
                z = pyro.sample("extra", dist.Normal(z, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    with pytest.raises(NotStaticError, match=r"structure changed .*'extra'.*drop compile=True"):
        fit(model, toy.guide, torch.randn(2010), batch_size=10, epochs=1, compile="graph", progress=False)


def test_estimators_without_a_value_free_loss_are_refused_before_training():
    with pytest.raises(ValueError, match="compiled steps take the estimators 'trace', 'mean_field'"):
        fit(toy.model, toy.guide, torch.randn(20), estimator="graph", compile=True, progress=False)
    with pytest.raises(ValueError, match="unknown compiler 'jit'; valid choices: 'inductor', 'aot_eager', 'graph'"):
        fit(toy.model, toy.guide, torch.randn(20), compile="jit", progress=False)


def test_compiled_ppca_reaches_the_closed_form_maximum_likelihood():
    truth = PPCA.random(x_dim=5, z_dim=2, sigma=0.5, seed=0)
    x = truth.sample(1000, seed=1).float()
    best = PPCA.maximum_likelihood(x.double(), z_dim=2).log_marginal(x.double()).mean().item()
    torch.manual_seed(0)
    vae = PPCA(torch.randn(5, 2), torch.zeros(5), 1.0).vae(exact_guide=False, learn_scale=True)
    result = fit(vae.model, vae.guide, x, estimator="mean_field", epochs=150, batch_size=250, lr=0.03, lr_decay=0.98,
                 compile=True, progress=False)
    assert result.compile_seconds > 0
    scored = evaluate(vae.model, vae.guide, x, num_samples=200, ks=(1, 200), progress=False, compile=True)
    assert scored.log_px == pytest.approx(best, abs=0.01)
    # the guide family holds the exact posterior: the ELBO meets log p(x) up to the optimizer's last noise
    # (0.004 and 0.008 nats in the eager and compiled runs of this set-up: other random draws)
    assert scored.elbo == pytest.approx(best, abs=0.015)


def test_compiled_evaluation_equals_eager_with_the_same_draws_and_the_exact_marginal():
    ppca = PPCA.random(x_dim=5, z_dim=2, sigma=0.5, seed=0)
    x = ppca.sample(50, seed=2)
    vae = ppca.vae(exact_guide=False)
    scores = []
    for compile in (False, "graph"):
        pyro.set_rng_seed(3)
        scores.append(evaluate(vae.model, vae.guide, x, num_samples=60, ks=(1, 6, 60), budget=700, progress=False,
                               compile=compile))
    eager, captured = scores
    assert captured.log_px == pytest.approx(eager.log_px, abs=1e-9) and captured.iwae_curve == eager.iwae_curve
    assert captured.latent_variance == pytest.approx(eager.latent_variance)
    exact_guide = ppca.vae(exact_guide=True)  # every importance weight is p(x): the estimate is exact
    scored = evaluate(exact_guide.model, exact_guide.guide, x, num_samples=10, ks=(1, 10), progress=False,
                      compile="aot_eager")
    assert scored.log_px == pytest.approx(ppca.log_marginal(x).mean().item(), abs=1e-6)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (benchmarks/device_check.sh runs these on one)")


@pytest.mark.cuda
@needs_cuda
def test_cuda_graphs_step_computes_the_eager_loss_and_gradients():
    """inductor with mode="reduce-overhead" (CUDA graphs) and eager random draws, on the GPU."""
    vae = _vae(guide="diagonal").cuda()
    scaled = beta_scale(vae.model, vae.guide, beta=LinearWarmup(steps=4))
    scaled.step = 2
    x = _binary_batch().cuda()
    with torch._inductor.config.patch(fallback_random=True):
        eager, compiled = _eager_and_captured(scaled.model, scaled.guide, list(vae.parameters()), make_elbo("trace"),
                                              x, scales=[scaled.handler], compiler="inductor",
                                              mode="reduce-overhead", num_data=120)
    _assert_same(eager, compiled, rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
@needs_cuda
def test_cuda_compiled_fit_and_evaluate_reach_the_ppca_optimum():
    truth = PPCA.random(x_dim=5, z_dim=2, sigma=0.5, seed=0)
    x = truth.sample(1000, seed=1).float()
    best = PPCA.maximum_likelihood(x.double(), z_dim=2).log_marginal(x.double()).mean().item()
    torch.manual_seed(0)
    vae = PPCA(torch.randn(5, 2), torch.zeros(5), 1.0).vae(exact_guide=False, learn_scale=True).cuda()
    # twice the CPU test's schedule: on an H200 (2026-12-04) 150 epochs left the ELBO 0.0151 nats short of
    # log p(x), the guide's rotation not yet settled; 300 epochs at lr decay 0.99 leave 0.002-0.003 on CPU
    fit(vae.model, vae.guide, x, estimator="mean_field", epochs=300, batch_size=250, lr=0.03, lr_decay=0.99,
        compile=True, device="cuda", progress=False)
    scored = evaluate(vae.model, vae.guide, x, num_samples=200, ks=(1, 200), progress=False, compile=True,
                      device="cuda")
    assert scored.log_px == pytest.approx(best, abs=0.01)
    assert scored.elbo == pytest.approx(best, abs=0.015)
