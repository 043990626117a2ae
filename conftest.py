"""Root pytest set-up, shared by the tests and the doctests: the data folder beside the checkout."""

import os
from pathlib import Path

os.environ.setdefault("PYRO_VAE_DATA_DIR", str(Path(__file__).resolve().parent.parent / "shared" / "data"))
# absolute, so that processes started in other folders (a notebook's kernel, torchrun's workers) find it too
os.environ["PYRO_VAE_DATA_DIR"] = str(Path(os.environ["PYRO_VAE_DATA_DIR"]).resolve())
os.environ.setdefault("MPLBACKEND", "Agg")
