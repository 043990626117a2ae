"""A trained run's parameters put back into any Pyro model and guide.

``fit`` saves the unconstrained values of the parameters it trains under their
param-store names (``"decoder$$$net.0.weight"``, ``"loc"``), in
``checkpoint.pt`` and, with early stopping, ``best.pt``. :func:`load_params`
registers a model's and guide's parameters the way ``fit`` finds them (one
traced pass) and copies the saved values in, so that a run can be evaluated,
diagnosed or plotted from its files by a script that never trained it, while
the training process may still be writing them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from pyro import poutine

from inference.checkpoint import CheckpointError, load_checkpoint


def traced_params(trace) -> dict[str, torch.Tensor]:
    """The unconstrained parameters that a ``poutine.trace(param_only=True)`` recorded, sorted by name.

    :raises ValueError: there are none.
    """
    params = {name: site["value"].unconstrained() for name, site in trace.nodes.items()}
    if not params:
        raise ValueError("the model and guide have no parameters: register them with pyro.param or pyro.module")
    return dict(sorted(params.items()))


def restore_params(params: dict[str, torch.Tensor], saved: dict[str, torch.Tensor], path: Path) -> None:
    """Copy ``saved`` into the unconstrained tensors ``params`` (same names, same shapes), in place.

    :raises CheckpointError: the names or shapes differ; nothing is copied.
    """
    missing, extra = sorted(set(params) - set(saved)), sorted(set(saved) - set(params))
    shapes = sorted(k for k in set(params) & set(saved) if params[k].shape != saved[k].shape)
    if missing or extra or shapes:
        raise CheckpointError(
            f"{path} holds other parameters than this model (missing {missing[:3]}, unexpected {extra[:3]}, "
            f"other shapes {shapes[:3]}); use the model that made it, built with the same sizes"
        )
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(saved[name])


def load_params(path: str | Path, model, guide, *args, **kwargs) -> dict[str, torch.Tensor]:
    """Load the parameters that ``fit`` saved at ``path`` into ``model`` and ``guide``.

    The guide runs once on ``args``/``kwargs`` (a batch of data, as the model is
    called) and the model once, replayed on the guide's draws, with gradients
    off; every parameter they register in Pyro's param store (``pyro.param``,
    ``pyro.module``) then takes its saved value, on the parameter's own device.

    :param path: a ``checkpoint.pt`` or ``best.pt`` written by ``fit``.
    :returns: the restored unconstrained parameters by name.
    :raises CheckpointError: the file is not a checkpoint of parameters, or its
        parameters are not this model's (other names or shapes).
    :raises ValueError: the model and guide register no parameters.

    >>> import tempfile, torch, pyro, pyro.distributions as dist
    >>> from inference import fit
    >>> def model(x):
    ...     loc = pyro.param("loc", torch.tensor(0.0))
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("x", dist.Normal(loc, 1.0), obs=x)
    >>> def guide(x):
    ...     pass
    >>> x = torch.full((8,), 3.0)
    >>> run = tempfile.mkdtemp()
    >>> result = fit(model, guide, x, epochs=20, batch_size=8, lr=0.1, run_dir=run, progress=False)
    >>> trained = pyro.param("loc").item()
    >>> pyro.clear_param_store()
    >>> restored = load_params(f"{run}/checkpoint.pt", model, guide, x)
    >>> pyro.param("loc").item() == trained != 0.0
    True
    """
    path = Path(path)
    state = load_checkpoint(path)
    if not isinstance(state.get("params"), dict):
        raise CheckpointError(f"{path} holds no parameters: pass a run's checkpoint.pt or best.pt, written by fit")
    with torch.no_grad(), poutine.trace(param_only=True) as capture:
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        poutine.replay(model, trace=guide_trace)(*args, **kwargs)
    params = traced_params(capture.trace)
    restore_params(params, state["params"], path)
    return params

