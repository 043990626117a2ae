"""Kingma et al.'s M2 model: a semi-supervised VAE whose class y is observed where labelled and latent elsewhere.

Generative model: y ~ Cat(1/C), z ~ p(z), x | y, z ~ the likelihood of
decoder(z, y). Recognition model: the classifier q(y | x) and q(z | x, y).
A batch is ``(x, y)`` with ``y = -1`` where the label is unknown
(``load_dataset(...).with_labels(count)``); the model splits it:

- labelled rows, under ``pyro.plate("labelled")``: sites ``y_labelled`` (observed),
  ``z_labelled``, ``x_labelled``, and the classifier's extra term
  ``alpha * log q(y | x)`` as the observed site ``y_classified`` (Kingma et
  al.'s eq. 9: without it q(y|x) would learn only from unlabelled data);
- unlabelled rows, under ``pyro.plate("data")``: sites ``y`` (latent, drawn from
  the classifier in the guide), ``z`` and ``x``.

The generative part and q(z | x, y) are a :class:`~pyro_vae.conditional.ConditionalVAE`
(``m2.cvae``), whose encoder, decoder, prior and sampling M2 uses as they are. Both parts are
scaled by ``num_data / batch``, so a minibatch estimates the
objective of the whole data set. Train with ``estimator="enum"``: the guide's
``y`` is summed over its C values in parallel (Pyro's enumeration) instead of
sampled, which removes the score-function variance of a discrete latent.
Scoring a test set without labels (all ``-1``) leaves only the unlabelled part,
with the VAE conventions (plate ``"data"``, sites ``z`` and ``x``), so
``evaluate`` gives log p(x) with y and z importance-sampled; :meth:`error_rate`
gives the classifier's test error.

``alpha`` weighs log q(y|x) per labelled datum. Kingma et al. weigh the mean over
the labelled data by 0.1 N (N = all data), which is ``alpha = 0.1 * N / labelled``
per datum (2 for 3000 labels of MNIST's 60 000, 60 for 100): :meth:`SemiSupervisedVAE.kingma_alpha`.

References: Kingma, Rezende, Mohamed & Welling 2014 (section 3.1.2, M2); Pyro's
``examples/vae/ss_vae_M2.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.util import is_validation_enabled
from torch import nn

from pyro_vae.conditional import ConditionalVAE, check_labels
from pyro_vae.likelihoods import Likelihood, LikelihoodName
from pyro_vae.nets import make_encoder
from pyro_vae.priors import Prior, PriorName
from pyro_vae.vae import VAE, validate_data


class SemiSupervisedVAE(nn.Module):
    """M2 (Kingma et al. 2014): a classifier q(y|x) trained with a VAE on labelled and unlabelled data.

    :param num_classes: the classes of y (0 .. ``num_classes - 1``; ``-1`` marks an unknown label).
    :param alpha: the weight of log q(y|x) per labelled datum (see the module docstring).
    :param hidden: the hidden sizes of the classifier's and the encoder's MLPs; the decoder mirrors them.

    >>> m2 = SemiSupervisedVAE((1, 8, 8), z_dim=2, num_classes=3, hidden=(16,))
    >>> x, y = torch.bernoulli(torch.full((6, 1, 8, 8), 0.3)), torch.tensor([0, -1, 2, -1, 1, -1])
    >>> from inference import make_elbo
    >>> loss = make_elbo("enum").loss(m2.model, m2.guide, x, y)
    >>> m2.classify(x).shape, m2.sample(4, y=1).shape
    (torch.Size([6]), torch.Size([4, 1, 8, 8]))
    """

    def __init__(
        self,
        x_shape: Sequence[int] = (1, 28, 28),
        z_dim: int = 50,
        num_classes: int = 10,
        *,
        alpha: float = 10.0,
        prior: PriorName | Prior = "standard_normal",
        likelihood: LikelihoodName | Likelihood = "bernoulli",
        hidden: Sequence[int] = (500,),
    ) -> None:
        super().__init__()
        if alpha < 0:
            raise ValueError(f"alpha weighs log q(y|x) and must be >= 0, got {alpha}")
        self.alpha = alpha
        self.cvae = ConditionalVAE(x_shape, z_dim, num_classes, prior=prior, likelihood=likelihood, hidden=hidden)
        features = make_encoder("mlp", x_shape=x_shape, hidden=hidden)
        self.classifier = nn.Sequential(features, nn.Linear(features.out_features, num_classes))

    @staticmethod
    def kingma_alpha(data) -> float:
        """Kingma et al.'s alpha for a labelled data set (``with_labels(count)``): 0.1 N on the mean
        over the labelled data, i.e. ``0.1 * len(data) / labelled`` per labelled datum."""
        return 0.1 * len(data) / max(data.num_labelled, 1)

    @property
    def x_shape(self) -> tuple[int, ...]:
        return self.cvae.x_shape

    @property
    def z_dim(self) -> int:
        return self.cvae.z_dim

    @property
    def num_classes(self) -> int:
        return self.cvae.num_classes

    # -- the two Pyro programs ------------------------------------------------------

    def model(self, x: torch.Tensor, y: torch.Tensor, num_data: int | None = None) -> None:
        """p(y) p(z) p(x | y, z) for every row, y observed where known, and alpha log q(y|x) there."""
        self._check(x, y)
        for name in ("prior", "decoder", "likelihood"):
            VAE._register(f"m2_{name}", getattr(self.cvae, name))
        VAE._register("m2_classifier", self.classifier)
        known = y >= 0
        uniform = dist.Categorical(logits=x.new_zeros(self.num_classes))
        with poutine.scale(scale=self._scale(x, num_data)):
            if known.any():
                x_l, y_l = x[known], y[known]
                with pyro.plate("labelled", len(x_l), dim=-1):
                    pyro.sample("y_labelled", uniform, obs=y_l)
                    z = pyro.sample("z_labelled", self.cvae.prior())
                    pyro.sample("x_labelled", self.cvae.decode(z, y_l), obs=x_l)
                    if self.alpha:
                        with poutine.scale(scale=self.alpha):
                            pyro.sample("y_classified", dist.Categorical(logits=self.classifier(x_l)), obs=y_l)
            if not known.all():
                x_u = x[~known]
                with pyro.plate("data", len(x_u), dim=-1):
                    y_u = pyro.sample("y", uniform)
                    z = pyro.sample("z", self.cvae.prior())
                    pyro.sample("x", self.cvae.decode(z, y_u), obs=x_u)

    def guide(self, x: torch.Tensor, y: torch.Tensor, num_data: int | None = None) -> None:
        """q(z | x, y) on labelled rows; q(y | x) q(z | x, y) on the others."""
        self._check(x, y)
        for name in ("encoder", "guide_family"):
            VAE._register(f"m2_{name}", getattr(self.cvae, name))
        VAE._register("m2_classifier", self.classifier)
        known = y >= 0
        with poutine.scale(scale=self._scale(x, num_data)):
            if known.any():
                x_l, y_l = x[known], y[known]
                with pyro.plate("labelled", len(x_l), dim=-1):
                    pyro.sample("z_labelled", self.cvae.posterior(x_l, y_l))
            if not known.all():
                x_u = x[~known]
                with pyro.plate("data", len(x_u), dim=-1):
                    y_u = pyro.sample("y", dist.Categorical(logits=self.classifier(x_u)))
                    pyro.sample("z", self.cvae.posterior(x_u, y_u))

    # -- plain functions of the networks -------------------------------------------

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable class under q(y | x)."""
        return self.classifier(x).argmax(-1)

    @torch.no_grad()
    def error_rate(self, data, batch_size: int = 1000) -> float:
        """The classifier's error on a labelled data set (``ImageData`` with labels, or its ``with_labels()``)."""
        labels = data.labels.long()
        index = torch.arange(len(data))
        device = next(self.parameters()).device
        wrong = 0
        for chunk in index.split(batch_size):
            batch = data.batch(chunk)
            x = batch[0] if isinstance(batch, tuple) else batch
            wrong += int((self.classify(x.to(device)).cpu() != labels[chunk]).sum())
        return wrong / len(data)

    def sample(self, n: int, *, y: int | torch.Tensor, mean: bool = True) -> torch.Tensor:
        """``n`` new observations of class ``y``: :meth:`ConditionalVAE.sample` of the generative part."""
        return self.cvae.sample(n, y=y, mean=mean)

    def validate(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """As :meth:`VAE.validate`, and the labels: classes 0 .. num_classes - 1, or -1 (unknown), one per row."""
        validate_data(x, self.x_shape, self.cvae.likelihood)
        check_labels(y, self.num_classes, allow_unknown=True)
        if len(y) != len(x):
            raise ValueError(f"{len(y)} labels for {len(x)} observations: give one label (or -1) per row")

    @staticmethod
    def _scale(x: torch.Tensor, num_data: int | None) -> float:
        if num_data is not None and num_data < len(x):
            raise ValueError(f"num_data={num_data} is smaller than the batch ({len(x)})")
        return (num_data or len(x)) / len(x)

    def _check(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if is_validation_enabled():
            self.validate(x, y)
