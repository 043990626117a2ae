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
