"""Probabilistic PCA (Tipping & Bishop 1999): the linear-Gaussian VAE whose
marginal likelihood, posterior and maximum-likelihood fit are known in closed
form. It is the reference that the library's estimators, evaluators and
diagnostics are checked against, and a small data set for tutorials.

    z ~ N(0, I_q),   x | z ~ N(W z + mu, sigma^2 I_d)
    p(x)     = N(mu, W W^T + sigma^2 I)
    p(z | x) = N(M^-1 W^T (x - mu), sigma^2 M^-1),   M = W^T W + sigma^2 I
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro.distributions as dist
import torch

from pyro_vae.guides import FullNormal
from pyro_vae.likelihoods import Gaussian
from pyro_vae.vae import VAE


def _softplus_inverse(y: torch.Tensor) -> torch.Tensor:
    return y.expm1().log()


@dataclass(frozen=True)
class PPCA:
    """A probabilistic PCA model with loadings ``W`` (d x q), mean ``mu`` (d) and noise ``sigma``.

    >>> import pyro
    >>> ppca = PPCA.random(x_dim=5, z_dim=2, sigma=0.5, seed=0)
    >>> x = ppca.sample(100, seed=1)
    >>> vae = ppca.vae(exact_guide=True)
    >>> elbo = -pyro.infer.Trace_ELBO().loss(vae.model, vae.guide, x)
    >>> abs(elbo - ppca.log_marginal(x).sum().item()) < 1e-6
    True
    """

    W: torch.Tensor
    mu: torch.Tensor
    sigma: float

    @classmethod
    def random(
        cls, x_dim: int = 5, z_dim: int = 2, sigma: float = 0.5, *, seed: int = 0, dtype=torch.float64
    ) -> PPCA:
        """Loadings and mean drawn from N(0, 1) with a fixed seed."""
        g = torch.Generator().manual_seed(seed)
        return cls(torch.randn(x_dim, z_dim, generator=g, dtype=dtype), torch.randn(x_dim, generator=g, dtype=dtype), sigma)

    @property
    def x_dim(self) -> int:
        return self.W.shape[0]

    @property
    def z_dim(self) -> int:
        return self.W.shape[1]

    def sample(self, n: int, *, seed: int = 0) -> torch.Tensor:
        """``n`` observations ``(n, x_dim)``."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.z_dim, generator=g, dtype=self.W.dtype)
        return z @ self.W.T + self.mu + self.sigma * torch.randn(n, self.x_dim, generator=g, dtype=self.W.dtype)

    def marginal(self) -> dist.MultivariateNormal:
        """p(x)."""
        eye = torch.eye(self.x_dim, dtype=self.W.dtype)
        return dist.MultivariateNormal(self.mu, self.W @ self.W.T + self.sigma**2 * eye)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) per observation."""
        return self.marginal().log_prob(x)

    def posterior(self, x: torch.Tensor) -> dist.MultivariateNormal:
        """p(z | x) for a batch of observations."""
        M = self.W.T @ self.W + self.sigma**2 * torch.eye(self.z_dim, dtype=self.W.dtype)
        M_inv = torch.linalg.inv(M)
        loc = (x - self.mu) @ (M_inv @ self.W.T).T
        return dist.MultivariateNormal(loc, scale_tril=torch.linalg.cholesky(self.sigma**2 * M_inv))

    @classmethod
    def maximum_likelihood(cls, x: torch.Tensor, z_dim: int) -> PPCA:
        """The closed-form maximum-likelihood fit (Tipping & Bishop 1999, eqs. 7-8):
        mu the sample mean, sigma^2 the mean of the discarded eigenvalues of the
        sample covariance, W = U_q (Lambda_q - sigma^2 I)^(1/2)."""
        mu = x.mean(0)
        S = (x - mu).T @ (x - mu) / x.shape[0]
        eigenvalues, eigenvectors = torch.linalg.eigh(S)  # ascending
        eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
        sigma2 = eigenvalues[z_dim:].mean()
        W = eigenvectors[:, :z_dim] * (eigenvalues[:z_dim] - sigma2).clamp(min=0).sqrt()
        return cls(W, mu, float(sigma2.sqrt()))

    def vae(self, *, exact_guide: bool = True, learn_scale: bool = False) -> VAE:
        """The linear-Gaussian :class:`~pyro_vae.vae.VAE` of this model (linear
        decoder, isotropic Gaussian likelihood, full-covariance guide on linear
        features), in this model's dtype. With ``exact_guide=True`` the decoder
        holds ``W`` and ``mu`` and the guide is the exact posterior p(z|x), so
        the ELBO equals log p(x) for every draw of z."""
        x_shape = (self.x_dim,)
        vae = VAE(
            x_shape,
            self.z_dim,
            likelihood=Gaussian(x_shape, scale=self.sigma, learn_scale=learn_scale, per_pixel=False),
            guide=FullNormal(self.x_dim, self.z_dim),
            hidden=(),
        ).to(self.W.dtype)
        if exact_guide:
            self._set_exact(vae)
        return vae

    def _set_exact(self, vae: VAE) -> None:
        decoder = vae.decoder.net[0]
        head: torch.nn.Linear = vae.guide_family.head
        q = self.posterior(torch.zeros(1, self.x_dim, dtype=self.W.dtype))
        M = self.W.T @ self.W + self.sigma**2 * torch.eye(self.z_dim, dtype=self.W.dtype)
        A = torch.linalg.solve(M, self.W.T)  # posterior mean = A (x - mu)
        L = q.scale_tril[0]
        rows, cols = vae.guide_family.rows, vae.guide_family.cols
        z, guide_floor = self.z_dim, vae.guide_family.min_scale
        with torch.no_grad():
            # the noise scale too, computed in this dtype (the likelihood's buffer was made in float32)
            floor = vae.likelihood.min_scale
            vae.likelihood.raw_scale.copy_(_softplus_inverse(torch.tensor(self.sigma - floor, dtype=self.W.dtype)))
            decoder.weight.copy_(self.W)
            decoder.bias.copy_(self.mu)
            head.weight.zero_()
            head.weight[:z] = A
            head.bias[:z] = -A @ self.mu
            head.bias[z : 2 * z] = _softplus_inverse(L.diagonal() - guide_floor)
            head.bias[2 * z :] = L[rows, cols]
