"""Ensemble engine: many parameter sets through one compiled model, on Dask.

Every analysis that runs many simulations (scans, global sensitivity, virtual
populations) goes through :func:`run_ensemble`.

Design
------
* Tasks are *chunks* of parameter sets, not single simulations.
* The SBML text is scattered once to every worker; each worker process compiles it
  once (cache keyed by the text's SHA-256) and reuses the compiled model for every
  chunk - the same :class:`~analysis.model.CascadeModel` code as a serial run, so the
  results are identical to running the sets one by one.
* With ``out=`` every finished chunk is written at once as a Parquet part file
  (``<out>/part-00000.parquet`` ...), so client memory stays bounded for large N.
* A parameter set whose simulation fails (solver error) is reported with its values in
  :attr:`EnsembleResult.failures`; the rest of the ensemble completes.
* ``scheduler=None`` starts a local cluster (one single-threaded worker process per
  core, or ``workers``); ``scheduler="tcp://host:8786"`` uses an existing cluster; on
  SLURM/PBS create the cluster with dask-jobqueue and pass its ``scheduler_address``.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from analysis.model import OBSERVABLES, CascadeModel, ModelError, SimulationError, load_model
from analysis.paths import SPECIES, sbml_path

#: Per-worker-process cache of compiled models, keyed by the SBML text's SHA-256.
_WORKER_MODELS: dict[str, CascadeModel] = {}


@dataclass
class EnsembleResult:
    """Outcome of :func:`run_ensemble`.

    ``data`` is a tidy DataFrame with a (sample, time) MultiIndex (time in s) and one column per
    observable, or ``None`` when the results were streamed to ``path`` (a folder of Parquet
    parts; read it back with :func:`read_ensemble`).  ``samples`` is the parameter table that
    was run; ``failures`` has one row per failed parameter set (its parameters and the error).
    """

    samples: pd.DataFrame
    failures: pd.DataFrame
    data: pd.DataFrame | None = None
    path: Path | None = None
    n_ok: int = 0
    timing: dict[str, float] = field(default_factory=dict)

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


def _worker_model(sbml_text: str, digest: str) -> CascadeModel:
    """Compile the SBML once per process (the compiled model is reused by every later chunk)."""
    model = _WORKER_MODELS.get(digest)
    if model is None:
        folder = Path(tempfile.gettempdir()) / "ketamine-cascade-models"
        folder.mkdir(exist_ok=True)
        path = folder / f"{digest}.xml"
        if not path.exists():
            tmp = folder / f".{digest}.{os.getpid()}.tmp"
            tmp.write_text(sbml_text, encoding="utf-8")
            os.replace(tmp, path)
        model = _WORKER_MODELS[digest] = CascadeModel(path)
    return model


def run_chunk(
    sbml_text: str,
    digest: str,
    samples: pd.DataFrame,
    times: np.ndarray,
    observables: Sequence[str],
    equilibrate: bool,
) -> tuple[np.ndarray, np.ndarray, list[tuple[object, str]]]:
    """Simulate one chunk of parameter sets on this process's compiled model.

    Returns (values[n_ok, n_times, n_observables], sample ids of the successful sets,
    [(sample id, error message)] of the failed ones).
    """
    model = _worker_model(sbml_text, digest)
    values, ok, failed = [], [], []
    columns = list(samples.columns)
    for sid, row in zip(samples.index, samples.itertuples(index=False, name=None), strict=True):
        try:
            values.append(model.simulate_array(times, dict(zip(columns, row, strict=True)), observables, equilibrate))
        except SimulationError as exc:
            failed.append((sid, str(exc)))
            continue
        ok.append(sid)
    shape = (len(ok), len(times), len(observables))
    return (np.asarray(values) if values else np.empty(shape)), np.asarray(ok), failed


def check_samples(samples: pd.DataFrame, model: CascadeModel) -> pd.DataFrame:
    """Validate a parameter table: non-empty, known parameter ids, finite numbers in range."""
    if not isinstance(samples, pd.DataFrame):
        raise ModelError("samples must be a pandas DataFrame (rows = parameter sets, columns = parameter ids)")
    if samples.empty or len(samples.columns) == 0:
        raise ModelError("the parameter table is empty")
    if not samples.index.is_unique:
        raise ModelError("sample ids (the table's index) must be unique")
    unknown = [c for c in samples.columns if c not in model.defaults]
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


def _client(workers: int | None, scheduler: str | None):
    from dask.distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler), None
    n = workers or os.cpu_count() or 1
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
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
    equilibrate: bool = False,
    progress: bool = True,
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
        Parameter sets per task (default: about four tasks per worker).
    out:
        Folder for Parquet parts (streamed; ``data`` is then ``None``).
    equilibrate:
        Start each set from its own drug-free steady state (see ``CascadeModel.simulate``);
        needed whenever the samples change physiology, not just dosing inputs.
    """
    import time as _time

    t0 = _time.perf_counter()
    model = load_model(species) if str(species) in SPECIES else load_model(Path(species))
    table = check_samples(samples, model)
    times = np.arange(0.0, 7 * 86400.0 + 1, 600.0) if times is None else np.asarray(times, dtype=float)
    if times.ndim != 1 or len(times) < 2 or times[0] != 0 or np.any(np.diff(times) <= 0):
        raise ModelError("times must be a 1-D increasing array starting at 0 with at least 2 points")
    model._selections_for(tuple(observables))  # raises on unknown observables
    text, digest = _sbml_source(species)
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        out_path.mkdir(parents=True, exist_ok=True)
        for old in out_path.glob("part-*.parquet"):
            old.unlink()

    own = None
    if workers == 0:
        n_workers = 1
    elif client is None:
        client, own = _client(workers, scheduler)
        n_workers = len(client.scheduler_info()["workers"])
    else:
        n_workers = max(1, len(client.scheduler_info()["workers"]))
    size = chunk_size or max(1, math.ceil(len(table) / (4 * n_workers)))
    chunks = _chunks(table, size)
    parts: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    failures: list[tuple[object, str]] = []
    n_ok = 0
    bar = tqdm(total=len(table), desc="ensemble", unit="sim", disable=not progress)
    t1 = _time.perf_counter()

    def collect(i: int, result) -> None:
        nonlocal n_ok
        values, ok, failed = result
        failures.extend(failed)
        bar.update(len(ok) + len(failed))
        if len(ok):
            n_ok += len(ok)
            if out_path is not None:
                frame = _tidy(values, ok, times, observables, table.index.name)
                frame.to_parquet(out_path / f".part-{i:05d}.tmp")
                os.replace(out_path / f".part-{i:05d}.tmp", out_path / f"part-{i:05d}.parquet")
            else:  # keep the raw arrays; one tidy frame is built at the end (cheap on the client)
                parts[i] = (values, ok)

    try:
        if workers == 0:
            for i, chunk in enumerate(chunks):
                collect(i, run_chunk(text, digest, chunk, times, list(observables), equilibrate))
        else:
            from dask.distributed import as_completed

            sbml_future = client.scatter(text, broadcast=True, hash=False)
            futures = {
                client.submit(
                    run_chunk, sbml_future, digest, chunk, times, list(observables), equilibrate, pure=False
                ): i
                for i, chunk in enumerate(chunks)
            }
            for fut in as_completed(futures):
                collect(futures[fut], fut.result())
                fut.release()
    finally:
        bar.close()
        if own is not None:
            client.close()
            own.close()

    fail = pd.DataFrame(
        [{"sample": sid, **table.loc[sid].to_dict(), "error": msg} for sid, msg in failures],
        columns=["sample", *table.columns, "error"],
    )
    data = None
    if out_path is None:
        ordered = [parts[i] for i in sorted(parts)]  # chunk order = table order
        values = np.concatenate([v for v, _ in ordered]) if ordered else np.empty((0, len(times), len(observables)))
        ids = np.concatenate([ok for _, ok in ordered]) if ordered else np.array([])
        data = _tidy(values, ids, times, observables, table.index.name)
    else:
        table.to_parquet(out_path / "samples.parquet")
        fail.to_parquet(out_path / "failures.parquet")
    t2 = _time.perf_counter()
    return EnsembleResult(
        samples=table,
        failures=fail,
        data=data,
        path=out_path,
        n_ok=n_ok,
        timing={"setup_s": t1 - t0, "simulate_s": t2 - t1},
    )


def _tidy(
    values: np.ndarray, ok: np.ndarray, times: np.ndarray, observables: Sequence[str], name: str | None
) -> pd.DataFrame:
    index = pd.MultiIndex.from_product([ok, times], names=[name or "sample", "time"])
    return pd.DataFrame(values.reshape(len(ok) * len(times), len(observables)), index=index, columns=list(observables))


def read_ensemble(path: str | Path) -> pd.DataFrame:
    """Read a streamed ensemble (folder of Parquet parts) into one tidy DataFrame."""
    parts = sorted(Path(path).glob("part-*.parquet"))
    if not parts:
        raise ModelError(f"no ensemble results (part-*.parquet) in {path}")
    return pd.concat(pd.read_parquet(p) for p in parts).sort_index()
