"""Ensemble engine: many parameter sets through one compiled model, on Dask.

Every analysis that runs many simulations (scans, global sensitivity, virtual
populations) goes through :func:`run_ensemble`.

Design
------
* Tasks are *chunks* of parameter sets, not single simulations.
* Each task carries the SBML text and its SHA-256.  A worker process verifies the hash,
  compiles the model once (cache keyed by the hash) and reuses it for every later chunk -
  the same :class:`~analysis.core.model.CascadeModel` code as a serial run, so the results are
  identical to running the sets one by one.  Because nothing lives only in a worker's
  memory, a run survives workers that die: Dask reschedules their chunks on restarted
  workers.  The worker's file of the model lives in a private per-user folder (mode 0700)
  and is loaded only after its hash is checked.
* Any exception while simulating a set (solver failure, no physiological drug-free state,
  time limit, or a bug) becomes a failure row with the set's parameters and the error; a
  chunk whose worker kept dying becomes failure rows too.  The rest of the ensemble completes.
* With ``out=`` the results are streamed chunk by chunk into a run folder and committed
  atomically with a manifest (:mod:`analysis.engine.store`): the previous results are untouched until
  the new run has finished, one writer at a time, and ``resume=True`` finishes an interrupted run.
* ``scheduler=None`` starts a local cluster (one single-threaded worker process per
  core, or ``workers``, forked from a server with the package imported: :mod:`analysis.engine.forkserver`);
  ``scheduler="tcp://host:8786"`` uses an existing cluster; on SLURM/PBS create the cluster with
  dask-jobqueue and pass its ``scheduler_address``.
  A Dask scheduler runs pickled code on its workers: connect only to schedulers you trust.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from analysis.core import stop
from analysis.core.errors import ModelError, SimulationError, without_parameters
from analysis.core.model import OBSERVABLES, CascadeModel, ModelSpec, check_times, load_model, model_spec
from analysis.core.paths import SPECIES, sbml_path
from analysis.core.steady_state import quiet_native_stderr
from analysis.engine import store
from analysis.engine.store import read_ensemble  # noqa: F401  (public: re-exported)

#: Per-worker-process cache of compiled models, keyed by the SBML text's SHA-256.
_WORKER_MODELS: dict[str, CascadeModel] = {}
#: Default tasks per worker.  Run times of parameter sets are heavy-tailed (a Sobol design of the rat box: median
#: 18 ms, but whole base points at 0.5-5 s a set) and neighbouring sets are alike (a base point's variants are
#: consecutive), so a few large chunks leave one worker finishing a slow chunk while the others idle: Sobol N = 16
#: (1,920 runs, 2 workers) took 67 s in 4 chunks per worker, 52 s in 16 and 47 s in 48.  A chunk costs ~5 ms of
#: scheduling and, for time courses, one message with its arrays.
TASKS_PER_WORKER = 16
#: Largest default chunk (parameter sets per task), so that the progress bar of a long run moves every few seconds
#: (a chunk is its unit).
MAX_CHUNK_SIZE = 100
#: Seconds to wait for an existing scheduler to answer.
CONNECT_TIMEOUT_S = 10.0
_ADDRESS = re.compile(r"^(tcp|tls|inproc|ucx|ws|wss)://[^\s/]+(:\d+)?/?$|^[A-Za-z0-9_.\-\[\]:]+:\d+$")


class EngineError(ModelError):
    """The Dask cluster could not be used (bad address, unreachable scheduler, bad worker settings)."""


@dataclass
class EnsembleResult:
    """Outcome of :func:`run_ensemble`.

    ``data`` is a tidy DataFrame with a (sample, time) MultiIndex (time in s) and one column per
    observable, or ``None`` when the results were streamed to ``path`` (an ensemble folder; read
    it back with :func:`read_ensemble`).  With a ``reduce`` function it is indexed by sample, one column
    per reduced value.  ``samples`` is the parameter table that was run;
    ``failures`` has one row per failed parameter set (its parameters and the error).
    """

    samples: pd.DataFrame
    failures: pd.DataFrame
    data: pd.DataFrame | None = None
    path: Path | None = None
    n_ok: int = 0
    timing: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None

    def to_xarray(self):
        """The results as an ``xarray.Dataset`` with dims (sample, time)."""
        df = self.data if self.data is not None else read_ensemble(self.path)
        return df.to_xarray()


def _sbml_source(species_or_path: str | Path) -> tuple[str, str]:
    path = sbml_path(species_or_path) if str(species_or_path) in SPECIES else Path(species_or_path)
    if not path.exists():
        raise ModelError(f"SBML file not found: {path}")
    text = path.read_text(encoding="utf-8")
    return text, hashlib.sha256(text.encode()).hexdigest()


_PRIVATE_FALLBACK: list[Path] = []


def private_cache_dir() -> Path:
    """This user's folder for compiled-model files, private (0700, owned by this user).

    The usual place is ``<tmp>/ketamine-cascade-<uid>``.  If that path exists but is not a private
    folder of this user (a symlink, another owner, writable by others), it is not used: a fresh
    ``mkdtemp`` folder of this process is used instead.
    """
    folder = Path(tempfile.gettempdir()) / f"ketamine-cascade-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(folder)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077:
            return folder
    except OSError:
        pass
    if not _PRIVATE_FALLBACK:
        _PRIVATE_FALLBACK.append(Path(tempfile.mkdtemp(prefix="ketamine-cascade-")))
    return _PRIVATE_FALLBACK[0]


def _worker_model(sbml_text: str, digest: str) -> CascadeModel:
    """Compile the SBML once per process (verified by its SHA-256; reused by every later chunk)."""
    model = _WORKER_MODELS.get(digest)
    if model is not None:
        return model
    if hashlib.sha256(sbml_text.encode()).hexdigest() != digest:
        raise ModelError("the model text received by the worker does not match its SHA-256 (corrupted in transfer)")
    path = private_cache_dir() / f"{digest}.xml"
    if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
        fd, tmp = tempfile.mkstemp(prefix=f".{digest}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(sbml_text)
        os.replace(tmp, path)
    model = CascadeModel(path)
    _WORKER_MODELS[digest] = model
    return model


def run_chunk(
    sbml_text: str,
    digest: str,
    samples: pd.DataFrame,
    times: np.ndarray,
    observables: Sequence[str],
    equilibrate: bool | None,
    time_limit: float | None = None,
    reduce: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[tuple[object, str]]]:
    """Simulate one chunk of parameter sets on this process's compiled model.

    Returns (values[n_ok, n_times, n_observables], sample ids of the successful sets,
    [(sample id, error message)] of the failed ones).  Any exception of a set is a failure of that set;
    if the model itself cannot be prepared, every set of the chunk fails with that reason.  With ``reduce``
    (a picklable function of one set's time-course array, n_times x n_observables, returning a 1-d array)
    the values are the reduced arrays, values[n_ok, n_reduced]; an exception in ``reduce`` fails that set.
    """
    shape0 = (0, len(times), len(observables))
    try:
        model = _worker_model(sbml_text, digest)
    except Exception as exc:  # noqa: BLE001  (reported per set, never lost)
        return np.empty(shape0), np.asarray([]), [(sid, f"{type(exc).__name__}: {exc}") for sid in samples.index]
    values, ok, failed = [], [], []
    columns = list(samples.columns)
    for sid, row in zip(samples.index, samples.itertuples(index=False, name=None), strict=True):
        params = dict(zip(columns, row, strict=True))
        try:
            with quiet_native_stderr():  # a failure's solver message is in its failure row, not on the console
                data = model.simulate_array(times, params, observables, equilibrate, time_limit=time_limit)
            values.append(data if reduce is None else np.asarray(reduce(data), dtype=float))
        except SimulationError as exc:  # the failure row holds the set's parameters: the message need not repeat them
            failed.append((sid, without_parameters(str(exc))))
            continue
        except Exception as exc:  # noqa: BLE001  (any other error is a failure row, not a lost chunk)
            failed.append((sid, f"{type(exc).__name__}: {exc}"))
            continue
        ok.append(sid)
    shape = (len(ok), len(times), len(observables)) if reduce is None else (0, 0)
    return (np.asarray(values) if values else np.empty(shape)), np.asarray(ok), failed


def check_samples(samples: pd.DataFrame, model: ModelSpec) -> pd.DataFrame:
    """Validate a parameter table: non-empty, known parameter ids, finite numbers in range."""
    if not isinstance(samples, pd.DataFrame):
        raise ModelError("samples must be a pandas DataFrame (rows = parameter sets, columns = parameter ids)")
    if samples.empty or len(samples.columns) == 0:
        raise ModelError("the parameter table is empty")
    if not samples.index.is_unique:
        raise ModelError("sample ids (the table's index) must be unique")
    settable = set(model.parameters)
    unknown = [c for c in samples.columns if c not in settable]
    if unknown:
        raise ModelError(f"unknown parameter(s) {unknown} for model {model.model_id}")
    table = samples.apply(pd.to_numeric, errors="coerce").astype(float)
    bad = table.isna() & ~samples.isna()
    if bad.any().any():
        col = bad.any()[bad.any()].index[0]
        raise ModelError(f"parameter {col!r}: non-numeric value in sample {bad[col].idxmax()!r}")
    if table.isna().any().any():
        col = table.isna().any()[table.isna().any()].index[0]
        raise ModelError(f"parameter {col!r} is NaN in sample {table[col].isna().idxmax()!r}")
    for col in table.columns:  # ranges: the extremes of each column, with the model's own rules
        for sid in (table[col].idxmin(), table[col].idxmax()):
            try:
                model.check_parameters({col: table.at[sid, col]})
            except ModelError as exc:
                raise ModelError(f"{exc} (sample {sid!r})") from None
    return table


def _chunks(table: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    return [table.iloc[i : i + size] for i in range(0, len(table), size)]


def check_engine_options(workers: object, scheduler: object, chunk_size: object) -> None:
    """Validate the engine settings up front (before any cluster is started or any file touched)."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer))):
        raise EngineError(f"workers must be a whole number >= 0, got {workers!r}")
    if workers is not None and workers < 0:
        raise EngineError(f"workers must be >= 0 (0 = serial, in this process), got {workers}")
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1
    ):
        raise EngineError(f"chunk_size must be a whole number >= 1, got {chunk_size!r}")
    if scheduler is not None and (not isinstance(scheduler, str) or not _ADDRESS.match(scheduler.strip())):
        raise EngineError(f"scheduler must be a Dask scheduler address such as tcp://127.0.0.1:8786, got {scheduler!r}")


def _client(workers: int | None, scheduler: str | None):
    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s"), None
        except (OSError, TimeoutError) as exc:
            raise EngineError(
                f"cannot reach the Dask scheduler at {scheduler} within {CONNECT_TIMEOUT_S:g} s: {exc}"
            ) from None
    n = workers or os.cpu_count() or 1
    from analysis.engine.forkserver import forked_workers

    # Worker logs below CRITICAL are not printed: a failed set or a lost chunk is a failure row with its reason, and
    # the one ERROR a normal run could print is a worker's heartbeat racing the shutdown (a CommClosedError
    # traceback after the results are complete).
    # The workers are forked from a server that has the package imported (analysis.engine.forkserver), not spawned.
    with forked_workers():
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.CRITICAL
        )
    return Client(cluster), cluster


def run_ensemble(
    samples: pd.DataFrame,
    species: str | Path = "rat",
    times: Sequence[float] | np.ndarray | None = None,
    observables: Sequence[str] = OBSERVABLES,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    client=None,
    chunk_size: int | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    equilibrate: bool | None = None,
    time_limit: float | None = None,
    progress: bool = True,
    reduce: Callable[[np.ndarray], np.ndarray] | None = None,
    reduced_names: Sequence[str] | None = None,
) -> EnsembleResult:
    """Simulate every row of ``samples`` (columns = parameter ids, e.g. ``dose`` in mg/kg).

    Parameters
    ----------
    samples:
        Parameter table; its index labels the samples.
    species:
        'human', 'rat' or the path of an SBML file.
    times:
        Output times (s), increasing from 0; default: every 10 min for 7 days.
    observables:
        Model ids to record (contract observables by default).
    workers, scheduler, client:
        ``workers=0`` runs serially in this process (no Dask).  Otherwise an existing Dask
        ``client``, or a ``scheduler`` address, or a new local cluster with ``workers``
        single-threaded worker processes (default: one per core).
    chunk_size:
        Parameter sets per task (default: about :data:`TASKS_PER_WORKER` tasks per worker, at most
        :data:`MAX_CHUNK_SIZE`).
    out, resume:
        Ensemble folder (:mod:`analysis.engine.store`): results are streamed there as Parquet parts and
        committed atomically at the end (``data`` is then ``None``).  ``resume=True`` finishes an
        interrupted run of the same samples, times, observables and model instead of starting anew.
    equilibrate:
        Start each set from its own drug-free steady state (see ``CascadeModel.simulate``).  ``None``
        (default) decides per set: equilibrate exactly when it changes physiology (non-input parameters).
        A set without a physiological, stable drug-free state is a failure row with the reason.
    time_limit:
        Wall-clock limit per set (s); a set that exceeds it is a failure row.  ``None``: no limit.
    reduce, reduced_names:
        Reduce each set's time course (array n_times x n_observables) to a 1-d array of len(reduced_names) on
        the worker (a picklable, module-level function or ``functools.partial``); ``data`` is then indexed by
        sample with these columns, and only the reduced values travel to the client (a Sobol design of 30,000
        two-day time courses held ~3.7 GB there).  Not with ``out``.
    """
    t0 = time.perf_counter()
    check_engine_options(workers, scheduler, chunk_size)
    if time_limit is not None and not (isinstance(time_limit, (int, float)) and time_limit > 0):
        raise ModelError(f"time_limit must be a positive number of seconds or None, got {time_limit!r}")
    # the workers compile the model; the client only checks the inputs against its ids (a serial run compiles here)
    loader = load_model if workers == 0 else model_spec
    model = loader(species) if str(species) in SPECIES else loader(Path(species))
    table = check_samples(samples, model)
    times = np.arange(0.0, 7 * 86400.0 + 1, 600.0) if times is None else check_times(times)
    observables = list(observables)
    model._selections_for(tuple(observables))  # raises on unknown observables
    text, digest = _sbml_source(species)
    out_path = Path(out) if out is not None else None
    if resume and out_path is None:
        raise ModelError("resume=True needs an output folder (out=)")
    if reduce is not None and (out_path is not None or not reduced_names):
        raise ModelError("reduce needs reduced_names and cannot be combined with an output folder (out=)")

    own = None
    if workers == 0:
        n_workers = 1
    elif client is None:
        client, own = _client(workers, scheduler)
        n_workers = max(1, len(client.scheduler_info()["workers"]))
    else:
        n_workers = max(1, len(client.scheduler_info()["workers"]))
    try:
        size = chunk_size or max(1, min(MAX_CHUNK_SIZE, math.ceil(len(table) / (TASKS_PER_WORKER * n_workers))))
        if out_path is None:
            return _run(table, times, observables, text, digest, client, workers, size, None, equilibrate,
                        time_limit, progress, t0, reduce, reduced_names)  # fmt: skip
        with store.locked(out_path):
            spec = {
                "n_samples": len(table),
                "chunk_size": size,
                "n_chunks": math.ceil(len(table) / size),
                "model_sha256": digest,
                "observables": observables,
                "equilibrate": equilibrate,
            }
            spec["spec_sha256"] = store.spec_digest(table, times, observables, digest, spec)
            writer = store.begin_run(out_path, spec, resume)
            return _run(table, times, observables, text, digest, client, workers, size, writer, equilibrate,
                        time_limit, progress, t0)  # fmt: skip
    finally:
        if own is not None:
            client.close()
            own.close()


def _failure_frame(table: pd.DataFrame, failures: list[tuple[object, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"sample": sid, **table.loc[sid].to_dict(), "error": msg} for sid, msg in failures],
        columns=["sample", *table.columns, "error"],
    )


def _run(table, times, observables, text, digest, client, workers, size, writer, equilibrate, time_limit,
         progress, t0, reduce=None, reduced_names=None) -> EnsembleResult:  # fmt: skip
    chunks = _chunks(table, size)
    done = writer.done_chunks() if writer is not None else set()
    todo = [i for i in range(len(chunks)) if i not in done]
    parts: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    failures: list[tuple[object, str]] = []
    n_ok = 0
    bar = tqdm(total=len(table), desc="ensemble", unit="sim", disable=not progress)
    bar.update(sum(len(chunks[i]) for i in done))
    t1 = time.perf_counter()

    def collect(i: int, result) -> None:
        nonlocal n_ok
        values, ok, failed = result
        bar.update(len(ok) + len(failed))
        n_ok += len(ok)
        if writer is not None:
            frame = _tidy(values, ok, times, observables, table.index.name) if len(ok) else None
            writer.write_chunk(i, frame, _failure_frame(table, failed))
        else:  # keep the raw arrays; one tidy frame is built at the end (cheap on the client)
            failures.extend(failed)
            if len(ok):
                parts[i] = (values, ok)
        stop.check()  # a stop (SIGTERM) whose exception was swallowed ends the run here, after this chunk is kept

    args = (times, observables, equilibrate, time_limit, reduce)
    try:
        if workers == 0:
            for i in todo:
                collect(i, run_chunk(text, digest, chunks[i], *args))
        else:
            from dask.distributed import as_completed

            futures = {client.submit(run_chunk, text, digest, chunks[i], *args, pure=False): i for i in todo}
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    result = fut.result()
                except Exception as exc:  # noqa: BLE001  (e.g. KilledWorker: the chunk's sets become failures)
                    reason = f"chunk lost on the cluster ({type(exc).__name__}: {exc})"
                    result = (np.empty((0, 0)), np.asarray([]), [(sid, reason) for sid in chunks[i].index])
                collect(i, result)
                fut.release()
    finally:
        bar.close()

    data, run_id = None, None
    if writer is None:
        fail = _failure_frame(table, failures)
        ordered = [parts[i] for i in sorted(parts)]  # chunk order = table order
        ids = np.concatenate([ok for _, ok in ordered]) if ordered else np.array([])
        if reduce is not None:
            values = np.vstack([v for v, _ in ordered]) if ordered else np.empty((0, len(reduced_names)))
            index = pd.Index(ids, name=table.index.name or "sample")
            data = pd.DataFrame(values, index=index, columns=list(reduced_names))
        else:
            shape = (0, len(times), len(observables))
            values = np.concatenate([v for v, _ in ordered]) if ordered else np.empty(shape)
            data = _tidy(values, ids, times, observables, table.index.name)
    else:
        fail = writer.read_failures()
        if fail.empty:
            fail = _failure_frame(table, [])
        n_ok = len(table) - len(fail)
        writer.commit(
            table,
            fail,
            {"n_ok": n_ok, "n_failed": len(fail), "times_s": [float(times[0]), float(times[-1]), len(times)]},
        )
        run_id = writer.run_id
    t2 = time.perf_counter()
    return EnsembleResult(
        samples=table,
        failures=fail,
        data=data,
        path=writer.root if writer is not None else None,
        n_ok=n_ok,
        timing={"setup_s": t1 - t0, "simulate_s": t2 - t1},
        run_id=run_id,
    )


def _tidy(
    values: np.ndarray, ok: np.ndarray, times: np.ndarray, observables: Sequence[str], name: str | None
) -> pd.DataFrame:
    index = pd.MultiIndex.from_product([ok, times], names=[name or "sample", "time"])
    return pd.DataFrame(values.reshape(len(ok) * len(times), len(observables)), index=index, columns=list(observables))
