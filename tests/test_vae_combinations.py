"""Every prior x likelihood x guide builds, takes an SVI step under `trace` and
`mean_field`, and gives a finite loss that training actually moves."""

import itertools

import pyro
import pytest
import torch
from pyro.infer import SVI

from inference import make_elbo
from pyro_vae import GUIDES, LIKELIHOODS, PRIORS, VAE
from pyro_vae.data import ImageData
from pyro_vae.likelihoods import REPRESENTATION_FOR

COMBOS = list(itertools.product(PRIORS, LIKELIHOODS, GUIDES))


def test_every_likelihood_has_a_representation():
    assert set(REPRESENTATION_FOR) == set(LIKELIHOODS)


@pytest.mark.parametrize("estimator", ["trace", "mean_field"])
@pytest.mark.parametrize("prior,likelihood,guide", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_one_svi_step(prior, likelihood, guide, estimator, tiny_images):
    data = ImageData(tiny_images, None, REPRESENTATION_FOR[likelihood])
    x = data.batch(torch.arange(16))
    vae = VAE(data.x_shape, z_dim=3, prior=prior, likelihood=likelihood, guide=guide, hidden=(16,))
    before = {k: v.detach().clone() for k, v in vae.named_parameters()}
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), make_elbo(estimator))
    losses = [svi.step(x, num_data=len(data)) for _ in range(2)]
    assert all(torch.isfinite(torch.tensor(losses)))
    moved = {k for k, v in vae.named_parameters() if not torch.equal(v, before[k])}
    # the decoder, the encoder and the guide head are all trained
    assert any(k.startswith("decoder.") for k in moved)
    assert any(k.startswith("encoder.") or k.startswith("guide_family.") for k in moved)
    if prior != "standard_normal":
        assert any(k.startswith("prior.") for k in moved), "the prior's parameters must be trained"


@pytest.mark.parametrize("nets", ["conv", "mlp"])
def test_conv_and_mlp_nets(nets, tiny_images):
    data = ImageData(tiny_images, None, "dynamic")
    vae = VAE(data.x_shape, z_dim=2, encoder=nets, decoder=nets, hidden=(16,))
    x = data.batch(torch.arange(8))
    assert vae.posterior(x).batch_shape == (8,)
    assert vae.decode(torch.randn(4, 8, 2)).batch_shape == (4, 8)  # several leading batch dims
    elbo = make_elbo("trace", num_particles=3)
    assert torch.isfinite(torch.tensor(elbo.loss(vae.model, vae.guide, x)))
    assert vae.sample(5).shape == (5, 1, 8, 8)
    assert vae.reconstruct(x).shape == x.shape


def test_vectorized_particles_match_sequential():
    """The same expectation, whether particles are vectorized or drawn one by one."""
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((6, 1, 4, 4), 0.4))
    vae = VAE((1, 4, 4), z_dim=2, hidden=(8,))
    vec = make_elbo("trace", num_particles=4000).loss(vae.model, vae.guide, x)
    seq = torch.tensor([make_elbo("trace").loss(vae.model, vae.guide, x) for _ in range(400)])
    assert abs(vec - seq.mean()) < 5 * seq.std() / 400**0.5 + 5 * seq.std() / 4000**0.5


def test_num_data_scales_the_loss_to_the_full_data_set():
    x = torch.bernoulli(torch.full((8, 1, 4, 4), 0.4))
    vae = VAE((1, 4, 4), z_dim=2, hidden=(8,))
    elbo = make_elbo("mean_field")
    pyro.set_rng_seed(1)
    batch_loss = elbo.loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(1)
    full_loss = elbo.loss(vae.model, vae.guide, x, num_data=80)
    assert full_loss == pytest.approx(10 * batch_loss, rel=1e-5)


def test_guide_scale_has_a_floor():
    vae = VAE((1, 4, 4), z_dim=2, hidden=(8,))
    with torch.no_grad():
        vae.guide_family.head.bias[2:] = -100.0
        vae.guide_family.head.weight.zero_()
    q = vae.posterior(torch.zeros(3, 1, 4, 4))
    assert (q.base_dist.scale >= vae.guide_family.min_scale).all()
