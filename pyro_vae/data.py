"""Image data sets held as one tensor, served in the representation a likelihood needs.

The data folder is read from the ``PYRO_VAE_DATA_DIR`` environment variable
(default ``~/.cache/pyro-vae/data``) in torchvision's layout, e.g.
``$PYRO_VAE_DATA_DIR/MNIST/raw/train-images-idx3-ubyte``. Nothing is downloaded
unless asked (``download=True``).

Representations of 8-bit grey levels ``k``:

=================  ================================================================
``dynamic``        a fresh Bernoulli(k / 255) draw every time a batch is served, the
                   standard for likelihood benchmarks (Salakhutdinov & Murray 2008)
``static``         one Bernoulli(k / 255) draw with a fixed seed, kept
``continuous``     k / 255 in [0, 1] (the grid of the discretized logistic)
``dequantized``    (k + u) / 256 with a fresh u ~ U(0, 1) per draw, in (0, 1): a
                   density on it bounds the discrete log-likelihood (Theis et al. 2016)
=================  ================================================================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch
from torchvision import datasets

from inference.options import choose
from pyro_vae.batched import Batched
from pyro_vae.shapes import ShapesData

DATA_DIR_VARIABLE = "PYRO_VAE_DATA_DIR"
Representation = Literal["dynamic", "static", "continuous", "dequantized"]
REPRESENTATIONS = ("dynamic", "static", "continuous", "dequantized")
DatasetName = Literal["mnist", "fashion_mnist", "shapes"]
DATASETS = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST}


class DatasetNotFoundError(FileNotFoundError):
    """A data set is not where the project looks for it."""


def data_dir() -> Path:
    """The data folder: ``$PYRO_VAE_DATA_DIR``, else ``~/.cache/pyro-vae/data``."""
    return Path(os.environ.get(DATA_DIR_VARIABLE) or Path.home() / ".cache" / "pyro-vae" / "data").expanduser()


def _expected_files(cls) -> list[str]:
    return [os.path.splitext(os.path.basename(url))[0] for url, _ in cls.resources]


def load_images(
    name: DatasetName = "mnist", *, train: bool = True, root: str | Path | None = None, download: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The raw images (uint8, ``(N, 1, H, W)``) and labels of a torchvision data set.

    :raises DatasetNotFoundError: naming the folder, the files expected there
        and how to provide them.
    """
    cls = choose(DATASETS, name, what="dataset")
    root = Path(root) if root is not None else data_dir()
    folder = root / cls.__name__ / "raw"
    missing = [f for f in _expected_files(cls) if not (folder / f).is_file()]
    if missing and not download:
        raise DatasetNotFoundError(
            f"{name} not found: expected {', '.join(missing)} in {folder.absolute()}"
            f"{'' if root.is_absolute() else f' ({root} taken from the working directory {Path.cwd()})'}. "
            f"Set {DATA_DIR_VARIABLE} to the folder that holds {cls.__name__}/raw/ "
            f"(torchvision's layout, files unzipped), or pass download=True on a machine with internet."
        )
    data = cls(str(root), train=train, download=download)
    return data.data.unsqueeze(1).contiguous(), data.targets.clone()


class ImageData(Batched):
    """A whole image data set as one uint8 tensor, batched by indexing and served
    as float tensors in one :data:`Representation`.

    The random draws of ``dynamic`` and ``dequantized`` data and the shuffling
    come from the data set's own ``generator`` (seeded), so a run is
    reproducible and resumable (:meth:`state_dict`).

    :param images: uint8 tensor ``(N, C, H, W)`` of grey levels 0..255.
    :param labels: tensor ``(N,)`` (or ``None``).
    :param representation: how pixels are served (see the module docstring).
    :param seed: seeds the generator and, for ``static``, the fixed binarization.

    >>> data = ImageData(torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8), None, "dynamic")
    >>> x = data.batch(torch.arange(3))
    >>> x.shape, bool(((x == 0) | (x == 1)).all())
    (torch.Size([3, 1, 4, 4]), True)
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        representation: Representation = "dynamic",
        *,
        seed: int = 0,
        name: str = "",
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be a uint8 tensor (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        choose(dict.fromkeys(REPRESENTATIONS), representation, what="representation")
        self.representation = representation
        self.labels, self.name, self.seed = labels, name, seed
        if representation == "static":
            fixed = torch.Generator().manual_seed(seed)
            images = (torch.bernoulli(images / 255.0, generator=fixed) * 255).to(torch.uint8)
        self.images = images
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def x_shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        """The observations at ``index`` in this data set's representation (float32)."""
        grey = self.images[index].float()
        if self.representation == "dynamic":
            return torch.bernoulli(grey / 255.0, generator=self.generator)
        if self.representation == "dequantized":
            u = torch.rand(grey.shape, generator=self.generator).clamp_(1e-6, 1 - 1e-6)
            return (grey + u) / 256.0
        return grey / 255.0  # continuous, and static (already 0 or 255)

    def mean_image(self) -> torch.Tensor:
        """The mean grey level of each pixel over the data set, in [0, 1], shape ``(1, C, H, W)``: the
        pixels' probabilities of being on under dynamic binarization, where a Bernoulli decoder's
        output can start (:meth:`~pyro_vae.HierarchicalVAE.set_output_bias`).

        >>> ImageData(torch.tensor([0, 255, 51], dtype=torch.uint8).reshape(3, 1, 1, 1)).mean_image().flatten()
        tensor([0.4000])
        """
        return self.images.float().mean(0, keepdim=True) / 255.0

    def subset(self, index: torch.Tensor | slice) -> ImageData:
        """The observations at ``index``, served the same way (a fresh generator with the same seed)."""
        new = ImageData.__new__(ImageData)
        new.__dict__.update(self.__dict__)
        new.images = self.images[index]
        new.labels = None if self.labels is None else self.labels[index]
        new.generator = torch.Generator().manual_seed(self.seed)
        return new

    def with_labels(self, count: int | None = None, *, seed: int = 0) -> LabelledData:
        """This data set served as ``(x, y)`` batches for a conditional or semi-supervised model:
        every label, or only ``count`` of them (the same number per class, as in Kingma et al. 2014,
        chosen with ``seed``), the others given as ``-1`` (unknown).

        >>> data = ImageData(torch.zeros(20, 1, 2, 2, dtype=torch.uint8), torch.arange(20) % 4, "continuous")
        >>> x, y = data.with_labels(8).batch(torch.arange(20))
        >>> int((y >= 0).sum()), torch.bincount(y[y >= 0]).tolist()
        (8, [2, 2, 2, 2])
        """
        return LabelledData(self, count, seed=seed)

    def __repr__(self) -> str:
        return f"ImageData({self.name or 'images'}, n={len(self)}, x_shape={self.x_shape}, {self.representation})"


class LabelledData:
    """An :class:`ImageData` whose batches are ``(x, y)``; ``y`` is the class, or ``-1`` where hidden.
    Made by :meth:`ImageData.with_labels`."""

    def __init__(self, data: ImageData, count: int | None = None, *, seed: int = 0) -> None:
        if data.labels is None:
            raise ValueError(f"{data!r} has no labels: a conditional or semi-supervised model needs a labelled "
                             f"data set such as load_dataset('mnist')")
        self.data, self.num_classes = data, int(data.labels.max()) + 1
        labels = data.labels.long()
        if count is not None:
            if not 0 <= count <= len(data):
                raise ValueError(f"{count} labels asked of a data set of {len(data)} images: give at most {len(data)}")
            g = torch.Generator().manual_seed(seed)
            kept = []
            for c in range(self.num_classes):
                members = (labels == c).nonzero().flatten()
                want = count // self.num_classes + (c < count % self.num_classes)
                if want > len(members):
                    raise ValueError(f"{count} labels, {want} for class {c}, which has only {len(members)} images")
                kept.append(members[torch.randperm(len(members), generator=g)[:want]])
            hidden = torch.full_like(labels, -1)
            index = torch.cat(kept)
            hidden[index] = labels[index]
            labels = hidden
        self.labels = labels

    def __len__(self) -> int:
        return len(self.data)

    @property
    def x_shape(self) -> tuple[int, ...]:
        return self.data.x_shape

    @property
    def num_labelled(self) -> int:
        return int((self.labels >= 0).sum())

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data.batch(index), self.labels[index]

    def state_dict(self) -> dict:
        return self.data.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.data.load_state_dict(state)

    def __repr__(self) -> str:
        return f"LabelledData({self.data!r}, {self.num_labelled} labelled)"


def load_dataset(
    name: DatasetName = "mnist",
    *,
    split: Literal["train", "test"] = "train",
    representation: Representation = "dynamic",
    seed: int = 0,
    limit: int | None = None,
    root: str | Path | None = None,
    download: bool = False,
) -> ImageData | ShapesData:
    """Load a data set from the data folder.

    :param split: ``"train"`` (60 000 images for MNIST) or ``"test"`` (10 000).
    :param limit: keep only the first ``limit`` observations (quick runs, tests).

    ``"shapes"`` (:mod:`pyro_vae.shapes`: 737 280 binary 64 x 64 images with known factors) is
    rendered, not read: it needs no files, has one split (hold data out with ``.split``), and
    ``limit`` keeps a uniformly drawn subset chosen with ``seed`` (its first images would all be
    small squares). Its images are 0 or 1, served the same in every representation but
    ``dequantized``, which it refuses.

    >>> test = load_dataset("mnist", split="test", representation="continuous", limit=100)
    >>> test.x_shape, len(test), test.labels[:5].tolist()
    ((1, 28, 28), 100, [7, 2, 1, 0, 4])
    """
    choose({"train": 0, "test": 1}, split, what="split")
    if name == "shapes":
        return _load_shapes(split, representation, seed, limit)
    images, labels = load_images(name, train=split == "train", root=root, download=download)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return ImageData(images, labels, representation, seed=seed, name=f"{name}-{split}")


def _load_shapes(split: str, representation: str, seed: int, limit: int | None) -> ShapesData:
    if split != "train":
        raise ValueError("the shapes data set has one split, 'train'; hold images out with data.split(n) or draw "
                         "another seeded subset with load_dataset('shapes', limit=n, seed=...)")
    choose(dict.fromkeys(REPRESENTATIONS), representation, what="representation")
    if representation == "dequantized":
        raise ValueError("the shapes images are binary (0 or 1), which a dequantized density does not fit; "
                         "use representation='static' (or 'dynamic'/'continuous': the same values)")
    return ShapesData(seed=seed) if limit is None else ShapesData.sample(limit, seed=seed)
