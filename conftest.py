"""Root pytest set-up, shared by the tests and the doctests: the data folder beside the checkout."""

import os
from pathlib import Path

os.environ.setdefault("PYRO_VAE_DATA_DIR", str(Path(__file__).resolve().parent.parent / "shared" / "data"))
os.environ.setdefault("MPLBACKEND", "Agg")
