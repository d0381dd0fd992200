"""Fast start of local Dask workers: a fork server with the package already imported.

A local cluster's worker processes are normally *spawned*: each starts a fresh interpreter and imports Dask, numpy,
pandas, libroadrunner and this package (~1.5 s of CPU per worker) before its first chunk.  With a fork server, that
import happens once, in a small single-threaded server process, and every worker is forked from it ready to run.
The server can start in the background at the very beginning of a command, while the command itself imports and
samples, so that by the time the cluster starts, the import is done.

Forking a *multi-threaded* process (a Dask client runs an event-loop thread) risks deadlocks on locks held by other
threads at the moment of the fork; a fork server avoids this, because the server is a single-threaded process that
never runs a client.  This module imports nothing heavy: the CLI calls :func:`start_worker_server` before importing
the rest of the package.  Where the platform has no fork server (Windows), workers are spawned as before.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterator

#: Modules imported once in the fork server, so that forked workers start with them: Dask's worker side and the
#: ensemble engine (which imports numpy, pandas, libroadrunner and the model code).
PRELOAD = ("distributed", "analysis.engine.ensemble")
#: Dask's setting that chooses how a local cluster starts its worker processes.
_METHOD_KEY = "distributed.worker.multiprocessing-method"


def available() -> bool:
    """Whether this platform offers a fork server (Linux, macOS: yes; Windows: no)."""
    return "forkserver" in multiprocessing.get_all_start_methods()


def start_worker_server() -> bool:
    """Start the fork server with :data:`PRELOAD` imported, in the background (idempotent, cheap to call again).

    Returns False where no fork server is available.  The server is a child of this process and ends with it.
    """
    if not available():
        return False
    from multiprocessing import forkserver

    # (Dask later sets its own preload list on the same context; a running server keeps the modules it started with)
    multiprocessing.get_context("forkserver").set_forkserver_preload(list(PRELOAD))
    forkserver.ensure_running()
    return True


@contextlib.contextmanager
def forked_workers() -> Iterator[bool]:
    """Within this block, local Dask clusters fork their workers from the server of :func:`start_worker_server`
    (started here if it is not running yet).  Yields whether they do.  Workers that Dask restarts later, outside the
    block, are spawned as usual."""
    if not start_worker_server():
        yield False
        return
    import dask

    with dask.config.set({_METHOD_KEY: "forkserver"}):
        yield True
