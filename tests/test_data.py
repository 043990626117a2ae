"""Data: representations, splits, the real MNIST files, and the missing-data error."""

import pytest
import torch

from pyro_vae.data import DATA_DIR_VARIABLE, DatasetNotFoundError, ImageData, load_dataset


def test_dynamic_binarization_draws_anew_with_the_grey_levels_as_mean(tiny_images):
    data = ImageData(tiny_images, None, "dynamic", seed=0)
    index = torch.arange(len(data))
    first, second = data.batch(index), data.batch(index)
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(first, second)  # a new draw each time (each epoch)
    draws = torch.stack([data.batch(index) for _ in range(2000)])
    p = tiny_images.double() / 255
    se = (p * (1 - p) / 2000).sqrt()
    assert ((draws.double().mean(0) - p).abs() <= 5 * se + 1e-9).all()


def test_dynamic_draws_are_reproducible_and_resumable(tiny_images):
    a, b = ImageData(tiny_images, None, "dynamic", seed=4), ImageData(tiny_images, None, "dynamic", seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.batches(10), b.batches(10), strict=True))
    state = a.state_dict()
    after = list(a.batches(10))
    b.load_state_dict(state)
    assert all(torch.equal(x, y) for x, y in zip(after, b.batches(10), strict=True))


def test_static_binarization_is_fixed_by_the_seed(tiny_images):
    a = ImageData(tiny_images, None, "static", seed=1)
    index = torch.arange(len(a))
    assert torch.equal(a.batch(index), a.batch(index))
    assert torch.equal(a.batch(index), ImageData(tiny_images, None, "static", seed=1).batch(index))
    assert not torch.equal(a.batch(index), ImageData(tiny_images, None, "static", seed=2).batch(index))
    assert set(a.batch(index).unique().tolist()) <= {0.0, 1.0}


def test_continuous_and_dequantized(tiny_images):
    index = torch.arange(len(tiny_images))
    cont = ImageData(tiny_images, None, "continuous").batch(index)
    assert torch.equal(cont * 255, tiny_images.float())
    deq = ImageData(tiny_images, None, "dequantized").batch(index)
    assert ((deq > 0) & (deq < 1)).all()
    assert torch.equal((deq * 256).floor(), tiny_images.float())  # each value stays in its own bin


def test_batches_cover_an_epoch_once(tiny_images):
    data = ImageData(tiny_images, None, "continuous")
    batches = list(data.batches(10))
    assert [len(b) for b in batches] == [10, 10, 10, 10, 8] and data.num_batches(10) == 5
    assert torch.equal((torch.cat(batches) * 255).round().sum(0), tiny_images.float().sum(0))
    assert [len(b) for b in data.batches(10, drop_last=True)] == [10] * 4


def test_split_is_seeded_and_disjoint(tiny_images):
    labels = torch.arange(len(tiny_images))
    data = ImageData(tiny_images, labels, "continuous")
    train, val = data.split(8, seed=3)
    assert len(train) == 40 and len(val) == 8
    assert set(train.labels.tolist()).isdisjoint(val.labels.tolist())
    assert torch.equal(val.labels, data.split(8, seed=3)[1].labels)
    assert not torch.equal(val.labels, data.split(8, seed=4)[1].labels)
    with pytest.raises(ValueError, match="validation must be between 1 and 47"):
        data.split(48)


def test_mnist_from_the_data_folder():
    train = load_dataset("mnist", split="train", representation="continuous")
    test = load_dataset("mnist", split="test", representation="dynamic", limit=100)
    assert len(train) == 60000 and train.x_shape == (1, 28, 28)
    assert len(test) == 100 and set(train.labels.unique().tolist()) == set(range(10))
    assert 0.12 < train.images.float().mean().item() / 255 < 0.14  # MNIST's mean grey level


def test_missing_data_folder_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_VARIABLE, str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist")
    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message
    assert DATA_DIR_VARIABLE in message and "download=True" in message


def test_bad_data_options(tiny_images):
    with pytest.raises(ValueError, match="unknown dataset 'cifar'; valid choices: 'mnist', 'fashion_mnist'"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match="unknown representation 'binary'; valid choices: 'dynamic'"):
        ImageData(tiny_images, None, "binary")
    with pytest.raises(ValueError, match="unknown split 'val'"):
        load_dataset("mnist", split="val")
    with pytest.raises(ValueError, match="uint8"):
        ImageData(tiny_images.float(), None)


def test_a_relative_data_folder_is_shown_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_DIR_VARIABLE, "../elsewhere")  # as from a notebook's folder, one level too deep
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist")
    message = str(info.value)
    assert str(tmp_path / ".." / "elsewhere" / "MNIST" / "raw") in message
    assert f"taken from the working directory {tmp_path}" in message
