"""load_params: a run's saved parameters go back into a freshly built model and guide, exactly, and a
checkpoint of another model is refused."""

import pyro
import pytest
import torch

from inference import CheckpointError, fit, load_params, save_checkpoint
from pyro_vae import VAE, load_dataset
import toy  # tests/toy.py: a hand-written model and guide


def _vae(init_seed, hidden=(32,)):
    torch.manual_seed(init_seed)
    return VAE((1, 28, 28), z_dim=4, hidden=hidden)


def test_best_parameters_load_bitwise_into_a_fresh_vae(tmp_path):
    data = load_dataset("mnist", split="train", limit=256, seed=0)
    train, validation = data.split(64, seed=0)
    trained = _vae(init_seed=0)
    result = fit(trained.model, trained.guide, train, validation=validation, patience=2, epochs=3, batch_size=64,
                 run_dir=tmp_path, progress=False)
    assert result.best_epoch is not None  # fit ends on the best parameters, which best.pt holds
    pyro.clear_param_store()
    fresh = _vae(init_seed=1)
    x = validation.batch(torch.arange(8))
    assert not torch.equal(fresh.state_dict()["decoder.net.0.weight"], trained.state_dict()["decoder.net.0.weight"])
    restored = load_params(tmp_path / "best.pt", fresh.model, fresh.guide, x, num_data=len(train))
    assert len(restored) == len(trained.state_dict())
    for name, value in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name


def test_a_constrained_parameter_comes_back_as_its_constrained_value(tmp_path):
    x = torch.randn(32) * 2 + 1
    fit(toy.model, toy.guide, x, epochs=5, batch_size=16, lr=0.05, run_dir=tmp_path, progress=False)
    trained = {name: pyro.param(name).detach().clone() for name in ("loc", "w", "s")}
    pyro.clear_param_store()
    load_params(tmp_path / "checkpoint.pt", toy.model, toy.guide, x)
    for name, value in trained.items():
        assert torch.equal(pyro.param(name).detach(), value), name
    assert trained["s"] != 1.0 and trained["w"] != 0.2  # training moved them from their initial values


def test_another_models_checkpoint_is_refused_and_the_model_is_left_as_it_was(tmp_path):
    data = load_dataset("mnist", split="train", limit=64, seed=0)
    trained = _vae(init_seed=0)
    fit(trained.model, trained.guide, data, epochs=1, batch_size=64, run_dir=tmp_path, progress=False)
    pyro.clear_param_store()
    wider = _vae(init_seed=1, hidden=(48,))
    before = {k: v.clone() for k, v in wider.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"other shapes \['decoder\$\$\$net.0.bias'.*built with the same sizes"):
        load_params(tmp_path / "checkpoint.pt", wider.model, wider.guide, data.batch(torch.arange(4)), num_data=64)
    assert all(torch.equal(wider.state_dict()[k], v) for k, v in before.items())


def test_a_file_without_parameters_is_refused_with_what_to_pass(tmp_path):
    save_checkpoint(tmp_path / "other.pt", {"config": {"lr": 0.1}})
    with pytest.raises(CheckpointError, match="holds no parameters: pass a run's checkpoint.pt or best.pt"):
        load_params(tmp_path / "other.pt", toy.model, toy.guide, torch.zeros(3))
