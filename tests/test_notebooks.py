"""The tutorials in notebooks/ run from top to bottom with tiny settings, and what
their text claims holds even then."""

import json
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run_notebook(path: Path) -> dict:
    """Execute the code cells of a notebook in order, in one namespace (no Jupyter
    needed); ``display`` is the one name a notebook gets from IPython, and its
    ``%`` magics (``%matplotlib inline``) are skipped."""
    namespace = {"display": lambda *objects: None}
    cells = [cell for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code"]
    for i, cell in enumerate(cells):
        lines = "".join(cell["source"]).splitlines()
        source = "\n".join(line for line in lines if not line.lstrip().startswith("%"))  # IPython magics
        exec(compile(source, f"{path.name}, code cell {i + 1}", "exec"), namespace)
    return namespace


@pytest.fixture
def quick(monkeypatch):
    monkeypatch.setenv("PYRO_VAE_NOTEBOOK_QUICK", "1")
    matplotlib.use("Agg")  # no windows; the figures are drawn and dropped
    yield
    plt.close("all")


def test_every_notebook_is_tested():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == ["diagnostics.ipynb", "latent_spaces.ipynb"]


def test_latent_spaces_notebook(quick):
    ns = run_notebook(NOTEBOOKS / "latent_spaces.ipynb")
    sd = {name: ns["median_sd"](vae).min().item() for name, vae in ns["vaes"].items()}
    # no KL term: the posteriors shrink; KL only: they approach the prior's unit scale
    assert sd["reconstruction only"] < sd["both (the ELBO)"] < sd["KL only"]
    # raising beta widens the posteriors and lowers the KL term
    assert sd["beta = 4"] > sd["both (the ELBO)"]
    scores = ns["scores"]
    assert scores["beta = 4"].kl < scores["both (the ELBO)"].kl
    for s in scores.values():
        assert s.log_px >= s.elbo  # IWAE-K >= ELBO on average


def test_diagnostics_notebook(quick):
    ns = run_notebook(NOTEBOOKS / "diagnostics.ipynb")
    scores, psis = ns["scores"], ns["psis"]
    assert scores.log_px >= scores.elbo and len(psis.khat) == len(ns["x"])
    assert ns["idata"].posterior["z"].shape == (1, ns["K"], 4, 2)  # chain, draw, datum, z_dim
    assert ns["reference"].samples.shape[:2] == (4, ns["NUTS_DRAWS"])
    gap = ns["gap"].summary()
    assert gap["approximation_gap"] > -0.5  # KL(best q || p(z|x)) >= 0, up to Monte Carlo error
    assert gap["amortization_gap"] > -0.5  # the per-image fit starts from the encoder's guess and improves on it
    # the hand-written model: a guide of the posterior's family fits it; a too-narrow one does not
    fitted, narrow = ns["toy_khat"]["fitted guide"], ns["toy_khat"]["too narrow (sd 0.2)"]
    assert fitted.khat.median() < 0.5 < narrow.khat.median() and narrow.share_above_07 > 0.5
