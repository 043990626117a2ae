"""Stop a training loop cleanly on Ctrl-C or ``kill``: finish the step, write the checkpoint, return.

A long run ends by a signal more often than by its epoch count: a notebook's
interrupt button and Ctrl-C send SIGINT, ``kill``, a batch scheduler and the
end of a session send SIGTERM. :func:`stop_on_signals` turns the first such
signal into a request that :func:`inference.fit` reads between steps; it
then checkpoints where it stands and returns normally, its
:class:`~inference.FitResult` saying ``interrupted="SIGTERM"`` (or
``"SIGINT"``), so the caller can still write its partial results. A second
signal of the same kind is not caught: it interrupts at once, as usual.

Signal handlers can only be installed from the main thread; elsewhere (a
worker thread) the loop runs as before, with no request ever made.

>>> import os, signal
>>> with stop_on_signals() as stop:
...     os.kill(os.getpid(), signal.SIGTERM)  # a "kill" while a loop runs
...     stop.requested
'SIGTERM'
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from dataclasses import dataclass

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class StopRequest:
    """``requested`` is the name of the first signal received (``"SIGINT"``, ``"SIGTERM"``), else ``None``."""

    requested: str | None = None


@contextlib.contextmanager
def stop_on_signals(signals=SIGNALS, message: str = "stopping after this step; the checkpoint will be written"):
    """Within the block, the first of ``signals`` sets ``StopRequest.requested`` and is logged with ``message``;
    the handler then steps aside, so the same signal again acts as it did before the block."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.getsignal(sig) for sig in signals}
    previous = {sig: signal.SIG_DFL if old is None else old for sig, old in previous.items()}  # None: set in C

    def handler(signum, frame):
        sig = signal.Signals(signum)
        stop.requested = stop.requested or sig.name
        signal.signal(sig, previous[sig])  # the next one is not ours to soften
        log.warning("%s received: %s (send it again to stop at once)", sig.name, message)

    for sig in signals:
        signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
