"""The VAE: a Pyro ``model`` p(z) p(x|z) and ``guide`` q(z|x) built from named parts.

The structure follows Pyro's ``examples/vae/vae.py``: the networks are
registered with ``pyro.module``, the data points sit under
``pyro.plate("data")`` (whose ``size`` may be the whole data set, so that a
minibatch loss estimates the full-data ELBO) and each site carries one
observation's event dims (``.to_event``). The latent site is ``"z"``, the
observed site ``"x"``.

References: Kingma & Welling 2014; Rezende et al. 2014.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
from pyro.distributions.util import is_validation_enabled
from pyro.params import param_with_module_name
import torch
from torch import nn

from inference.batching import listed, nonfinite_rows
from inference.options import choose
from pyro_vae.guides import GuideFamily, GuideName, make_guide
from pyro_vae.likelihoods import Likelihood, LikelihoodName, make_likelihood
from pyro_vae.nets import INITS, DecoderName, EncoderName, InitName, make_decoder, make_encoder
from pyro_vae.priors import Prior, PriorName, make_prior


class VAE(nn.Module):
    """A variational autoencoder whose parts are chosen by name or passed in.

    :param x_shape: the shape of one observation, e.g. ``(1, 28, 28)``.
    :param z_dim: the latent dimension.
    :param prior: a name from :data:`pyro_vae.priors.PRIORS` or a :class:`~pyro_vae.priors.Prior`.
    :param likelihood: a name from :data:`pyro_vae.likelihoods.LIKELIHOODS` or a
        :class:`~pyro_vae.likelihoods.Likelihood`.
    :param guide: a name from :data:`pyro_vae.guides.GUIDES` or a :class:`~pyro_vae.guides.GuideFamily`
        (whose ``feature_dim`` must match the encoder's ``out_features``).
    :param encoder: ``"mlp"``, ``"gated_mlp"``, ``"conv"`` or an ``nn.Module`` with an ``out_features`` attribute.
    :param decoder: ``"mlp"``, ``"gated_mlp"``, ``"conv"`` or an ``nn.Module`` mapping z to
        ``likelihood.out_features`` numbers.
    :param hidden: the hidden layer sizes of the MLP encoder (the decoder mirrors
        them); ``()`` makes both linear.
    :param init: how the linear layers of the encoder, the decoder and the guide start, a name
        from :data:`pyro_vae.nets.INITS` (``"torch"``, ``"glorot"``, ``"he"``); the prior keeps its own.
    :param check_data: check each batch's shape, finiteness and support before
        use, with an error that names the fix. The checks run while Pyro's
        validation is on (its default, and in tests), like Pyro's own checks of
        distribution arguments and observed values; ``fit`` keeps validation on
        for its first step only, so a long run pays for them once (they cost
        about 2 % of a step at batch 128). ``False`` turns them off altogether.

    >>> vae = VAE(x_shape=(1, 28, 28), z_dim=2, likelihood="bernoulli", hidden=(64,))
    >>> x = torch.bernoulli(torch.full((8, 1, 28, 28), 0.3))
    >>> loss = pyro.infer.Trace_ELBO().loss(vae.model, vae.guide, x)
    >>> vae.sample(4).shape
    torch.Size([4, 1, 28, 28])
    """

    def __init__(
        self,
        x_shape: Sequence[int] = (1, 28, 28),
        z_dim: int = 20,
        *,
        prior: PriorName | Prior = "standard_normal",
        likelihood: LikelihoodName | Likelihood = "bernoulli",
        guide: GuideName | GuideFamily = "diagonal",
        encoder: EncoderName | nn.Module = "mlp",
        decoder: DecoderName | nn.Module = "mlp",
        hidden: Sequence[int] = (400,),
        init: InitName = "torch",
        check_data: bool = True,
    ) -> None:
        super().__init__()
        initialize = choose(INITS, init, what="init")
        self.x_shape, self.z_dim, self.check_data = tuple(x_shape), z_dim, check_data
        self._last_checked = None
        if z_dim < 1:
            raise ValueError(f"z_dim must be >= 1, got {z_dim}")
        self.prior = make_prior(prior, z_dim=z_dim, x_shape=x_shape) if isinstance(prior, str) else prior
        self.likelihood = (
            make_likelihood(likelihood, x_shape=x_shape) if isinstance(likelihood, str) else likelihood
        )
        self.encoder = make_encoder(encoder, x_shape=x_shape, hidden=hidden) if isinstance(encoder, str) else encoder
        self.decoder = (
            make_decoder(decoder, z_dim=z_dim, out_features=self.likelihood.out_features, x_shape=x_shape, hidden=hidden)
            if isinstance(decoder, str)
            else decoder
        )
        self.guide_family = (
            make_guide(guide, feature_dim=self.encoder.out_features, z_dim=z_dim) if isinstance(guide, str) else guide
        )
        for module in (self.encoder, self.decoder, self.guide_family):
            module.apply(initialize)

    # -- the two Pyro programs ------------------------------------------------------

    def model(self, x: torch.Tensor, num_data: int | None = None) -> None:
        """p(z) p(x|z) for a batch ``x`` of shape ``(batch, *x_shape)``.

        :param num_data: the size of the whole data set when ``x`` is a
            minibatch: the ``"data"`` plate then scales the batch's terms by
            ``num_data / batch`` so that the loss estimates the full-data ELBO.
        """
        self._check(x)
        self._register("prior", self.prior)
        self._register("decoder", self.decoder)
        self._register("likelihood", self.likelihood)
        p_z = self.prior(self.posterior)
        with self._plate(x, num_data):
            z = pyro.sample("z", p_z)
            pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)

    def guide(self, x: torch.Tensor, num_data: int | None = None) -> None:
        """q(z|x), amortized by the encoder; takes the same arguments as :meth:`model`."""
        self._check(x)
        self._register("encoder", self.encoder)
        self._register("guide", self.guide_family)
        with self._plate(x, num_data):
            pyro.sample("z", self.posterior(x))

    # -- plain functions of the networks -------------------------------------------

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        """q(z|x) for a batch of observations (no data checks, no Pyro sites)."""
        return self.guide_family(self.encoder(x))

    encode = posterior

    def local_guide(self, x: torch.Tensor):
        """A non-amortized guide of this VAE's family for the batch ``x``: free
        per-datum parameters, initialized at the encoder's output. Returns
        ``(guide, [params])`` for :func:`inference.diagnostics.amortization_gap`."""
        if not hasattr(self.guide_family, "head"):
            raise ValueError(
                f"guide {type(self.guide_family).__name__} has no free per-datum parameters (its flows are conditioned "
                f"on the encoder's features); the amortization gap needs guide='diagonal', 'low_rank' or 'full'"
            )
        with torch.no_grad():
            params = self.guide_family.head(self.encoder(x)).clone()
        params.requires_grad_(True)
        family = self.guide_family

        def guide(x_batch, num_data=None):
            with self._plate(x_batch, num_data):
                pyro.sample("z", family.distribution(params))

        return guide, [params]

    def decode(self, z: torch.Tensor) -> dist.TorchDistribution:
        """p(x|z) for a batch of latents shaped ``(*batch, z_dim)``."""
        return self.likelihood(self.decoder(z))

    def latent_mean(self, x: torch.Tensor, num_samples: int = 64) -> torch.Tensor:
        """E_q[z|x]: exact where q has a closed-form mean, else a Monte Carlo average."""
        q = self.posterior(x)
        try:
            return q.mean
        except NotImplementedError:
            return q.sample((num_samples,)).mean(0)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of p(x | z = E_q[z|x]): what the images look like through the bottleneck."""
        return self.decode(self.latent_mean(x)).mean

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = True) -> torch.Tensor:
        """``n`` new observations: z ~ p(z), then the mean of p(x|z) (``mean=True``,
        the usual picture) or a draw from it."""
        p_x = self.decode(self.prior(self.posterior).sample((n,)))
        return p_x.mean if mean else p_x.sample()

    # -- helpers ------------------------------------------------------------------------

    @staticmethod
    def _register(name: str, module: nn.Module) -> None:
        """``pyro.module(name, module)``, but this module's parameters win over a
        previous VAE's that the global param store holds under the same names
        (``pyro.module`` would silently hand back the old tensors, and an
        optimizer built from the param sites would train the wrong VAE)."""
        store = pyro.get_param_store()
        params = list(module.named_parameters())
        if params:
            first = param_with_module_name(name, params[0][0])
            if first in store and store[first] is not params[0][1]:
                for param_name, param in params:
                    key = param_with_module_name(name, param_name)
                    if key in store and store[key] is not param:
                        del store[key]
        pyro.module(name, module)

    def _plate(self, x: torch.Tensor, num_data: int | None):
        return data_plate(x, num_data)

    def _check(self, x: torch.Tensor) -> None:
        if not (self.check_data and is_validation_enabled()):
            return
        if self._last_checked is not None and self._last_checked() is x:
            return  # the guide and the model of one ELBO evaluation see the same batch: check it once
        self.validate(x)
        self._last_checked = weakref.ref(x)

    def validate(self, x: torch.Tensor) -> None:
        """Refuse data that this VAE cannot model: not floating point, the wrong
        shape, NaN or inf, or values outside the likelihood's support. The
        message names the first offending rows of ``x`` and the fix. One pass
        of ``aminmax`` and the support check (tens of milliseconds for MNIST);
        :func:`inference.fit` calls it once on a whole tensor data set.

        >>> vae = VAE(x_shape=(1, 2, 2), z_dim=2, hidden=(4,))
        >>> x = torch.zeros(5, 1, 2, 2); x[3, 0, 0, 1] = 0.5
        >>> vae.validate(x)
        Traceback (most recent call last):
        ...
        ValueError: likelihood Bernoulli needs binary pixels (0 or 1), but the data range over [0, 0.5] (rows [3]); use representation='dynamic' or 'static', or likelihood='continuous_bernoulli'
        """
        validate_data(x, self.x_shape, self.likelihood)


def data_plate(x: torch.Tensor, num_data: int | None):
    """``pyro.plate("data")`` over the batch ``x``, subsampled from ``num_data`` when that is larger."""
    batch = x.shape[0]
    if num_data is None or num_data == batch:
        return pyro.plate("data", batch, dim=-1)
    if num_data < batch:
        raise ValueError(f"num_data={num_data} is smaller than the batch ({batch})")
    return pyro.plate("data", num_data, subsample=torch.arange(batch, device=x.device), dim=-1)


def validate_data(x: torch.Tensor, x_shape: Sequence[int], likelihood: Likelihood) -> None:
    """The checks of :meth:`VAE.validate`, for any model with observations of ``x_shape`` under ``likelihood``."""
    x_shape = tuple(x_shape)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {type(x).__name__} {getattr(x, 'dtype', '')}")
    if x.dim() != len(x_shape) + 1 or tuple(x.shape[1:]) != x_shape:
        raise ValueError(
            f"x must be shaped (batch, {', '.join(map(str, x_shape))}), got {tuple(x.shape)}; "
            f"reshape it, e.g. x.reshape(-1, {', '.join(map(str, x_shape))})"
        )
    lo, hi = (v.item() for v in torch.aminmax(x))  # NaN and inf show up in the extremes
    if not (math.isfinite(lo) and math.isfinite(hi)):
        rows = nonfinite_rows(x)
        raise ValueError(
            f"x holds non-finite values (NaN or inf) in {len(rows)} of its {len(x)} rows, {listed(rows)}; "
            f"clean or drop those observations first"
        )
    try:
        likelihood.check_support(x, lo, hi)
    except ValueError as error:  # name the rows, found by bisection (a few checks for a few bad rows)
        rows = _failing_rows(x, lambda part: _fails(likelihood, part))
        raise ValueError(str(error).replace("; ", f" (rows {listed(rows)}); ", 1)) from None


def _fails(likelihood, x: torch.Tensor) -> bool:
    try:
        likelihood.check_support(x, *(v.item() for v in torch.aminmax(x)))
    except ValueError:
        return True
    return False


def _failing_rows(x: torch.Tensor, fails, most: int = 11) -> list[int]:
    """The first ``most`` rows ``i`` of ``x`` with ``fails(x[i:i+1])``, by bisection over row ranges."""
    found, ranges = [], [(0, x.shape[0])]
    while ranges and len(found) < most:
        lo, hi = ranges.pop()
        if not fails(x[lo:hi]):
            continue
        if hi - lo == 1:
            found.append(lo)
            continue
        mid = (lo + hi) // 2
        ranges += [(mid, hi), (lo, mid)]  # the lower half is examined first
    return found
