"""The enum estimator: exact sums over discrete latents (Pyro's TraceEnum_ELBO), checked against a
mixture's closed-form marginal, against trace in expectation, and in training."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from inference import evaluate, fit, make_elbo

WEIGHTS, LOCS, SCALE = torch.tensor([0.2, 0.5, 0.3]), torch.tensor([-3.0, 0.0, 2.5]), 0.8


def mixture(x):
    """y ~ Cat(WEIGHTS), x | y ~ N(LOCS[y], SCALE^2): log p(x) is a log-sum-exp in closed form."""
    with pyro.plate("data", len(x)):
        y = pyro.sample("y", dist.Categorical(WEIGHTS))
        pyro.sample("x", dist.Normal(LOCS[y], SCALE), obs=x)


def joint(x):
    """log p(x, y) for every y: (N, 3)."""
    return WEIGHTS.log() + dist.Normal(LOCS, SCALE).log_prob(x[:, None])


def exact_guide(x):
    with pyro.plate("data", len(x)):
        pyro.sample("y", dist.Categorical(logits=joint(x)))  # p(y | x)


def learned_guide(x):
    w = pyro.param("w", torch.zeros(3))
    b = pyro.param("b", torch.zeros(3))
    with pyro.plate("data", len(x)):
        pyro.sample("y", dist.Categorical(logits=x[:, None] * w + b))


X = torch.tensor([-3.5, -1.0, 0.2, 1.3, 2.9, 4.0])


def test_the_enumerated_elbo_with_the_exact_posterior_is_log_px():
    exact = torch.logsumexp(joint(X), -1).sum().item()
    assert -make_elbo("enum").loss(mixture, exact_guide, X) == pytest.approx(exact, abs=1e-4)
    # a worse guide gives a lower bound, exactly computed: log p(x) - KL(q || p(y|x)), no sampling noise
    losses = {make_elbo("enum").loss(mixture, learned_guide, X) for _ in range(3)}
    assert len(losses) == 1
    q = torch.full((len(X), 3), 1 / 3)
    kl = (q * (q.log() - (joint(X) - torch.logsumexp(joint(X), -1, keepdim=True)))).sum()
    assert -losses.pop() == pytest.approx(exact - kl.item(), abs=1e-4)


def test_evaluate_samples_discrete_latents_and_recovers_the_marginal():
    """Importance sampling over y with q = p(y|x): every weight equals p(x), so the estimate is exact."""
    result = evaluate(mixture, exact_guide, X, num_samples=50, ks=(1, 10), progress=False)
    assert result.log_px == pytest.approx(torch.logsumexp(joint(X), -1).mean().item(), abs=1e-5)
    assert result.elbo == pytest.approx(result.log_px, abs=1e-5)


def model_with_z(x):
    """A discrete and a continuous latent: y ~ Cat, z ~ N(0, 1), x ~ N(LOCS[y] + z, SCALE^2)."""
    with pyro.plate("data", len(x)):
        y = pyro.sample("y", dist.Categorical(WEIGHTS))
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(LOCS[y] + z, SCALE), obs=x)


def guide_with_z(x):
    w = pyro.param("w", torch.tensor([-0.5, 0.1, 0.4]))
    c = pyro.param("c", torch.tensor(0.3))
    with pyro.plate("data", len(x)):
        y = pyro.sample("y", dist.Categorical(logits=x[:, None] * w))
        pyro.sample("z", dist.Normal(c * (x - LOCS[y]), 0.7))


def _draws(name: str, repeats: int = 400):
    losses, grads = [], []
    for _ in range(repeats):
        pyro.clear_param_store()
        loss = make_elbo(name).differentiable_loss(model_with_z, guide_with_z, X)
        loss.backward()
        losses.append(loss.item())
        grads.append(pyro.param("w").unconstrained().grad.clone())
    return torch.tensor(losses), torch.stack(grads)


def test_enum_and_trace_agree_in_expectation_and_enum_has_lower_gradient_variance():
    pyro.set_rng_seed(0)
    trace_loss, trace_grad = _draws("trace")
    enum_loss, enum_grad = _draws("enum")
    se = (trace_loss.var() / len(trace_loss) + enum_loss.var() / len(enum_loss)).sqrt()
    assert abs(trace_loss.mean() - enum_loss.mean()) < 4 * se
    grad_se = (trace_grad.var(0) / len(trace_grad) + enum_grad.var(0) / len(enum_grad)).sqrt()
    assert ((trace_grad.mean(0) - enum_grad.mean(0)).abs() < 4 * grad_se + 1e-6).all()
    # the score-function term of y is gone: the classifier's gradient varies far less
    assert (enum_grad.var(0) < trace_grad.var(0) / 10).all(), (enum_grad.var(0), trace_grad.var(0))


def test_fit_with_enum_learns_a_mixture():
    """Locations and weights of a 3-component mixture, by maximum likelihood through the enumerated ELBO."""
    g = torch.Generator().manual_seed(0)
    y = torch.multinomial(WEIGHTS, 600, replacement=True, generator=g)
    x = LOCS[y] + SCALE * torch.randn(600, generator=g)

    def model(x):
        locs = pyro.param("locs", torch.tensor([-1.0, 0.1, 1.0]))
        weights = pyro.param("weights", torch.ones(3) / 3, constraint=dist.constraints.simplex)
        with pyro.plate("data", len(x)):
            y = pyro.sample("y", dist.Categorical(weights))
            pyro.sample("x", dist.Normal(locs[y], SCALE), obs=x)

    def guide(x):
        locs = pyro.param("locs", torch.tensor([-1.0, 0.1, 1.0]))
        weights = pyro.param("weights", torch.ones(3) / 3, constraint=dist.constraints.simplex)
        with pyro.plate("data", len(x)):  # the exact posterior under the current parameters
            logits = weights.log() + dist.Normal(locs, SCALE).log_prob(x[:, None])
            pyro.sample("y", dist.Categorical(logits=logits))

    fit(model, guide, x, estimator="enum", epochs=60, batch_size=600, lr=0.1, progress=False)
    assert torch.allclose(pyro.param("locs").detach(), LOCS, atol=0.2), pyro.param("locs")
    assert torch.allclose(pyro.param("weights").detach(), WEIGHTS, atol=0.06), pyro.param("weights")


def test_enum_cannot_be_compiled():
    with pytest.raises(ValueError, match="EnumELBO cannot be captured for a compiled step.*'trace'"):
        fit(mixture, learned_guide, X, estimator="enum", compile="graph", epochs=1, progress=False)
