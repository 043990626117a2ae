"""Learning-rate schedules give the paper's rates at the paper's epochs; early stopping keeps and
restores the best parameters, and survives resumption; Adam's settings and a K-sample validation bound."""

import math

import pyro
import pytest
import torch

from inference import fit
from inference.lr_schedules import Cosine, Staged, Step
import toy  # tests/toy.py: a hand-written model and guide


def test_the_staged_schedule_has_burda_et_al_s_rates_at_their_epochs():
    schedule = Staged()
    starts = [0, 1, 4, 13, 40, 121, 364, 1093]  # stage i starts after 3^0 + ... + 3^(i-1) epochs
    for i, start in enumerate(starts):
        assert schedule(start) == pytest.approx(10 ** (-i / 7)) and schedule(start + 3**i - 1) == schedule(start)
        if start:
            assert schedule(start - 1) == pytest.approx(10 ** (-(i - 1) / 7))
    assert schedule.epochs == 3280 and 0.001 * schedule(3279) == pytest.approx(1e-4)


@pytest.mark.parametrize("schedule,factors", [
    (Staged(stages=3, base=2, decay=0.5), [1, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25]),
    (Step(every=3, gamma=0.1), [1, 1, 1, 0.1, 0.1, 0.1, 0.01]),
    (Cosine(epochs=4), [1, 0.5 + 0.5 * math.cos(math.pi / 4), 0.5, 0.5 - 0.5 * math.cos(math.pi / 4), 0, 0, 0]),
], ids=["staged", "step", "cosine"])
def test_fit_steps_the_rate_of_every_epoch(schedule, factors):
    result = fit(toy.model, toy.guide, torch.randn(16), batch_size=8, epochs=7, lr=0.01, lr_schedule=schedule,
                 progress=False)
    assert [row["lr"] for row in result.metrics] == pytest.approx([0.01 * f for f in factors])
    assert result.config.lr_schedule["name"] == type(schedule).__name__.lower()


def test_adams_settings_reach_the_optimizer():
    """eps = 1e4 swamps Adam's normalization: the steps become tiny."""
    pyro.clear_param_store()
    fit(toy.model, toy.guide, torch.randn(16) + 3, batch_size=8, epochs=2, lr=0.1, progress=False)
    moved = pyro.param("loc").item()
    pyro.clear_param_store()
    fit(toy.model, toy.guide, torch.randn(16) + 3, batch_size=8, epochs=2, lr=0.1, eps=1e4, betas=(0.5, 0.9),
        progress=False)
    assert abs(moved) > 0.2 and abs(pyro.param("loc").item()) < 1e-3


def _run(tmp_path=None, **options):
    """Training data around +3, validation data around -3: the validation bound is best early."""
    pyro.clear_param_store()
    g = torch.Generator().manual_seed(0)
    train, validation = torch.randn(64, generator=g) + 3, torch.randn(32, generator=g) - 3
    result = fit(toy.model, toy.guide, train, validation=validation, batch_size=16, lr=0.05, progress=False,
                 run_dir=tmp_path, **options)
    return result, {name: pyro.param(name).detach().clone() for name in ("loc", "w", "s")}


def test_early_stopping_ends_with_the_best_parameters(tmp_path):
    result, params = _run(tmp_path / "stopped", epochs=30, patience=3)
    bounds = [row["val_elbo"] for row in result.metrics]
    best = max(range(len(bounds)), key=bounds.__getitem__) + 1
    assert result.stopped_early and result.best_epoch == best and len(bounds) == best + 3
    _, at_best = _run(epochs=best)  # the same run, stopped by hand at the best epoch
    for name in params:
        assert torch.equal(params[name], at_best[name]), name
    saved = torch.load(tmp_path / "stopped" / "best.pt", weights_only=True)
    assert saved["epoch"] == best and torch.equal(saved["params"]["loc"], at_best["loc"])


def test_early_stopping_survives_resumption(tmp_path):
    straight, straight_params = _run(tmp_path / "straight", epochs=30, patience=3)
    _run(tmp_path / "split", epochs=30, patience=3, max_steps=4 * (straight.best_epoch + 1) + 2)  # 4 steps an epoch
    resumed, resumed_params = _run(tmp_path / "split", epochs=30, patience=3, resume=True)
    assert (resumed.best_epoch, resumed.stopped_early, resumed.epoch) == (straight.best_epoch, True, straight.epoch)
    for name in straight_params:
        assert torch.equal(resumed_params[name], straight_params[name]), name


def test_a_k_sample_validation_bound_is_reported_and_watched():
    result, _ = _run(epochs=2, validation_samples=50, patience=5)
    row = result.metrics[-1]
    assert row["val_elbo"] < row["val_iwae"]  # the 50-sample bound is tighter than the ELBO
    with pytest.raises(ValueError, match="early stopping .* pass validation="):
        fit(toy.model, toy.guide, torch.randn(16), patience=2, progress=False)


@pytest.mark.parametrize("settings,message", [
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"batch_size": 0}, "batch_size must be >= 1"),
    ({"lr": 0.0}, "lr must be > 0"),
    ({"validation_samples": 0}, "validation_samples must be >= 1"),
    ({"patience": 0}, "patience must be >= 1"),
    ({"lr_decay": 0.5, "lr_schedule": Step(every=2)}, "lr_decay and lr_schedule both set"),
])
def test_bad_settings_are_refused_before_training(settings, message):
    with pytest.raises(ValueError, match=message):
        fit(toy.model, toy.guide, torch.randn(16), progress=False, **settings)
