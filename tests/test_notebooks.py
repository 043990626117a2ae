"""The tutorials in notebooks/ run in a real Jupyter kernel (nbclient) with tiny values of their
parameters cell, what their text claims holds even then, and their saved outputs come from their
current code."""

import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))
import execute  # noqa: E402  (notebooks/execute.py)

TINY = {
    "latent_spaces.ipynb": {"LIMIT": 1024, "EPOCHS": 2, "NUM_TEST": 256, "K": 50},
    "diagnostics.ipynb": {"LIMIT": 1024, "EPOCHS": 2, "NUM_TEST": 64, "K": 100, "NUTS_DRAWS": 40, "NUTS_WARMUP": 40,
                          "GAP_IMAGES": 4, "GAP_STEPS": 30},
    "own_model.ipynb": {"LIMIT": 1000, "EPOCHS": 1, "NUM_TEST": 200, "K": 50, "LABELS": 200, "M2_EPOCHS": 2,
                        "REPEATS": 20},
    "estimators.ipynb": {"BIAS_REPEATS": 40, "BIAS_KS": [1, 10, 100], "REPEATS": 200, "SNR_KS": [1, 10, 100],
                         "LIMIT": 1000, "NUM_TEST": 100, "RACE_SECONDS": 3, "K": 20},
    "disentanglement.ipynb": {"LIMIT": 600, "STEPS": 80, "BETA": 8.0, "HELD_OUT": 200, "MIG_SAMPLES": 500,
                              "VOTES": 20, "DCI_TRAIN": 100},
}


def test_every_notebook_is_tested():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(TINY)


@pytest.mark.parametrize("name", sorted(TINY))
def test_saved_outputs_come_from_the_current_code(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    saved = notebook.metadata.get("pyro_vae", {}).get("code_sha256")
    assert saved == execute.code_hash(notebook), (
        f"{name}'s code changed since its outputs were saved: run  python notebooks/execute.py {name}")
    assert all(cell.outputs or not cell.source.strip() for cell in notebook.cells if cell.cell_type == "code"
               and "parameters" not in cell.metadata.get("tags", [])), f"{name} has code cells without outputs"


def test_parameters_are_injected_after_the_tagged_cell(tmp_path):
    path = tmp_path / "tiny.ipynb"
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("N = 1000", metadata={"tags": ["parameters"]}),
                      nbformat.v4.new_code_cell("squares = [i * i for i in range(N)]")]
    nbformat.write(notebook, path)
    assert execute.run_and_read(path, {"N": 4}, "squares") == [0, 1, 4, 9]
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), path)
    with pytest.raises(ValueError, match="no cell tagged 'parameters'"):
        execute.execute(path, parameters={"N": 1})


def test_latent_spaces_notebook():
    got = execute.run_and_read(NOTEBOOKS / "latent_spaces.ipynb", TINY["latent_spaces.ipynb"], """{
        "sd": {name: median_sd(vae).min().item() for name, vae in vaes.items()},
        "scores": {name: {"kl": s.kl, "log_px": s.log_px, "elbo": s.elbo} for name, s in scores.items()}}""")
    sd, scores = got["sd"], got["scores"]
    # no KL term: the posteriors shrink; KL only: they approach the prior's unit scale
    assert sd["reconstruction only"] < sd["both (the ELBO)"] < sd["KL only"]
    # raising beta widens the posteriors and lowers the KL term
    assert sd["beta = 4"] > sd["both (the ELBO)"]
    assert scores["beta = 4"]["kl"] < scores["both (the ELBO)"]["kl"]
    for s in scores.values():
        assert s["log_px"] >= s["elbo"]  # IWAE-K >= ELBO on average


def test_diagnostics_notebook():
    tiny = TINY["diagnostics.ipynb"]
    got = execute.run_and_read(NOTEBOOKS / "diagnostics.ipynb", tiny, """{
        "log_px": scores.log_px, "elbo": scores.elbo, "khat": len(psis.khat), "x": len(x),
        "idata": list(idata.posterior["z"].shape), "reference": list(reference.samples.shape[:2]),
        "gap": gap.summary(),
        "fitted": toy_khat["fitted guide"].khat.median().item(),
        "narrow": toy_khat["too narrow (sd 0.2)"].khat.median().item(),
        "narrow_07": toy_khat["too narrow (sd 0.2)"].share_above_07}""")
    assert got["log_px"] >= got["elbo"] and got["khat"] == got["x"]
    assert got["idata"] == [1, tiny["K"], 4, 2]  # chain, draw, datum, z_dim
    assert got["reference"] == [4, tiny["NUTS_DRAWS"]]
    assert got["gap"]["approximation_gap"] > -0.5  # KL(best q || p(z|x)) >= 0, up to Monte Carlo error
    assert got["gap"]["amortization_gap"] > -0.5  # the per-image fit starts from the encoder's guess and improves on it
    # the hand-written model: a guide of the posterior's family fits it; a too-narrow one does not
    assert got["fitted"] < 0.5 < got["narrow"] and got["narrow_07"] > 0.5


def test_own_model_notebook():
    got = execute.run_and_read(NOTEBOOKS / "own_model.ipynb", TINY["own_model.ipynb"], """{
        "log_px": scores.log_px, "elbo": scores.elbo, "iwae": scores.iwae_curve, "dims": collapse.num_dims,
        "refusals": refusals, "errors": errors,
        "variance": {name: s.groups["classifier"].variance for name, s in noise.items()},
        "cvae_samples": list(cvae.sample(3, y=4).shape), "unlabelled": [unlabelled_scores.elbo, unlabelled_scores.log_px]}""")
    # the hand-written pair is scored like a built-in model: IWAE_k rises with k, above the ELBO
    iwae = [got["iwae"][k] for k in sorted(got["iwae"], key=int)]
    assert got["elbo"] <= got["log_px"] and iwae == sorted(iwae) and got["dims"] == 10
    # the refusals name the data plate and the conditional/unconditional mix-up
    assert "pyro.plate('data', len(x))" in got["refusals"]["evaluate, no data plate"]
    assert "pyro.plate('data', len(x))" in got["refusals"]["psis_khat, no data plate"]
    assert "TypeError" in got["refusals"]["fit, labels to a model of x"] and "with_labels" in got["refusals"]["fit, labels to a model of x"]
    # enumeration removes most of the classifier's gradient variance; M2 learns to classify (chance: 90% error)
    assert got["variance"]["enum"] < 1e-3 * got["variance"]["trace"]
    assert got["errors"][0] > 0.75 and got["errors"][-1] < 0.7
    assert got["cvae_samples"] == [3, 1, 28, 28] and got["unlabelled"][0] <= got["unlabelled"][1] < 0


def test_estimators_notebook():
    tiny = TINY["estimators.ipynb"]
    got = execute.run_and_read(NOTEBOOKS / "estimators.ipynb", tiny, """{
        "log_px": log_px, "gap": gap, "curves": {label: list(curve.values()) for label, curve in curves.items()},
        "variance": variance, "snr": {f"{n}/{g}": v for (n, g), v in snr.items()},
        "race": [[e.estimator, e.steps, e.elbo, e.log_px] for e in result.entries]}""")
    log_px, gap, curves = got["log_px"], got["gap"], got["curves"]

    def near(value, target, se):  # within 4 standard errors, plus rounding
        return abs(value - target) <= 4 * se + 1e-6

    # the ELBO estimators sit at log p(x) - KL(q || p(z|x)) at every K; the closed-form KL is positive
    assert gap > 0.5
    for label in ("trace (ELBO)", "mean_field (ELBO)", "stl (ELBO)"):
        assert all(near(mean, log_px - gap, se) for mean, se, _ in curves[label]), (label, curves[label])
    # IWAE-K rises towards log p(x), never above it; DReG estimates the same bound; Renyi(0.5) lies in between
    iwae = [mean for mean, _, _ in curves["iwae"]]
    assert iwae == sorted(iwae) and iwae[-1] < log_px + 0.05 and log_px - iwae[-1] < 0.5 * gap
    assert all(near(d[0], i[0], (d[1] ** 2 + i[1] ** 2) ** 0.5) for d, i in zip(curves["dreg (IWAE bound)"], curves["iwae"]))
    renyi = curves["renyi, alpha = 0.5"][-1][0]
    assert curves["trace (ELBO)"][-1][0] < renyi < iwae[-1]
    # the noise of one ELBO estimate falls with K (it averages K draws)
    assert curves["trace (ELBO)"][-1][2] < 0.5 * curves["trace (ELBO)"][0][2]
    # STL and DReG: zero guide-gradient variance at the exact posterior, not the standard estimator
    assert got["variance"]["stl"][0] < 1e-20 and got["variance"]["dreg"][0] < 1e-20 and got["variance"]["trace"][0] > 1
    assert got["variance"]["stl"][-1] > 1
    # Rainforth et al.: IWAE's guide SNR falls with K, DReG's and the model's rise
    snr = got["snr"]
    assert snr["iwae/guide"][-1] < 0.5 * snr["iwae/guide"][0]
    assert snr["dreg/guide"][-1] > 2 * snr["dreg/guide"][0] and snr["iwae/model"][-1] > 2 * snr["iwae/model"][0]
    # the race scores every entrant on the held-out images, IWAE-K above the ELBO
    assert [e[0] for e in got["race"]] == ["trace", "mean_field", "stl", "iwae", "dreg"]
    assert all(steps > 0 and elbo <= log_px_ for _, steps, elbo, log_px_ in got["race"])


def test_disentanglement_notebook():
    got = execute.run_and_read(NOTEBOOKS / "disentanglement.ipynb", TINY["disentanglement.ipynb"],
                               "{'scores': {k: v.as_dict() for k, v in scores.items()}, 'rows': [list(r.shape) for r in rows]}")
    assert got["rows"] == [[8, 1, 64, 64]] * 5
    plain, beta_vae, tcvae = got["scores"].values()
    for s in (plain, beta_vae, tcvae):
        assert 0 <= s["mig"] <= 1 and 0 <= s["factorvae"] <= 1 and 0 <= s["dci"] <= 1 and s["total_correlation"] > -0.1, got
    # weighting the KL lowers it and widens the posteriors (the tutorial's advice: tight posteriors, raise beta)
    assert beta_vae["kl"] < plain["kl"] and beta_vae["median_posterior_sd"] > plain["median_posterior_sd"], got
