"""Named scalar readouts of a simulated time course, defined once and shared by every analysis.

A readout is a function of a time course (DataFrame indexed by time in s from the
simulation start, one column per contract observable) and the dosing time ``t_dose``
(s).  Readouts only look at the time course from ``t_dose`` on.

Relative observables (``*_rel``) are read **relative to their value at ``t_dose``**
(the pre-dose state).  For the shipped model at its default parameters that value is
exactly 1, so nothing changes; for a perturbed parameter set that was equilibrated
drug-free before the dose (see :func:`simulate_readouts`), the readout is the drug's
effect on that parameter set's own baseline and not the drift of the baseline.

Usage::

    from analysis.analyses.readouts import READOUTS, compute_readouts, simulate_readouts
    s = compute_readouts(df)                            # every readout, pd.Series
    s = compute_readouts(df, ["glutamate_peak", "spine_gain_24h"], t_dose=3600)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.core.model import INPUTS, OBSERVABLES, CascadeModel, ModelError, SimulationError  # noqa: F401  (INPUTS re-exported)

HOUR = 3600.0
DAY = 86400.0


@dataclass(frozen=True)
class Readout:
    """One named readout: ``func(df, t_dose) -> float`` in ``unit``."""

    name: str
    observables: tuple[str, ...]
    unit: str
    stage: str
    description: str
    func: Callable[[pd.DataFrame, float], float]
    horizon_s: float = 0.0  # time after the dose that the time course must cover (s); 0 = any


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    """Trapezoidal integral (numpy >= 1.24 compatible; ``np.trapezoid`` needs numpy 2)."""
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def _after(df: pd.DataFrame, obs: str, t_dose: float) -> pd.Series:
    s = df[obs]
    return s[s.index >= t_dose]


def _at(df: pd.DataFrame, obs: str, t: float) -> float:
    return float(np.interp(t, df.index.values, df[obs].values))


def _rel(df: pd.DataFrame, obs: str, t_dose: float) -> pd.Series:
    """Observable after the dose divided by its value at the dose (``*_rel`` observables only)."""
    return _after(df, obs, t_dose) / _at(df, obs, t_dose)


def _peak(obs: str, relative: bool) -> Callable[[pd.DataFrame, float], float]:
    def f(df: pd.DataFrame, t_dose: float) -> float:
        s = _rel(df, obs, t_dose) if relative else _after(df, obs, t_dose)
        return float(s.max())

    return f


def _trough(obs: str, relative: bool) -> Callable[[pd.DataFrame, float], float]:
    def f(df: pd.DataFrame, t_dose: float) -> float:
        s = _rel(df, obs, t_dose) if relative else _after(df, obs, t_dose)
        return float(s.min())

    return f


def _time_to_peak(obs: str) -> Callable[[pd.DataFrame, float], float]:
    def f(df: pd.DataFrame, t_dose: float) -> float:
        s = _after(df, obs, t_dose)
        dev = s - _at(df, obs, t_dose)
        if not np.any(dev.values > 0):
            return math.nan  # no rise, no peak
        return float((s.index[int(np.argmax(dev.values))] - t_dose) / HOUR)

    return f


def _auc(obs: str) -> Callable[[pd.DataFrame, float], float]:
    """Trapezoidal integral over time after the dose, per hour."""

    def f(df: pd.DataFrame, t_dose: float) -> float:
        s = _after(df, obs, t_dose)
        return _trapezoid(s.values, s.index.values) / HOUR

    return f


def _excess_auc(obs: str) -> Callable[[pd.DataFrame, float], float]:
    """Integral of (relative value - 1) after the dose (h)."""

    def f(df: pd.DataFrame, t_dose: float) -> float:
        s = _rel(df, obs, t_dose) - 1.0
        return _trapezoid(s.values, s.index.values) / HOUR

    return f


def _gain_at(obs: str, dt: float) -> Callable[[pd.DataFrame, float], float]:
    def f(df: pd.DataFrame, t_dose: float) -> float:
        return _at(df, obs, t_dose + dt) / _at(df, obs, t_dose) - 1.0

    return f


def _registry() -> dict[str, Readout]:
    r = [
        Readout("ketamine_plasma_peak", ("ketamine_plasma",), "uM", "1 PK", "peak total plasma ketamine",
                _peak("ketamine_plasma", False)),
        Readout("ketamine_brain_peak", ("ketamine_brain",), "uM", "1 PK", "peak unbound ketamine at the receptor",
                _peak("ketamine_brain", False)),
        Readout("ketamine_brain_auc", ("ketamine_brain",), "uM*h", "1 PK",
                "AUC of unbound brain ketamine after the dose", _auc("ketamine_brain")),
        Readout("nmda_block_int_peak", ("nmda_block_int",), "1", "2 NMDA block",
                "peak fraction of interneuron NMDARs blocked", _peak("nmda_block_int", False)),
        Readout("nmda_block_pyr_peak", ("nmda_block_pyr",), "1", "2 NMDA block",
                "peak fraction of pyramidal NMDARs blocked", _peak("nmda_block_pyr", False)),
        Readout("nmda_block_int_auc", ("nmda_block_int",), "fraction*h", "2 NMDA block",
                "AUC of the interneuron NMDAR block after the dose", _auc("nmda_block_int")),
        Readout("nmda_block_pyr_auc", ("nmda_block_pyr",), "fraction*h", "2 NMDA block",
                "AUC of the pyramidal NMDAR block after the dose", _auc("nmda_block_pyr")),
        Readout("rate_int_min", ("rate_int",), "Hz", "3 disinhibition", "lowest interneuron firing rate",
                _trough("rate_int", False)),
        Readout("rate_pyr_max", ("rate_pyr",), "Hz", "3 disinhibition", "highest pyramidal firing rate",
                _peak("rate_pyr", False)),
        Readout("glutamate_peak", ("glutamate_rel",), "1", "4-5 glutamate/AMPA",
                "peak extracellular glutamate / pre-dose value", _peak("glutamate_rel", True)),
        Readout("glutamate_time_to_peak", ("glutamate_rel",), "h", "4-5 glutamate/AMPA",
                "time from the dose to the glutamate peak (NaN if glutamate never rises)",
                _time_to_peak("glutamate_rel")),
        Readout("glutamate_trough", ("glutamate_rel",), "1", "4-5 glutamate/AMPA",
                "lowest extracellular glutamate / pre-dose value (falls below 1 at anaesthetic doses)",
                _trough("glutamate_rel", True)),
        Readout("glutamate_excess_auc", ("glutamate_rel",), "h", "4-5 glutamate/AMPA",
                "integral of (glutamate / pre-dose value - 1) after the dose", _excess_auc("glutamate_rel")),
        Readout("ampa_peak", ("ampa_rel",), "1", "4-5 glutamate/AMPA", "peak AMPA activation / pre-dose value",
                _peak("ampa_rel", True)),
        Readout("mtorc1_peak", ("mtorc1_rel",), "1", "6 signalling", "peak active mTORC1 / pre-dose value",
                _peak("mtorc1_rel", True)),
        Readout("mtorc1_time_to_peak", ("mtorc1_rel",), "h", "6 signalling",
                "time from the dose to the mTORC1 peak (NaN if it never rises)", _time_to_peak("mtorc1_rel")),
        Readout("bdnf_peak", ("bdnf_rel",), "1", "6 signalling", "peak BDNF protein / pre-dose value",
                _peak("bdnf_rel", True)),
        Readout("synaptic_proteins_peak", ("synaptic_proteins_rel",), "1", "7 synaptogenesis",
                "peak synaptic-protein pool / pre-dose value", _peak("synaptic_proteins_rel", True)),
        Readout("spine_gain_24h", ("spine_density_rel",), "1", "7 synaptogenesis",
                "spine density 24 h after the dose / pre-dose value - 1", _gain_at("spine_density_rel", DAY), DAY),
        Readout("spine_gain_7d", ("spine_density_rel",), "1", "7 synaptogenesis",
                "spine density 7 days after the dose / pre-dose value - 1", _gain_at("spine_density_rel", 7 * DAY),
                7 * DAY),
    ]  # fmt: skip
    return {x.name: x for x in r}


#: The readout registry: name -> :class:`Readout`.
READOUTS: dict[str, Readout] = _registry()


def check_readouts(names: Sequence[str] | None) -> list[str]:
    """Return ``names`` (all readouts if None) or raise :class:`ModelError` naming unknown readouts."""
    if names is None:
        return list(READOUTS)
    if isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n not in READOUTS]
    if unknown:
        raise ModelError(f"unknown readout(s) {unknown}; known readouts: {', '.join(READOUTS)}")
    if not names:
        raise ModelError("no readout requested")
    return list(names)


def readout_table() -> pd.DataFrame:
    """The registry as a table (name, stage, unit, observables, description)."""
    return pd.DataFrame(
        [
            {"stage": r.stage, "unit": r.unit, "observables": ",".join(r.observables), "description": r.description}
            for r in READOUTS.values()
        ],
        index=pd.Index(list(READOUTS), name="readout"),
    )


def compute_readouts(df: pd.DataFrame, names: Sequence[str] | None = None, t_dose: float = 0.0) -> pd.Series:
    """Evaluate readouts on one time course.

    Parameters
    ----------
    df:
        Time course indexed by time (s from the simulation start) with the observables the
        readouts need as columns (see ``READOUTS[name].observables``).
    names:
        Readout names (default: all registered readouts).
    t_dose:
        Time of the dose (s from the simulation start).

    Returns
    -------
    Series readout name -> value (unit in ``READOUTS[name].unit``).
    """
    names = check_readouts(names)
    t = df.index.values
    if len(t) < 2 or not t[0] <= t_dose < t[-1]:
        raise ModelError(f"time course ({t[0] if len(t) else '?'}..{t[-1] if len(t) else '?'} s) must contain t_dose")
    out = {}
    for n in names:
        r = READOUTS[n]
        missing = [o for o in r.observables if o not in df.columns]
        if missing:
            raise ModelError(f"readout {n!r} needs column(s) {missing} which the time course lacks")
        if r.horizon_s and t[-1] < t_dose + r.horizon_s - 1e-6:
            raise ModelError(
                f"readout {n!r} needs the time course to reach {r.horizon_s / HOUR:g} h after the dose; "
                f"it ends {(t[-1] - t_dose) / HOUR:g} h after the dose"
            )
        out[n] = r.func(df, t_dose)
    return pd.Series(out, name="value", dtype=float)


def required_observables(names: Sequence[str] | None = None) -> list[str]:
    """Contract observables needed by ``names`` (in contract order)."""
    need = {o for n in check_readouts(names) for o in READOUTS[n].observables}
    return [o for o in OBSERVABLES if o in need]


def required_horizon(names: Sequence[str] | None = None, minimum: float = 2 * DAY) -> float:
    """Time after the dose (s) that a simulation must cover for ``names``."""
    return max([minimum] + [READOUTS[n].horizon_s for n in check_readouts(names)])


def readout_times(t_dose: float = 0.0, horizon_s: float = 7 * DAY, dt_dense: float = 30.0) -> np.ndarray:
    """Output grid (s from the simulation start) for readouts.

    Every ``dt_dense`` s from 0 to 8 h after the dose (t_dose included); then
    ~300 points to ``t_dose + horizon_s``; exact points at 24 h and 7 d after the dose.
    """
    if t_dose < 0 or horizon_s <= 0 or dt_dense <= 0:
        raise ModelError(f"bad grid: t_dose={t_dose}, horizon_s={horizon_s}, dt_dense={dt_dense}")
    dense_end = min(8 * HOUR, horizon_s)
    after = np.concatenate(
        [np.arange(0.0, dense_end, dt_dense), np.linspace(dense_end, horizon_s, 300), [DAY, 7 * DAY]]
    )
    after = after[after <= horizon_s]
    # dense before the dose too: a long first CVODE step that overshoots the dose event makes
    # libroadrunner 2.10 restart with a ~1e-18 s step and crawl (seconds per run)
    pre = np.arange(0.0, t_dose, dt_dense) if t_dose > 0 else np.array([0.0])
    return np.unique(np.concatenate([pre, t_dose + after]))


def needs_equilibration(model: CascadeModel, parameters: Mapping[str, float]) -> bool:
    """True if a non-input parameter differs from its shipped value (the stored state is then not steady)."""
    return model.changes_physiology(parameters)


def simulate_course(
    model: CascadeModel,
    times: np.ndarray,
    parameters: Mapping[str, float],
    observables: Sequence[str],
    equilibrate: bool,
) -> pd.DataFrame:
    """Simulate on ``times`` (s, dose at ``parameters['t_dose']``, default 0), optionally pre-equilibrated
    to the drug-free steady state of ``parameters`` (see :meth:`CascadeModel.simulate`)."""
    return model.simulate(times, dict(parameters), list(observables), equilibrate=equilibrate)


def readouts_or_failure(
    model: CascadeModel, parameters: Mapping[str, float], names: Sequence[str], equilibrate: bool | None = None
) -> tuple[pd.Series, str]:
    """:func:`simulate_readouts`, but a failed set (solver failure, or no physiological drug-free state) gives
    NaN readouts and its reason instead of an exception.  Returns (readouts, error; '' when it succeeded)."""
    try:
        return simulate_readouts(model, parameters, names, equilibrate=equilibrate), ""
    except SimulationError as exc:
        return pd.Series(np.nan, index=list(check_readouts(names)), dtype=float), str(exc)


def simulate_readouts(
    model: CascadeModel,
    parameters: Mapping[str, float] | None = None,
    names: Sequence[str] | None = None,
    equilibrate: bool | None = None,
    horizon_s: float | None = None,
    return_timecourse: bool = False,
) -> pd.Series | tuple[pd.Series, pd.DataFrame]:
    """Simulate one scenario on a loaded model and evaluate readouts.

    ``parameters`` may contain ``t_dose`` (s).  With ``equilibrate`` (default: whenever a
    non-input parameter differs from the shipped value) the model first runs drug-free to the
    steady state of these parameters (:func:`simulate_course`), so relative readouts measure the
    drug effect on that parameter set's own baseline.

    Returns the readouts (Series); with ``return_timecourse`` also the time course (all contract
    observables) with its index shifted to s after the dose.
    """
    names = check_readouts(names)
    params = dict(parameters or {})
    if equilibrate is None:
        equilibrate = needs_equilibration(model, params)
    t_dose = float(params.get("t_dose", 0.0))
    if t_dose and "t_dose" not in model.defaults:
        raise ModelError(f"model {model.model_id} has no t_dose input")
    horizon = required_horizon(names) if horizon_s is None else horizon_s
    obs = list(OBSERVABLES) if return_timecourse else required_observables(names)
    df = simulate_course(model, readout_times(t_dose, horizon), params, obs, equilibrate)
    values = compute_readouts(df, names, t_dose)
    if not return_timecourse:
        return values
    return values, df.set_axis(pd.Index(df.index.values - t_dose, name="time_after_dose_s"), axis=0)
