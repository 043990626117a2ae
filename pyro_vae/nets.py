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


class GatedDense(nn.Module):
    """A gated hidden layer: ``h(x) * sigmoid(g(x))`` for two affine maps h and g of the input
    (Dauphin et al. 2017's gated linear unit; the hidden units of Tomczak & Welling 2018's code),
    computed as one ``Linear(in_features, 2 * out_features)``: h and g are its two halves, each
    initialised as a layer of its own would be (same fan-in).

    >>> GatedDense(784, 300)(torch.rand(5, 784)).shape
    torch.Size([5, 300])
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, 2 * out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, g = self.linear(x).chunk(2, dim=-1)
        return h * torch.sigmoid(g)


Units = Literal["softplus", "gated"]
#: name -> the modules of one hidden layer of an MLP, given its input and output sizes
UNITS = {
    "softplus": lambda n_in, n_out: [nn.Linear(n_in, n_out), nn.Softplus()],
    "gated": lambda n_in, n_out: [GatedDense(n_in, n_out)],
}


def _hidden_layers(sizes: Sequence[int], units: Units) -> list[nn.Module]:
    """The hidden layers between ``sizes``, each with its nonlinearity."""
    layer = choose(UNITS, units, what="units")
    return [module for n_in, n_out in zip(sizes[:-1], sizes[1:]) for module in layer(n_in, n_out)]


class MLPEncoder(nn.Module):
    """Flatten x and apply fully connected layers: softplus units (as in Pyro's VAE example),
    or ``units="gated"`` (:class:`GatedDense`).

    >>> MLPEncoder((1, 28, 28), hidden=(400,))(torch.rand(5, 1, 28, 28)).shape
    torch.Size([5, 400])
    """

    def __init__(self, x_shape: Sequence[int], hidden: Sequence[int] = (400,), units: Units = "softplus") -> None:
        super().__init__()
        self.x_shape = tuple(x_shape)
        x_dim = math.prod(self.x_shape)
        self.out_features = hidden[-1] if hidden else x_dim
        # every hidden layer ends in its nonlinearity: the guide head is the last linear map
        self.net = nn.Sequential(*_hidden_layers([x_dim, *hidden], units))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(-len(self.x_shape)))


class MLPDecoder(nn.Module):
    """Fully connected layers from z to the flat likelihood parameters: hidden layers of
    softplus or gated units, then a linear map.

    >>> MLPDecoder(20, out_features=784, hidden=(400,))(torch.randn(3, 5, 20)).shape
    torch.Size([3, 5, 784])
    """

    def __init__(self, z_dim: int, out_features: int, hidden: Sequence[int] = (400,), units: Units = "softplus") -> None:
        super().__init__()
        self.net = nn.Sequential(*_hidden_layers([z_dim, *hidden], units),
                                 nn.Linear(hidden[-1] if hidden else z_dim, out_features))

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


EncoderName = Literal["mlp", "gated_mlp", "conv"]
DecoderName = Literal["mlp", "gated_mlp", "conv"]

ENCODERS = {
    "mlp": lambda x_shape, hidden: MLPEncoder(x_shape, hidden=hidden),
    "gated_mlp": lambda x_shape, hidden: MLPEncoder(x_shape, hidden=hidden, units="gated"),
    "conv": lambda x_shape, hidden: ConvEncoder(x_shape),
}
DECODERS = {
    "mlp": lambda z_dim, out_features, x_shape, hidden: MLPDecoder(z_dim, out_features, hidden=hidden[::-1]),
    "gated_mlp": lambda z_dim, out_features, x_shape, hidden: MLPDecoder(z_dim, out_features, hidden=hidden[::-1],
                                                                         units="gated"),
    "conv": lambda z_dim, out_features, x_shape, hidden: ConvDecoder(z_dim, out_features, x_shape),
}


@torch.no_grad()
def _glorot(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


@torch.no_grad()
def _he(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.kaiming_normal_(module.weight, nonlinearity="relu")  # N(0, 2 / fan_in); biases as torch's


#: name -> what it does to every submodule after construction (``module.apply``): ``"torch"``,
#: PyTorch's default for linear layers; ``"glorot"``, Glorot-uniform weights and zero biases (Burda et
#: al.'s code); ``"he"``, weights N(0, 2 / fan_in) and torch's biases (Tomczak & Welling's code)
INITS = {"torch": lambda module: None, "glorot": _glorot, "he": _he}
InitName = Literal["torch", "glorot", "he"]


def make_encoder(name: EncoderName, *, x_shape: Sequence[int], hidden: Sequence[int] = (400,)) -> nn.Module:
    """Build an encoder by name (``hidden`` applies to ``mlp``)."""
    return choose(ENCODERS, name, what="encoder")(tuple(x_shape), tuple(hidden))


def make_decoder(
    name: DecoderName, *, z_dim: int, out_features: int, x_shape: Sequence[int], hidden: Sequence[int] = (400,)
) -> nn.Module:
    """Build a decoder by name (``hidden`` applies to ``mlp``, in the encoder's order)."""
    return choose(DECODERS, name, what="decoder")(z_dim, out_features, tuple(x_shape), tuple(hidden))
