"""The hierarchical VAE: a two-layer linear-Gaussian hierarchy (z2 -> z1 -> x) with its exact
posterior as guide gives ELBO = log p(x) in closed form, and evaluate recovers it; it trains with fit."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from inference import evaluate, fit, make_elbo
from pyro_vae.hierarchical import HierarchicalVAE
from pyro_vae.likelihoods import Gaussian

A, A0, T1 = 0.8, 0.3, 0.6  # z1 | z2 ~ N(A z2 + A0, T1^2), z2 ~ N(0, 1)
B, BIAS, SIGMA = [1.0, -0.5, 2.0], [0.1, 0.2, -0.3], 0.5  # x | z1 ~ N(B z1 + BIAS, SIGMA^2 I)


INVERSE_SCALES = {"softplus": lambda s: math.log(math.expm1(s)), "exp": math.log}


def _set(layer, weight, bias, scale):
    """A GaussianLayer with no hidden units: loc = weight . input + bias, a constant scale."""
    family = layer.family
    head = family.head
    with torch.no_grad():
        head.weight.zero_()
        head.weight[0] = torch.as_tensor(weight, dtype=head.weight.dtype)
        head.bias[0] = bias
        head.bias[1] = INVERSE_SCALES[family.scale](scale - family.min_scale)


def _linear_gaussian(exact_guide: bool = True, scale: str = "softplus"):
    """The hierarchy, its marginal p(x) and (as the guide) its exact posterior p(z1 | x) p(z2 | z1)."""
    vae = HierarchicalVAE((3,), z_dims=(1, 1), hidden=((), ()), likelihood=Gaussian((3,), scale=SIGMA),
                          scale=scale).double()
    b, bias = torch.tensor(B, dtype=torch.float64), torch.tensor(BIAS, dtype=torch.float64)
    _set(vae.decoders[0], [A], A0, T1)
    with torch.no_grad():
        vae.decoder[-1].weight.copy_(b[:, None])
        vae.decoder[-1].bias.copy_(bias)
    m1, v1 = A0, A**2 + T1**2  # z1's marginal
    precision1 = 1 / v1 + (b @ b).item() / SIGMA**2
    w1 = b / SIGMA**2 / precision1
    c1 = (m1 / v1 - (b @ bias).item() / SIGMA**2) / precision1
    precision2 = 1 + A**2 / T1**2  # p(z2 | z1): x adds nothing once z1 is known
    w2, c2 = A / T1**2 / precision2, -A * A0 / T1**2 / precision2
    shift = 0.0 if exact_guide else 0.4
    _set(vae.encoders[0], w1.tolist(), c1 + shift, precision1**-0.5)
    _set(vae.encoders[1], [w2], c2, precision2**-0.5)
    marginal = dist.MultivariateNormal(bias + b * m1, SIGMA**2 * torch.eye(3, dtype=torch.float64) + v1 * torch.outer(b, b))
    return vae, marginal


@pytest.mark.parametrize("scale", ["softplus", "exp"])
def test_the_exact_posterior_makes_the_elbo_the_closed_form_log_likelihood(scale):
    vae, marginal = _linear_gaussian(scale=scale)
    x = marginal.sample((40,))
    exact = marginal.log_prob(x)
    elbo = -make_elbo("trace", num_particles=8).loss(vae.model, vae.guide, x)
    assert elbo == pytest.approx(exact.sum().item(), rel=1e-9)
    scored = evaluate(vae.model, vae.guide, x, num_samples=20, ks=(1, 20), latent_site="z2", progress=False)
    assert scored.log_px == pytest.approx(exact.mean().item(), abs=1e-7)
    assert scored.elbo == pytest.approx(exact.mean().item(), abs=1e-7)


def test_another_guide_is_below_and_importance_weighting_recovers_log_px():
    vae, marginal = _linear_gaussian(exact_guide=False)
    x = marginal.sample((40,))
    exact = marginal.log_prob(x).mean().item()
    scored = evaluate(vae.model, vae.guide, x, num_samples=2000, ks=(1, 2000), latent_site="z2", progress=False)
    assert scored.elbo < exact - 0.1  # the KL to the posterior
    assert scored.log_px == pytest.approx(exact, abs=max(0.02, 3 * scored.log_px_se))


def test_a_two_layer_vae_trains_under_fit_with_beta_on_both_layers():
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((96, 1, 4, 4), 0.3))
    vae = HierarchicalVAE((1, 4, 4), z_dims=(4, 2), hidden=((16,), (8,)))
    before = evaluate(vae.model, vae.guide, x, num_samples=10, ks=(1, 10), latent_site="z2", progress=False).elbo
    result = fit(vae.model, vae.guide, x, epochs=30, batch_size=32, lr=0.01, latent_sites=vae.latent_sites,
                 beta=0.5, progress=False)
    after = evaluate(vae.model, vae.guide, x, num_samples=10, ks=(1, 10), latent_site="z2", progress=False).elbo
    assert after > before + 1.0 and result.step == 90


def test_bad_hierarchies_are_refused():
    with pytest.raises(ValueError, match="one tuple of sizes per stochastic layer"):
        HierarchicalVAE((3,), z_dims=(2, 1), hidden=((4,),))
    with pytest.raises(ValueError, match="prior='vamp' is defined through q"):
        HierarchicalVAE((3,), z_dims=(2,), hidden=((4,),), prior="vamp")
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        HierarchicalVAE((3,), z_dims=(2,), hidden=((4,),), activation="gelu")
    with pytest.raises(ValueError, match="unknown scale 'relu'; valid choices: 'softplus', 'exp'"):
        HierarchicalVAE((3,), z_dims=(2,), hidden=((4,),), scale="relu")
    with pytest.raises(ValueError, match="unknown init 'lecun'; valid choices: 'torch', 'glorot', 'he'"):
        HierarchicalVAE((3,), z_dims=(2,), hidden=((4,),), init="lecun")


def test_glorot_init_gives_zero_biases_and_weights_of_variance_two_over_fan_in_plus_fan_out():
    torch.manual_seed(0)
    vae = HierarchicalVAE((1, 28, 28), z_dims=(100, 50), hidden=((200, 200), (100, 100)), init="glorot")
    linears = [m for m in vae.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 2 * (3 + 3)  # per layer: two hidden and a head, in the guide and the model
    for layer in linears:
        fan_out, fan_in = layer.weight.shape
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert torch.all(layer.bias == 0) and layer.weight.abs().max() <= bound
        assert layer.weight.var().item() == pytest.approx(2 / (fan_in + fan_out), rel=0.1)
    default = HierarchicalVAE((1, 28, 28), z_dims=(100, 50), hidden=((200, 200), (100, 100)))
    assert default.decoder[-1].bias.abs().max() > 0  # PyTorch's init left alone


def test_set_output_bias_starts_the_likelihood_at_the_mean_image():
    torch.manual_seed(0)
    x = torch.bernoulli(torch.rand(1, 4, 4).expand(500, 1, 4, 4).clamp(0.01, 0.99))
    vae = HierarchicalVAE((1, 4, 4), z_dims=(3,), hidden=((8,),))
    vae.set_output_bias(x)
    with torch.no_grad():
        vae.decoder[-1].weight.zero_()  # p(x | z) no longer depends on z: its mean is the bias's
    p_x = vae.likelihood(vae.decoder(torch.randn(2, 3)))
    assert torch.allclose(p_x.mean[0], x.mean(0), atol=1e-6)
    gaussian = HierarchicalVAE((3,), z_dims=(1,), hidden=((),), likelihood=Gaussian((3,), scale=SIGMA))
    with pytest.raises(ValueError, match="sets Bernoulli logits, but this model's likelihood is Gaussian"):
        gaussian.set_output_bias(torch.zeros(4, 3))


def test_compiled_training_equals_eager_draw_for_draw():
    def train(compile):
        pyro.clear_param_store()
        torch.manual_seed(0)
        vae = HierarchicalVAE((1, 4, 4), z_dims=(4, 2), hidden=((16,), (8,)))
        x = torch.bernoulli(torch.full((64, 1, 4, 4), 0.3), generator=torch.Generator().manual_seed(1))
        fit(vae.model, vae.guide, x, epochs=2, batch_size=32, latent_sites=vae.latent_sites, beta=0.5,
            compile=compile, progress=False)
        return torch.cat([p.detach().flatten() for p in vae.parameters()])

    assert torch.allclose(train("graph"), train(False), rtol=1e-5, atol=1e-6)


def test_a_run_config_starts_a_bernoulli_hierarchy_at_the_mean_training_image():
    from pyro_vae.data import ImageData
    from pyro_vae.run import RunConfig

    images = torch.randint(0, 256, (50, 1, 4, 4), dtype=torch.uint8)
    config = RunConfig(z_dim=(4, 2), hidden=((16,), (8,)), x_shape=(1, 4, 4))
    started = config.build(ImageData(images))
    expected = torch.logit((images.float().mean(0) / 255).flatten().clamp(1e-3, 1 - 1e-3))
    assert torch.allclose(started.decoder[-1].bias, expected, atol=1e-5)
    loaded = config.build()  # load_model's path: the checkpoint's weights come next
    assert not torch.allclose(loaded.decoder[-1].bias, expected, atol=1e-2)
