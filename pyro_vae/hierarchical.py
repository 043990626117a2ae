"""A VAE with L stochastic layers (Burda et al. 2016's architecture), as Pyro model and guide.

Generative model, top down: z_L ~ p(z_L) (a prior from the registry),
z_l | z_{l+1} ~ N(mu_l(z_{l+1}), diag sigma_l(z_{l+1})^2), x | z_1 ~ the
likelihood of the decoder's output. Recognition model, bottom up:
z_1 | x ~ N(., .), z_{l+1} | z_l ~ N(., .), each a diagonal Gaussian from an
MLP (tanh by default, as in the paper). The sites are ``"z1"`` ... ``"zL"``
and ``"x"``, all under ``pyro.plate("data")`` with the same ``num_data``
convention as :class:`~pyro_vae.vae.VAE`, so :func:`inference.fit` (with
``latent_sites=vae.latent_sites`` for beta), :func:`inference.evaluate`
(``latent_site="z1"`` or the top ``"zL"``) and every Pyro tool apply.

Burda et al.'s two-layer MNIST model is
``HierarchicalVAE((1, 28, 28), z_dims=(100, 50), hidden=((200, 200), (100, 100)))``
and their one-layer model ``z_dims=(50,), hidden=((200, 200),)``.

References: Burda, Grosse & Salakhutdinov 2016 (section 5 and appendix).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import torch
from pyro.distributions.util import is_validation_enabled
from torch import nn

from inference.options import choose
from pyro_vae.guides import DiagonalNormal, ScaleName
from pyro_vae.likelihoods import Bernoulli, Likelihood, LikelihoodName, make_likelihood
from pyro_vae.nets import INITS, InitName
from pyro_vae.priors import Prior, PriorName, make_prior
from pyro_vae.vae import VAE, data_plate, validate_data

ACTIVATIONS = {"tanh": nn.Tanh, "softplus": nn.Softplus, "relu": nn.ReLU}


def _net(sizes: Sequence[int], activation: type[nn.Module]) -> nn.Sequential:
    """Linear layers between ``sizes``, each followed by the activation (empty: the identity)."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), activation()]
    return nn.Sequential(*layers)


class GaussianLayer(nn.Module):
    """z_out | z_in ~ N(mu(z_in), diag sigma(z_in)^2): an MLP, then a linear head (softplus scale with a floor)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int] = (), activation=nn.Tanh,
                 scale: ScaleName = "softplus") -> None:
        super().__init__()
        self.net = _net([in_dim, *hidden], activation)
        self.family = DiagonalNormal(hidden[-1] if hidden else in_dim, out_dim, scale=scale)

    def forward(self, h: torch.Tensor):
        return self.family(self.net(h))


class HierarchicalVAE(nn.Module):
    """A VAE with ``len(z_dims)`` stochastic layers.

    :param x_shape: the shape of one observation.
    :param z_dims: the latent sizes, bottom (next to x) to top.
    :param hidden: per layer, the hidden sizes of the MLP that leads *into* that
        layer in the guide (x -> z1, z1 -> z2, ...); the model's MLPs mirror them.
    :param prior: p(z_L), a registry name (not ``"vamp"``: its mixture is made of
        q(z|x), which a hierarchy has only for its bottom layer) or a :class:`~pyro_vae.priors.Prior`.
    :param likelihood: a registry name or a :class:`~pyro_vae.likelihoods.Likelihood`.
    :param activation: ``"tanh"`` (the paper's), ``"softplus"`` or ``"relu"``.
    :param scale: the standard deviations of every Gaussian layer, ``"softplus"`` or ``"exp"``
        (see :class:`~pyro_vae.guides.GuideFamily`).
    :param init: a name from :data:`pyro_vae.nets.INITS`: ``"torch"`` (PyTorch's default for linear
        layers), ``"glorot"`` (Glorot-uniform weights, zero biases) or ``"he"``. Burda et al.'s code uses ``scale="exp"``,
        ``init="glorot"`` and :meth:`set_output_bias`; together they train far faster and keep
        units active in the top layer (``benchmarks/collapse.py``; BENCHMARKS.md).

    >>> vae = HierarchicalVAE((1, 8, 8), z_dims=(6, 3), hidden=((16,), (8,)))
    >>> x = torch.bernoulli(torch.full((5, 1, 8, 8), 0.3))
    >>> trace = pyro.poutine.trace(vae.guide).get_trace(x)
    >>> [name for name in trace.nodes if name.startswith("z")], vae.latent_sites
    (['z1', 'z2'], ('z1', 'z2'))
    >>> vae.sample(4).shape
    torch.Size([4, 1, 8, 8])
    """

    def __init__(
        self,
        x_shape: Sequence[int] = (1, 28, 28),
        z_dims: Sequence[int] = (100, 50),
        hidden: Sequence[Sequence[int]] = ((200, 200), (100, 100)),
        *,
        prior: PriorName | Prior = "standard_normal",
        likelihood: LikelihoodName | Likelihood = "bernoulli",
        activation: str = "tanh",
        scale: ScaleName = "softplus",
        init: InitName = "torch",
    ) -> None:
        super().__init__()
        self.x_shape, self.z_dims = tuple(x_shape), tuple(z_dims)
        if not self.z_dims or min(self.z_dims) < 1:
            raise ValueError(f"z_dims must be one or more sizes >= 1, got {z_dims}")
        if len(hidden) != len(self.z_dims):
            raise ValueError(f"hidden needs one tuple of sizes per stochastic layer ({len(self.z_dims)}), got {len(hidden)}")
        if prior == "vamp":
            raise ValueError("prior='vamp' is defined through q(z|x), which a hierarchy has for its bottom layer only; "
                             "use 'standard_normal', 'learned_normal', 'mixture' or 'flow'")
        act = ACTIVATIONS[activation] if activation in ACTIVATIONS else None
        if act is None:
            raise ValueError(f"unknown activation {activation!r}; valid choices: {', '.join(map(repr, ACTIVATIONS))}")
        initialize = choose(INITS, init, what="init")
        self.likelihood = make_likelihood(likelihood, x_shape=x_shape) if isinstance(likelihood, str) else likelihood
        self.prior = make_prior(prior, z_dim=self.z_dims[-1], x_shape=x_shape) if isinstance(prior, str) else prior
        x_dim = math.prod(self.x_shape)
        inputs = (x_dim, *self.z_dims[:-1])
        self.encoders = nn.ModuleList(
            GaussianLayer(n_in, n_out, tuple(h), act, scale) for n_in, n_out, h in zip(inputs, self.z_dims, hidden)
        )
        self.decoders = nn.ModuleList(  # p(z_l | z_{l+1}) for l = 1 .. L-1
            GaussianLayer(self.z_dims[l + 1], self.z_dims[l], tuple(reversed(hidden[l + 1])), act, scale)
            for l in range(len(self.z_dims) - 1)
        )
        bottom = tuple(reversed(hidden[0]))
        self.decoder = nn.Sequential(_net([self.z_dims[0], *bottom], act),
                                     nn.Linear(bottom[-1] if bottom else self.z_dims[0], self.likelihood.out_features))
        for module in (self.encoders, self.decoders, self.decoder):
            module.apply(initialize)

    @torch.no_grad()
    def set_output_bias(self, x: torch.Tensor) -> None:
        """Start p(x | z_1) at the data's marginal: the decoder's output bias becomes the logit
        of the mean of ``x`` (clamped to [1e-3, 1 - 1e-3]), as in Burda et al.'s code, so the
        latents are not spent on the mean image early in training. Bernoulli likelihoods only.

        >>> vae = HierarchicalVAE((1, 2, 2), z_dims=(2,), hidden=((4,),))
        >>> vae.set_output_bias(torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]], [[[1.0, 1.0], [0.0, 0.0]]]]))
        >>> [round(p, 4) for p in torch.sigmoid(vae.decoder[-1].bias).tolist()]  # the clamped mean pixels
        [0.999, 0.5, 0.5, 0.001]
        """
        if not isinstance(self.likelihood, Bernoulli):
            raise ValueError(f"set_output_bias sets Bernoulli logits, but this model's likelihood is "
                             f"{type(self.likelihood).__name__}; leave the bias at its initial value")
        mean = x.reshape(-1, math.prod(self.x_shape)).float().mean(0)
        self.decoder[-1].bias.copy_(torch.logit(mean.clamp(1e-3, 1 - 1e-3)))

    @property
    def latent_sites(self) -> tuple[str, ...]:
        """``("z1", ..., "zL")``, bottom to top: ``fit(..., latent_sites=vae.latent_sites)`` weighs all by beta."""
        return tuple(f"z{l + 1}" for l in range(len(self.z_dims)))

    def model(self, x: torch.Tensor, num_data: int | None = None) -> None:
        """p(z_L) prod_l p(z_l | z_{l+1}) p(x | z_1) for a batch ``x``; ``num_data`` as in :meth:`VAE.model`."""
        self._check(x)
        for name in ("prior", "decoders", "decoder", "likelihood"):
            VAE._register(f"hvae_{name}", getattr(self, name))
        with data_plate(x, num_data):
            z = pyro.sample(self.latent_sites[-1], self.prior())
            for l in reversed(range(len(self.z_dims) - 1)):
                z = pyro.sample(self.latent_sites[l], self.decoders[l](z))
            pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)

    def guide(self, x: torch.Tensor, num_data: int | None = None) -> None:
        """q(z_1 | x) prod_l q(z_{l+1} | z_l); takes the same arguments as :meth:`model`."""
        self._check(x)
        VAE._register("hvae_encoders", self.encoders)
        with data_plate(x, num_data):
            h = x.flatten(-len(self.x_shape))
            for l, encoder in enumerate(self.encoders):
                h = pyro.sample(self.latent_sites[l], encoder(h))

    def validate(self, x: torch.Tensor) -> None:
        """As :meth:`VAE.validate`: shape, NaN or inf, the likelihood's support, naming the rows."""
        validate_data(x, self.x_shape, self.likelihood)

    def _check(self, x: torch.Tensor) -> None:
        if is_validation_enabled():  # like Pyro's own checks, and VAE's
            validate_data(x, self.x_shape, self.likelihood)

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = True) -> torch.Tensor:
        """``n`` new observations: ancestral sampling from the top, then the mean of p(x|z_1) (or a draw)."""
        z = self.prior().sample((n,))
        for l in reversed(range(len(self.z_dims) - 1)):
            z = self.decoders[l](z).sample()
        p_x = self.likelihood(self.decoder(z))
        return p_x.mean if mean else p_x.sample()

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of p(x | z_1 = E_q[z_1|x]): the images through the bottom layer."""
        return self.layer(1).reconstruct(x)

    def layer(self, l: int) -> LayerView:
        """Stochastic layer ``l`` (1 = next to x, ``len(z_dims)`` = the top) seen through the
        one-layer VAE's interface (``z_dim``, ``latent_mean``, ``decode``, ``reconstruct``,
        ``sample``), which the figures of :mod:`pyro_vae.plots` use; its ``site`` names it."""
        if not 1 <= l <= len(self.z_dims):
            raise ValueError(f"layer {l} does not exist: this model has layers 1..{len(self.z_dims)}")
        return LayerView(self, l)


class LayerView:
    """One layer of a :class:`HierarchicalVAE` with the plotting interface of :class:`~pyro_vae.vae.VAE`.

    ``latent_mean(x)`` is E_q[z_l | x]: exact for the bottom layer, a Monte Carlo
    average over draws of the layers below for the others. ``decode(z_l)`` is
    p(x | z_1) where z_1 comes down from z_l through the *means* of
    p(z_{k-1} | z_k): the usual picture of what a higher latent encodes (the
    figures say so), not the marginal p(x | z_l), which has no closed form.

    >>> vae = HierarchicalVAE((1, 8, 8), z_dims=(6, 3), hidden=((16,), (8,)))
    >>> top = vae.layer(2)
    >>> top.site, top.z_dim, top.decode(torch.zeros(5, 3)).mean.shape
    ('z2', 3, torch.Size([5, 1, 8, 8]))
    """

    def __init__(self, vae: HierarchicalVAE, l: int) -> None:
        self.vae, self.index = vae, l
        self.site, self.z_dim, self.x_shape = f"z{l}", vae.z_dims[l - 1], vae.x_shape
        self.decoded_by = "p(x|z1)" if l == 1 else f"p(x|z1), z{l} -> z1 through the means of the layers below"

    def parameters(self):
        return self.vae.parameters()

    def latent_mean(self, x: torch.Tensor, num_samples: int = 64) -> torch.Tensor:
        h = x.flatten(-len(self.x_shape))
        if self.index == 1:
            return self.vae.encoders[0](h).mean
        z = self.vae.encoders[0](h).sample((num_samples,))
        for encoder in self.vae.encoders[1 : self.index - 1]:
            z = encoder(z).sample()
        return self.vae.encoders[self.index - 1](z).mean.mean(0)

    def decode(self, z: torch.Tensor):
        for l in reversed(range(self.index - 1)):
            z = self.vae.decoders[l](z).mean
        return self.vae.likelihood(self.vae.decoder(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.latent_mean(x)).mean

    def sample(self, n: int, *, mean: bool = True) -> torch.Tensor:
        return self.vae.sample(n, mean=mean)
