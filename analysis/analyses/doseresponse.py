"""Scenario analyses on the loaded model: dose-response, interventions, dosing regimens, parameter scans.

(One module for every deterministic "vary the inputs, collect readouts" analysis; they share the
model loading, the readout registry and the input checks.  Sensitivities live in
:mod:`analysis.analyses.sensitivity`; randomised/global analyses will run through the ensemble engine.)

Every function takes a species name, SBML path or loaded :class:`CascadeModel` and returns tables
(DataFrames); times are s, doses mg/kg.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from analysis.analyses.readouts import (
    DAY,
    HOUR,
    check_readouts,
    compute_readouts,
    readout_times,
    readouts_or_failure,
    simulate_readouts,
)
from analysis.analyses.sensitivity import as_model, default_scenario, parameter_bounds
from analysis.analyses.validate import PRETREATMENT
from analysis.core.model import OBSERVABLES, CascadeModel, ModelError, SimulationError

#: Default dose ranges (mg/kg) for dose-response.
DOSE_RANGES = {"rat": (0.1, 300.0), "human": (0.05, 2.0)}
#: Interventions against control (parameter values); applied PRETREATMENT s before the dose.
INTERVENTIONS = {
    "control": {},
    "rapamycin": {"inhib_mtorc1": 1.0},
    "NBQX": {"inhib_ampa": 0.9},
    "anti-BDNF": {"inhib_trkb": 0.9},
    "L-type blocker": {"inhib_ltype": 0.9},
    "Val66Met": {"bdnf_secretion": 0.5},
}
#: Human infusion durations compared by default (s): 1 min (bolus-like), 10 min, 40 min (standard), 100 min.
INFUSION_DURATIONS = (60.0, 600.0, 2400.0, 6000.0)


def log_doses(lower: float, upper: float, n: int) -> np.ndarray:
    """``n`` log-spaced doses (mg/kg) from ``lower`` to ``upper``; both must be > 0, lower < upper."""
    if not (lower > 0 and upper > 0):
        raise ModelError(f"log-spaced doses need positive bounds, got {lower} and {upper} mg/kg")
    if not lower < upper:
        raise ModelError(f"dose range: lower {lower} >= upper {upper} mg/kg")
    if n < 2:
        raise ModelError(f"need at least 2 doses, got {n}")
    return np.logspace(math.log10(lower), math.log10(upper), int(n))


def dose_response(
    model: CascadeModel | str,
    doses: Sequence[float] | np.ndarray | None = None,
    n: int = 25,
    readouts: Sequence[str] | None = None,
    scenario: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Every readout vs dose.

    Parameters
    ----------
    doses:
        Doses in mg/kg (default: ``n`` log-spaced over :data:`DOSE_RANGES` of the species; rat 0.1-300,
        human 0.05-2 mg/kg).  Must be > 0.
    scenario:
        Other inputs (default: the species' default scenario; its dose is replaced).

    Returns
    -------
    DataFrame indexed by ``dose_mg_per_kg`` with one column per readout.
    """
    m = as_model(model)
    names = check_readouts(readouts)
    if doses is None:
        if m.species not in DOSE_RANGES:
            raise ModelError(f"no default dose range for model {m.model_id}; pass doses")
        doses = log_doses(*DOSE_RANGES[m.species], n)
    d = np.asarray(doses, dtype=float)
    if d.ndim != 1 or len(d) == 0 or np.any(~np.isfinite(d)) or np.any(d <= 0):
        raise ModelError(f"doses must be a non-empty list of positive numbers (mg/kg), got {list(d)}")
    scen = default_scenario(m) if scenario is None else dict(scenario)
    rows = {
        float(x): simulate_readouts(m, {**scen, "dose": float(x)}, names, equilibrate=False)
        for x in tqdm(d, desc="doses", unit="dose", disable=None)
    }
    return pd.DataFrame(rows).T.rename_axis("dose_mg_per_kg")


def _pretreated(m: CascadeModel, params: dict[str, float], horizon: float, observables: Sequence[str]) -> pd.DataFrame:
    """Intervention from t = 0, dose at PRETREATMENT s (validate.py's gain_ratio protocol)."""
    t_dose = PRETREATMENT + float(params.get("t_dose", 0.0))
    return m.simulate(readout_times(t_dose, horizon), {**params, "t_dose": t_dose}, list(observables))


def interventions(
    model: CascadeModel | str,
    dose: float | None = None,
    arms: Mapping[str, Mapping[str, float]] | None = None,
    readouts: Sequence[str] | None = None,
    horizon_s: float = 7 * DAY,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Interventions against control, each given :data:`~analysis.analyses.validate.PRETREATMENT` s before the dose.

    For every arm three quantities per readout: ``dosed`` (dose + intervention), ``alone``
    (intervention + vehicle) and ``effect`` = dosed - alone (the drug effect under the intervention,
    as validate.py's gain_ratio numerator); relative readouts are relative to the pre-dose state,
    i.e. after one hour of intervention.  ``ratio_to_control`` = effect / control effect.

    Returns
    -------
    (table, timecourses): table with MultiIndex (arm, quantity) rows x readouts; time courses of the
    dosed runs per arm (index: s after the dose; relative observables relative to the drug-free
    baseline, so a fall during pretreatment shows).
    """
    m = as_model(model)
    names = check_readouts(readouts)
    arms = dict(INTERVENTIONS if arms is None else arms)
    if "control" not in arms:
        arms = {"control": {}, **arms}
    scen = default_scenario(m)
    if dose is not None:
        scen["dose"] = float(dose)
    for arm, iv in arms.items():
        m.check_parameters(iv)
        if "dose" in iv or "t_dose" in iv:
            raise ModelError(f"intervention {arm!r} must not set dose or t_dose")
    t_dose = PRETREATMENT
    rows, curves = {}, {}
    for arm, iv in arms.items():
        on = _pretreated(m, {**scen, **iv}, horizon_s, OBSERVABLES)
        off = _pretreated(m, {**scen, **iv, "dose": 0.0}, horizon_s, OBSERVABLES)
        r_on, r_off = compute_readouts(on, names, t_dose), compute_readouts(off, names, t_dose)
        rows[(arm, "dosed")] = r_on
        rows[(arm, "alone")] = r_off
        rows[(arm, "effect")] = r_on - r_off
        curves[arm] = on.set_axis(on.index.values - t_dose, axis=0).rename_axis("time_after_dose_s")
    table = pd.DataFrame(rows).T
    table.index = pd.MultiIndex.from_tuples(table.index, names=["arm", "quantity"])
    control = table.loc[("control", "effect")]
    for arm in arms:
        with np.errstate(divide="ignore", invalid="ignore"):
            table.loc[(arm, "ratio_to_control"), :] = table.loc[(arm, "effect")].values / control.values
    return table.sort_index(level=0, sort_remaining=False), curves


def repeated_dosing(
    model: CascadeModel | str,
    n_doses: int = 1,
    interval_s: float = 7 * DAY,
    dose: float | None = None,
    horizon_s: float = 7 * DAY,
    scenario: Mapping[str, float] | None = None,
    observables: Sequence[str] = OBSERVABLES,
    points_per_interval: int = 600,
) -> pd.DataFrame:
    """Time course of ``n_doses`` doses every ``interval_s`` s (first dose at t = 0), then ``horizon_s``.

    The equal-dose case of :func:`dosing_schedule`.  Returns a DataFrame indexed by time (s) since the
    first dose with the observables as columns.
    """
    if isinstance(n_doses, bool) or int(n_doses) != n_doses or n_doses < 1:
        raise ModelError(f"n_doses must be a positive integer, got {n_doses}")
    if not interval_s >= 2.0:
        raise ModelError(f"interval_s must be >= 2 s, got {interval_s}")
    m = as_model(model)
    scen = default_scenario(m) if scenario is None else dict(scenario)
    amount = float(dose) if dose is not None else float(scen.get("dose", m.defaults.get("dose", 0.0)))
    steps = [(k * interval_s, amount, None) for k in range(int(n_doses))]
    return dosing_schedule(m, steps, horizon_s, scen, observables, points_per_interval)


def _schedule_steps(steps: Sequence[Sequence[object]]) -> list[tuple[float, float, float | None]]:
    """Check and convert schedule steps to (start s, dose mg/kg, duration s or None)."""

    def number(x: object) -> float:
        if isinstance(x, bool):
            raise TypeError("a boolean is not a number here")
        return float(x)  # type: ignore[arg-type]

    out = []
    for k, step in enumerate(list(steps)):
        try:
            start, amount, duration = step  # type: ignore[misc]
            start, amount = number(start), number(amount)
            duration = None if duration is None else number(duration)
        except (TypeError, ValueError) as exc:
            raise ModelError(
                f"schedule step {k} must be (start s, dose mg/kg, duration s or None) of numbers, got {step!r} ({exc})"
            ) from None
        if not (np.isfinite(start) and np.isfinite(amount)) or amount < 0:
            raise ModelError(f"schedule step {k}: start and dose must be finite and the dose >= 0, got {step!r}")
        if duration is not None and not (np.isfinite(duration) and duration > 0):
            raise ModelError(f"schedule step {k}: the infusion duration must be > 0 s, got {duration}")
        out.append((start, amount, duration))
    if not out:
        raise ModelError("a dosing schedule needs at least one step")
    return out


def dosing_schedule(
    model: CascadeModel | str,
    steps: Sequence[tuple[float, float, float | None]],
    horizon_s: float = 7 * DAY,
    scenario: Mapping[str, float] | None = None,
    observables: Sequence[str] = OBSERVABLES,
    points_per_interval: int = 600,
) -> pd.DataFrame:
    """Time course of a dosing schedule: ``steps`` = (start s, dose mg/kg, infusion duration s or None), the
    first at t = 0, then ``horizon_s`` s after the last start.

    Each step is the model's ``dose`` input given at ``t_dose`` = start: an i.p. injection in the rat, an i.v.
    infusion of ``dose`` over the step's duration in the human (None: the scenario's ``infusion_duration``).
    Repeated doses and step-wise (escalating) infusions are both schedules: consecutive infusion steps whose
    durations end where the next step starts give a piecewise-constant infusion rate.  Implements the README
    re-dose recipe on the loaded model: inputs, reset (first step), simulate to just before the next start
    (1 s), set ``dose``, ``infusion_duration`` and ``t_dose`` for it there and continue without a reset; a
    running infusion keeps its rate until the next step starts.  A step that starts while an infusion is still
    running replaces its rate from that moment, so consecutive steps deliver their doses in full (two 20-min
    steps of 0.25 mg/kg and one 40-min infusion of 0.5 mg/kg differ by 1.5e-7, ``tests/test_pk_timecourse.py``).
    The model's inputs are restored afterwards.  Returns a DataFrame indexed by time (s) since the first step
    with the observables as columns.
    """
    m = as_model(model)
    parsed = _schedule_steps(steps)
    infusion = "infusion_duration" in m.defaults
    if not infusion and any(d is not None for _, _, d in parsed):
        raise ModelError(f"model {m.model_id} has no infusion_duration input (a schedule step gives a duration)")
    starts = [s for s, _, _ in parsed]
    if starts[0] != 0.0 or any(b - a < 2.0 for a, b in zip(starts, starts[1:], strict=False)):
        raise ModelError(f"schedule steps must start at 0 s and follow each other by >= 2 s, got starts {starts}")
    if not horizon_s > 0:
        raise ModelError(f"horizon_s must be > 0, got {horizon_s}")
    if "t_dose" not in m.defaults:
        raise ModelError(f"model {m.model_id} has no t_dose input")
    scen = default_scenario(m) if scenario is None else dict(scenario)
    base = float(scen.get("infusion_duration", m.defaults["infusion_duration"])) if infusion else None
    durations = [base if d is None else d for _, _, d in parsed]
    scen["t_dose"] = 0.0
    scen["dose"] = parsed[0][1]
    if infusion:
        scen["infusion_duration"] = durations[0]
    mm = m.rr.model
    known = set(m.floating) | set(mm.getGlobalParameterIds()) | set(mm.getCompartmentIds())
    unknown = [o for o in observables if o not in known]
    if unknown:
        raise ModelError(f"unknown observable(s) {unknown}")
    sel = ["time"] + [m.selection(o) for o in observables]
    # Each step's inputs are set `lead` s before it starts (1 s; half the gap if the previous infusion ends
    # within that second, so it is not stretched).
    leads = [1.0]
    for k in range(1, len(parsed)):
        end = starts[k - 1] + durations[k - 1] if infusion else -np.inf
        leads.append((starts[k] - end) / 2.0 if starts[k] - 1.0 < end < starts[k] else 1.0)
    m.apply(scen)
    pieces = []
    try:
        ends = [a - lead for a, lead in zip(starts[1:], leads[1:], strict=True)] + [starts[-1] + horizon_s]
        for k, (a, b) in enumerate(zip(starts, ends, strict=True)):
            head = [a - leads[k]] if k > 0 else []
            if k > 0:
                m.rr["dose"] = parsed[k][1]
                if infusion and durations[k] != durations[k - 1]:
                    if starts[k - 1] + durations[k - 1] >= a:
                        # the previous step still runs until a: its rate (pump x pump_setting / duration) is kept
                        m.rr["pump_setting"] = m.rr["pump_setting"] * durations[k] / durations[k - 1]
                    m.rr["infusion_duration"] = durations[k]
                m.rr["t_dose"] = a  # later than the current time: the event re-arms and fires at a
            dense = np.arange(a, min(a + 8 * HOUR, b), 60.0)
            tail = np.linspace(min(a + 8 * HOUR, b), b, points_per_interval)
            grid = np.unique(np.concatenate([head, dense, tail]))
            res = np.asarray(m.rr.simulate(times=grid, selections=sel))
            pieces.append(res if k == 0 else res[1:])
    except Exception as exc:
        raise SimulationError(f"dosing schedule failed for {m.model_id} ({scen}, steps {parsed}): {exc}") from exc
    finally:
        # Restore the inputs, then one short drug-free run: measured with libroadrunner 2.10 on the human model,
        # the first reset after a re-dosed run with the same inputs otherwise does not fire the dose event.
        for name in ("t_dose", "infusion_duration"):
            if name in m.defaults:
                m.rr[name] = m.defaults[name]
        m.apply({"dose": 0.0})
        m.rr.simulate(0.0, 1.0, 2)
        m.apply({})
    data = np.vstack(pieces)
    _, keep = np.unique(data[:, 0], return_index=True)
    data = data[keep]
    return pd.DataFrame(data[:, 1:], index=pd.Index(data[:, 0], name="time"), columns=list(observables))


def _with_absolute_spines(r: pd.Series, df: pd.DataFrame, t_last: float, horizon_s: float) -> pd.Series:
    """Add spine density relative to the drug-free baseline 24 h / 7 d after the last dose (1)."""
    extra = {}
    if "spine_density_rel" in df:
        for label, dt in (("24h", DAY), ("7d", 7 * DAY)):
            if dt <= horizon_s:
                extra[f"spine_rel_baseline_{label}"] = float(
                    np.interp(t_last + dt, df.index.values, df["spine_density_rel"].values)
                )
    return pd.concat([r, pd.Series(extra, dtype=float)])


def regimens(
    model: CascadeModel | str,
    n_doses: Sequence[int] = (1, 3),
    interval_s: float = 2 * DAY,
    dose: float | None = None,
    durations: Sequence[float] | None = None,
    readouts: Sequence[str] | None = None,
    horizon_s: float = 7 * DAY,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Dosing regimens: single vs repeated doses (every ``interval_s`` s) and, for human, infusion durations.

    Readouts of repeated regimens refer to the **last** dose (relative readouts to the state just
    before it); the spine readouts are thus the gain over the pre-last-dose state.  Columns
    ``spine_rel_baseline_24h``/``_7d`` give spine density relative to the drug-free baseline 24 h /
    7 d after the last dose (1).  Returns
    (table regimen x readouts, time courses per regimen indexed by s since the first dose).
    """
    m = as_model(model)
    names = check_readouts(readouts)
    rows, curves = {}, {}
    for n in n_doses:
        df = repeated_dosing(m, n, interval_s, dose, horizon_s)
        label = "single dose" if n == 1 else f"{n} doses every {interval_s / HOUR:g} h"
        curves[label] = df
        last = (n - 1) * interval_s
        rows[label] = _with_absolute_spines(compute_readouts(df, names, last), df, last, horizon_s)
    if durations is None and "infusion_duration" in m.defaults:
        durations = INFUSION_DURATIONS
    for dur in durations or ():
        if "infusion_duration" not in m.defaults:
            raise ModelError(f"model {m.model_id} has no infusion_duration input")
        scen = default_scenario(m)
        if dose is not None:
            scen["dose"] = float(dose)
        r, tc = simulate_readouts(
            m, {**scen, "infusion_duration": float(dur)}, names, equilibrate=False, return_timecourse=True,
            horizon_s=horizon_s,
        )  # fmt: skip
        label = f"infusion {dur / 60:g} min"
        rows[label] = _with_absolute_spines(r, tc, 0.0, horizon_s)
        curves[label] = tc
    return pd.DataFrame(rows).T.rename_axis("regimen"), curves


def _scan_values(
    m: CascadeModel, parameter: str, values: Sequence[float] | None, n: int, log: bool | None
) -> np.ndarray:
    if parameter not in m.defaults:
        raise ModelError(f"unknown parameter {parameter!r} for model {m.model_id}")
    if values is not None:
        v = np.asarray(values, dtype=float)
        if v.ndim != 1 or len(v) == 0:
            raise ModelError(f"values of {parameter!r} must be a non-empty list")
        for x in v:
            m.check_parameters({parameter: float(x)})
        return v
    b = parameter_bounds(m.species, [parameter]).loc[parameter]
    lo, hi = float(b["lower"]), float(b["upper"])
    if n < 2:
        raise ModelError(f"a scan needs at least 2 values, got n={n}")
    use_log = (lo > 0 and hi / lo >= 10) if log is None else log
    if use_log:
        if lo <= 0:
            raise ModelError(f"log scan of {parameter!r} needs positive bounds, got [{lo}, {hi}]")
        return np.logspace(math.log10(lo), math.log10(hi), n)
    return np.linspace(lo, hi, n)


def scan_1d(
    model: CascadeModel | str,
    parameter: str,
    values: Sequence[float] | None = None,
    n: int = 15,
    log: bool | None = None,
    readouts: Sequence[str] | None = None,
    scenario: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Readouts as ``parameter`` varies over ``values`` (default: ``n`` values over its plausible bounds,
    log-spaced if they span >= 10x).  Non-input parameters are pre-equilibrated drug-free before the
    dose.  Returns a DataFrame indexed by the parameter value with one column per readout and an ``error``
    column: a value with no physiological drug-free state (or a solver failure) has NaN readouts and its
    reason there ('' otherwise)."""
    m = as_model(model)
    names = check_readouts(readouts)
    v = _scan_values(m, parameter, values, n, log)
    scen = default_scenario(m) if scenario is None else dict(scenario)
    rows = {}
    for x in tqdm(v, desc=f"scan {parameter}", unit="value", disable=None):
        r, err = readouts_or_failure(m, {**scen, parameter: float(x)}, names)
        rows[float(x)] = {**r.to_dict(), "error": err}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(parameter)


def scan_2d(
    model: CascadeModel | str,
    parameters: tuple[str, str],
    values: tuple[Sequence[float] | None, Sequence[float] | None] = (None, None),
    n: int | tuple[int, int] = 9,
    readouts: Sequence[str] | None = None,
    scenario: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Readouts on a grid of two parameters (long table: columns p1, p2, one per readout, and ``error``:
    the reason a grid point failed, '' otherwise; failed points have NaN readouts)."""
    m = as_model(model)
    names = check_readouts(readouts)
    if len(parameters) != 2 or parameters[0] == parameters[1]:
        raise ModelError(f"a 2-D scan needs two different parameters, got {parameters}")
    ns = (n, n) if isinstance(n, int) else tuple(n)
    v1 = _scan_values(m, parameters[0], values[0], ns[0], None)
    v2 = _scan_values(m, parameters[1], values[1], ns[1], None)
    scen = default_scenario(m) if scenario is None else dict(scenario)
    rows = []
    for a in tqdm(v1, desc=f"scan {parameters[0]} x {parameters[1]}", unit="row", disable=None):
        for b in v2:
            r, err = readouts_or_failure(m, {**scen, parameters[0]: float(a), parameters[1]: float(b)}, names)
            rows.append({parameters[0]: float(a), parameters[1]: float(b), **r.to_dict(), "error": err})
    return pd.DataFrame(rows)


__all__ = [
    "DOSE_RANGES",
    "INFUSION_DURATIONS",
    "INTERVENTIONS",
    "dose_response",
    "dosing_schedule",
    "interventions",
    "log_doses",
    "regimens",
    "repeated_dosing",
    "scan_1d",
    "scan_2d",
]
