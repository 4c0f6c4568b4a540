"""A forked helper process that imports a slow library while the run loads and scores, then calls
functions there.

scikit-learn's import takes 1.1-1.6 CPU-s on the 2-core VM (SciPy's stats, through `sklearn.utils.fixes`),
for metrics that take milliseconds. On a thread of the run's own process the import held the GIL against
the loop that decodes the batches (2,048 images through MobileNetV2: 0.9 s of wall time for 1.1 CPU-s); a
spawned process first paid for a fresh interpreter and NumPy. A forked process starts in milliseconds and
imports on the other core with nothing shared; the CLI forks it before the run's own imports, so that the two
overlap (issue 18; `predict.report.metrics.start_import`).
"""

from __future__ import annotations

import importlib
import multiprocessing
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any


class HelperProcess:
    """One forked process that imports `module`, then runs the calls it is sent, one at a time.

    A call whose helper has died (killed, out of memory) runs in the calling process instead, so a
    helper can only make a run faster, never fail it.
    """

    def __init__(self, module: str) -> None:
        context = multiprocessing.get_context("fork")
        self._connection, helper_end = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(helper_end, self._connection, module), name=f"predict-import-{module}", daemon=True
        )
        self._process.start()
        helper_end.close()

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """`function(*args)` in the helper (a module-level function: it is sent by name), its
        exception raised here."""
        if self._connection.closed:
            return function(*args)
        try:
            self._connection.send((function, args))
            succeeded, value = self._connection.recv()
        except (EOFError, OSError):  # the helper is gone
            self.close()
            return function(*args)
        if not succeeded:
            raise value
        return value

    def close(self) -> None:
        """End the helper at once, wherever it is (importing, or idle between calls), and reap it: nothing it
        does is needed any more, and no process is left behind."""
        if self._connection.closed:
            return
        self._process.kill()
        self._process.join()
        self._connection.close()


def _serve(connection: Connection, runs_end: Connection, module: str) -> None:
    """The helper's life: import `module`, then answer calls until the run is gone (or kills it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's to handle
    # The run's end of the pipe, inherited: held open here, the pipe would never end when the run dies (killed),
    # and the helper would wait for it forever.
    runs_end.close()
    importlib.import_module(module)
    while True:
        try:
            message = connection.recv()
        except EOFError:
            return
        function, args = message
        try:
            answer = (True, function(*args))
        except Exception as error:  # the caller's to raise
            answer = (False, error)
        try:
            connection.send(answer)
        except Exception as error:  # an exception that does not pickle
            connection.send((False, RuntimeError(f"{function.__name__} failed: {answer[1]!r} ({error})")))
