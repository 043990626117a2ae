"""Bad input gives a clear error that names the fix, never a silent NaN loss."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from inference import fit, make_elbo
from pyro_vae import VAE
from pyro_vae.data import ImageData


def _loss(vae, x):
    return make_elbo("trace").loss(vae.model, vae.guide, x)


def test_wrong_shape():
    vae = VAE((1, 4, 4), z_dim=2, hidden=(8,))
    with pytest.raises(ValueError, match=r"x must be shaped \(batch, 1, 4, 4\), got \(3, 16\); reshape it"):
        _loss(vae, torch.zeros(3, 16))


def test_nan_pixels():
    vae = VAE((1, 4, 4), z_dim=2, likelihood="gaussian", hidden=(8,))
    x = torch.rand(3, 1, 4, 4)
    x[1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite values \(NaN or inf\) in 1 of its 3 rows, \[1\]"):
        _loss(vae, x)


def test_integer_data():
    vae = VAE((1, 4, 4), z_dim=2, hidden=(8,))
    with pytest.raises(TypeError, match="floating-point"):
        _loss(vae, torch.zeros(3, 1, 4, 4, dtype=torch.long))


@pytest.mark.parametrize(
    "likelihood,representation,fix",
    [
        ("bernoulli", "continuous", "representation='dynamic' or 'static'"),
        ("continuous_bernoulli", None, "representation='continuous'"),
        ("beta", "continuous", "representation='dequantized'"),
        ("discretized_logistic", "dequantized", "representation='continuous'"),
    ],
)
def test_data_outside_the_support(likelihood, representation, fix, tiny_images):
    vae = VAE((1, 8, 8), z_dim=2, likelihood=likelihood, hidden=(8,))
    if representation is None:
        x = torch.randn(4, 1, 8, 8)  # outside [0, 1]
    else:
        x = ImageData(tiny_images, None, representation).batch(torch.arange(4))
    with pytest.raises(ValueError, match=f"likelihood .* needs .*; use .*{fix.split()[0]}") as info:
        _loss(vae, x)
    assert fix in str(info.value)


@pytest.mark.parametrize("grey", [0.5, 1 - 2**-24, 2**-149])  # the largest float32 below 1, the smallest above 0
def test_bernoulli_refuses_a_single_pixel_that_is_not_0_or_1(grey):
    vae = VAE((1, 4, 4), z_dim=2, hidden=(8,))
    x = torch.bernoulli(torch.full((3, 1, 4, 4), 0.5))
    _loss(vae, x)  # binary: accepted
    x = x.clone()  # a new batch (one batch is checked once)
    x[2, 0, 3, 1] = grey
    with pytest.raises(ValueError, match="needs binary pixels"):
        _loss(vae, x)


def test_data_checks_follow_pyro_validation_and_fit_checks_its_first_batch():
    vae = VAE((1, 4, 4), z_dim=2, hidden=(8,))
    grey = torch.full((3, 1, 4, 4), 0.5)
    with pyro.validation_enabled(False):  # as in fit's steps after the first: no checks, no cost
        assert torch.isfinite(torch.tensor(_loss(vae, grey)))
    with pytest.raises(ValueError, match="needs binary pixels"):
        _loss(vae, grey.clone())
    pyro.enable_validation(False)  # fit turns validation on for its first step itself
    with pytest.raises(ValueError, match="needs binary pixels"):
        fit(vae.model, vae.guide, torch.full((8, 1, 4, 4), 0.5), batch_size=4, epochs=1, progress=False)


@pytest.mark.parametrize("option", ["prior", "likelihood", "guide", "encoder", "decoder"])
def test_unknown_option_names_list_the_choices(option):
    with pytest.raises(ValueError, match=f"unknown {option} 'nope'; valid choices: "):
        VAE((1, 4, 4), z_dim=2, **{option: "nope"})


def test_impossible_shapes():
    with pytest.raises(ValueError, match=r"divisible by 4, got \(1, 6, 6\); use encoder='mlp'"):
        VAE((1, 6, 6), z_dim=2, encoder="conv")
    with pytest.raises(ValueError, match="z_dim >= 2"):
        VAE((1, 4, 4), z_dim=1, guide="iaf")
    with pytest.raises(ValueError, match="z_dim must be >= 1"):
        VAE((1, 4, 4), z_dim=0)
    with pytest.raises(ValueError, match="num_data=4 is smaller than the batch"):
        make_elbo("trace").loss(VAE((1, 4, 4), z_dim=2).model, VAE((1, 4, 4), z_dim=2).guide, torch.zeros(8, 1, 4, 4), num_data=4)


@pytest.mark.parametrize("estimator", ["trace", "iwae"])  # iwae: Pyro's RenyiELBO, which has no differentiable_loss
def test_a_loss_without_parameters_is_refused_by_fit(estimator):
    def model(x):
        pyro.param("unused", torch.tensor(0.0))  # registered, but the densities ignore it
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)

    def guide(x):
        pass

    pyro.clear_param_store()
    with pytest.raises(ValueError, match="the loss depends on no parameter"):
        fit(model, guide, torch.randn(16), estimator=estimator, num_particles=2, batch_size=8, epochs=1, progress=False)


def test_a_grey_image_at_the_end_of_a_binary_data_set_is_refused_before_the_first_step():
    vae = VAE((1, 4, 4), z_dim=2, hidden=(8,))
    x = torch.bernoulli(torch.full((3000, 1, 4, 4), 0.4))
    x[2999, 0, 1, 2] = 0.5
    before = [p.detach().clone() for p in vae.parameters()]
    with pytest.raises(ValueError, match=r"the training set is refused before training: .*binary pixels.*rows \[2999\]"):
        fit(vae.model, vae.guide, x, batch_size=100, epochs=1, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, vae.parameters()))  # no step was taken


def test_non_finite_rows_of_a_validation_set_are_named():
    vae = VAE((1, 4, 4), z_dim=2, likelihood="gaussian", hidden=(8,))
    validation = torch.rand(50, 1, 4, 4)
    validation[[7, 31], 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"the validation set is refused .* in 2 of its 50 rows, \[7, 31\]; clean"):
        fit(vae.model, vae.guide, torch.rand(20, 1, 4, 4), validation=validation, epochs=1, progress=False)


def test_a_latent_outside_the_data_plate_is_named_by_the_scoring_tools():
    """Per-datum scores need the per-datum sites in pyro.plate("data"); one folded into the event is refused."""
    from inference import evaluate
    from inference.diagnostics import psis_khat

    def model(x):
        z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([len(x)]).to_event(1))
        pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide(x):
        pyro.sample("z", dist.Normal(x / 2, 0.7).to_event(1))

    x = torch.randn(5)
    for score in (lambda: evaluate(model, guide, x, num_samples=4, progress=False),
                  lambda: psis_khat(model, guide, x, num_samples=4)):
        with pytest.raises(ValueError, match=r"site 'z' is not under pyro.plate\('data'\).*"
                                             r"`with pyro.plate\('data', len\(x\)\):`"):
            score()
