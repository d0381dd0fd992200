"""Local sensitivity analysis and the parameter-bounds helpers shared with global sensitivity.

All sensitivities are **scaled** (normalised, log-log): ``S = d ln y / d ln p``
(dimensionless; +1 means a 1 % increase of ``p`` raises ``y`` by 1 %).

Two engines for time-course sensitivities:

* ``cvodes``: libroadrunner's CVODES forward sensitivities (``RoadRunner.timeSeriesSensitivities``),
  on the already loaded model (no recompilation).  They cover state variables only (floating
  species, rate-rule variables), on a uniform time grid from t = 0.
* ``fd``: central finite differences on :meth:`CascadeModel.simulate` (relative step ``rel_step``).

**Why the cascade model uses ``fd``** (measured with libroadrunner 2.10.0; see tests):

1. Ten of the twelve contract observables are assignment rules, not state variables; CVODES gives
   only the state variables (``rate_int`` and ``rate_pyr`` are the two contract observables that are).
2. ``timeSeriesSensitivities`` is unreliable: on a freshly loaded cascade model the first call returns
   all-zero sensitivities (d rate_pyr / d vmax_eaat at 600 s = 0; finite differences -6.1e-3 Hz per
   uM/s); later calls agree with finite differences to 1e-5.  On a two-species toy whose compartment
   size is an assignment rule (``C := vol``, as every compartment of the cascade) the rows are
   attributed to the wrong parameter; repeated calls on the same toy drift.  With a constant
   compartment the first call gives the analytic answer (known-answer test).
3. Event assignments that depend on parameters (the dose event puts ``f_ip * dose * body_weight /
   mw`` into the depot; the human pump events) need sensitivity jump conditions, which
   libroadrunner does not apply; sensitivities to ``dose``, ``f_ip``, ``body_weight``,
   ``infusion_duration`` and ``t_dose`` would be wrong even without (2).

``method="auto"`` therefore tries CVODES, checks it against a finite-difference probe and falls
back to finite differences (with a warning) if it fails, disagrees or cannot express the requested
observables.

**Pre-equilibration.**  The SBML stores the drug-free steady state of the *shipped* parameters as
its initial values; with a perturbed parameter the model starts off steady state and drifts
(+10 % on some circuit parameters moves drug-free spine density by > 40 % within 7 days).  The
finite-difference engine therefore pre-equilibrates every parameter set drug-free before the dose
(:func:`analysis.analyses.readouts.simulate_course`) and reads relative observables against their pre-dose
value (see :mod:`analysis.analyses.readouts`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from analysis.analyses.readouts import (
    DAY,
    check_readouts,
    readout_times,
    readouts_or_failure,
    simulate_course,
    simulate_readouts,
)
from analysis.core.model import OBSERVABLES, CascadeModel, ModelError, load_model
from analysis.core.simulate import DEFAULT_SCENARIOS
from analysis.core.tables import parameter_bounds as table_bounds
from analysis.core.tables import read_parameters

#: Scenario inputs: not analysed as uncertain parameters by default.
SCENARIO_INPUTS = ("dose", "t_dose", "infusion_duration", "body_weight")
INTERVENTIONS = ("inhib_ampa", "inhib_mtorc1", "inhib_trkb", "inhib_ltype")
METHODS = ("auto", "cvodes", "fd")


class SensitivityError(ModelError):
    """A sensitivity computation cannot be done as requested (bad input or unusable engine)."""


# -- models and parameter bounds (shared with global sensitivity) ------------------------------------------------
def as_model(model: CascadeModel | str) -> CascadeModel:
    """A loaded model from a species name ('rat', 'human'), an SBML path or a :class:`CascadeModel`."""
    return model if isinstance(model, CascadeModel) else load_model(model)


def default_scenario(model: CascadeModel) -> dict[str, float]:
    """The species' default scenario (dose etc.), or an empty one for a foreign model."""
    return dict(DEFAULT_SCENARIOS.get(model.species, {}))


def parameter_bounds(species: str, parameters: Sequence[str] | None = None) -> pd.DataFrame:
    """Plausible bounds of parameters from ``models/parameters.tsv``.

    Parameters
    ----------
    species:
        'rat' or 'human'.
    parameters:
        Ids to return (default: :func:`default_sensitivity_parameters`).

    Returns
    -------
    DataFrame indexed by parameter id with columns ``value``, ``lower``, ``upper`` (in ``unit``),
    ``unit``, ``evidence``, ``description``.  Raises :class:`SensitivityError` for an unknown id
    or a parameter whose bounds do not span an interval (lower >= upper).
    """
    ids = default_sensitivity_parameters(species) if parameters is None else list(parameters)
    try:
        return table_bounds(species, ids)
    except ModelError as exc:
        raise SensitivityError(str(exc)) from None


def default_sensitivity_parameters(species: str) -> list[str]:
    """Parameters varied by default: every table row of ``species`` with a non-zero value and
    lower < upper, except scenario inputs (dose, t_dose, infusion_duration, body_weight) and interventions."""
    return [
        p.id
        for p in read_parameters(species).values()
        if p.value != 0 and p.lower < p.upper and p.id not in SCENARIO_INPUTS + INTERVENTIONS
    ]


def check_bounds(model: CascadeModel, bounds: Mapping[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """Validate user bounds ``{id: (lower, upper)}``: known parameter, finite, lower < upper."""
    out = {}
    for p, pair in bounds.items():
        if p not in model.defaults:
            raise SensitivityError(f"unknown parameter {p!r} for model {model.model_id}")
        try:
            lo, hi = (float(x) for x in pair)
        except (TypeError, ValueError):
            raise SensitivityError(f"bounds of {p!r} must be two numbers, got {pair!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise SensitivityError(f"bounds of {p!r} must be finite, got ({lo}, {hi})")
        if not lo < hi:
            raise SensitivityError(f"bounds of {p!r}: lower {lo} >= upper {hi}")
        out[p] = (lo, hi)
    return out


def _check_parameters(model: CascadeModel, parameters: Sequence[str] | None) -> list[str]:
    if parameters is None:
        ids = default_sensitivity_parameters(model.species) if model.species != "unknown" else []
        ids = ids or [p for p in model.parameters if model.defaults[p] != 0]
    else:
        ids = [parameters] if isinstance(parameters, str) else list(parameters)
    unknown = [p for p in ids if p not in model.defaults]
    if unknown:
        raise SensitivityError(f"unknown parameter(s) {unknown} for model {model.model_id}")
    zero = [p for p in ids if model.defaults[p] == 0]
    if zero:
        raise SensitivityError(f"parameter(s) {zero} are 0: a scaled (d ln y / d ln p) sensitivity is undefined")
    if not ids:
        raise SensitivityError("no parameter to analyse")
    return ids


def _check_step(rel_step: float) -> float:
    if not 0 < rel_step < 0.5:
        raise SensitivityError(f"rel_step must be in (0, 0.5), got {rel_step}")
    return float(rel_step)


# -- CVODES forward sensitivities ------------------------------------------------------------------------------
def state_variables(model: CascadeModel) -> list[str]:
    """Ids CVODES integrates: floating species and rate-rule variables."""
    return list(model.floating) + sorted(model.rate_rules)


def cvodes_sensitivities(
    model: CascadeModel | str,
    parameters: Sequence[str],
    variables: Sequence[str],
    t_end: float,
    n_times: int = 101,
    scenario: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Scaled sensitivities ``d ln x / d ln p`` of state variables by CVODES forward sensitivities.

    The model is set to ``scenario`` (inputs first, then reset, as :meth:`CascadeModel.apply`)
    and integrated with sensitivities from 0 to ``t_end`` (s) on ``n_times`` uniform points.
    libroadrunner reports sensitivities of species *amounts*; they are scaled by the amounts, so
    in a constant compartment the result equals the scaled sensitivity of the concentration.

    Returns a DataFrame indexed by time (s) with MultiIndex columns (variable, parameter);
    entries where |x| < 1e-12 x max|x| are NaN.  Raises :class:`SensitivityError` if a variable is
    not a state variable or the solver fails.
    """
    m = as_model(model)
    params = _check_parameters(m, parameters)
    states = state_variables(m)
    bad = [v for v in variables if v not in states]
    if bad:
        raise SensitivityError(
            f"CVODES sensitivities cover state variables only; {bad} are not (assignment rules or unknown)"
        )
    if t_end <= 0 or n_times < 2:
        raise SensitivityError(f"need t_end > 0 and n_times >= 2, got {t_end}, {n_times}")
    m.apply(dict(scenario or {}))
    solver = m.rr.getSensitivitySolver()
    solver.setValue("stiff", True)
    # timeSeriesSensitivities leaves the last parameter at its difference-quotient perturbation
    # (i_ext_pyr 40 -> 39.9997 measured): save every parameter value and put it back.
    saved = {p: float(m.rr[p]) for p in m.parameters}
    try:
        t, sens, rows, cols = m.rr.timeSeriesSensitivities(0.0, float(t_end), int(n_times), params, list(variables))
    except (RuntimeError, ModelError) as exc:
        raise SensitivityError(f"CVODES forward sensitivities failed on {m.model_id}: {exc}") from exc
    finally:
        for p, x in saved.items():
            if float(m.rr[p]) != x:
                m.rr[p] = x
    m.apply(dict(scenario or {}))  # amounts (unbracketed ids), as the sensitivities
    traj = np.asarray(m.rr.simulate(times=np.asarray(t, dtype=float), selections=list(cols)))
    m.apply({})
    sens = np.asarray(sens, dtype=float)  # (time, parameter, variable)
    pvals = np.array([m.defaults[p] if p not in (scenario or {}) else scenario[p] for p in rows], dtype=float)
    out = {}
    for j, v in enumerate(cols):
        x = traj[:, j]
        scale = np.where(np.abs(x) > 1e-12 * max(np.abs(x).max(), 1e-300), x, np.nan)
        for i, p in enumerate(rows):
            out[(v, p)] = sens[:, i, j] * pvals[i] / scale
    df = pd.DataFrame(out, index=pd.Index(np.asarray(t, dtype=float), name="time"))
    df.columns = pd.MultiIndex.from_tuples(df.columns, names=["observable", "parameter"])
    order = pd.MultiIndex.from_tuples([(v, p) for v in variables for p in params], names=["observable", "parameter"])
    return df.reindex(columns=order)  # requested order (libroadrunner returns the model's order)


# -- finite differences -----------------------------------------------------------------------------------------
def _scaled_difference(plus: np.ndarray, minus: np.ndarray, base: np.ndarray, rel_step: float) -> np.ndarray:
    """(y(p(1+h)) - y(p(1-h))) / (2 h y(p)) with NaN where y(p) ~ 0."""
    tiny = 1e-12 * np.nanmax(np.abs(base), axis=0, initial=1e-300)
    safe = np.where(np.abs(base) > tiny, base, np.nan)
    return (plus - minus) / (2.0 * rel_step * safe)


def _equilibrated_course(
    m: CascadeModel, params: dict[str, float], observables: Sequence[str], times_after: np.ndarray, equilibrate: bool
) -> np.ndarray:
    """Time course at ``times_after`` (s after the dose); ``*_rel`` observables divided by their pre-dose value."""
    t_dose = float(params.get("t_dose", 0.0))
    grid = np.unique(np.concatenate([[0.0, t_dose], t_dose + times_after]))
    if len(grid) < 2:
        raise SensitivityError("need at least one output time after t = 0")
    df = simulate_course(m, grid, params, observables, equilibrate)
    base = df.loc[t_dose]
    after = df.loc[t_dose + times_after].copy()
    for c in after.columns:
        if c.endswith("_rel"):
            after[c] = after[c] / base[c]
    return after.values


def fd_timecourse_sensitivities(
    model: CascadeModel | str,
    parameters: Sequence[str] | None = None,
    scenario: Mapping[str, float] | None = None,
    observables: Sequence[str] = OBSERVABLES,
    times: Sequence[float] | np.ndarray | None = None,
    rel_step: float = 1e-3,
    equilibrate: bool = True,
) -> pd.DataFrame:
    """Scaled time-course sensitivities ``d ln y(t) / d ln p`` by central finite differences.

    Parameters
    ----------
    model:
        Species name, SBML path or loaded model (loaded once, reused for every run).
    parameters:
        Parameter ids (default: :func:`default_sensitivity_parameters`).
    scenario:
        Inputs (default: the species' default scenario, e.g. rat 10 mg/kg).
    observables:
        Model ids (default: the contract observables).
    times:
        Output times in s **after the dose** (default: 0-48 h, 97 points).
    rel_step:
        Relative perturbation h: p -> p (1 +- h).
    equilibrate:
        Pre-equilibrate every run drug-free (see module docstring); ``*_rel`` observables are then
        relative to the pre-dose state.

    Returns
    -------
    DataFrame indexed by time after the dose (s) with MultiIndex columns (observable, parameter);
    NaN where the unperturbed value is ~0 (e.g. ketamine before absorption).
    """
    m = as_model(model)
    ids = _check_parameters(m, parameters)
    step = _check_step(rel_step)
    scen = default_scenario(m) if scenario is None else dict(scenario)
    m.check_parameters(scen)
    t_after = np.linspace(0.0, 2 * DAY, 97) if times is None else np.asarray(times, dtype=float)
    if t_after.ndim != 1 or len(t_after) < 1 or np.any(t_after < 0) or np.any(np.diff(t_after) <= 0):
        raise SensitivityError("times must be increasing and >= 0 (s after the dose)")
    obs = list(observables)
    base = _equilibrated_course(m, scen, obs, t_after, equilibrate)
    blocks = {}
    for p in tqdm(ids, desc="FD time courses", unit="parameter", disable=None):
        p0 = float(scen.get(p, m.defaults[p]))
        hi = _equilibrated_course(m, {**scen, p: p0 * (1 + step)}, obs, t_after, equilibrate)
        lo = _equilibrated_course(m, {**scen, p: p0 * (1 - step)}, obs, t_after, equilibrate)
        blocks[p] = _scaled_difference(hi, lo, base, step)
    cols = pd.MultiIndex.from_tuples([(o, p) for o in obs for p in ids], names=["observable", "parameter"])
    data = np.stack([blocks[p] for p in ids], axis=2).reshape(len(t_after), len(obs) * len(ids))
    df = pd.DataFrame(data, index=pd.Index(t_after, name="time_after_dose_s"), columns=cols)
    df.attrs.update(method="fd", rel_step=step, equilibrated=equilibrate, scenario=scen)
    return df


def timecourse_sensitivities(
    model: CascadeModel | str,
    parameters: Sequence[str] | None = None,
    scenario: Mapping[str, float] | None = None,
    observables: Sequence[str] = OBSERVABLES,
    times: Sequence[float] | np.ndarray | None = None,
    method: str = "auto",
    rel_step: float = 1e-3,
    equilibrate: bool = True,
) -> pd.DataFrame:
    """Scaled time-course sensitivities of observables to parameters (see module docstring).

    ``method``: 'cvodes' (state-variable observables only, uniform ``times`` from 0, no
    pre-equilibration; validated against finite differences for the first and last parameter on
    the first observable, retried once, :class:`SensitivityError` if it still disagrees), 'fd', or
    'auto' (CVODES if it is applicable and validated, else finite differences with a warning).
    The engine used is in ``result.attrs['method']``.
    """
    if method not in METHODS:
        raise SensitivityError(f"unknown method {method!r}; expected one of {METHODS}")
    if method in ("cvodes", "auto"):
        try:
            return _validated_cvodes(model, parameters, scenario, observables, times)
        except SensitivityError as exc:
            if method == "cvodes":
                raise
            warnings.warn(f"CVODES sensitivities not used ({exc}); using finite differences", stacklevel=2)
    return fd_timecourse_sensitivities(model, parameters, scenario, observables, times, rel_step, equilibrate)


def _validated_cvodes(
    model: CascadeModel | str,
    parameters: Sequence[str] | None,
    scenario: Mapping[str, float] | None,
    observables: Sequence[str],
    times: Sequence[float] | np.ndarray | None,
) -> pd.DataFrame:
    m = as_model(model)
    ids = _check_parameters(m, parameters)
    scen = default_scenario(m) if scenario is None else dict(scenario)
    if times is None:
        t = np.linspace(0.0, 2 * DAY, 97)
    else:
        t = np.asarray(times, dtype=float)
        if len(t) < 2 or t[0] != 0 or not np.allclose(np.diff(t), t[1] - t[0]):
            raise SensitivityError("CVODES sensitivities need uniform times starting at 0")
    if float(scen.get("t_dose", 0.0)) != 0.0:
        raise SensitivityError("CVODES sensitivities are computed from t = 0 with the dose at t = 0")
    event_params = [p for p in ids if p in ("dose", "f_ip", "body_weight", "mw_ketamine", "infusion_duration")]
    if event_params and float(scen.get("dose", m.defaults.get("dose", 0.0))) > 0:
        raise SensitivityError(f"{event_params} enter event assignments; libroadrunner applies no sensitivity jumps")
    probe_obs = list(observables)[0]
    probes = list(dict.fromkeys([ids[0], ids[-1]]))
    fd = fd_timecourse_sensitivities(m, probes, scen, [probe_obs], t, 1e-4, equilibrate=False)
    problem = ""
    for _attempt in range(2):  # libroadrunner 2.10: the first call after loading can return all zeros
        cv = cvodes_sensitivities(m, ids, list(observables), t[-1], len(t), scen)
        problem = ""
        for p in probes:
            a, b = cv[(probe_obs, p)].values[1:], fd[(probe_obs, p)].values[1:]
            ok = np.isfinite(a) & np.isfinite(b)
            if not ok.any() or not np.allclose(a[ok], b[ok], rtol=2e-2, atol=1e-3 * max(1.0, np.abs(b[ok]).max())):
                problem = (
                    f"CVODES and finite differences disagree for d ln {probe_obs} / d ln {p} "
                    f"(max |CVODES| {np.nanmax(np.abs(a)):.3g}, max |FD| {np.nanmax(np.abs(b)):.3g})"
                )
                break
        if not problem:
            break
    if problem:
        raise SensitivityError(problem + "; libroadrunner 2.10 forward sensitivities are unreliable here")
    cv.index = cv.index.rename("time_after_dose_s")
    cv.attrs.update(method="cvodes", equilibrated=False, scenario=scen)
    return cv


def summarise_timecourse(sens: pd.DataFrame, how: str = "maxabs") -> pd.DataFrame:
    """Collapse time-course sensitivities to a parameters x observables table.

    ``how='maxabs'``: the signed value at the time of the largest |S| (ignoring NaN);
    a number string (e.g. ``'86400'``) or float: the value at that time after the dose (s).
    """
    obs = list(dict.fromkeys(sens.columns.get_level_values(0)))
    params = list(dict.fromkeys(sens.columns.get_level_values(1)))
    out = pd.DataFrame(index=pd.Index(params, name="parameter"), columns=obs, dtype=float)
    for o in obs:
        block = sens[o]
        if how == "maxabs":
            a = block.abs().fillna(-1.0).values
            idx = a.argmax(axis=0)
            vals = block.values[idx, np.arange(block.shape[1])]
        else:
            t = float(how)
            vals = np.array([np.interp(t, block.index.values, block[p].values) for p in params])
        out[o] = vals
    return out


# -- readout sensitivities --------------------------------------------------------------------------------------
def readout_sensitivities(
    model: CascadeModel | str,
    parameters: Sequence[str] | None = None,
    scenario: Mapping[str, float] | None = None,
    readouts: Sequence[str] | None = None,
    rel_step: float = 0.01,
    equilibrate: bool = True,
) -> pd.DataFrame:
    """Scaled local sensitivities ``d ln R / d ln p`` of readouts by central finite differences.

    Every run (baseline included) is pre-equilibrated drug-free when ``equilibrate`` (default), so a
    readout measures the drug's effect on each parameter set's own steady state.  Returns a
    DataFrame parameters x readouts (dimensionless); NaN where the baseline readout is 0 or NaN.
    """
    m = as_model(model)
    ids = _check_parameters(m, parameters)
    names = check_readouts(readouts)
    step = _check_step(rel_step)
    scen = default_scenario(m) if scenario is None else dict(scenario)
    m.check_parameters(scen)
    base = simulate_readouts(m, scen, names, equilibrate=equilibrate).values
    rows = {}
    for p in tqdm(ids, desc="readout sensitivities", unit="parameter", disable=None):
        p0 = float(scen.get(p, m.defaults[p]))
        hi = simulate_readouts(m, {**scen, p: p0 * (1 + step)}, names, equilibrate=equilibrate).values
        lo = simulate_readouts(m, {**scen, p: p0 * (1 - step)}, names, equilibrate=equilibrate).values
        rows[p] = _scaled_difference(hi[None, :], lo[None, :], base[None, :], step)[0]
    df = pd.DataFrame.from_dict(rows, orient="index", columns=names).rename_axis("parameter")
    df.attrs.update(
        method="fd",
        rel_step=step,
        equilibrated=equilibrate,
        scenario=scen,
        baseline=dict(zip(names, base, strict=True)),
    )
    return df


def tornado(sens: pd.DataFrame, readout: str, top: int | None = 15) -> pd.Series:
    """Parameters ranked by |d ln R / d ln p| for one readout (largest first, NaN dropped)."""
    if readout not in sens.columns:
        raise SensitivityError(f"readout {readout!r} not in the sensitivity table ({', '.join(sens.columns)})")
    s = sens[readout].dropna()
    s = s.reindex(s.abs().sort_values(ascending=False).index)
    return s if top is None else s.iloc[:top]


def bounds_tornado(
    model: CascadeModel | str,
    readout: str,
    parameters: Sequence[str] | None = None,
    scenario: Mapping[str, float] | None = None,
    top: int | None = 15,
) -> pd.DataFrame:
    """One-at-a-time tornado over the plausible bounds of ``parameters.tsv``.

    Each parameter is set to its lower and then its upper bound (others at their values), with
    pre-equilibration.  Returns a DataFrame indexed by parameter with columns ``low``, ``high``
    (readout at the lower/upper bound), ``lower``, ``upper`` (the bounds), ``swing`` (|high - low|),
    sorted by swing, and ``error``: why a bound has no physiological drug-free state (its readout is then
    NaN and the parameter sorts last); ``attrs['baseline']`` holds the readout at the shipped values.
    """
    m = as_model(model)
    names = check_readouts([readout])
    ids = _check_parameters(m, parameters)
    bounds = parameter_bounds(m.species, ids)
    scen = default_scenario(m) if scenario is None else dict(scenario)
    base = float(simulate_readouts(m, scen, names, equilibrate=True).iloc[0])
    rows = {}
    for p in tqdm(ids, desc="bounds tornado", unit="parameter", disable=None):
        lo, hi = bounds.loc[p, "lower"], bounds.loc[p, "upper"]
        res = [readouts_or_failure(m, {**scen, p: x}, names, equilibrate=True) for x in (lo, hi)]
        vals = [float(r.iloc[0]) for r, _ in res]
        err = "; ".join(f"{side} bound: {e}" for side, (_, e) in zip(("lower", "upper"), res, strict=True) if e)
        rows[p] = {
            "low": vals[0],
            "high": vals[1],
            "lower": lo,
            "upper": hi,
            "swing": abs(vals[1] - vals[0]),
            "error": err,
        }
    df = pd.DataFrame.from_dict(rows, orient="index").rename_axis("parameter").sort_values("swing", ascending=False)
    df.attrs.update(baseline=base, readout=readout)
    return df if top is None else df.iloc[:top]


__all__ = [
    "METHODS",
    "SensitivityError",
    "as_model",
    "bounds_tornado",
    "check_bounds",
    "cvodes_sensitivities",
    "default_scenario",
    "default_sensitivity_parameters",
    "fd_timecourse_sensitivities",
    "parameter_bounds",
    "readout_sensitivities",
    "readout_times",
    "state_variables",
    "summarise_timecourse",
    "timecourse_sensitivities",
    "tornado",
]
