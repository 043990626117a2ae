"""Plain ``nn.Module`` encoders and decoders: no Pyro calls.

An encoder maps a batch ``(batch, *x_shape)`` to features ``(batch, out_features)``;
a guide family (:mod:`pyro_vae.guides`) turns the features into q(z|x).
A decoder maps ``(*batch, z_dim)`` to ``(*batch, out_features)``, the flat
parameters of a likelihood (:mod:`pyro_vae.likelihoods`). Leading batch
dimensions may be several (vectorized particles).

``MLPEncoder(x_shape, hidden=())`` is the identity on flattened x and
``MLPDecoder(z_dim, out_features, hidden=())`` a single affine map: together
they give the linear-Gaussian VAE (probabilistic PCA).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from inference.options import choose


def _mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.Softplus) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """Flatten x and apply fully connected layers with softplus activations
    (as in Pyro's VAE example).

    >>> MLPEncoder((1, 28, 28), hidden=(400,))(torch.rand(5, 1, 28, 28)).shape
    torch.Size([5, 400])
    """

    def __init__(self, x_shape: Sequence[int], hidden: Sequence[int] = (400,)) -> None:
        super().__init__()
        self.x_shape = tuple(x_shape)
        x_dim = math.prod(self.x_shape)
        self.out_features = hidden[-1] if hidden else x_dim
        layers = _mlp([x_dim, *hidden])
        # hidden layers end in an activation too: the guide head is the last linear map
        self.net = nn.Sequential(*layers, nn.Softplus()) if hidden else layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(-len(self.x_shape)))


class MLPDecoder(nn.Module):
    """Fully connected layers from z to the flat likelihood parameters.

    >>> MLPDecoder(20, out_features=784, hidden=(400,))(torch.randn(3, 5, 20)).shape
    torch.Size([3, 5, 784])
    """

    def __init__(self, z_dim: int, out_features: int, hidden: Sequence[int] = (400,)) -> None:
        super().__init__()
        self.net = _mlp([z_dim, *hidden, out_features])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def _conv_grid(x_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(x_shape) != 3 or x_shape[1] % 4 or x_shape[2] % 4:
        raise ValueError(
            f"conv nets need images shaped (channels, height, width) with height and width "
            f"divisible by 4, got {tuple(x_shape)}; use encoder='mlp' and decoder='mlp'"
        )
    return x_shape[0], x_shape[1] // 4, x_shape[2] // 4


class ConvEncoder(nn.Module):
    """Two stride-2 convolutions and a fully connected layer.

    >>> ConvEncoder((1, 28, 28))(torch.rand(5, 1, 28, 28)).shape
    torch.Size([5, 256])
    """

    def __init__(self, x_shape: Sequence[int], channels: Sequence[int] = (32, 64), hidden: int = 256) -> None:
        super().__init__()
        c, h, w = _conv_grid(x_shape)
        self.x_shape = tuple(x_shape)
        self.out_features = hidden
        self.net = nn.Sequential(
            nn.Conv2d(c, channels[0], 4, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(channels[0], channels[1], 4, stride=2, padding=1),
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(channels[1] * h * w, hidden),
            nn.SiLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[: -len(self.x_shape)]
        return self.net(x.reshape(-1, *self.x_shape)).reshape(*batch, self.out_features)


class ConvDecoder(nn.Module):
    """A fully connected layer and two stride-2 transposed convolutions, mirroring
    :class:`ConvEncoder`; the output has ``out_features / prod(x_shape)``
    parameter maps per channel, flattened.

    >>> ConvDecoder(20, out_features=2 * 784, x_shape=(1, 28, 28))(torch.randn(3, 5, 20)).shape
    torch.Size([3, 5, 1568])
    """

    def __init__(
        self,
        z_dim: int,
        out_features: int,
        x_shape: Sequence[int],
        channels: Sequence[int] = (64, 32),
        hidden: int = 256,
    ) -> None:
        super().__init__()
        c, h, w = _conv_grid(x_shape)
        if out_features % math.prod(x_shape):
            raise ValueError(f"out_features={out_features} is not a multiple of prod(x_shape)={math.prod(x_shape)}")
        out_channels = out_features // (h * w * 16)
        self.out_features = out_features
        self.net = nn.Sequential(
            nn.Linear(z_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, channels[0] * h * w),
            nn.SiLU(),
            nn.Unflatten(1, (channels[0], h, w)),
            nn.ConvTranspose2d(channels[0], channels[1], 4, stride=2, padding=1),
            nn.SiLU(),
            nn.ConvTranspose2d(channels[1], out_channels, 4, stride=2, padding=1),
            nn.Flatten(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[:-1]
        return self.net(z.reshape(-1, z.shape[-1])).reshape(*batch, self.out_features)


EncoderName = Literal["mlp", "conv"]
DecoderName = Literal["mlp", "conv"]

ENCODERS = {
    "mlp": lambda x_shape, hidden: MLPEncoder(x_shape, hidden=hidden),
    "conv": lambda x_shape, hidden: ConvEncoder(x_shape),
}
DECODERS = {
    "mlp": lambda z_dim, out_features, x_shape, hidden: MLPDecoder(z_dim, out_features, hidden=hidden[::-1]),
    "conv": lambda z_dim, out_features, x_shape, hidden: ConvDecoder(z_dim, out_features, x_shape),
}


def make_encoder(name: EncoderName, *, x_shape: Sequence[int], hidden: Sequence[int] = (400,)) -> nn.Module:
    """Build an encoder by name (``hidden`` applies to ``mlp``)."""
    return choose(ENCODERS, name, what="encoder")(tuple(x_shape), tuple(hidden))


def make_decoder(
    name: DecoderName, *, z_dim: int, out_features: int, x_shape: Sequence[int], hidden: Sequence[int] = (400,)
) -> nn.Module:
    """Build a decoder by name (``hidden`` applies to ``mlp``, in the encoder's order)."""
    return choose(DECODERS, name, what="decoder")(z_dim, out_features, tuple(x_shape), tuple(hidden))
