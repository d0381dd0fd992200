"""Fast start of local Dask workers: a fork server with the package already imported.

A local cluster's worker processes are normally *spawned*: each starts a fresh interpreter and imports Dask, numpy,
pandas, libroadrunner and this package (~1.5 s of CPU per worker) before its first chunk.  With a fork server, that
import happens once, in a small server process, and every worker is forked from it ready to run.
The server can start in the background at the very beginning of a command, while the command itself imports and
samples, so that by the time the cluster starts, the import is done.

Forking the client itself is not safe: it runs Dask's event-loop thread, and a fork copies locks held by other
threads at that moment.  The server never runs a client or an event loop, and it starts with the environment Dask's
nanny gives a worker (one BLAS/OpenMP thread, the malloc trim threshold, a fixed hash seed), which a forked worker
must inherit from the server because it is not a new interpreter.  This module imports nothing heavy; the CLI calls
:func:`start_worker_server` as soon as it has parsed its arguments, so the server's imports overlap the command's
own preparation (engine imports, sampling).  Used on Linux only: on macOS system libraries are not fork-safe (Python
spawns there by default), and Windows has no fork server; there, and if the server cannot start, workers are spawned
as before.

The server lives as long as the process that started it and keeps the code it imported: in a notebook, restart
the kernel after editing the package (a reloaded module in the kernel does not reach the workers).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from collections.abc import Iterator

#: Modules imported once in the fork server, so that forked workers start with them: Dask's worker side and the
#: ensemble engine (which imports numpy, pandas, libroadrunner and the model code).
PRELOAD = ("distributed", "analysis.engine.ensemble")
#: The environment Dask's nanny sets before it starts a worker: the defaults of ``distributed.nanny.pre-spawn-environ``
#: and the hash seed it adds (distributed 2024-2025).  Values already in the environment win, as in Dask.
WORKER_ENVIRON = {
    "MALLOC_TRIM_THRESHOLD_": "65536",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "PYTHONHASHSEED": "6640",
}
#: Dask's setting that chooses how a local cluster starts its worker processes.
_METHOD_KEY = "distributed.worker.multiprocessing-method"


def available() -> bool:
    """Whether workers are forked from a server here: Linux only (see the module's docstring)."""
    return sys.platform.startswith("linux") and "forkserver" in multiprocessing.get_all_start_methods()


def start_worker_server() -> bool:
    """Start the fork server with :data:`PRELOAD` imported, in the background (idempotent, cheap to call again).

    Returns False where no fork server is used or it cannot start (workers are then spawned).  The server is a child
    of this process and ends with it.
    """
    if not available():
        return False
    from multiprocessing import forkserver

    # (Dask later sets its own preload list on the same context; a running server keeps the modules it started with)
    multiprocessing.get_context("forkserver").set_forkserver_preload(list(PRELOAD))
    saved = {key: os.environ.get(key) for key in WORKER_ENVIRON}
    try:
        for key, value in WORKER_ENVIRON.items():
            current = os.environ.get(key)
            if current is None or (key == "PYTHONHASHSEED" and current == "0"):  # Dask's rule for the seed
                os.environ[key] = value
        forkserver.ensure_running()  # the server process inherits this environment
    except OSError:  # e.g. no socket in the temporary folder
        return False
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
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
