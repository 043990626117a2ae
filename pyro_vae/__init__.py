"""pyro-vae: variational autoencoders as Pyro models and guides.

``pyro_vae`` says what p(z), p(x|z) and q(z|x) *are*; the :mod:`inference`
package says how any Pyro model/guide pair is fit and judged.
"""

from pyro_vae.conditional import ConditionalVAE
from pyro_vae.data import DatasetNotFoundError, ImageData, LabelledData, data_dir, load_dataset
from pyro_vae.guides import GUIDES
from pyro_vae.hierarchical import HierarchicalVAE
from pyro_vae.likelihoods import LIKELIHOODS
from pyro_vae.ppca import PPCA
from pyro_vae.priors import PRIORS
from pyro_vae.semi_supervised import SemiSupervisedVAE
from pyro_vae.vae import VAE

__all__ = [
    "ConditionalVAE",
    "GUIDES",
    "HierarchicalVAE",
    "LIKELIHOODS",
    "PPCA",
    "PRIORS",
    "SemiSupervisedVAE",
    "VAE",
    "DatasetNotFoundError",
    "ImageData",
    "LabelledData",
    "data_dir",
    "load_dataset",
]
