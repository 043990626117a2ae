"""Run the tutorials in a real Jupyter kernel (nbclient, the engine of ``jupyter nbconvert --execute``)
and save them with their outputs: the one command to run after changing a notebook's code.

    python notebooks/execute.py                      # every notebook in notebooks/
    python notebooks/execute.py diagnostics.ipynb    # some of them

Each saved notebook records the SHA-256 of its code cells (``metadata["pyro_vae"]["code_sha256"]``);
``tests/test_notebooks.py`` fails when the code no longer matches the outputs saved with it. The
tests themselves call :func:`execute` with tiny values for the cell tagged ``parameters`` (injected
in a new cell after it, papermill's convention) and read back what the notebook computed through
a last cell that prints it as JSON (:func:`run_and_read`).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def code_hash(notebook) -> str:
    """The SHA-256 of the notebook's code cells, in order (injected cells excluded)."""
    digest = hashlib.sha256()
    for cell in notebook.cells:
        if cell.cell_type == "code" and "injected-parameters" not in cell.metadata.get("tags", []):
            digest.update(cell.source.encode() + b"\0")
    return digest.hexdigest()


def execute(path: Path, *, parameters: dict | None = None, append: str | None = None, timeout: int = 3600):
    """The notebook at ``path``, executed top to bottom in a fresh ``python3`` kernel whose working
    folder is the notebook's; ``parameters`` override the cell tagged ``parameters``; ``append`` is
    code run last in the same kernel. A failing cell raises ``nbclient``'s ``CellExecutionError``
    with the cell and its traceback."""
    notebook = nbformat.read(path, as_version=4)
    if parameters:
        tagged = [i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
        if not tagged:
            raise ValueError(f"{path.name} has no cell tagged 'parameters' to override")
        source = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
        cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
        notebook.cells.insert(tagged[0] + 1, cell)
    if append:
        notebook.cells.append(nbformat.v4.new_code_cell(append, metadata={"tags": ["injected-parameters"]}))
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(Path(path).parent)}}).execute()
    return notebook


def run_and_read(path: Path, parameters: dict, expression: str) -> dict:
    """Execute with ``parameters`` and return the JSON value of ``expression`` evaluated in the kernel at the end."""
    notebook = execute(path, parameters=parameters, append=f"import json as _json\nprint(_json.dumps({expression}))")
    text = "".join(o.get("text", "") for o in notebook.cells[-1].outputs if o.output_type == "stream")
    return json.loads(text.strip().splitlines()[-1])


def save(path: Path) -> None:
    """Execute the notebook with its own parameters and write it back with its outputs and code hash."""
    notebook = execute(path)
    notebook.metadata["pyro_vae"] = {"code_sha256": code_hash(notebook)}
    nbformat.write(notebook, path)


def main(argv: list[str] | None = None) -> None:
    names = (argv if argv is not None else sys.argv[1:]) or sorted(p.name for p in HERE.glob("*.ipynb"))
    for name in names:
        path = HERE / name
        print(f"executing {path} ...", flush=True)
        save(path)
        print(f"saved {path}")


if __name__ == "__main__":
    main()
