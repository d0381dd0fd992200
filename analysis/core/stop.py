"""A stop request (SIGTERM) that survives being swallowed.

The CLI turns SIGTERM into :class:`Terminated`, raised like Ctrl-C so that every ``finally`` runs (a local Dask
cluster closes with its workers).  Python drops that exception when the handler runs where it cannot raise (a
garbage-collector callback, a finalizer, C code that clears the error), and the command would run on.  The handler
therefore also sets :data:`REQUESTED`; the ensemble engine checks it after every chunk (:func:`check`), and the CLI
checks it when a command returns, so a swallowed stop still ends the run.
"""

from __future__ import annotations

import threading


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``finally`` runs: a local Dask cluster is shut down with its worker
    processes (a plain SIGTERM left them running, orphaned, until their chunk ended)."""


#: Set by the CLI's SIGTERM handler (and cleared when the CLI installs or removes it).
REQUESTED = threading.Event()


def check() -> None:
    """Raise :class:`Terminated` if a stop was requested (long loops call this between units of work)."""
    if REQUESTED.is_set():
        raise Terminated()
