"""Gated hidden units, the weight initialisations by name, and the parts that Tomczak & Welling's
code builds its VAE from (a clipped log-variance, pseudo-inputs near zero)."""

import math

import pytest
import torch
from torch import nn

from pyro_vae import VAE
from pyro_vae.guides import DiagonalNormal
from pyro_vae.nets import GatedDense, MLPDecoder, MLPEncoder
from pyro_vae.priors import VampPrior


def test_a_gated_layer_is_one_affine_map_gating_the_other():
    torch.manual_seed(0)
    layer = GatedDense(6, 4)
    x = torch.randn(3, 6)
    w, b = layer.linear.weight, layer.linear.bias
    h, g = x @ w[:4].T + b[:4], x @ w[4:].T + b[4:]
    assert torch.allclose(layer(x), h * torch.sigmoid(g), atol=1e-6)


def test_gated_mlps_have_only_gated_hidden_layers_and_a_linear_output():
    encoder = MLPEncoder((1, 28, 28), hidden=(300, 300), units="gated")
    decoder = MLPDecoder(40, 784, hidden=(300, 300), units="gated")
    assert [type(m) for m in encoder.net] == [GatedDense, GatedDense] and encoder.out_features == 300
    assert [type(m) for m in decoder.net] == [GatedDense, GatedDense, nn.Linear]
    # twice the weights of each softplus hidden layer: h and g
    softplus = sum(p.numel() for p in MLPEncoder((1, 28, 28), hidden=(300, 300)).parameters())
    assert sum(p.numel() for p in encoder.parameters()) == 2 * softplus
    vae = VAE((1, 28, 28), 40, encoder="gated_mlp", decoder="gated_mlp", hidden=(300, 300))
    assert vae.decode(torch.randn(2, 5, 40)).batch_shape == (2, 5)
    with pytest.raises(ValueError, match="unknown units 'relu'; valid choices: 'softplus', 'gated'"):
        MLPEncoder((4,), hidden=(3,), units="relu")


def test_the_he_init_draws_weights_with_variance_two_over_fan_in_and_leaves_the_prior_alone():
    torch.manual_seed(0)
    vae = VAE((1, 28, 28), 40, prior="flow", encoder="gated_mlp", decoder="gated_mlp", hidden=(300, 300), init="he")
    first = vae.encoder.net[0].linear
    assert first.weight.std().item() == pytest.approx(math.sqrt(2 / 784), rel=0.01)  # 470 400 draws
    assert vae.guide_family.head.weight.std().item() == pytest.approx(math.sqrt(2 / 300), rel=0.02)
    assert first.bias.abs().max() <= 1 / math.sqrt(784)  # torch's default bias, kept
    # the flow prior starts as N(0, I) through its zeroed output layers: an init of the networks leaves it so
    assert all(torch.all(flow.arn.layers[-1].weight == 0) for flow in vae.prior.flows)
    default = VAE((1, 28, 28), 40, hidden=(300, 300))  # torch's: uniform, variance 1 / (3 fan_in)
    assert default.encoder.net[0].weight.std().item() == pytest.approx(math.sqrt(1 / (3 * 784)), rel=0.01)
    with pytest.raises(ValueError, match="unknown init 'xavier'; valid choices: 'torch', 'glorot', 'he'"):
        VAE((4,), 2, hidden=(3,), init="xavier")


def test_a_clipped_log_variance_keeps_the_deviation_within_its_bounds():
    family = DiagonalNormal(1, 3, scale="clipped_log_variance", min_scale=0.0)
    with torch.no_grad():
        family.head.weight.zero_()
        family.head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, -100.0, 0.7, 100.0]))
    scale = family(torch.zeros(1, 1)).base_dist.scale[0]
    assert torch.allclose(scale, torch.tensor([math.exp(-3.0), math.exp(0.35), math.exp(1.0)]))


def test_pseudo_inputs_start_where_they_are_told():
    torch.manual_seed(0)
    prior = VampPrior(40, (1, 28, 28), num_components=500, init_mean=0.05, init_std=0.01)
    assert prior.pseudo_inputs.mean().item() == pytest.approx(0.05, abs=1e-4)
    assert prior.pseudo_inputs.std().item() == pytest.approx(0.01, rel=0.01)
