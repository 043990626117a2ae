"""One training process per run folder.

Two processes that train into the same folder (the same command started twice, a session's
resume beside a run still going) would overwrite each other's checkpoints with two diverging
histories, and a later resume would continue whichever wrote last. :func:`hold_run_dir` takes an
exclusive lock on ``RUN_DIR/.fit.lock`` (``fcntl.flock``: the operating system releases it when
the process ends, however it ends, so a killed run never leaves a stale lock) and writes the
holder's process id into it (the file is removed when the block ends, and a killed run's file
is taken over by the next holder); a second process that asks for the folder meanwhile gets a
:class:`RunInUseError` naming that process. Where ``fcntl`` does not exist (Windows) the folder is
not locked.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

LOCK_NAME = ".fit.lock"


class RunInUseError(RuntimeError):
    """Another live process is training into the same run folder."""


@contextlib.contextmanager
def hold_run_dir(run_dir: str | Path | None) -> Iterator[None]:
    """Hold ``run_dir`` for this process while the block runs (``None``: nothing to hold).

    :raises RunInUseError: another process holds it.

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with hold_run_dir(folder):  # doctest: +ELLIPSIS
    ...     with hold_run_dir(folder):  # a second holder, as another process would be
    ...         pass
    Traceback (most recent call last):
    ...
    inference.run_lock.RunInUseError: ...
    >>> with hold_run_dir(folder):  # released when the block ended
    ...     pass
    """
    if run_dir is None or fcntl is None:
        yield
        return
    path = Path(run_dir) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = _acquire(path, run_dir)
    try:
        lock.truncate()
        lock.write(f"{os.getpid()} {socket.gethostname()}\n")
        lock.flush()
        yield
    finally:  # remove the file while still holding it, so that no one locks a file about to vanish
        path.unlink(missing_ok=True)
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def held_by(run_dir: str | Path) -> str | None:
    """Who trains into ``run_dir`` now (``"process PID on HOST"``, or ``"another process"`` before the
    holder has written its id), or ``None`` when no live process holds it (a killed run's file does not
    count) or where ``fcntl`` does not exist.

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> held_by(folder) is None
    True
    >>> with hold_run_dir(folder):
    ...     held_by(folder).startswith(f"process {os.getpid()} on ")
    True
    """
    if fcntl is None:
        return None
    try:
        lock = open(Path(run_dir) / LOCK_NAME)
    except FileNotFoundError:
        return None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the file closes
        except BlockingIOError:
            return _holder(lock)[0]
    return None


def _holder(lock: IO[str]) -> tuple[str, str]:
    """What a held lock file names: the holder in words, and how to stop it."""
    lock.seek(0)
    pid, _, host = lock.read().strip().partition(" ")  # empty if the holder has not written yet
    return (f"process {pid} on {host}", f"kill {pid}") if pid else ("another process", "kill it")


def _acquire(path: Path, run_dir) -> IO[str]:
    while True:
        lock = open(path, "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder, kill = _holder(lock)
            lock.close()
            raise RunInUseError(
                f"{run_dir} is being trained by {holder}: two processes would overwrite each other's checkpoints. "
                f"Wait for it to end, stop it ({kill}: it finishes its step, checkpoints and stops; then resume), "
                f"or choose another run folder"
            ) from None
        try:
            if os.fstat(lock.fileno()).st_ino == os.stat(path).st_ino:
                lock.seek(0)
                return lock
        except FileNotFoundError:
            pass
        lock.close()  # the holder removed the file between our open and our lock: take the new one
