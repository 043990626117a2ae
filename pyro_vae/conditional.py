"""The conditional VAE: p(z) p(x | z, y) and q(z | x, y) for data with an observed class y.

The class is an input of both networks (one-hot, concatenated to x in the
encoder and to z in the decoder), never a latent: the model explains x given
its label, so that ``sample(n, y=3)`` draws new images of class 3. Batches are
``(x, y)`` tuples, which ``fit`` and ``evaluate`` pass on as the arguments
``model(x, y, num_data)``: serve a labelled data set with
``load_dataset("mnist").with_labels()``. The prior, likelihood and guide family
come from the registries, as for :class:`~pyro_vae.vae.VAE`; log p(x | y) is
what ``evaluate`` scores.

References: Sohn, Lee & Yan 2015; Kingma et al. 2014 (the M1+M2 paper's conditional generator);
Pyro's ``examples/cvae``.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence

import pyro
import torch
import torch.nn.functional as F
from pyro.distributions.util import is_validation_enabled
from torch import nn

from pyro_vae.guides import GuideFamily, GuideName, make_guide
from pyro_vae.likelihoods import Likelihood, LikelihoodName, make_likelihood
from pyro_vae.nets import make_decoder, make_encoder
from pyro_vae.priors import Prior, PriorName, make_prior
from pyro_vae.vae import VAE, data_plate, validate_data


def check_labels(y: torch.Tensor, num_classes: int, *, allow_unknown: bool = False) -> None:
    """Refuse labels that are not whole numbers in ``0 .. num_classes - 1`` (``-1`` too where ``allow_unknown``)."""
    if y.is_floating_point() or y.dim() != 1:
        raise ValueError(f"labels must be a 1-D integer tensor of classes, got {y.dtype} of shape {tuple(y.shape)}")
    low = -1 if allow_unknown else 0
    bad = ((y < low) | (y >= num_classes)).nonzero().flatten()
    if len(bad):
        unknown = " or -1 (unknown)" if allow_unknown else ""
        raise ValueError(f"labels must be classes 0..{num_classes - 1}{unknown}; rows {bad[:10].tolist()} hold "
                         f"{y[bad[:10]].tolist()}")


class ConditionalVAE(nn.Module):
    """A VAE conditioned on a class label, with class-conditional sampling.

    :param num_classes: how many classes the labels take (0 .. ``num_classes - 1``).
    :param hidden: the hidden sizes of the MLP encoder; the decoder mirrors them.
    Other parameters as :class:`~pyro_vae.vae.VAE` (``prior="vamp"`` excepted: its
    components are q(z|x) of pseudo-inputs, which have no label).

    >>> cvae = ConditionalVAE((1, 8, 8), z_dim=2, num_classes=3, hidden=(16,))
    >>> x, y = torch.bernoulli(torch.full((6, 1, 8, 8), 0.3)), torch.tensor([0, 1, 2, 0, 1, 2])
    >>> loss = pyro.infer.Trace_ELBO().loss(cvae.model, cvae.guide, x, y)
    >>> cvae.sample(4, y=2).shape
    torch.Size([4, 1, 8, 8])
    """

    def __init__(
        self,
        x_shape: Sequence[int] = (1, 28, 28),
        z_dim: int = 20,
        num_classes: int = 10,
        *,
        prior: PriorName | Prior = "standard_normal",
        likelihood: LikelihoodName | Likelihood = "bernoulli",
        guide: GuideName | GuideFamily = "diagonal",
        hidden: Sequence[int] = (400,),
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if prior == "vamp":
            raise ValueError("prior='vamp' mixes q(z|x) of pseudo-inputs, which have no label; use 'standard_normal', "
                             "'learned_normal', 'mixture' or 'flow'")
        self.x_shape, self.z_dim, self.num_classes = tuple(x_shape), z_dim, num_classes
        self.likelihood = make_likelihood(likelihood, x_shape=x_shape) if isinstance(likelihood, str) else likelihood
        self.prior = make_prior(prior, z_dim=z_dim, x_shape=x_shape) if isinstance(prior, str) else prior
        x_dim = math.prod(self.x_shape)
        self.encoder = make_encoder("mlp", x_shape=(x_dim + num_classes,), hidden=hidden)
        self.decoder = make_decoder("mlp", z_dim=z_dim + num_classes, out_features=self.likelihood.out_features,
                                    x_shape=x_shape, hidden=hidden)
        self.guide_family = (make_guide(guide, feature_dim=self.encoder.out_features, z_dim=z_dim)
                             if isinstance(guide, str) else guide)
        self._last_checked = None

    def model(self, x: torch.Tensor, y: torch.Tensor, num_data: int | None = None) -> None:
        """p(z) p(x | z, y) for a batch; ``num_data`` as in :meth:`VAE.model`."""
        self._check(x, y)
        for name in ("prior", "decoder", "likelihood"):
            VAE._register(f"cvae_{name}", getattr(self, name))
        with data_plate(x, num_data):
            z = pyro.sample("z", self.prior())
            pyro.sample("x", self.decode(z, y), obs=x)

    def guide(self, x: torch.Tensor, y: torch.Tensor, num_data: int | None = None) -> None:
        """q(z | x, y); takes the same arguments as :meth:`model`."""
        self._check(x, y)
        VAE._register("cvae_encoder", self.encoder)
        VAE._register("cvae_guide", self.guide_family)
        with data_plate(x, num_data):
            pyro.sample("z", self.posterior(x, y))

    # -- plain functions of the networks -------------------------------------------

    def with_class(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``h`` with the one-hot class ``y`` appended, their batch dims broadcast (so that ``y`` may
        carry a sample or enumeration dim on the left)."""
        code = F.one_hot(y.long(), self.num_classes).to(h.dtype)
        shape = torch.broadcast_shapes(h.shape[:-1], code.shape[:-1])
        return torch.cat([h.expand(*shape, -1), code.expand(*shape, -1)], -1)

    def posterior(self, x: torch.Tensor, y: torch.Tensor):
        """q(z | x, y) for a batch (no checks, no Pyro sites)."""
        return self.guide_family(self.encoder(self.with_class(x.flatten(-len(self.x_shape)), y)))

    def decode(self, z: torch.Tensor, y: torch.Tensor):
        """p(x | z, y)."""
        return self.likelihood(self.decoder(self.with_class(z, y)))

    @torch.no_grad()
    def sample(self, n: int, *, y: int | torch.Tensor, mean: bool = True) -> torch.Tensor:
        """``n`` new observations of class ``y`` (an int, or ``n`` labels): z ~ p(z), then p(x | z, y)."""
        device = next(self.parameters()).device
        y = torch.as_tensor(y, device=device).long()
        y = y.expand(n) if y.dim() == 0 else y
        check_labels(y, self.num_classes)
        p_x = self.decode(self.prior().sample((n,)).to(device), y)
        return p_x.mean if mean else p_x.sample()

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.decode(self.posterior(x, y).mean, y).mean

    def validate(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """As :meth:`VAE.validate`, and the labels: whole numbers in 0 .. num_classes - 1, one per row."""
        validate_data(x, self.x_shape, self.likelihood)
        check_labels(y, self.num_classes)
        if len(y) != len(x):
            raise ValueError(f"{len(y)} labels for {len(x)} observations: give one label per row")

    def _check(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if not is_validation_enabled():
            return
        if self._last_checked is not None and self._last_checked() is x:
            return  # the guide and the model of one ELBO evaluation see the same batch
        self.validate(x, y)
        self._last_checked = weakref.ref(x)
