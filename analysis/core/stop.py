"""A stop request (SIGTERM) that survives being swallowed.

The CLI turns SIGTERM into :class:`Terminated`, raised like Ctrl-C so that every ``finally`` runs (a local Dask
cluster closes with its workers).  Python drops that exception when the handler runs where it cannot raise (a
garbage-collector callback, a finalizer, C code that clears the error), and the command would run on.  The handler
therefore also records the request (:func:`request`); the ensemble engine checks it after every chunk
(:func:`check`), and the CLI checks it when a command returns or fails, so a swallowed stop still ends the run.

The flag is a plain module-level value, not a ``threading.Event``: a signal handler must not take a lock (a second
SIGTERM arriving while the first handler holds the Event's lock would wait on it forever).
"""

from __future__ import annotations


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``finally`` runs: a local Dask cluster is shut down with its worker
    processes (a plain SIGTERM left them running, orphaned, until their chunk ended)."""


_requested = False


def request() -> None:
    """Record a stop request (safe inside a signal handler: no lock, no allocation)."""
    global _requested
    _requested = True


def clear() -> None:
    """Forget a stop request (the CLI calls this when it installs and when it removes its SIGTERM handler)."""
    global _requested
    _requested = False


def requested() -> bool:
    """Whether a stop was requested and not yet cleared."""
    return _requested


def check() -> None:
    """Raise :class:`Terminated` if a stop was requested (long loops call this between units of work)."""
    if _requested:
        raise Terminated()
