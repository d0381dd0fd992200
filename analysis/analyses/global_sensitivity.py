"""Global sensitivity analysis: Sobol indices and Morris screening (SALib) through the ensemble engine.

Workflow (both methods)::

    problem, bounds = build_problem("rat", ["vmax_eaat", "k_glu_release"])   # plausible bounds of the table
    res = sobol_analysis("rat", ["vmax_eaat", "k_glu_release"], ["glutamate_peak"], n=64, seed=1, workers=0)
    res.indices        # readout x parameter: S1, S1_conf, ST, ST_conf
    res.convergence    # the same indices on nested subsets of the sample (N = 8, 16, ..., n)

Design choices
--------------
* **Bounds** come from ``models/parameters.tsv`` (:func:`analysis.analyses.sensitivity.parameter_bounds`) or from
  user bounds (:func:`analysis.analyses.sensitivity.check_bounds`).
* **Sampling space.**  A positive parameter whose bounds span a decade or more (``upper / lower >=``
  :data:`LOG_SPAN`) is sampled uniformly in ``log10`` (log-uniform); every other parameter uniformly on
  ``[lower, upper]``.  The SALib problem holds the sampling-space bounds (``log10`` for log parameters);
  :func:`to_physical` maps a sample to model values.  ``result.bounds['scale']`` records the choice.
* **Simulations**: every parameter set runs through :func:`analysis.engine.ensemble.run_ensemble` with
  ``equilibrate=True`` (the parameters change the drug-free physiology, so each set starts from its own
  drug-free steady state and relative readouts are relative to it); readouts are computed per sample from
  the returned tidy data with :func:`analysis.analyses.readouts.compute_readouts`.
* **Failed parameter sets** (``EnsembleResult.failures``) are never imputed.  *Sobol*: with a complete sample
  matrix the indices are SALib's.  A failed set (or a NaN readout) leaves a hole in it; each parameter's
  indices are then computed from the base rows whose three runs that index needs (A, B and the row of A with
  that parameter from B) all succeeded, with the same estimators (Saltelli 2010 first order, Jansen total
  order, on the output standardised over every finite run) and bootstrap intervals over those rows
  (pairwise deletion, column ``n_used``).  This assumes the failures are unrelated to the output, which a
  failure that sits in one corner of the box is not: the indices then describe the box without that corner,
  and ``result.failures`` says how many runs it lost.  Fewer than :data:`SOBOL_MIN_N` complete rows for a
  parameter raises :class:`GlobalSensitivityError`.  *Morris*: the same pairwise deletion one level down.
  An elementary effect needs the two runs of its step; a failed set (or a NaN readout) removes the one or
  two steps it ends, and every other step of its trajectory still counts (``indices['n_used']`` effects per
  parameter, ``result.dropped`` effects lost per readout).  Dropping whole trajectories instead wastes most
  of the design where failures cluster at range ends (the default whole-box design kept 1 trajectory of 10).
  The same caveat holds: effects next to a failing corner are missing, not imputed.
* **Sobol**: first (S1) and total (ST) order only (``calc_second_order=False``: N (D + 2) runs for D
  parameters and N base samples); N must be a power of two >= :data:`SOBOL_MIN_N`.  Confidence intervals
  are SALib's bootstrap intervals (``conf_level``, ``n_resamples``).
* **Morris** (``mu``, ``mu_star``, ``sigma``, ``mu_star_conf``): elementary effects are changes of the
  readout (in its own unit) per step of ``delta = levels / (2 (levels - 1))`` of the normalised
  (sampling-space) range, so mu* has the readout's unit.  ``r`` trajectories of D + 1 runs.
* **Convergence**: the scrambled Sobol base sequence is nested (the first N' points of an N-point draw with
  the same seed are the N'-point draw), so the indices for N' = 8, 16, ... are computed from the first
  N' (D + 2) rows of the same run (no extra simulations).  Morris trajectories are independent draws, so
  the first r' trajectories are a valid smaller design.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.analyses.readouts import (
    check_readouts,
    compute_readouts,
    readout_times,
    required_horizon,
    required_observables,
)
from analysis.analyses.sensitivity import (
    SensitivityError,
    as_model,
    check_bounds,
    default_scenario,
    default_sensitivity_parameters,
    parameter_bounds,
)
from analysis.core.errors import without_parameters
from analysis.core.model import CascadeModel

#: Bounds spanning at least this ratio (upper / lower > 0) are sampled log-uniformly.
LOG_SPAN = 10.0
#: Smallest Sobol base sample (a power of two).
SOBOL_MIN_N = 8
#: Smallest number of Morris trajectories (sigma needs two elementary effects per parameter).
MORRIS_MIN_TRAJECTORIES = 2
METHODS = ("morris", "sobol")
#: Default readouts of the global analyses (defined for every parameter set; no NaN).
DEFAULT_READOUTS = ("glutamate_peak", "mtorc1_peak", "spine_gain_24h")

__all__ = [
    "DEFAULT_READOUTS",
    "GlobalSensitivityError",
    "GlobalSensitivityResult",
    "LOG_SPAN",
    "MORRIS_MIN_TRAJECTORIES",
    "SOBOL_MIN_N",
    "build_problem",
    "evaluate_readouts",
    "morris_analysis",
    "morris_convergence",
    "morris_effects",
    "morris_indices",
    "morris_sample",
    "sobol_analysis",
    "sobol_convergence",
    "sobol_indices",
    "sobol_sample",
    "to_physical",
]


class GlobalSensitivityError(SensitivityError):
    """A global sensitivity analysis cannot be done as requested (bad input, failed simulations)."""


@dataclass
class GlobalSensitivityResult:
    """Outcome of :func:`sobol_analysis` / :func:`morris_analysis`.

    ``indices``: DataFrame with a (readout, parameter) MultiIndex; Sobol columns ``S1, S1_conf, ST,
    ST_conf`` (dimensionless), Morris ``mu, mu_star, mu_star_conf, sigma`` (readout unit).
    ``convergence``: long table (readout, parameter, n, index, value, conf); ``n`` is the number of
    base samples (Sobol) or trajectories (Morris).  ``samples``: the parameter sets in model units;
    ``outputs``: the readouts per sample (NaN for failed sets); ``failures``: from the ensemble engine;
    ``dropped``: Morris elementary effects lost to failed runs, per readout (of r D).
    """

    method: str
    indices: pd.DataFrame
    convergence: pd.DataFrame
    samples: pd.DataFrame
    outputs: pd.DataFrame
    failures: pd.DataFrame
    bounds: pd.DataFrame
    problem: dict
    dropped: dict[str, int] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)


# -- problem and samples ----------------------------------------------------------------------------------------
def build_problem(
    model: CascadeModel | str,
    parameters: Sequence[str] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    log_span: float | None = LOG_SPAN,
) -> tuple[dict, pd.DataFrame]:
    """SALib problem over the plausible bounds.

    Parameters
    ----------
    model:
        Species name, SBML path or loaded model.
    parameters:
        Ids to vary (default: :func:`analysis.analyses.sensitivity.default_sensitivity_parameters`).
    bounds:
        ``{id: (lower, upper)}`` overriding the table's bounds (model units).
    log_span:
        Positive bounds with ``upper / lower >= log_span`` are sampled in log10 (None: never).

    Returns
    -------
    (problem, table): the SALib problem (sampling-space bounds) and a table indexed by parameter with
    ``lower``, ``upper`` (model units), ``scale`` ('linear' or 'log10'), ``value`` (shipped), ``unit``.
    """
    m = as_model(model)
    if parameters is None:
        ids = list(bounds) if bounds else default_sensitivity_parameters(m.species)
    else:
        ids = [parameters] if isinstance(parameters, str) else list(parameters)
    if not ids:
        raise GlobalSensitivityError("no parameter to analyse")
    if len(set(ids)) != len(ids):
        raise GlobalSensitivityError(f"duplicate parameter ids in {ids}")
    unknown = [p for p in ids if p not in m.defaults]
    if unknown:
        raise GlobalSensitivityError(f"unknown parameter(s) {unknown} for model {m.model_id}")
    user = check_bounds(m, dict(bounds or {}))
    extra = [p for p in user if p not in ids]
    if extra:
        raise GlobalSensitivityError(f"bounds given for parameter(s) {extra} that are not analysed")
    table_ids = [p for p in ids if p not in user]
    rows: dict[str, dict] = {}
    if table_ids:
        tab = parameter_bounds(m.species, table_ids)
        for p in table_ids:
            rows[p] = {
                "lower": float(tab.loc[p, "lower"]),
                "upper": float(tab.loc[p, "upper"]),
                "unit": tab.loc[p, "unit"],
            }
    for p, (lo, hi) in user.items():
        rows[p] = {"lower": lo, "upper": hi, "unit": ""}
    out = pd.DataFrame.from_dict({p: rows[p] for p in ids}, orient="index").rename_axis("parameter")
    out["value"] = [m.defaults[p] for p in ids]
    log = (out["lower"] > 0) & (out["upper"] / out["lower"].where(out["lower"] > 0) >= (log_span or np.inf))
    out["scale"] = np.where(log, "log10", "linear")
    space = [
        [math.log10(lo), math.log10(hi)] if s == "log10" else [lo, hi]
        for lo, hi, s in zip(out["lower"], out["upper"], out["scale"], strict=True)
    ]
    problem = {"num_vars": len(ids), "names": list(ids), "bounds": space}
    return problem, out[["lower", "upper", "scale", "value", "unit"]]


def to_physical(X: np.ndarray, bounds: pd.DataFrame) -> pd.DataFrame:
    """Map a sample in sampling space (columns in ``bounds`` order) to model units (DataFrame)."""
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] != len(bounds):
        raise GlobalSensitivityError(f"sample has shape {X.shape}; expected (n, {len(bounds)})")
    vals = X.copy()
    log = bounds["scale"].values == "log10"
    vals[:, log] = 10.0 ** X[:, log]
    # clip round-off of 10**log10(bound) back into the bounds (the engine checks ranges)
    vals = np.clip(vals, bounds["lower"].values[None, :], bounds["upper"].values[None, :])
    return pd.DataFrame(vals, columns=list(bounds.index), index=pd.RangeIndex(len(vals), name="sample"))


def _is_power_of_two(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


def _check_sobol_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise GlobalSensitivityError(f"Sobol base sample size must be an integer, got {n!r}")
    if n < SOBOL_MIN_N or not _is_power_of_two(int(n)):
        raise GlobalSensitivityError(
            f"Sobol base sample size N must be a power of 2 >= {SOBOL_MIN_N} (Sobol' sequence balance), got {n}"
        )
    return int(n)


def sobol_sample(problem: dict, n: int, seed: int | None = 0) -> np.ndarray:
    """Saltelli sample (first and total order): ``n (D + 2)`` rows in sampling space; ``n`` a power of 2."""
    from SALib.sample import sobol

    n = _check_sobol_n(n)
    return sobol.sample(problem, n, calc_second_order=False, scramble=True, seed=seed)


def _check_morris(r: int, levels: int) -> tuple[int, int]:
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < MORRIS_MIN_TRAJECTORIES:
        raise GlobalSensitivityError(
            f"Morris needs at least {MORRIS_MIN_TRAJECTORIES} trajectories (sigma needs two elementary "
            f"effects per parameter), got {r!r}"
        )
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 2 or levels % 2:
        raise GlobalSensitivityError(f"Morris levels must be an even integer >= 2 (p = 4 is usual), got {levels!r}")
    return int(r), int(levels)


def morris_sample(problem: dict, r: int, levels: int = 4, seed: int | None = 0) -> np.ndarray:
    """Morris trajectories: ``r (D + 1)`` rows in sampling space (``levels``-level grid)."""
    from SALib.sample import morris

    r, levels = _check_morris(r, levels)
    return morris.sample(problem, r, num_levels=levels, seed=seed)


# -- simulations through the ensemble engine ---------------------------------------------------------------------
def evaluate_readouts(
    model: CascadeModel | str,
    samples: pd.DataFrame,
    readouts: Sequence[str],
    scenario: Mapping[str, float] | None = None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    client=None,
    chunk_size: int | None = None,
    progress: bool = True,
    time_limit: float | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate every parameter set (rows of ``samples``, model units) with :func:`run_ensemble`
    (``equilibrate=True``) and compute ``readouts`` per sample.  ``time_limit``: wall-clock seconds per set
    (a set past it is a failure row; None: no limit).

    ``scenario``: inputs for every set (default: the species' default scenario, e.g. rat 10 mg/kg);
    a sampled parameter overrides it.  Returns (outputs indexed like ``samples`` with one column per
    readout, NaN for failed sets; failures table from the engine).
    """
    from analysis.engine.ensemble import run_ensemble

    m = as_model(model)
    names = check_readouts(readouts)
    scen = default_scenario(m) if scenario is None else dict(scenario)
    m.check_parameters(scen)
    table = samples.copy()
    for k, v in scen.items():
        if k not in table.columns:
            table[k] = float(v)
    t_dose = float(scen.get("t_dose", 0.0))
    if "t_dose" in samples.columns:
        raise GlobalSensitivityError("t_dose cannot be a sampled parameter (readouts are read at a fixed dose time)")
    times = readout_times(t_dose, required_horizon(names))
    source = m.path if m.species not in ("rat", "human") else m.species
    observables = required_observables(names)
    # readouts are computed on the workers: only they, not the time courses, travel to the client
    reduce = functools.partial(_readout_values, times=times, observables=observables, names=names, t_dose=t_dose)
    res = run_ensemble(
        table,
        source,
        times,
        observables,
        workers=workers,
        scheduler=scheduler,
        client=client,
        chunk_size=chunk_size,
        equilibrate=True,
        progress=progress,
        time_limit=time_limit,
        reduce=reduce,
        reduced_names=names,
    )
    out = pd.DataFrame(np.nan, index=samples.index, columns=names)
    if res.data is not None and len(res.data):
        out.loc[res.data.index, names] = res.data[names].to_numpy()
    return out, res.failures


def _readout_values(
    data: np.ndarray, times: np.ndarray, observables: Sequence[str], names: Sequence[str], t_dose: float
) -> np.ndarray:
    """Readouts ``names`` of one set's time course (array n_times x n_observables), in ``names`` order."""
    frame = pd.DataFrame(data, index=pd.Index(times, name="time"), columns=list(observables))
    return compute_readouts(frame, names, t_dose).to_numpy(dtype=float)


# -- indices (the code path shared by the model and the analytic known-answer tests) ------------------------------
def sobol_indices(
    problem: dict, Y: np.ndarray, conf_level: float = 0.95, n_resamples: int = 100, seed: int | None = 0
) -> pd.DataFrame:
    """First- and total-order Sobol indices with bootstrap confidence intervals from Saltelli outputs.

    ``Y``: model output for each row of :func:`sobol_sample` (same order), finite.  Returns a DataFrame
    indexed by parameter with ``S1, S1_conf, ST, ST_conf`` (``*_conf``: half-width of the ``conf_level``
    interval).
    """
    from SALib.analyze import sobol

    Y = np.asarray(Y, dtype=float).ravel()
    d = problem["num_vars"]
    if len(Y) % (d + 2) or not _is_power_of_two(len(Y) // (d + 2)):
        raise GlobalSensitivityError(
            f"{len(Y)} outputs do not form a Saltelli sample of N (D + 2) rows (D = {d}, N a power of 2)"
        )
    if not 0 < conf_level < 1:
        raise GlobalSensitivityError(f"conf_level must be in (0, 1), got {conf_level}")
    if not np.all(np.isfinite(Y)):
        return _sobol_complete_rows(problem, Y, conf_level, n_resamples, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        si = sobol.analyze(
            problem, Y, calc_second_order=False, num_resamples=n_resamples, conf_level=conf_level, seed=seed
        )
    cols = ["S1", "S1_conf", "ST", "ST_conf"]
    out = pd.DataFrame(
        {c: np.asarray(si[c], dtype=float) for c in cols}, index=pd.Index(problem["names"], name="parameter")
    )
    out["n_used"] = len(Y) // (d + 2)
    return out


def _complete_rows(Y: np.ndarray, d: int) -> np.ndarray:
    """(base rows x parameters) mask of a Saltelli sample: True where the A, B and AB_i runs all have a value."""
    blocks = np.isfinite(Y).reshape(-1, d + 2)  # per base row: A, AB_1 ... AB_d, B
    return blocks[:, 1:-1] & (blocks[:, :1] & blocks[:, -1:])


def _sobol_complete_rows(
    problem: dict, Y: np.ndarray, conf_level: float, n_resamples: int, seed: int | None
) -> pd.DataFrame:
    """Sobol indices of a Saltelli sample with failed runs (non-finite ``Y``): per parameter, on the base rows
    whose A, B and AB_i runs are all finite (pairwise deletion), with SALib's estimators (first order Saltelli
    2010, total order Jansen) on the output standardised over its finite values, and bootstrap intervals over
    those rows.  Column ``n_used``: the rows each parameter's indices rest on."""
    from SALib.analyze.sobol import first_order, separate_output_values, total_order
    from scipy.stats import norm

    d = problem["num_vars"]
    n = len(Y) // (d + 2)
    finite = np.isfinite(Y)
    if finite.sum() < 2:
        raise GlobalSensitivityError(f"{int(np.sum(~finite))} of {len(Y)} outputs are not finite: nothing to analyse")
    Z = np.where(finite, (Y - Y[finite].mean()) / Y[finite].std(), np.nan)
    A, B, AB, _ = separate_output_values(Z, d, n, False)
    rng = np.random.default_rng(seed)
    z = norm.ppf(0.5 + conf_level / 2)
    complete = _complete_rows(Y, d)
    rows = []
    for j, name in enumerate(problem["names"]):
        ok = complete[:, j]
        k = int(ok.sum())
        if k < SOBOL_MIN_N:
            raise GlobalSensitivityError(
                f"parameter {name!r}: only {k} of {n} base rows have all three runs its Sobol indices need "
                f"(need >= {SOBOL_MIN_N}); {int(np.sum(~finite))} of {len(Y)} runs failed or gave no readout"
            )
        a, b, ab = A[ok], B[ok], AB[ok, j]
        r = rng.integers(k, size=(k, n_resamples))
        with np.errstate(divide="ignore", invalid="ignore"):
            s1, st = float(first_order(a, ab, b)), float(total_order(a, ab, b))
            s1_boot, st_boot = first_order(a[r], ab[r], b[r]), total_order(a[r], ab[r], b[r])
        rows.append([s1, z * s1_boot.std(ddof=1), st, z * st_boot.std(ddof=1), k])
    out = pd.DataFrame(rows, columns=["S1", "S1_conf", "ST", "ST_conf", "n_used"], index=problem["names"])
    out.index.name = "parameter"
    return out


def sobol_convergence(
    problem: dict,
    Y: np.ndarray,
    ns: Sequence[int] | None = None,
    conf_level: float = 0.95,
    n_resamples: int = 100,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Sobol indices on the nested subsets (first ``n (D + 2)`` rows) for ``ns`` (default: powers of 2 from
    :data:`SOBOL_MIN_N` to the full N; with failed runs, only the sizes at which every parameter keeps
    :data:`SOBOL_MIN_N` complete base rows).  Long table: parameter, n, index ('S1'/'ST'), value, conf."""
    Y = np.asarray(Y, dtype=float).ravel()
    d = problem["num_vars"]
    n_full = len(Y) // (d + 2)
    if ns is None:
        ns = [2**k for k in range(int(math.log2(SOBOL_MIN_N)), int(math.log2(max(n_full, 1))) + 1)]
        ns = [n for n in ns if _complete_rows(Y[: n * (d + 2)], d).sum(axis=0).min() >= SOBOL_MIN_N]
    rows = []
    for n in ns:
        n = _check_sobol_n(n)
        if n > n_full:
            raise GlobalSensitivityError(f"convergence size {n} exceeds the sample's N = {n_full}")
        si = sobol_indices(problem, Y[: n * (d + 2)], conf_level, n_resamples, seed)
        for p, row in si.iterrows():
            for idx in ("S1", "ST"):
                rows.append({"parameter": p, "n": n, "index": idx, "value": row[idx], "conf": row[f"{idx}_conf"]})
    return pd.DataFrame(rows, columns=["parameter", "n", "index", "value", "conf"])


def morris_effects(X: np.ndarray, Y: np.ndarray, d: int, levels: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Elementary effects of every step of every trajectory whose two ends both have a finite output.

    ``X`` (sampling space) holds trajectories of ``d + 1`` rows; each step changes one coordinate by
    ``+-delta`` of its range, ``delta = levels / (2 (levels - 1))``.  The effect of the step is
    ``(y(higher x) - y(lower x)) / delta`` (SALib's definition, the readout's unit per normalised step).
    Returns ``(parameter index, effect)`` arrays, one entry per usable step: a failed run (NaN output) removes
    only the (at most two) steps it ends, not its whole trajectory.
    """
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float).ravel()
    if len(Y) != len(X) or len(X) % (d + 1):
        raise GlobalSensitivityError(f"X ({len(X)} rows) and Y ({len(Y)}) do not form trajectories of D + 1 = {d + 1}")
    delta = levels / (2.0 * (levels - 1))
    r = len(X) // (d + 1)
    Xt, Yt = X.reshape(r, d + 1, -1), Y.reshape(r, d + 1)
    dx = np.diff(Xt, axis=1)  # (r, d, D): one nonzero coordinate per step
    which = np.argmax(np.abs(dx), axis=2)  # (r, d)
    sign = np.sign(np.take_along_axis(dx, which[..., None], axis=2)[..., 0])
    dy = np.diff(Yt, axis=1)
    ok = np.isfinite(dy) & (sign != 0)
    return which[ok], (sign * dy)[ok] / delta


def morris_indices(
    problem: dict,
    X: np.ndarray,
    Y: np.ndarray,
    levels: int = 4,
    conf_level: float = 0.95,
    n_resamples: int = 100,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Morris statistics from trajectories ``X`` (sampling space) and outputs ``Y`` (NaN = failed run).

    Returns a DataFrame indexed by parameter with ``mu``, ``mu_star``, ``mu_star_conf`` (half-width of the
    bootstrap ``conf_level`` interval), ``sigma`` (output unit per normalised step) and ``n_used`` (elementary
    effects the statistics rest on).  Each parameter uses the steps whose two runs both succeeded
    (:func:`morris_effects`); with complete outputs the numbers are SALib's (same estimators, same bootstrap
    stream).  A parameter with fewer than :data:`MORRIS_MIN_TRAJECTORIES` effects gets NaN statistics; if no
    parameter has enough, :class:`GlobalSensitivityError` is raised.
    """
    from scipy.stats import norm

    d = problem["num_vars"]
    which, ee = morris_effects(X, Y, d, levels)
    _check_morris(len(np.asarray(X)) // (d + 1), levels)
    if not 0 < conf_level < 1:
        raise GlobalSensitivityError(f"conf_level must lie in (0, 1), got {conf_level}")
    rng = np.random.default_rng(seed)
    z = norm.ppf(0.5 + conf_level / 2)
    rows = []
    for j in range(d):
        e = ee[which == j]
        if len(e) < MORRIS_MIN_TRAJECTORIES:
            rows.append((np.nan, np.nan, np.nan, np.nan, len(e)))
            continue
        boot = np.abs(e[rng.integers(len(e), size=(n_resamples, len(e)))]).mean(axis=1)
        rows.append((e.mean(), np.abs(e).mean(), z * boot.std(ddof=1), e.std(ddof=1), len(e)))
    out = pd.DataFrame(
        rows,
        columns=["mu", "mu_star", "mu_star_conf", "sigma", "n_used"],
        index=pd.Index(problem["names"], name="parameter"),
    )
    if not (out["n_used"] >= MORRIS_MIN_TRAJECTORIES).any():
        raise GlobalSensitivityError(
            f"no parameter has {MORRIS_MIN_TRAJECTORIES} elementary effects whose two runs both succeeded "
            f"(most: {int(out['n_used'].max())})"
        )
    return out


def morris_convergence(
    problem: dict,
    X: np.ndarray,
    Y: np.ndarray,
    rs: Sequence[int] | None = None,
    levels: int = 4,
    conf_level: float = 0.95,
    n_resamples: int = 100,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Morris statistics on the first ``r`` trajectories for ``rs`` (default: 2, 4, 8, ... and the full r).
    Long table: parameter, n (trajectories), index ('mu_star'/'sigma'), value, conf.  Failed runs (NaN in
    ``Y``) are handled as in :func:`morris_indices`; an ``r`` where no parameter has two effects is left out."""
    d = problem["num_vars"]
    r_full = len(X) // (d + 1)
    if rs is None:
        rs = sorted({*(2**k for k in range(1, int(math.log2(max(r_full, 2))) + 1)), r_full})
        rs = [r for r in rs if MORRIS_MIN_TRAJECTORIES <= r <= r_full]
    rows = []
    for r in rs:
        k = r * (d + 1)
        try:
            si = morris_indices(problem, X[:k], Y[:k], levels, conf_level, n_resamples, seed)
        except GlobalSensitivityError:  # too few successful steps in the first r trajectories: no point
            continue
        for p, row in si.iterrows():
            rows.append(
                {"parameter": p, "n": r, "index": "mu_star", "value": row["mu_star"], "conf": row["mu_star_conf"]}
            )
            rows.append({"parameter": p, "n": r, "index": "sigma", "value": row["sigma"], "conf": np.nan})
    return pd.DataFrame(rows, columns=["parameter", "n", "index", "value", "conf"])


# -- full analyses ----------------------------------------------------------------------------------------------
def _failure_message(failures: pd.DataFrame, total: int, top: int = 3) -> str:
    """How many sets failed, by kind (the error type and the check that failed), most common first, with one
    sample of each; without the sets' parameter values (the failures table has them)."""
    reasons = failures["error"].astype(str).map(without_parameters)
    kinds = reasons.str.replace(r"[-+]?\d[\d.eE+-]*", "#", regex=True).str.slice(0, 80)
    counts = kinds.value_counts()
    parts = []
    for kind, n in counts.head(top).items():
        i = int(np.flatnonzero(kinds.to_numpy() == kind)[0])
        parts.append(f"{n} x {reasons.iloc[i][:160]} (e.g. sample {failures['sample'].iloc[i]})")
    more = f"; {len(counts) - top} more kinds" if len(counts) > top else ""
    return f"{len(failures)} of {total} parameter sets failed to simulate: " + "; ".join(parts) + more


def _combine(per_readout: Mapping[str, pd.DataFrame], level: str = "readout") -> pd.DataFrame:
    frames = [df.assign(**{level: r}) for r, df in per_readout.items()]
    return pd.concat(frames)


def sobol_analysis(
    model: CascadeModel | str,
    parameters: Sequence[str] | None = None,
    readouts: Sequence[str] | None = DEFAULT_READOUTS,
    n: int = 64,
    seed: int | None = 0,
    *,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    scenario: Mapping[str, float] | None = None,
    conf_level: float = 0.95,
    n_resamples: int = 100,
    convergence: bool = True,
    workers: int | None = None,
    scheduler: str | None = None,
    client=None,
    chunk_size: int | None = None,
    progress: bool = True,
    time_limit: float | None = None,
    evaluate: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> GlobalSensitivityResult:
    """Sobol first/total-order indices of ``readouts`` over the plausible bounds of ``parameters``.

    ``n`` base samples (power of 2 >= :data:`SOBOL_MIN_N`) -> ``n (D + 2)`` simulations through the
    ensemble engine (``workers=0``: serial; ``workers``/``scheduler``/``client`` as
    :func:`analysis.engine.ensemble.run_ensemble`; ``time_limit``: wall-clock seconds per set, past which the
    set is a failure).  Failed sets and NaN readouts are never imputed: each parameter's indices use the base
    rows whose runs all succeeded (``indices['n_used']``; see the module docstring), and
    :class:`GlobalSensitivityError` is raised if fewer than :data:`SOBOL_MIN_N` remain.
    ``evaluate`` (for tests/other models) replaces the engine: samples in model units -> readouts.
    """
    m = as_model(model)
    names = check_readouts(readouts)
    _check_sobol_n(n)
    problem, table = build_problem(m, parameters, bounds)
    X = sobol_sample(problem, n, seed)
    samples = to_physical(X, table)
    if evaluate is None:
        outputs, failures = evaluate_readouts(
            m, samples, names, scenario, workers=workers, scheduler=scheduler, client=client,
            chunk_size=chunk_size, progress=progress, time_limit=time_limit,
        )  # fmt: skip
    else:
        outputs, failures = evaluate(samples), pd.DataFrame(columns=["sample", "error"])
    # failed sets and NaN readouts are holes in the sample matrix: each parameter's indices then rest on the
    # complete rows only (sobol_indices, column n_used); nothing is imputed
    idx = {r: sobol_indices(problem, outputs[r].values, conf_level, n_resamples, seed) for r in names}
    indices = _combine(idx).reset_index().set_index(["readout", "parameter"])
    conv = (
        _combine({r: sobol_convergence(problem, outputs[r].values, None, conf_level, n_resamples, seed) for r in names})
        if convergence
        else pd.DataFrame(columns=["parameter", "n", "index", "value", "conf", "readout"])
    )
    conv = conv[["readout", "parameter", "n", "index", "value", "conf"]].reset_index(drop=True)
    return GlobalSensitivityResult(
        method="sobol",
        indices=indices,
        convergence=conv,
        samples=samples,
        outputs=outputs,
        failures=failures,
        bounds=table,
        problem=problem,
        settings={"n": n, "seed": seed, "conf_level": conf_level, "n_resamples": n_resamples, "runs": len(samples)},
    )


def morris_analysis(
    model: CascadeModel | str,
    parameters: Sequence[str] | None = None,
    readouts: Sequence[str] | None = DEFAULT_READOUTS,
    r: int = 10,
    seed: int | None = 0,
    *,
    levels: int = 4,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    scenario: Mapping[str, float] | None = None,
    conf_level: float = 0.95,
    n_resamples: int = 100,
    convergence: bool = True,
    workers: int | None = None,
    scheduler: str | None = None,
    client=None,
    chunk_size: int | None = None,
    progress: bool = True,
    time_limit: float | None = None,
    evaluate: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> GlobalSensitivityResult:
    """Morris screening (mu, mu*, sigma, CI of mu*) of ``readouts`` over the plausible bounds.

    ``r`` trajectories on a ``levels``-level grid -> ``r (D + 1)`` simulations through the ensemble engine.
    A failed set or a NaN readout removes the (at most two) elementary effects it ends, not its trajectory
    (per readout, counted in ``result.dropped``; ``indices['n_used']`` per parameter); a parameter left with
    fewer than :data:`MORRIS_MIN_TRAJECTORIES` effects has NaN statistics, and none left with enough raises.
    """
    m = as_model(model)
    names = check_readouts(readouts)
    _check_morris(r, levels)
    problem, table = build_problem(m, parameters, bounds)
    X = morris_sample(problem, r, levels, seed)
    samples = to_physical(X, table)
    if evaluate is None:
        outputs, failures = evaluate_readouts(
            m, samples, names, scenario, workers=workers, scheduler=scheduler, client=client,
            chunk_size=chunk_size, progress=progress, time_limit=time_limit,
        )  # fmt: skip
    else:
        outputs, failures = evaluate(samples), pd.DataFrame(columns=["sample", "error"])
    d = problem["num_vars"]
    idx, conv, dropped = {}, {}, {}
    for name in names:
        y = outputs[name].values.astype(float)
        try:
            idx[name] = morris_indices(problem, X, y, levels, conf_level, n_resamples, seed)
        except GlobalSensitivityError as exc:
            why = _failure_message(failures, len(samples)) if len(failures) else "NaN readout values"
            raise GlobalSensitivityError(f"readout {name!r}: {exc} ({why})") from None
        dropped[name] = r * d - int(idx[name]["n_used"].sum())  # of the design's r D steps
        if convergence:
            conv[name] = morris_convergence(problem, X, y, None, levels, conf_level, n_resamples, seed)
    indices = _combine(idx).reset_index().set_index(["readout", "parameter"])
    conv_df = (
        _combine(conv)[["readout", "parameter", "n", "index", "value", "conf"]].reset_index(drop=True)
        if conv
        else pd.DataFrame(columns=["readout", "parameter", "n", "index", "value", "conf"])
    )
    return GlobalSensitivityResult(
        method="morris",
        indices=indices,
        convergence=conv_df,
        samples=samples,
        outputs=outputs,
        failures=failures,
        bounds=table,
        problem=problem,
        dropped=dropped,
        settings={
            "r": r, "levels": levels, "seed": seed, "conf_level": conf_level, "n_resamples": n_resamples,
            "runs": len(samples),
        },
    )  # fmt: skip
