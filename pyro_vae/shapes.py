"""A dSprites-style data set with known generative factors, rendered on the fly.

Every combination of five factors is one 64 x 64 binary image (Matthey et al. 2017's
dSprites layout, drawn here from the factors rather than read from their file):

===============  ======  ====================================================================
factor           values  meaning
===============  ======  ====================================================================
``shape``        3       square, ellipse (axes 1 : 0.5), heart
``scale``        6       0.5 .. 1 of the largest size (half-width 0.12 of the image)
``orientation``  40      2 pi k / 40, k = 0..39 (dSprites repeats 0 = 2 pi; this does not)
``x``            32      the centre, 0.2 .. 0.8 of the image width (left to right)
``y``            32      the centre, 0.2 .. 0.8 of the image height (top to bottom)
===============  ======  ====================================================================

3 x 6 x 40 x 32 x 32 = 737 280 images. As floats they would take 12 GB, so none is stored:
an image's index is its factors in mixed radix (shape slowest, y fastest), and
:meth:`ShapesData.batch` renders a batch from its factors in one vectorized pass (a pixel
is on when its centre lies inside the shape). Memory stays that of one batch.
"""

from __future__ import annotations

import math

import torch

from pyro_vae.batched import Batched

FACTORS: tuple[tuple[str, int], ...] = (("shape", 3), ("scale", 6), ("orientation", 40), ("x", 32), ("y", 32))
FACTOR_NAMES = tuple(name for name, _ in FACTORS)
FACTOR_SIZES = tuple(size for _, size in FACTORS)
SHAPES = ("square", "ellipse", "heart")
SIZE = 64
HALF_WIDTH = 0.12  # of the image, at scale 1
NUM_IMAGES = math.prod(FACTOR_SIZES)
_RADIX = torch.tensor([math.prod(FACTOR_SIZES[i + 1:]) for i in range(len(FACTORS))])


def factors_of(index: torch.Tensor) -> torch.Tensor:
    """The factor indices ``(n, 5)`` (shape, scale, orientation, x, y) of image indices ``(n,)``."""
    index = torch.as_tensor(index, dtype=torch.long)
    return torch.stack([(index // r) % s for r, s in zip(_RADIX.tolist(), FACTOR_SIZES, strict=True)], -1)


def index_of(factors: torch.Tensor) -> torch.Tensor:
    """The image indices ``(n,)`` of factor indices ``(n, 5)`` (the inverse of :func:`factors_of`)."""
    factors = torch.as_tensor(factors, dtype=torch.long)
    sizes = torch.tensor(FACTOR_SIZES)
    if factors.shape[-1] != len(FACTORS) or (factors < 0).any() or (factors >= sizes).any():
        raise ValueError(f"factors must be shaped (n, {len(FACTORS)}) with column i in 0..size_i - 1, "
                         f"sizes {dict(FACTORS)}")
    return (factors * _RADIX).sum(-1)


def factor_values(factors: torch.Tensor) -> dict[str, torch.Tensor]:
    """The factors in physical units: scale (fraction of the largest), orientation (radians),
    x and y (fraction of the image), and the shape's index."""
    factors = torch.as_tensor(factors, dtype=torch.long)
    return {
        "shape": factors[..., 0],
        "scale": 0.5 + 0.1 * factors[..., 1].double(),
        "orientation": 2 * math.pi * factors[..., 2].double() / FACTOR_SIZES[2],
        "x": 0.2 + 0.6 * factors[..., 3].double() / (FACTOR_SIZES[3] - 1),
        "y": 0.2 + 0.6 * factors[..., 4].double() / (FACTOR_SIZES[4] - 1),
    }


def render(factors: torch.Tensor) -> torch.Tensor:
    """Images ``(n, 1, 64, 64)`` (float32, 0 or 1) of factor indices ``(n, 5)``, in one vectorized pass.

    >>> image = render(torch.tensor([[0, 5, 0, 16, 16]]))  # the largest square, near the centre
    >>> image.shape, int(image.sum())  # a side of 2 * 0.12 * 64 = 15.4 pixels holds 15 pixel centres
    (torch.Size([1, 1, 64, 64]), 225)
    """
    v = factor_values(factors)
    v = {name: value.float() for name, value in v.items()}
    centre = (torch.arange(SIZE, dtype=torch.float32) + 0.5) / SIZE
    rows, cols = centre.view(1, SIZE, 1), centre.view(1, 1, SIZE)
    dx = cols - v["x"].view(-1, 1, 1)
    dy = rows - v["y"].view(-1, 1, 1)
    cos, sin = v["orientation"].cos().view(-1, 1, 1), v["orientation"].sin().view(-1, 1, 1)
    size = (HALF_WIDTH * v["scale"]).view(-1, 1, 1)
    u = (cos * dx + sin * dy) / size  # the shape's own frame, unit half-width
    w = (-sin * dx + cos * dy) / size
    square = torch.maximum(u.abs(), w.abs()) <= 1
    ellipse = u**2 + (w / 0.5) ** 2 <= 1
    hx, hy = 1.15 * u, -1.15 * w + 0.1  # y up, the heart's point at the bottom, inside the unit box
    heart = (hx**2 + hy**2 - 1) ** 3 - hx**2 * hy**3 <= 0
    shape = v["shape"].view(-1, 1, 1)
    inside = torch.where(shape == 0, square, torch.where(shape == 1, ellipse, heart))
    return inside.unsqueeze(1).float()


class ShapesData(Batched):
    """The shapes data set (or a subset of its images), served as :class:`~pyro_vae.data.ImageData` is:
    ``batch(index)``, ``subset``, and from :class:`~pyro_vae.batched.Batched` ``batches``, ``split``
    and the resumable generator state.

    :param index: which of the 737 280 images (default: all).
    :param seed: seeds the generator that shuffles batches.
    :ivar factors: the factor indices ``(n, 5)`` of this set's images, computed from ``index``.

    >>> data = ShapesData.sample(1000, seed=0)
    >>> len(data), data.x_shape, data.factors.shape
    (1000, (1, 64, 64), torch.Size([1000, 5]))
    """

    factor_names = FACTOR_NAMES
    factor_sizes = FACTOR_SIZES
    representation = "static"  # binary images, the same every time they are served
    labels = None

    def __init__(self, index: torch.Tensor | None = None, *, seed: int = 0, name: str = "shapes") -> None:
        self.index = torch.arange(NUM_IMAGES) if index is None else torch.as_tensor(index, dtype=torch.long)
        if self.index.numel() and (self.index.min() < 0 or self.index.max() >= NUM_IMAGES):
            raise ValueError(f"image indices must lie in 0..{NUM_IMAGES - 1}")
        self.seed, self.name = seed, name
        self.generator = torch.Generator().manual_seed(seed)

    @classmethod
    def sample(cls, count: int, *, seed: int = 0) -> ShapesData:
        """``count`` distinct images chosen uniformly with ``seed`` (all factors vary)."""
        if not 0 < count <= NUM_IMAGES:
            raise ValueError(f"count must be between 1 and {NUM_IMAGES}, got {count}")
        index = torch.randperm(NUM_IMAGES, generator=torch.Generator().manual_seed(seed))[:count]
        return cls(index.sort().values, seed=seed, name=f"shapes-{count}")

    @property
    def factors(self) -> torch.Tensor:
        return factors_of(self.index)

    def __len__(self) -> int:
        return self.index.numel()

    @property
    def x_shape(self) -> tuple[int, ...]:
        return (1, SIZE, SIZE)

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        """The images at ``index`` (positions in this set), rendered."""
        return render(factors_of(self.index[index]))

    def subset(self, index: torch.Tensor | slice) -> ShapesData:
        """The images at ``index`` (positions in this set), with a fresh generator of the same seed."""
        return ShapesData(self.index[index], seed=self.seed, name=self.name)

    def __repr__(self) -> str:
        return f"ShapesData({self.name}, n={len(self)}, x_shape={self.x_shape}, factors={dict(FACTORS)})"

