"""The conditional VAE: (x, y) batches through fit and evaluate, class-conditional samples that a
classifier recognizes, and clear errors for bad labels."""

import pytest
import torch
from torch import nn

from inference import evaluate, fit
from pyro_vae import ConditionalVAE, VAE, load_dataset
from pyro_vae.plots import class_samples


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist", split="train", representation="dynamic", limit=6000)


def _classifier(data, epochs: int = 4) -> nn.Module:
    """A small MLP trained on the real images: the judge of the samples."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    x, y = data.batch(torch.arange(len(data))), data.labels.long()
    for _ in range(epochs):
        for index in torch.randperm(len(data)).split(100):
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(x[index]), y[index]).backward()
            optimizer.step()
    return net


def test_class_conditional_samples_are_recognized_as_their_class(mnist):
    torch.manual_seed(0)
    cvae = ConditionalVAE(mnist.x_shape, z_dim=2, hidden=(256,))  # a small z leaves the class to y
    labelled = mnist.with_labels()
    result = fit(cvae.model, cvae.guide, labelled, epochs=6, batch_size=100, lr=2e-3, progress=False)
    assert result.metrics[-1]["train_loss"] < result.metrics[0]["train_loss"]
    judge = _classifier(mnist)
    with torch.no_grad():
        y = torch.arange(10).repeat_interleave(30)
        predicted = judge(cvae.sample(len(y), y=y)).argmax(-1)
    accuracy = (predicted == y).float().mean().item()
    assert accuracy > 0.6, accuracy  # chance is 0.1
    figure = class_samples(cvae, n=5)
    assert "samples by class" in figure.axes[0].get_title()
    # evaluate scores log p(x | y) on (x, y) batches: a bound above the ELBO, both finite
    test = load_dataset("mnist", split="test", representation="dynamic", limit=200).with_labels()
    scored = evaluate(cvae.model, cvae.guide, test, num_samples=20, ks=(1, 20), progress=False)
    assert scored.elbo <= scored.log_px < 0 and scored.num_data == 200


def test_bad_labels_are_named():
    cvae = ConditionalVAE((1, 4, 4), z_dim=2, num_classes=3, hidden=(8,))
    x = torch.bernoulli(torch.full((4, 1, 4, 4), 0.5))
    with pytest.raises(ValueError, match=r"labels must be classes 0..2; rows \[1, 3\] hold \[3, -1\]"):
        cvae.validate(x, torch.tensor([0, 3, 1, -1]))
    with pytest.raises(ValueError, match="1-D integer tensor"):
        cvae.validate(x, torch.zeros(4))
    with pytest.raises(ValueError, match="labels must be classes 0..2"):
        cvae.sample(2, y=5)


def test_label_counts_and_unlabelled_data_sets_are_refused(mnist):
    with pytest.raises(ValueError, match="60001 labels asked of a data set of 6000 images: give at most 6000"):
        mnist.with_labels(60001)
    half = mnist.with_labels(100, seed=3)
    assert half.num_labelled == 100 and torch.bincount(half.labels[half.labels >= 0]).tolist() == [10] * 10
    from pyro_vae import ImageData

    with pytest.raises(ValueError, match="has no labels"):
        ImageData(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), None).with_labels()


def test_labels_given_to_an_unconditional_model_are_a_clear_error(mnist):
    vae = VAE(mnist.x_shape, z_dim=2, hidden=(16,))
    with pytest.raises(TypeError, match=r"batches give 2 argument\(s\) but VAE.model.*an unconditional model takes x alone"):
        fit(vae.model, vae.guide, mnist.with_labels(), epochs=1, progress=False)
