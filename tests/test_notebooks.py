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
    needed); ``display`` is the one name a notebook gets from IPython."""
    namespace = {"display": lambda *objects: None}
    cells = [cell for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code"]
    for i, cell in enumerate(cells):
        source = "".join(cell["source"])
        exec(compile(source, f"{path.name}, code cell {i + 1}", "exec"), namespace)
    return namespace


@pytest.fixture
def quick(monkeypatch):
    monkeypatch.setenv("PYRO_VAE_NOTEBOOK_QUICK", "1")
    matplotlib.use("Agg")  # no windows; the figures are drawn and dropped
    yield
    plt.close("all")


def test_every_notebook_is_tested():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == ["latent_spaces.ipynb"]


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
