"""A results folder that users can trust: ensemble runs written beside the old one, then swapped in.

Layout of an ensemble folder (``out=`` of :func:`analysis.engine.ensemble.run_ensemble`)::

    out/
      manifest.json          the completed run: its id, folder, sizes, model digest, times (written last, atomically)
      .lock                  held (flock) by the one process writing here
      run-<id>/
        run.json             what the run is (sample ids, chunk layout, times, observables, model digest)
        part-00003.parquet   results of chunk 3 (tidy: index (sample, time), one column per observable)
        fail-00003.parquet   failures of chunk 3 (written after the part: it marks the chunk done)
        samples.parquet      the parameter table of the run
        failures.parquet     every failure, with its parameters and error

* Nothing of the previous run is touched until the new one has finished: the new run writes into its own
  ``run-<id>`` folder, and only when every chunk is done is ``manifest.json`` replaced (an atomic rename)
  to point at it.  The previous run's folder is removed after that.
* A second process that tries to write into the same folder while a run holds the lock gets
  :class:`EnsembleLocked` at once.  The lock is an ``flock`` on ``.lock``: the kernel releases it when
  the process dies, so a crash never leaves a stale lock.
* An interrupted run leaves its ``run-<id>`` folder without a manifest entry.  :func:`read_ensemble` then
  refuses with the count of missing chunks, and ``run_ensemble(..., resume=True)`` finishes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.core.errors import ModelError
from analysis.core.io import write_atomic, write_text_atomic

MANIFEST = "manifest.json"
RUN_SPEC = "run.json"
FORMAT = "ketamine-cascade-ensemble/2"


class EnsembleLocked(ModelError):
    """Another process is writing an ensemble into the same folder."""


class IncompleteEnsemble(ModelError):
    """The folder holds no completed run (interrupted, or not an ensemble folder)."""


def _write_parquet(frame: pd.DataFrame, path: Path, dictionary: bool = True) -> None:
    """Write ``frame`` atomically. ``dictionary=False`` for float time courses: dictionary-encoding values
    that rarely repeat costs ~3x the write time (14.6 vs 5.3 ms a 1000-subject chunk) for a larger file."""
    write_atomic(path, lambda p: frame.to_parquet(p, use_dictionary=dictionary))


def spec_digest(
    samples: pd.DataFrame, times: np.ndarray, observables: list[str], model_digest: str, extra: dict
) -> str:
    """SHA-256 of everything that defines a run's results (used to match a run to resume)."""
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(samples, index=True).values.tobytes())
    h.update(",".join(map(str, samples.columns)).encode())
    h.update(np.asarray(times, dtype=float).tobytes())
    h.update(",".join(observables).encode())
    h.update(model_digest.encode())
    h.update(json.dumps(extra, sort_keys=True).encode())
    return h.hexdigest()


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold the folder's writer lock for the duration of the block, or raise :class:`EnsembleLocked`."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"cannot create the output folder {root}: {exc.strerror or exc}") from None
    if not root.is_dir():
        raise ModelError(f"output path {root} is not a folder")
    try:
        fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ModelError(f"cannot write to the output folder {root}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise EnsembleLocked(
                f"another ensemble run (pid {holder}) is writing to {root}; wait for it to finish or choose another "
                "output folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@dataclass
class RunWriter:
    """Writes one run into its own folder; :meth:`commit` makes it the folder's current run."""

    root: Path
    run_id: str
    spec: dict

    @property
    def folder(self) -> Path:
        return self.root / f"run-{self.run_id}"

    def done_chunks(self) -> set[int]:
        """Chunks whose results are on disk (their failure file, written last, exists)."""
        return {int(p.stem.split("-")[1]) for p in self.folder.glob("fail-*.parquet")}

    def write_chunk(self, i: int, frame: pd.DataFrame | None, failures: pd.DataFrame) -> None:
        """Write chunk ``i``: its results (if any succeeded), then its failures (the done marker)."""
        if frame is not None and len(frame):
            _write_parquet(frame, self.folder / f"part-{i:05d}.parquet", dictionary=False)
        _write_parquet(failures, self.folder / f"fail-{i:05d}.parquet")

    def read_failures(self) -> pd.DataFrame:
        files = sorted(self.folder.glob("fail-*.parquet"))
        frames = [pd.read_parquet(p) for p in files]
        frames = [f for f in frames if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def commit(self, samples: pd.DataFrame, failures: pd.DataFrame, summary: dict) -> None:
        """Write the run's tables, point ``manifest.json`` at it (atomic), then remove older runs."""
        missing = set(range(self.spec["n_chunks"])) - self.done_chunks()
        if missing:
            raise IncompleteEnsemble(f"run {self.run_id} cannot be committed: chunks {sorted(missing)} missing")
        _write_parquet(samples, self.folder / "samples.parquet")
        _write_parquet(failures, self.folder / "failures.parquet")
        manifest = {
            "format": FORMAT,
            "run_id": self.run_id,
            "folder": self.folder.name,
            "complete": True,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **{k: self.spec[k] for k in ("n_samples", "n_chunks", "model_sha256", "observables", "spec_sha256")},
            **summary,
        }
        write_text_atomic(self.root / MANIFEST, json.dumps(manifest, indent=1) + "\n")
        for old in self.root.glob("run-*"):
            if old.is_dir() and old.name != self.folder.name:
                shutil.rmtree(old, ignore_errors=True)
        for stale in self.root.glob("part-*.parquet"):  # flat layout of version 1
            stale.unlink(missing_ok=True)


def begin_run(root: Path, spec: dict, resume: bool) -> RunWriter:
    """Start a new run folder, or with ``resume`` reopen the newest unfinished run with the same spec."""
    if resume:
        current = _manifest(root)
        candidates = sorted(root.glob("run-*/" + RUN_SPEC), key=lambda p: p.stat().st_mtime, reverse=True)
        for path in candidates:
            old = json.loads(path.read_text())
            if current and current.get("folder") == path.parent.name:
                continue
            if old.get("spec_sha256") == spec["spec_sha256"]:
                return RunWriter(root, old["run_id"], old)
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    writer = RunWriter(root, run_id, {**spec, "run_id": run_id})
    writer.folder.mkdir(parents=True)
    write_text_atomic(writer.folder / RUN_SPEC, json.dumps(writer.spec, indent=1) + "\n")
    return writer


def _manifest(root: Path) -> dict | None:
    path = Path(root) / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise IncompleteEnsemble(f"{path} is unreadable: {exc}") from None
    if data.get("format") != FORMAT or not data.get("complete"):
        raise IncompleteEnsemble(f"{path} does not describe a completed ensemble run")
    return data


def completed_run(root: str | Path) -> tuple[dict, Path]:
    """The manifest and folder of the completed run in ``root``; raises :class:`IncompleteEnsemble` otherwise."""
    root = Path(root)
    if not root.is_dir():
        raise IncompleteEnsemble(f"no ensemble folder at {root}")
    manifest = _manifest(root)
    unfinished = []
    for spec_file in root.glob("run-*/" + RUN_SPEC):
        if manifest is None or spec_file.parent.name != manifest["folder"]:
            spec = json.loads(spec_file.read_text())
            done = len(list(spec_file.parent.glob("fail-*.parquet")))
            unfinished.append(f"{spec_file.parent.name}: {done} of {spec['n_chunks']} chunks written")
    if manifest is None:
        what = "; ".join(unfinished) if unfinished else "no manifest.json and no run folder"
        raise IncompleteEnsemble(
            f"{root} holds no completed ensemble run ({what}); finish it with run_ensemble(..., resume=True) "
            "or the CLI's --resume, or run it again"
        )
    folder = root / manifest["folder"]
    missing = [n for n in ("samples.parquet", "failures.parquet") if not (folder / n).exists()]
    if missing:
        raise IncompleteEnsemble(f"completed run {manifest['run_id']} in {root} lacks {missing}")
    if unfinished:
        import warnings

        warnings.warn(
            f"{root}: reading the completed run {manifest['run_id']}; a later run was interrupted "
            f"({'; '.join(unfinished)})",
            stacklevel=3,
        )
    return manifest, folder


def read_ensemble(path: str | Path) -> pd.DataFrame:
    """Read the completed ensemble run in ``path`` into one tidy DataFrame (index (sample, time [s])).

    Refuses (:class:`IncompleteEnsemble`) an interrupted run or a folder with missing parts, naming what is missing.
    """
    manifest, folder = completed_run(path)
    parts = sorted(folder.glob("part-*.parquet"))
    if not parts:
        raise IncompleteEnsemble(f"run {manifest['run_id']} in {path} has no successful simulation")
    data = pd.concat(pd.read_parquet(p) for p in parts).sort_index()
    n = data.index.get_level_values(0).nunique()
    if n != manifest["n_ok"]:
        raise IncompleteEnsemble(
            f"run {manifest['run_id']} in {path}: {n} samples on disk, the manifest records {manifest['n_ok']}"
        )
    return data


def read_ensemble_cube(
    path: str | Path, observables: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """The completed run in ``path`` as arrays, without building the tidy frame: (sample ids, times [s], observables,
    values[sample, time, observable]), samples in the order written (chunk order = the parameter table's order).

    For summaries over thousands of subjects (percentile bands): it skips the frame's MultiIndex and the sort that
    :func:`read_ensemble` needs, and with ``observables`` (a subset of the run's) reads only those columns, so a
    summary taken one observable at a time holds one observable's values in memory.  Each part holds whole samples,
    each on the run's time grid (checked).
    """
    import pyarrow.parquet as pq

    manifest, folder = completed_run(path)
    parts = sorted(folder.glob("part-*.parquet"))
    if not parts:
        raise IncompleteEnsemble(f"run {manifest['run_id']} in {path} has no successful simulation")
    recorded = list(manifest["observables"])
    observables = recorded if observables is None else list(observables)
    unknown = [o for o in observables if o not in recorded]
    if unknown:
        raise ModelError(f"observable(s) {unknown} not recorded in run {manifest['run_id']} in {path}")
    n_times = int(manifest["times_s"][2])
    ids, cubes, times = [], [], None
    for part in parts:
        sample_col, time_col = pq.read_schema(part).pandas_metadata["index_columns"]
        table = pq.read_table(part, columns=[sample_col, time_col, *observables])
        t = table.column(time_col).to_numpy()
        n = len(t) // n_times
        if n * n_times != len(t) or not np.array_equal(
            t.reshape(n, n_times), np.broadcast_to(t[:n_times], (n, n_times))
        ):
            raise IncompleteEnsemble(f"{part.name} in {path} does not hold whole samples on one time grid")
        if times is None:
            times = t[:n_times]
        elif not np.array_equal(times, t[:n_times]):
            raise IncompleteEnsemble(f"{part.name} in {path} has other output times than the first part")
        ids.append(table.column(sample_col).to_numpy()[::n_times])
        cubes.append(np.column_stack([table.column(o).to_numpy() for o in observables]).reshape(n, n_times, -1))
    sample_ids = np.concatenate(ids)
    if len(sample_ids) != manifest["n_ok"]:
        raise IncompleteEnsemble(
            f"run {manifest['run_id']} in {path}: {len(sample_ids)} samples on disk, the manifest records "
            f"{manifest['n_ok']}"
        )
    return sample_ids, times, observables, np.concatenate(cubes)


def read_samples(path: str | Path) -> pd.DataFrame:
    """The parameter table of the completed run in ``path``."""
    return pd.read_parquet(completed_run(path)[1] / "samples.parquet")


def read_failures(path: str | Path) -> pd.DataFrame:
    """The failures (parameters and error) of the completed run in ``path``."""
    return pd.read_parquet(completed_run(path)[1] / "failures.parquet")
