"""A stop request (SIGTERM or Ctrl-C) that survives being swallowed.

The CLI turns SIGTERM into :class:`Terminated` and Ctrl-C into ``KeyboardInterrupt``, raised so that every
``finally`` runs (a local Dask cluster closes with its workers).  Python drops that exception when the handler runs
where it cannot raise (a garbage-collector callback, a finalizer, C code that clears the error), and the command
would run on.  The handlers therefore also record the request (:func:`request`); the ensemble engine checks it
after every chunk (:func:`check`), and the CLI checks it when a command returns or fails, so a swallowed stop still
ends the run.

The record is a plain module-level value, not a ``threading.Event``: a signal handler must not take a lock (a second
signal arriving while the first handler holds the Event's lock would wait on it forever).
"""

from __future__ import annotations

import signal


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``finally`` runs: a local Dask cluster is shut down with its worker
    processes (a plain SIGTERM left them running, orphaned, until their chunk ended)."""


_requested = 0  # the signal number of the pending stop; 0: none


def request(signum: int = signal.SIGTERM) -> None:
    """Record a stop request (safe inside a signal handler: no lock).  A SIGTERM is not overwritten by a later
    Ctrl-C: the stronger stop wins."""
    global _requested
    if _requested != signal.SIGTERM:
        _requested = int(signum)


def clear() -> None:
    """Forget a stop request (the CLI calls this when it installs and when it removes its handlers)."""
    global _requested
    _requested = 0


def requested() -> int:
    """The signal number of the pending stop request (``signal.SIGTERM`` or ``signal.SIGINT``), 0 if none."""
    return _requested


def exception() -> KeyboardInterrupt:
    """The exception of the pending stop: :class:`Terminated` for SIGTERM, ``KeyboardInterrupt`` for Ctrl-C."""
    return Terminated() if _requested == signal.SIGTERM else KeyboardInterrupt()


def check() -> None:
    """Raise the pending stop's exception, if any (long loops call this between units of work)."""
    if _requested:
        raise exception()
