"""benchmarks/collapse.py: variant names parse into fit options and model changes, a bad one is
refused before training, and each variant's record is written (a rerun replaces it)."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import collapse  # noqa: E402
from inference import LinearWarmup  # noqa: E402


def test_variant_names_parse_into_fit_options():
    assert collapse.options("plain", 50) == {}
    assert collapse.options("glorot+exp_scale+data_bias", 50) == {}  # model parts only
    assert collapse.options("warmup:2+data_bias", 50) == {"beta": LinearWarmup(steps=100)}
    assert collapse.options("free_bits:0.25", 50) == {"free_bits": 0.25}
    with pytest.raises(ValueError, match="unknown variant part 'warmup'"):
        collapse.options("warmup", 50)  # the epochs are missing
    with pytest.raises(ValueError, match="unknown variant part 'he_init'"):
        collapse.options("plain+he_init", 50)


def test_each_variant_is_recorded_with_its_curve_and_a_rerun_replaces_it(tmp_path):
    tiny = ["--epochs", "2", "--limit", "60", "--held-out", "20", "--samples", "4", "--results", str(tmp_path)]
    collapse.main([*tiny, "--variants", "plain", "data_bias"])
    collapse.main([*tiny, "--variants", "data_bias", "--figure", str(tmp_path / "collapse.png")])
    runs = json.loads((tmp_path / "collapse.json").read_text())["runs"]
    assert [r["variant"] for r in runs] == ["plain", "data_bias"]
    for run in runs:
        assert [r["epoch"] for r in run["rows"]] == [1, 2]
        assert all(0 <= r["active_z2"] <= 50 and 0 <= r["active_z1"] <= 100 and r["held_out_elbo"] < 0
                   for r in run["rows"])
    assert "--figure" in runs[1]["command"] and (tmp_path / "collapse.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="unknown variant part"):
        collapse.main([*tiny, "--variants", "plain", "warmup:x:y"])


def test_data_bias_sets_the_decoder_to_the_mean_training_image():
    from pyro_vae import HierarchicalVAE

    images = torch.bernoulli(torch.full((200, 1, 4, 4), 0.2))

    class Train:
        def batch(self, index):
            return images[index]

        def __len__(self):
            return len(images)

    model = HierarchicalVAE((1, 4, 4), z_dims=(3, 2), hidden=((8,), (4,)))
    collapse.data_bias(model, Train())
    expected = torch.logit(images.mean(0).flatten().clamp(1e-3, 1 - 1e-3))
    assert torch.allclose(model.decoder[-1].bias, expected, atol=1e-5)
