"""NormalizedAdam (Tomczak & Welling's AdamNormGrad): Adam on each tensor's unit-norm gradient."""

import pyro
import pytest
import torch

from inference import fit
from inference.normalized_adam import NormalizedAdam
from inference.svi import OPTIMIZERS


def _trajectory(make, gradients):
    w = torch.nn.Parameter(torch.zeros(2, 3))
    b = torch.nn.Parameter(torch.zeros(3))
    optimizer = make([w, b])
    for gw, gb in gradients:
        w.grad, b.grad = gw.clone(), gb.clone()
        optimizer.step()
    return torch.cat([w.detach().flatten(), b.detach()])


@pytest.mark.parametrize("fused", [False, True])
def test_it_is_adam_on_gradients_scaled_to_unit_norm_tensor_by_tensor(fused):
    torch.manual_seed(0)
    gradients = [(torch.randn(2, 3) * 10**k, torch.randn(3) * 10**-k) for k in (-2, 0, 3, 1, -1)]
    normalized = [(gw / (gw.norm() + 1e-7), gb / (gb.norm() + 1e-7)) for gw, gb in gradients]
    ours = _trajectory(lambda p: NormalizedAdam(p, lr=0.1, fused=fused), gradients)
    adam = _trajectory(lambda p: torch.optim.Adam(p, lr=0.1), normalized)
    assert torch.allclose(ours, adam, atol=1e-6)
    # plain Adam on the raw gradients, whose scale changes a thousandfold from step to step, goes elsewhere
    assert not torch.allclose(_trajectory(lambda p: torch.optim.Adam(p, lr=0.1), gradients), adam, atol=1e-2)


def test_each_steps_scale_does_not_matter():
    """A step's gradient times any positive number is the same step: a batch with a large loss counts as
    much as one with a small one."""
    torch.manual_seed(1)
    gradients = [(torch.randn(2, 3), torch.randn(3)) for _ in range(6)]
    scaled = [(gw * s, gb * s) for (gw, gb), s in zip(gradients, (0.1, 5.0, 1e4, 0.2, 1.0, 300.0))]
    make = OPTIMIZERS["normalized_adam"]
    assert torch.allclose(_trajectory(lambda p: make(p, lr=0.05), gradients),
                          _trajectory(lambda p: make(p, lr=0.05), scaled), atol=1e-5)  # up to the 1e-7 floor


def test_a_closure_is_evaluated_before_its_gradient_is_normalized():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    optimizer = NormalizedAdam([w], lr=0.1)

    def closure():
        optimizer.zero_grad()
        loss = (w**2).sum()  # gradient (6, 8)
        loss.backward()
        return loss

    assert optimizer.step(closure).item() == 25.0
    assert torch.allclose(w.grad, torch.tensor([0.6, 0.8]))
    assert torch.allclose(w.detach(), torch.tensor([2.9, 3.9]))  # Adam's first step: lr times the sign


def test_fit_trains_with_it_by_name():
    def model(x):
        loc = pyro.param("loc", torch.tensor(0.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", pyro.distributions.Normal(loc, 1.0), obs=x)

    def guide(x):
        pass

    pyro.clear_param_store()
    result = fit(model, guide, torch.full((64,), 3.0), batch_size=16, epochs=40, lr=0.05,
                 optimizer="normalized_adam", progress=False)
    assert pyro.param("loc").item() == pytest.approx(3.0, abs=0.1)  # the maximum-likelihood location
    assert result.metrics[-1]["train_loss"] < result.metrics[0]["train_loss"]
