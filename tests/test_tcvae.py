"""beta-TCVAE: with unit weights it is the ELBO of the same draws; the TC weight lowers the aggregate
posterior's total correlation; guides it cannot split are named."""

import pyro
import pytest
import torch
from pyro import poutine

from inference import fit, make_elbo
from inference.disentanglement import total_correlation
from inference.tcvae import TCVAE_ELBO
from pyro_vae import VAE, load_dataset


def _same_draws(vae, x, num_data):
    with poutine.trace() as tape:
        vae.guide(x, num_data=num_data)
    return poutine.replay(vae.guide, trace=tape.trace)


def test_unit_weights_give_the_elbo_of_the_same_draws_and_its_gradient():
    torch.manual_seed(0)
    vae = VAE((1, 4, 4), z_dim=3, hidden=(8,))
    x = torch.bernoulli(torch.full((6, 1, 4, 4), 0.4))
    guide = _same_draws(vae, x, num_data=60)  # a subsampled plate: every term scaled by 60 / 6
    params = list(vae.parameters())
    grads = {}
    for name, elbo in {"trace": pyro.infer.Trace_ELBO(), "tcvae": TCVAE_ELBO()}.items():
        loss = elbo.differentiable_loss(vae.model, guide, x, num_data=60)
        grad = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        flat = [(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(params, grad)]
        grads[name] = (loss.detach(), torch.cat(flat))
    assert torch.allclose(grads["tcvae"][0], grads["trace"][0], rtol=1e-5)
    assert grads["trace"][1].abs().max() > 0
    assert torch.allclose(grads["tcvae"][1], grads["trace"][1], rtol=1e-4, atol=1e-5)


def test_the_weights_move_the_loss_by_their_terms():
    """Raising a weight by 1 adds that term's estimate once more, and the three terms add up to the KL
    (their minibatch-weighted estimates carry offsets of log(N M) that cancel in the sum)."""
    torch.manual_seed(1)
    vae = VAE((1, 4, 4), z_dim=3, hidden=(8,))
    x = torch.bernoulli(torch.full((32, 1, 4, 4), 0.4))
    guide = _same_draws(vae, x, num_data=32)
    base = TCVAE_ELBO().loss(vae.model, guide, x, num_data=32)
    terms = {name: TCVAE_ELBO(**{name: 2.0}).loss(vae.model, guide, x, num_data=32) - base
             for name in ("mi_weight", "tc_weight", "dim_kl_weight")}
    # the three terms add up to the KL part of the loss: loss(all weights 2) - loss(1) = KL estimate
    total = TCVAE_ELBO(2.0, 2.0, 2.0).loss(vae.model, guide, x, num_data=32) - base
    assert sum(terms.values()) == pytest.approx(total, rel=1e-5)
    with poutine.trace() as tape:
        guide(x, num_data=32)
    replayed = poutine.trace(poutine.replay(vae.model, trace=tape.trace)).get_trace(x, num_data=32)
    kl = (tape.trace.nodes["z"]["fn"].log_prob(tape.trace.nodes["z"]["value"])
          - replayed.nodes["z"]["fn"].log_prob(tape.trace.nodes["z"]["value"])).sum()
    assert total == pytest.approx(kl.item(), rel=1e-4)


def test_raising_the_tc_weight_lowers_the_total_correlation_of_a_trained_model():
    data = load_dataset("mnist", split="train", representation="static", limit=2000)
    x = data.batch(torch.arange(len(data)))
    tc = {}
    for weight in (1.0, 20.0):
        pyro.clear_param_store()
        torch.manual_seed(0)
        vae = VAE(data.x_shape, z_dim=4, hidden=(128,))
        fit(vae.model, vae.guide, data, estimator="tcvae", tc_weight=weight, epochs=8, batch_size=100, lr=2e-3,
            progress=False)
        with torch.no_grad():
            q = vae.posterior(x)
        tc[weight] = total_correlation(q.base_dist.loc, q.base_dist.scale, num_samples=1000)
    assert tc[20.0] < 0.6 * tc[1.0], tc


def test_what_it_cannot_split_is_named():
    vae = VAE((1, 4, 4), z_dim=2, guide="full", hidden=(8,))
    x = torch.bernoulli(torch.full((4, 1, 4, 4), 0.4))
    with pytest.raises(ValueError, match="factorized guide.*Independent of univariate"):
        TCVAE_ELBO().loss(vae.model, vae.guide, x)
    with pytest.raises(ValueError, match="vectorize_particles=False"):
        TCVAE_ELBO(vectorize_particles=True)
    with pytest.raises(ValueError, match="tc_weight must be >= 0"):
        TCVAE_ELBO(tc_weight=-1.0)
    with pytest.raises(ValueError, match="tc_weight is an option of estimator='tcvae' only"):
        make_elbo("trace", tc_weight=2.0)
    assert make_elbo("tcvae", tc_weight=6.0, num_particles=2).tc_weight == 6.0
