"""Atomic checkpoints that load as data, never as code.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts, saved
with ``torch.save`` to a temporary file in the same folder, flushed to disk
(``fsync``) and moved over the old one with ``os.replace``: a crash leaves
either the old or the new checkpoint, never half of one. It is loaded with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import errno
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

FORMAT = "pyro-vae-checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: truncated, foreign, or made by another run."""


class WriteError(OSError):
    """A file could not be written (a full disk, a read-only folder); the file it was to replace is intact."""


def resume_hint(run_dir: str | Path) -> str:
    """How a run saved in ``run_dir`` goes on: whatever started it (``fit``, ``pyro-vae train``, a
    benchmark script), run again with resume.

    >>> resume_hint("runs/a")
    "go on with resume=True, the same model and settings and run_dir 'runs/a' (a `pyro-vae train` run: its command again with --resume)"
    """
    return (f"go on with resume=True, the same model and settings and run_dir {str(run_dir)!r} "
            f"(a `pyro-vae train` run: its command again with --resume)")


def write_failed(path: Path, error: BaseException, remedy: str | None = None) -> WriteError:
    """The :class:`WriteError` for ``path``: what happened, what is intact, what to do."""
    text = str(error)
    full = getattr(error, "errno", None) == errno.ENOSPC or "No space left" in text or "unexpected pos" in text
    reason = "the disk is full" if full else "the write failed"
    before = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
    remedy = remedy or f"a training run continues from its last checkpoint: {resume_hint(path.parent)}"
    return WriteError(f"could not write {path}: {reason} ({text.strip()}); {before}. Free some space, then: {remedy}")


def write_text(path: str | Path, text: str, remedy: str | None = None) -> None:
    """Write a text file atomically (a temporary file moved over the old one); a failure is a :class:`WriteError`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise write_failed(path, error, remedy) from error


def save_checkpoint(path: str | Path, state: dict, remedy: str | None = None) -> None:
    """Write ``state`` (plus a format tag) to ``path`` atomically.

    :raises WriteError: the write failed (a full disk: torch reports it as a
        ``RuntimeError`` about an "unexpected pos"); the previous file is intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as error:
        Path(tmp).unlink(missing_ok=True)
        raise write_failed(path, error, remedy) from error
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint(path: str | Path, map_location: str | torch.device | None = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`.

    :raises FileNotFoundError: there is none at ``path``.
    :raises CheckpointError: the file is truncated, corrupt or not a pyro-vae checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # any file torch cannot read as weights-only data is unusable
        raise CheckpointError(
            f"{path} is truncated or not a pyro-vae checkpoint ({type(error).__name__}: {str(error)[:120]}); "
            f"delete it or resume from another run folder"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint (found {found!r})")
    return state


def rng_state() -> dict:
    """The states of torch's, Python's and NumPy's global generators, as weights-only data."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
