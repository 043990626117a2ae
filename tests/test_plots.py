"""Every figure function draws for a 2-D and a larger latent space, and draws something."""

import io

import matplotlib.image
import numpy as np
import pytest
import torch

from pyro_vae import VAE
from pyro_vae import plots

METRICS = [
    {"epoch": 1, "train_loss": 210.0, "beta": 0.5, "val_elbo": -200.0, "val_reconstruction": -190.0, "val_kl": 10.0},
    {"epoch": 2, "train_loss": 180.0, "beta": 1.0, "val_elbo": -175.0, "val_reconstruction": -160.0, "val_kl": 15.0},
]


def _pixels(figure) -> np.ndarray:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=40)
    buffer.seek(0)
    return matplotlib.image.imread(buffer)


@pytest.mark.parametrize("z_dim", [2, 5])
def test_all_figures(z_dim):
    vae = VAE((1, 8, 8), z_dim=z_dim, hidden=(16,))
    x = torch.bernoulli(torch.full((30, 1, 8, 8), 0.3))
    figures = plots.all_figures(vae, x, torch.randint(0, 10, (30,)), METRICS)
    expected = {"reconstructions", "samples", "training_curves", "latent_scatter", "interpolation"}
    expected |= {"manifold"} if z_dim == 2 else {"traversals"}
    assert set(figures) == expected
    for name, figure in figures.items():
        assert _pixels(figure).std() > 0.01, f"{name} is blank"


def test_manifold_needs_two_dims_and_uses_normal_quantiles(monkeypatch):
    with pytest.raises(ValueError, match="needs a 2-D latent, z has 3 dimensions; use traversals"):
        plots.manifold(VAE((1, 8, 8), z_dim=3, hidden=(8,)))
    vae = VAE((1, 8, 8), z_dim=2, hidden=(8,))
    seen = []
    decode = vae.decode
    monkeypatch.setattr(vae, "decode", lambda z: seen.append(z) or decode(z))
    plots.manifold(vae, n=4)
    corners = seen[0][[0, -1]]
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(0.125)).item()
    assert torch.allclose(corners, torch.tensor([[q, -q], [-q, q]]), atol=1e-5)


def test_interpolation_ends_at_the_posterior_means(monkeypatch):
    vae = VAE((1, 8, 8), z_dim=3, hidden=(8,))
    x = torch.bernoulli(torch.full((2, 1, 8, 8), 0.3))
    seen = []
    decode = vae.decode
    monkeypatch.setattr(vae, "decode", lambda z: seen.append(z) or decode(z))
    plots.interpolation(vae, x[0], x[1], n=5)
    means = vae.latent_mean(x).detach()
    assert torch.allclose(seen[0][0], means[0]) and torch.allclose(seen[0][-1], means[1])
    assert torch.allclose(seen[0][2], means.mean(0), atol=1e-6)


def test_vector_data_is_drawn_as_rows():
    vae = VAE((6,), z_dim=2, likelihood="gaussian", hidden=(8,))
    assert _pixels(plots.reconstructions(vae, torch.rand(4, 6))).std() > 0.01


def test_worst_fitted_and_overlay():
    from inference.diagnostics import ReferencePosterior, overlay

    vae = VAE((1, 8, 8), z_dim=3, hidden=(8,))
    x = torch.bernoulli(torch.full((12, 1, 8, 8), 0.3))
    khat = torch.linspace(0, 1.1, 12)
    figure = plots.worst_fitted(vae, x, khat, n=4)
    assert "1.10 1.00 0.90 0.80" in figure.axes[0].get_title() and _pixels(figure).std() > 0.01
    reference = ReferencePosterior(torch.randn(2, 50, 3), rhat=1.0, ess=100.0, inference_data=None)
    figure = overlay(torch.randn(80, 3) + 1, reference)
    assert len(figure.axes) == 9 and _pixels(figure).std() > 0.01


def test_hierarchical_figures_name_their_layer():
    from pyro_vae.hierarchical import HierarchicalVAE

    vae = HierarchicalVAE((1, 8, 8), z_dims=(4, 2), hidden=((16,), (8,)))
    x = torch.bernoulli(torch.full((30, 1, 8, 8), 0.3))
    figures = plots.all_figures(vae, x, torch.randint(0, 10, (30,)), None)
    assert set(figures) == {"reconstructions", "samples", "latent_scatter_z1", "traversals_z1", "latent_scatter_z2",
                            "manifold_z2", "interpolation"}
    assert "E_q[z1|x]" in figures["latent_scatter_z1"].axes[0].get_title()
    assert "E_q[z2|x]" in figures["latent_scatter_z2"].axes[0].get_title()
    assert "z2 manifold" in figures["manifold_z2"].axes[0].get_title()
    assert "traversals of z1" in figures["traversals_z1"].axes[0].get_title()
    assert "in z2" in figures["interpolation"].axes[0].get_title()
    for name, figure in figures.items():
        assert _pixels(figure).std() > 0.01, f"{name} is blank"
    with pytest.raises(ValueError, match="layers 1..2"):
        vae.layer(3)


def test_upper_layer_view_mean_and_decoder():
    """E_q[z2|x] of a linear z1 -> z2 guide layer is its head at E_q[z1|x] (the Monte Carlo average
    converges to it), and decoding z2 goes down through the mean of p(z1|z2)."""
    from pyro_vae.hierarchical import HierarchicalVAE

    torch.manual_seed(0)
    vae = HierarchicalVAE((1, 8, 8), z_dims=(3, 2), hidden=((16,), ()))
    x = torch.bernoulli(torch.full((4, 1, 8, 8), 0.3))
    bottom, top = vae.layer(1), vae.layer(2)
    with torch.no_grad():
        z1 = bottom.latent_mean(x)
        assert torch.allclose(z1, vae.encoders[0](x.flatten(1)).mean)
        exact = vae.encoders[1](z1).mean  # loc is linear in z1: E[loc(z1)] = loc(E[z1])
        estimate = top.latent_mean(x, num_samples=20000)
        assert torch.allclose(estimate, exact, atol=0.02), (estimate, exact)
        z2 = torch.randn(5, 2)
        expected = vae.likelihood(vae.decoder(vae.decoders[0](z2).mean)).mean
        assert torch.allclose(top.decode(z2).mean, expected)
        assert torch.allclose(vae.reconstruct(x), bottom.decode(z1).mean)
