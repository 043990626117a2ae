"""What every data set here shares: shuffled epochs of batches from its own seeded generator, seeded
splits, and the generator's state for exact resumption. A data set provides ``__len__``,
``batch(index)``, ``subset(index)`` and a ``generator``."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch


class Batched:
    """Mixin: ``batches``, ``num_batches``, ``split``, ``state_dict`` and ``load_state_dict`` from
    ``__len__``, ``batch``, ``subset`` and ``self.generator``."""

    generator: torch.Generator

    def batches(self, batch_size: int, *, shuffle: bool = True, drop_last: bool = False) -> Iterator:
        """One epoch of batches (shuffled by the data set's generator)."""
        n = len(self)
        order = torch.randperm(n, generator=self.generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            yield self.batch(order[start : start + batch_size])

    def num_batches(self, batch_size: int, *, drop_last: bool = False) -> int:
        return len(self) // batch_size if drop_last else math.ceil(len(self) / batch_size)

    def split(self, validation: int, *, seed: int = 0):
        """A seeded random split into ``(train, validation)`` with ``validation`` observations held out."""
        if not 0 < validation < len(self):
            raise ValueError(f"validation must be between 1 and {len(self) - 1}, got {validation}")
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        return self.subset(order[validation:]), self.subset(order[:validation])

    def state_dict(self) -> dict:
        """The generator's state, so that a resumed run draws the same batches."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
