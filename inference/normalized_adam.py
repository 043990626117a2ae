"""Adam on gradients scaled to unit norm, one parameter tensor at a time: the optimizer of
Tomczak & Welling 2018's code (its ``AdamNormGrad``), which their VampPrior results were trained with.

Adam divides each coordinate's step by the root of its mean squared gradient, so a constant
scale of the loss changes nothing. Normalizing every step's gradient is not that: a step whose
gradient is large counts no more than one whose gradient is small, so the noisy early steps and
the outlying batches weigh less in Adam's averages.
"""

from __future__ import annotations

import torch

NORM_FLOOR = 1e-7  # added to each norm, as in the paper's code, so a zero gradient stays zero


class NormalizedAdam(torch.optim.Adam):
    """``torch.optim.Adam`` stepping on ``grad / (||grad||_2 + 1e-7)`` for each parameter tensor.

    The gradients are normalized in place before Adam's update (the fused kernel where
    ``fused=True``), so after ``step`` every ``p.grad`` has unit norm.

    >>> w = torch.zeros(3, requires_grad=True)
    >>> w.grad = torch.tensor([30.0, 40.0, 0.0])
    >>> _ = NormalizedAdam([w], lr=0.1).step()
    >>> w.grad.tolist()  # the gradient it stepped on: the direction, unit length
    [0.6000000238418579, 0.800000011920929, 0.0]
    """

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        if grads:
            norms = torch._foreach_norm(grads)
            torch._foreach_add_(norms, NORM_FLOOR)
            torch._foreach_div_(grads, norms)
        super().step()
        return loss
