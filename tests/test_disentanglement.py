"""Disentanglement metrics on codes with known answers, the aggregate total correlation against its
closed form, and the shapes data set's images against their factors."""

import pytest
import torch

from inference.disentanglement import (GroundTruth, dci, disentanglement_scores, factorvae_score, gradient_boosting, mig,
                                       total_correlation)
from pyro_vae import load_dataset
from pyro_vae.shapes import NUM_IMAGES, ShapesData, factors_of, index_of, render

SIZES = (10, 10, 10, 10)


def _truth(seed=0):
    """Four factors of 10 values each, observed with a jitter of +-0.3 (inside each value's cell)."""
    generator = torch.Generator().manual_seed(seed)
    return GroundTruth(SIZES, lambda f: f.double() + 0.6 * (torch.rand(f.shape, generator=generator) - 0.5))


# a rotation that mixes every factor into every dimension equally (a Hadamard matrix / 2): the
# FactorVAE score only asks which dimension varies least, so a rotation that leaves each factor one
# closest dimension would keep its score; this one does not
ROTATION = torch.tensor([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], dtype=torch.float64) / 2
CODES = {
    "aligned": lambda x: x[:, [2, 0, 3, 1]] * torch.tensor([2.0, -0.5, 7.0, 1.0], dtype=torch.float64),
    "rotated": lambda x: x @ ROTATION,
    "noise": lambda x: torch.randn(len(x), 4, dtype=torch.float64),
}


@pytest.fixture(scope="module")
def scores():
    trees = gradient_boosting(n_estimators=30, max_depth=2)
    torch.manual_seed(0)
    return {name: {"mig": mig(code, _truth(), num_samples=5000).score,
                   "factorvae": factorvae_score(code, _truth(), num_train=300, num_eval=300,
                                                num_variance_estimate=2000).score,
                   "dci": dci(code, _truth(), num_train=1000, num_test=500, classifier=trees)}
            for name, code in CODES.items()}


def test_a_code_equal_to_the_factors_scores_near_the_maximum(scores):
    aligned = scores["aligned"]
    assert aligned["mig"] > 0.9 and aligned["factorvae"] == 1.0
    assert aligned["dci"].disentanglement > 0.9 and aligned["dci"].completeness > 0.9
    assert aligned["dci"].informativeness > 0.95


def test_a_rotation_scores_clearly_lower(scores):
    aligned, rotated = scores["aligned"], scores["rotated"]
    assert rotated["mig"] < aligned["mig"] - 0.3
    assert rotated["factorvae"] < aligned["factorvae"] - 0.3
    assert rotated["dci"].disentanglement < aligned["dci"].disentanglement - 0.3


def test_noise_scores_near_zero(scores):
    noise = scores["noise"]
    assert noise["mig"] < 0.05 and noise["dci"].disentanglement < 0.15
    assert noise["factorvae"] < 0.45  # chance: 1/4 (four factors)
    assert noise["dci"].informativeness < 0.2  # chance: 1/10


def test_factorvae_score_ignores_collapsed_dimensions():
    """A constant dimension (a collapsed latent) would win every vote without pruning."""
    code = lambda x: torch.cat([x, torch.zeros(len(x), 1, dtype=x.dtype)], 1)  # noqa: E731
    result = factorvae_score(code, _truth(), num_train=60, num_eval=60, num_variance_estimate=500)
    assert result.active_dims == [0, 1, 2, 3] and result.score == 1.0


def test_total_correlation_matches_the_closed_form_of_a_correlated_gaussian():
    g = torch.Generator().manual_seed(0)
    A = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.3, -0.5, 0.7]], dtype=torch.float64)
    loc = torch.randn(2000, 3, generator=g, dtype=torch.float64) @ A.T
    scale = torch.full_like(loc, 0.5)
    # the aggregate: 2000 Gaussians of sd 0.5 centred on draws of N(0, A A^T), close to N(0, A A^T + 0.25 I)
    cov = A @ A.T + 0.25 * torch.eye(3, dtype=torch.float64)
    exact = 0.5 * (cov.diagonal().log().sum() - torch.logdet(cov)).item()
    assert exact > 0.3 and total_correlation(loc, scale, num_samples=1500) == pytest.approx(exact, abs=0.06)
    independent = torch.randn(2000, 3, generator=g, dtype=torch.float64)
    assert abs(total_correlation(independent, scale, num_samples=1500)) < 0.05


# -- the shapes data set -----------------------------------------------------------------


def _centre_of_mass(images):
    grid = (torch.arange(64) + 0.5) / 64
    mass = images.sum((-1, -2))
    return (images.sum(-2) * grid).sum(-1) / mass, (images.sum(-1) * grid).sum(-1) / mass


def test_scores_of_a_model_agree_with_the_metrics_and_refuse_a_full_covariance_posterior():
    """disentanglement_scores is what the study and the notebook report: its fields are the metrics' own
    values on the same draws; a posterior that is not a diagonal Gaussian is refused with the fix named."""
    from pyro_vae import PPCA, VAE
    from pyro_vae.shapes import FACTOR_NAMES, FACTOR_SIZES

    torch.manual_seed(0)
    truth = GroundTruth(FACTOR_SIZES, render, FACTOR_NAMES)
    vae = VAE((1, 64, 64), z_dim=3, hidden=(16,))
    x = render(truth.sample_factors(64, torch.Generator().manual_seed(1)))
    s = disentanglement_scores(vae.model, vae.guide, vae.posterior, x, truth, seed=3, mig_samples=300, votes=20,
                               dci_train=100, dci_trees=3, tc_samples=100)
    encode = lambda images: vae.posterior(images).mean  # noqa: E731
    with torch.no_grad():
        q = vae.posterior(x)
    assert s.mig == mig(encode, truth, num_samples=300, seed=3).score
    assert s.total_correlation == total_correlation(q.base_dist.loc, q.base_dist.scale, num_samples=100, seed=3)
    assert s.median_posterior_sd == float(q.base_dist.scale.median())
    assert s.reconstruction < 0 and s.kl >= 0 and set(s.as_dict()) >= {"mig", "factorvae", "dci", "total_correlation"}
    ppca = PPCA.random(x_dim=64 * 64, z_dim=2)  # its exact posterior has a full covariance
    flat = lambda images: ppca.posterior(images.flatten(1).double())  # noqa: E731
    with pytest.raises(ValueError, match="diagonal Gaussian.*MultivariateNormal"):
        disentanglement_scores(vae.model, vae.guide, flat, x, truth)


def test_the_centre_of_mass_follows_the_position_factors():
    g = torch.Generator().manual_seed(0)
    factors = factors_of(torch.randint(NUM_IMAGES, (300,), generator=g))
    factors[:, 0] = torch.randint(2, (300,), generator=g)  # squares and ellipses: symmetric about their centre
    x, y = _centre_of_mass(render(factors)[:, 0])
    assert torch.allclose(x, 0.2 + 0.6 * factors[:, 3] / 31, atol=1.0 / 64)
    assert torch.allclose(y, 0.2 + 0.6 * factors[:, 4] / 31, atol=1.0 / 64)
    # the heart is not symmetric, but its centre of mass still moves one for one with the position
    hearts = factors.clone()
    hearts[:, 0] = 2
    hx, hy = _centre_of_mass(render(hearts)[:, 0])
    shifted = hearts.clone()
    shifted[:, 3] = (hearts[:, 3] + 10) % 32
    sx, _ = _centre_of_mass(render(shifted)[:, 0])
    assert torch.allclose(sx - hx, 0.6 * (shifted[:, 3] - hearts[:, 3]) / 31, atol=1.0 / 64)


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_the_area_follows_the_scale_and_rotation_keeps_it(shape):
    by_scale = torch.tensor([[shape, s, 5, 16, 16] for s in range(6)])
    area = render(by_scale).sum((1, 2, 3))
    assert (area.diff() > 0).all()
    ratio = area / area[-1]
    expected = torch.tensor([(0.5 + 0.1 * s) ** 2 for s in range(6)])
    assert torch.allclose(ratio, expected, rtol=0.15)
    rotated = render(torch.tensor([[shape, 5, o, 16, 16] for o in range(40)])).sum((1, 2, 3))
    assert (rotated.max() - rotated.min()) / rotated.mean() < 0.1


def test_every_image_stays_inside_the_frame_and_the_index_is_the_factors():
    g = torch.Generator().manual_seed(1)
    index = torch.randint(NUM_IMAGES, (500,), generator=g)
    assert (index_of(factors_of(index)) == index).all()
    corners = render(torch.tensor([[s, 5, o, x, y] for s in range(3) for o in (0, 5) for x in (0, 31) for y in (0, 31)]))
    assert corners[..., [0, -1], :].sum() == 0 and corners[..., :, [0, -1]].sum() == 0
    assert (corners.sum((1, 2, 3)) > 0).all()
    with pytest.raises(ValueError, match="column i in 0..size_i - 1"):
        index_of(torch.tensor([[3, 0, 0, 0, 0]]))


def test_load_dataset_draws_a_seeded_subset_and_refuses_what_shapes_lacks():
    a, b = load_dataset("shapes", limit=200, seed=3), load_dataset("shapes", limit=200, seed=3)
    assert isinstance(a, ShapesData) and len(a) == 200 and torch.equal(a.index, b.index)
    assert not torch.equal(a.index, load_dataset("shapes", limit=200, seed=4).index)
    assert len(a.factors[:, 0].unique()) == 3  # every shape, not the first 200 images (all small squares)
    x = a.batch(torch.arange(8))
    assert x.shape == (8, 1, 64, 64) and set(x.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(x, render(a.factors[:8]))
    train, held_out = a.split(50)
    assert len(train) == 150 and len(held_out) == 50 and not set(train.index.tolist()) & set(held_out.index.tolist())
    assert len(load_dataset("shapes")) == NUM_IMAGES == 737280
    with pytest.raises(ValueError, match="one split"):
        load_dataset("shapes", split="test")
    with pytest.raises(ValueError, match="binary"):
        load_dataset("shapes", representation="dequantized")


def test_the_study_runs_resumes_and_writes_its_table(tmp_path):
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import disentanglement

    (tmp_path / "BENCHMARKS.md").write_text("# Benchmarks\n")
    argv = ["--betas", "1", "4", "--seeds", "0", "--steps", "15", "--limit", "300", "--held-out", "100",
            "--hidden", "32", "--z-dim", "3", "--mig-samples", "300", "--votes", "10", "--dci-train", "100",
            "--dci-trees", "3", "--no-progress", "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results"),
            "--docs", str(tmp_path / "docs"), "--table", str(tmp_path / "BENCHMARKS.md")]
    disentanglement.main(argv)
    result = json.loads((tmp_path / "results" / "disentanglement.json").read_text())
    assert result["status"] == "finished" and len(result["records"]) == 4  # 2 models x 2 betas
    for record in result["records"]:
        assert 0 <= record["mig"] <= 1 and 0 <= record["factorvae"] <= 1 and 0 <= record["dci"] <= 1
        assert record["kl"] >= 0 and record["reconstruction"] < 0 and record["steps"] == 15
    assert set(result["findings"]) == {"beta-vae", "beta-tcvae"}
    assert {p.name for p in (tmp_path / "docs").iterdir()} == {"disentanglement_metrics.png", "traversals_best.png",
                                                               "traversals_worst.png"}
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| beta-tcvae | 4 | 1 |" in text and "Spearman" in text
    # a second run finds every model scored and trains nothing
    before = {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("checkpoint.pt")}
    disentanglement.main(argv)
    assert {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("checkpoint.pt")} == before


def test_the_studys_findings_tell_beta_from_seed():
    """Spearman's correlation of TC with beta, and each metric's share of variance between seeds at a
    fixed beta: 0 for a metric that only beta moves, 1 for one that only the seed moves."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import disentanglement

    records = [{"model": "beta-vae", "beta": beta, "seed": seed, "total_correlation": 10.0 / beta,
                "mig": 0.1 * seed, "factorvae": 0.5 + 0.01 * beta, "dci": 0.1 * seed + 0.01 * beta}
               for beta in (1, 2, 4, 8, 16) for seed in (0, 1, 2)]
    found = disentanglement.findings(records)["beta-vae"]
    assert found["spearman_tc_beta"] == pytest.approx(-1.0) and found["tc_falls_at_every_beta_step"]
    shares = found["seed_variance_share"]
    assert shares["total_correlation"] == 0 and shares["factorvae"] == 0
    assert shares["mig"] == pytest.approx(1.0) and 0.1 < shares["dci"] < 0.9
    assert found["seed_variance_share_if_beta_had_no_effect"] == pytest.approx(10 / 14)  # (15 - 5) / (15 - 1)
    records[0]["total_correlation"] = 1.0  # one beta-1 model below a beta-2 model: the fall is not at every step
    assert not disentanglement.findings(records)["beta-vae"]["tc_falls_at_every_beta_step"]
