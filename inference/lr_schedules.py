"""Learning-rate schedules: a factor of the epoch that multiplies ``fit``'s ``lr``.

``fit(..., lr_schedule=Staged())`` steps the factor after every epoch (a
:class:`torch.optim.lr_scheduler.LambdaLR`, saved with the checkpoint). The
schedule is saved in the run's config as a dict, like beta's schedule.

References: Burda et al. 2016 (the staged schedule of the IWAE paper);
Loshchilov & Hutter 2017 (cosine annealing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Exponential:
    """lr x gamma^epoch (``fit``'s ``lr_decay``).

    >>> Exponential(0.5)(3)
    0.125
    """

    gamma: float = 1.0

    def __call__(self, epoch: int) -> float:
        return self.gamma**epoch


@dataclass(frozen=True)
class Staged:
    """Burda et al. 2016: stage i = 0, 1, ... lasts ``base``^i epochs at lr x ``decay``^i
    (their 8 stages of 3^i epochs at 10^(-i/7): 3280 epochs); after the last stage the
    last rate stays. :attr:`epochs` is the length of all stages.

    ``length`` squeezes (or stretches) the same stages into that many epochs, keeping their
    proportions: ``Staged(length=328)`` is the paper's schedule on a tenth of its budget
    (the first stages then last a fraction of an epoch and are passed over).

    >>> schedule = Staged()
    >>> schedule.epochs, schedule(0), round(schedule(1), 6), round(schedule(4), 6), round(schedule(3279), 6)
    (3280, 1.0, 0.719686, 0.517947, 0.1)
    >>> short = Staged(length=328)
    >>> short.epochs, short.stage(0), short.stage(3), short.stage(12), short.stage(327)
    (328, 0, 3, 4, 7)
    """

    stages: int = 8
    base: int = 3
    decay: float = 10 ** (-1 / 7)
    length: int | None = None

    def __post_init__(self):
        if self.length is not None and self.length < 1:
            raise ValueError(f"Staged(length={self.length}): the schedule needs at least one epoch")

    @property
    def epochs(self) -> int:
        return self.length or sum(self.base**i for i in range(self.stages))

    def stage(self, epoch: int) -> int:
        """The stage that ``epoch`` (counted from 0) belongs to."""
        natural = sum(self.base**i for i in range(self.stages))
        position = epoch * natural / self.epochs  # in the paper's epochs
        end = 0
        for i in range(self.stages):
            end += self.base**i
            if position < end:
                return i
        return self.stages - 1

    def __call__(self, epoch: int) -> float:
        return self.decay ** self.stage(epoch)


@dataclass(frozen=True)
class Step:
    """lr x gamma^(epoch // every).

    >>> [Step(every=2, gamma=0.5)(e) for e in range(5)]
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    every: int
    gamma: float = 0.1

    def __call__(self, epoch: int) -> float:
        return self.gamma ** (epoch // self.every)


@dataclass(frozen=True)
class Cosine:
    """Cosine annealing from lr to lr x ``floor`` over ``epochs`` epochs, then ``floor``.

    >>> schedule = Cosine(epochs=10, floor=0.1)
    >>> schedule(0), round(schedule(5), 6), schedule(10), schedule(20)
    (1.0, 0.55, 0.1, 0.1)
    """

    epochs: int
    floor: float = 0.0

    def __call__(self, epoch: int) -> float:
        t = min(epoch, self.epochs) / self.epochs
        return self.floor + (1 - self.floor) * (1 + math.cos(math.pi * t)) / 2


LR_SCHEDULES: dict[str, type] = {"exponential": Exponential, "staged": Staged, "step": Step, "cosine": Cosine}
LRScheduleName = Literal["exponential", "staged", "step", "cosine"]
