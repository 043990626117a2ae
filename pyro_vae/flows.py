"""Pyro's affine autoregressive transforms, with inverses that a graph capture can trace.

Pyro's :class:`~pyro.distributions.transforms.AffineAutoregressive` inverts
one coordinate at a time, looping over its network's permutation *tensor*:
each step reads a tensor's value, which :mod:`inference.compiled` cannot
capture. These subclasses read the permutation once, when they are built,
and loop over Python ints; the arithmetic is Pyro's, line for line, and the
parameters and their names are unchanged (old weights load).
"""

from __future__ import annotations

import pyro.distributions.transforms as T
import torch
from pyro.distributions.transforms.affine_autoregressive import clamp_preserve_gradients
from pyro.nn import AutoRegressiveNN, ConditionalAutoRegressiveNN


class AffineAutoregressive(T.AffineAutoregressive):
    """:class:`pyro.distributions.transforms.AffineAutoregressive` whose inverse loops over Python ints.

    :param order: the network's permutation as a list (read from it if ``None``).

    >>> flow = affine_autoregressive(3, hidden_dims=[8])
    >>> y = flow(torch.randn(5, 3))
    >>> torch.allclose(flow._inverse(y), flow.inv(y))  # the uncached inverse recovers x
    True
    """

    def __init__(self, autoregressive_nn, order: list[int] | None = None, **kwargs) -> None:
        super().__init__(autoregressive_nn, **kwargs)
        self.order = list(order) if order is not None else autoregressive_nn.permutation.tolist()

    def _inverse(self, y):
        x = [torch.zeros(y.shape[:-1], dtype=y.dtype, device=y.device)] * y.size(-1)
        for idx in self.order:
            mean, log_scale = self.arn(torch.stack(x, dim=-1))
            inverse_scale = torch.exp(
                -clamp_preserve_gradients(log_scale[..., idx], min=self.log_scale_min_clip, max=self.log_scale_max_clip)
            )
            x[idx] = (y[..., idx] - mean[..., idx]) * inverse_scale
        self._cached_log_scale = clamp_preserve_gradients(log_scale, min=self.log_scale_min_clip, max=self.log_scale_max_clip)
        return torch.stack(x, dim=-1)

    def _inverse_stable(self, y):
        x = [torch.zeros(y.shape[:-1], dtype=y.dtype, device=y.device)] * y.size(-1)
        for idx in self.order:
            mean, logit_scale = self.arn(torch.stack(x, dim=-1))
            inverse_scale = 1 + torch.exp(-logit_scale[..., idx] - self.sigmoid_bias)
            x[idx] = inverse_scale * y[..., idx] + (1 - inverse_scale) * mean[..., idx]
        self._cached_log_scale = self.logsigmoid(logit_scale + self.sigmoid_bias)
        return torch.stack(x, dim=-1)


class ConditionalAffineAutoregressive(T.ConditionalAffineAutoregressive):
    """:class:`pyro.distributions.transforms.ConditionalAffineAutoregressive` whose
    conditioned transforms are :class:`AffineAutoregressive`."""

    def __init__(self, autoregressive_nn, **kwargs) -> None:
        super().__init__(autoregressive_nn, **kwargs)
        self.order = autoregressive_nn.permutation.tolist()

    def condition(self, context):
        transform = super().condition(context)
        return AffineAutoregressive(transform.arn, order=self.order, **self.kwargs)


def affine_autoregressive(input_dim: int, hidden_dims=None, **kwargs) -> AffineAutoregressive:
    """As :func:`pyro.distributions.transforms.affine_autoregressive`."""
    return AffineAutoregressive(AutoRegressiveNN(input_dim, hidden_dims or [3 * input_dim + 1]), **kwargs)


def conditional_affine_autoregressive(input_dim: int, context_dim: int, hidden_dims=None, **kwargs):
    """As :func:`pyro.distributions.transforms.conditional_affine_autoregressive`."""
    nn = ConditionalAutoRegressiveNN(input_dim, context_dim, hidden_dims or [10 * input_dim])
    return ConditionalAffineAutoregressive(nn, **kwargs)
