"""What the trainer and the evaluator need of a data set, and a wrapper for plain tensors.

A data set is anything with ``__len__`` and ``batch(index)``: the
observations at a ``LongTensor`` of indices, as one tensor, or as a tuple of
tensors ``(x, y, ...)`` that the model and guide take as their positional
arguments (labels for a conditional model: :func:`as_args`). If it draws random numbers of
its own (dynamic binarization), it also has ``state_dict()`` and
``load_state_dict(state)`` so a resumed run draws the same numbers.
:class:`pyro_vae.data.ImageData` is one; a plain tensor is wrapped in
:class:`TensorData`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Dataset(Protocol):
    def __len__(self) -> int: ...

    def batch(self, index: torch.Tensor) -> torch.Tensor: ...


class TensorData:
    """A tensor of observations ``(N, *event)`` served by indexing.

    >>> TensorData(torch.arange(10.0).reshape(5, 2)).batch(torch.tensor([4, 0]))
    tensor([[8., 9.],
            [0., 1.]])
    """

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        return self.tensor[index]


def as_dataset(data) -> Dataset:
    """A tensor becomes :class:`TensorData`; a data set is returned as it is."""
    if isinstance(data, torch.Tensor):
        return TensorData(data)
    if isinstance(data, Dataset):
        return data
    raise TypeError(f"data must be a tensor or have __len__ and batch(index), got {type(data).__name__}")


def as_args(batch) -> tuple:
    """A batch as the model's and guide's positional arguments: a tensor is one argument,
    a tuple or list ``(x, y, ...)`` several.

    >>> [a.shape for a in as_args(torch.zeros(4, 2))], len(as_args((torch.zeros(4, 2), torch.zeros(4))))
    ([torch.Size([4, 2])], 2)
    """
    return tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)


def args_to(args: tuple, device) -> tuple:
    """The arguments on ``device`` (unchanged when ``device`` is ``None``)."""
    return args if device is None else tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in args)


def nonfinite_rows(x: torch.Tensor) -> torch.Tensor:
    """The indices of the rows (first dim) of ``x`` that hold NaN or inf."""
    return (~torch.isfinite(x.reshape(x.shape[0], -1))).any(1).nonzero().flatten()


def listed(rows, most: int = 10) -> str:
    """``[i, j, ...]``: the first ``most`` indices, for an error message."""
    rows = [int(i) for i in rows]
    return "[" + ", ".join(map(str, rows[:most])) + (", ..." if len(rows) > most else "") + "]"


def full_view(data) -> torch.Tensor | None:
    """All the observations of a data set as one tensor, where that costs nothing
    (a :class:`TensorData`, or a data set with a ``full_view()`` method), else ``None``."""
    if isinstance(data, TensorData):
        return data.tensor
    view = getattr(data, "full_view", None)
    return view() if callable(view) else None


def data_state(data) -> dict:
    return data.state_dict() if hasattr(data, "state_dict") else {}


def load_data_state(data, state: dict) -> None:
    if state and hasattr(data, "load_state_dict"):
        data.load_state_dict(state)
