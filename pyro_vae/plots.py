"""Figures of a trained VAE; each function returns a matplotlib ``Figure``.

Every figure is drawn with the object-oriented API (no global pyplot state),
so it works headless and in notebooks alike; save it with ``fig.savefig``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from pyro_vae.vae import VAE


def _grid(images: torch.Tensor, nrow: int) -> np.ndarray:
    """Tile ``(N, C, H, W)`` images into one ``(rows*H, nrow*W[, C])`` array with 1-pixel gaps."""
    images = images.detach().float().cpu().clamp(0, 1)
    n, c, h, w = images.shape
    rows = math.ceil(n / nrow)
    canvas = torch.ones(c, rows * (h + 1) - 1, nrow * (w + 1) - 1)
    for i, image in enumerate(images):
        r, col = divmod(i, nrow)
        canvas[:, r * (h + 1) : r * (h + 1) + h, col * (w + 1) : col * (w + 1) + w] = image
    return canvas[0].numpy() if c == 1 else canvas.permute(1, 2, 0).numpy()


def _show(ax, images: torch.Tensor, nrow: int, title: str | None = None) -> None:
    ax.imshow(_grid(images, nrow), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)


def _site(vae) -> str:
    """The latent a figure shows: ``"z"`` for a one-layer VAE, ``"z2"`` for layer 2 of a hierarchy."""
    return getattr(vae, "site", "z")


def _decoded(vae) -> str:
    """How a figure turns latents into images (a hierarchy's upper layers go down through means)."""
    return getattr(vae, "decoded_by", "mean of p(x|z)")


def _images(vae: VAE, x: torch.Tensor) -> torch.Tensor:
    """Observations as ``(N, C, H, W)`` for display (vectors become one-row images)."""
    return x.reshape(x.shape[0], 1, 1, -1) if len(vae.x_shape) == 1 else x.reshape(x.shape[0], *vae.x_shape)


def reconstructions(vae: VAE, x: torch.Tensor, n: int = 10) -> Figure:
    """Inputs (top row) above the means of p(x | z = E_q[z|x]) (bottom row)."""
    x = x[:n]
    fig = Figure(figsize=(1.0 * len(x), 2.4), layout="constrained")
    top, bottom = fig.subplots(2, 1)
    _show(top, _images(vae, x), len(x), "inputs")
    _show(bottom, _images(vae, vae.reconstruct(x)), len(x), "reconstructions")
    return fig


def samples(vae: VAE, n: int = 64) -> Figure:
    """Means of p(x|z) for z drawn from the prior."""
    nrow = math.ceil(math.sqrt(n))
    fig = Figure(figsize=(6, 6), layout="constrained")
    _show(fig.subplots(), _images(vae, vae.sample(n)), nrow, f"{n} samples: z ~ p(z), mean of p(x|z)")
    return fig


def class_samples(cvae, n: int = 10, classes: Sequence[int] | None = None) -> Figure:
    """A conditional model's samples: one row per class, ``n`` draws of z each (means of p(x | z, y))."""
    classes = list(range(cvae.num_classes)) if classes is None else list(classes)
    images = torch.cat([cvae.sample(n, y=c) for c in classes])
    fig = Figure(figsize=(n * 0.8, len(classes) * 0.8 + 0.6), layout="constrained")
    _show(fig.subplots(), _images(cvae, images), n, f"samples by class (rows: y = {classes[0]}..{classes[-1]})")
    return fig


def training_curves(metrics: Sequence[dict]) -> Figure:
    """Loss, validation ELBO terms and beta per epoch (from ``FitResult.metrics`` or ``metrics.csv``)."""
    epochs = [float(m["epoch"]) for m in metrics]
    fig = Figure(figsize=(11, 3.2), layout="constrained")
    loss_ax, terms_ax, beta_ax = fig.subplots(1, 3)
    loss_ax.plot(epochs, [float(m["train_loss"]) for m in metrics], label="train loss (per datum)")
    if "val_elbo" in metrics[0]:
        loss_ax.plot(epochs, [-float(m["val_elbo"]) for m in metrics], label="validation -ELBO")
        terms_ax.plot(epochs, [-float(m["val_reconstruction"]) for m in metrics], color="C0")
        terms_ax.set_ylabel("-E[log p(x|z)]", color="C0")
        kl_ax = terms_ax.twinx()  # the KL is often two orders of magnitude smaller
        kl_ax.plot(epochs, [float(m["val_kl"]) for m in metrics], color="C1")
        kl_ax.set_ylabel("KL(q || p)", color="C1")
    terms_ax.set_title("validation terms (nats)")
    loss_ax.set_title("loss (nats)")
    loss_ax.legend()
    beta_ax.plot(epochs, [float(m["beta"]) for m in metrics])
    beta_ax.set_title("beta")
    for ax in (loss_ax, terms_ax, beta_ax):
        ax.set_xlabel("epoch")
    return fig


def manifold(vae: VAE, n: int = 20) -> Figure:
    """For a 2-D latent space: decoded means over an ``n x n`` grid whose
    coordinates are the standard normal's quantiles at evenly spaced
    probabilities, as in Kingma & Welling 2014 (fig. 4). ``vae`` may be a layer
    of a hierarchy (``HierarchicalVAE.layer(l)``)."""
    if vae.z_dim != 2:
        raise ValueError(f"the manifold grid needs a 2-D latent, {_site(vae)} has {vae.z_dim} dimensions; "
                         f"use traversals()")
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.5 / n, 1 - 0.5 / n, n))
    z = torch.stack(torch.meshgrid(q, q.flip(0), indexing="xy"), -1).reshape(-1, 2)
    with torch.no_grad():
        images = vae.decode(z.to(_device(vae))).mean
    fig = Figure(figsize=(7, 7), layout="constrained")
    _show(fig.subplots(), _images(vae, images), n,
          f"{_site(vae)} manifold (grid through the inverse normal CDF; {_decoded(vae)})")
    return fig


def _device(vae: VAE) -> torch.device:
    return next(vae.parameters()).device


def _latents(vae: VAE, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return vae.latent_mean(x).reshape(len(x), -1).cpu()


def latent_scatter(vae: VAE, x: torch.Tensor, labels: torch.Tensor | None = None) -> Figure:
    """Posterior means E_q[z|x] coloured by label; for z_dim > 2 their
    projection on the first two principal components."""
    z = _latents(vae, x)
    title = f"E_q[{_site(vae)}|x]"
    if z.shape[1] > 2:
        centred = z - z.mean(0)
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        z, title = centred @ v[:2].T, f"{title}, first two principal components"
    elif z.shape[1] == 1:
        z = torch.cat([z, torch.zeros_like(z)], 1)
    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.subplots()
    points = ax.scatter(z[:, 0], z[:, 1], c=None if labels is None else labels.cpu(), cmap="tab10", s=4, alpha=0.7)
    if labels is not None:
        fig.colorbar(points, ax=ax, label="label")
    ax.set_title(title)
    return fig


def traversals(vae: VAE, x: torch.Tensor, n: int = 9, span: float = 3.0, dims: Sequence[int] | None = None) -> Figure:
    """One row per latent dimension: the decoded mean as that dimension of
    E_q[z|x] (for the first ``x``) sweeps ``[-span, span]``, the others fixed."""
    dims = list(range(min(vae.z_dim, 10))) if dims is None else list(dims)
    base = _latents(vae, x[:1])[0].to(_device(vae))
    values = torch.linspace(-span, span, n, device=base.device)
    z = base.repeat(len(dims), n, 1)
    for row, d in enumerate(dims):
        z[row, :, d] = values
    with torch.no_grad():
        images = vae.decode(z.reshape(-1, vae.z_dim)).mean
    fig = Figure(figsize=(n * 0.8, len(dims) * 0.8 + 0.6), layout="constrained")
    _show(fig.subplots(), _images(vae, images), n,
          f"traversals of {_site(vae)} dims {dims} over [-{span:g}, {span:g}]" +
          ("" if _site(vae) == "z" else f"\n({_decoded(vae)})"))
    return fig


def interpolation(vae: VAE, x_a: torch.Tensor, x_b: torch.Tensor, n: int = 10) -> Figure:
    """Decoded means along the straight line between E_q[z|x_a] and E_q[z|x_b]."""
    za, zb = _latents(vae, torch.stack([x_a, x_b])).to(_device(vae))
    t = torch.linspace(0, 1, n, device=za.device).unsqueeze(1)
    with torch.no_grad():
        images = vae.decode((1 - t) * za + t * zb).mean
    fig = Figure(figsize=(n * 0.9 + 1.8, 1.4), layout="constrained")
    _show(fig.subplots(), _images(vae, torch.cat([x_a[None], images, x_b[None]])), n + 2,
          f"x_a | linear interpolation in {_site(vae)} | x_b")
    return fig


def worst_fitted(vae: VAE, x: torch.Tensor, khat: torch.Tensor, n: int = 8) -> Figure:
    """The ``n`` inputs with the largest PSIS k-hat (top) above their reconstructions (bottom)."""
    order = khat.argsort(descending=True)[:n]
    fig = Figure(figsize=(1.0 * len(order) + 0.4, 2.8), layout="constrained")
    top, bottom = fig.subplots(2, 1)
    chosen = x[order.to(x.device)]
    _show(top, _images(vae, chosen), len(order), "worst-fitted inputs, k-hat " + " ".join(f"{k:.2f}" for k in khat[order]))
    _show(bottom, _images(vae, vae.reconstruct(chosen)), len(order), "reconstructions")
    return fig


def all_figures(vae: VAE, x: torch.Tensor, labels: torch.Tensor | None, metrics: Sequence[dict] | None) -> dict[str, Figure]:
    """Every figure that fits this VAE, by file stem (what ``pyro-vae plot`` saves).

    A :class:`~pyro_vae.hierarchical.HierarchicalVAE` gets the latent figures of
    every layer (stems ending in ``_z1``, ``_z2``, ...; each names its layer) and the
    interpolation in its top layer."""
    figures = {"reconstructions": reconstructions(vae, x), "samples": samples(vae)}
    if metrics:
        figures["training_curves"] = training_curves(metrics)
    layers = [vae.layer(l + 1) for l in range(len(vae.latent_sites))] if hasattr(vae, "layer") else [vae]
    for view in layers:
        suffix = "" if view is vae else f"_{view.site}"
        figures[f"latent_scatter{suffix}"] = latent_scatter(view, x, labels)
        if view.z_dim == 2:
            figures[f"manifold{suffix}"] = manifold(view)
        else:
            figures[f"traversals{suffix}"] = traversals(view, x)
    figures["interpolation"] = interpolation(layers[-1], x[0], x[1])
    return figures
