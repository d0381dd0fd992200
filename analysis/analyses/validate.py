"""Literature validation: evaluate every target of ``models/validation.tsv`` on the shipped SBML.

Readouts (times in minutes after the dose, as in the table):

* ``value``       observable at ``t_start``
* ``max``/``min`` extreme of the observable in [t_start, t_end]
* ``dialysis_max:<w>``/``dialysis_min:<w>``  microdialysis readout: the observable averaged over
                  consecutive sampling bins of ``w`` minutes from t_start (the protocol's sampling
                  interval; only whole bins inside [t_start, t_end]), then the largest/smallest bin
                  mean, as a dialysis study reports it (:func:`dialysis_bins`)
* ``tmax``        time (min) of the observable's maximum in [t_start, t_end]
* ``half_life``   log-linear terminal half-life (h) between t_start and t_end
* ``lag``         ``a|b``: onset of b's response minus onset of a's (time to half of the
                  largest deviation from baseline, min)
* ``gain_ratio``  blockade experiment: intervention applied 60 min before the dose;
                  (dose+intervention - intervention alone) / (dose - vehicle) at t_start
* ``ic50``, ``ic50_ratio``, ``mgfree``  receptor-level equilibrium quantities of the
                  model's NMDA receptor scheme (full trapping => the blocked fraction at
                  equilibrium is c / (c + koff / (kon * mgfree(V)))), from the SBML's parameters.

Observables: any model id; ``rel:<id>`` divides by the value at t = 0; ``a/b`` is a ratio.

Interventions: ``key=value`` model inputs or parameters; ``drug=<preset>`` (models/drugs.tsv); and a serial-dosing
protocol ``n_doses=<n>, dose_interval_h=<h>``: ``n`` equal doses ``dose_interval_h`` hours apart, the first at
t = 0, given by the README's re-dose recipe (:func:`analysis.analyses.doseresponse.repeated_dosing`); times are
then minutes after the *first* dose.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.core.drugs import with_drug
from analysis.core.model import CascadeModel, load_model
from analysis.core.paths import MODELS
from analysis.core.tables import TableError, parse_assignments, read_tsv

VALIDATION_COLUMNS = [
    "id",
    "stage",
    "species",
    "dose",
    "interventions",
    "readout",
    "observable",
    "t_start",
    "t_end",
    "lower",
    "upper",
    "unit",
    "evidence",
    "citation",
    "note",
]
READOUTS = {"value", "max", "min", "tmax", "half_life", "lag", "gain_ratio", "ic50", "ic50_ratio", "mgfree"}
#: Binned (microdialysis) readouts: ``dialysis_max:20`` = largest mean over 20-min sampling bins.
DIALYSIS_READOUT = re.compile(r"dialysis_(max|min):(\d+(?:\.\d+)?)")
PRETREATMENT = 3600.0  # s between intervention start and dose in blockade experiments


@dataclass(frozen=True)
class Target:
    id: str
    stage: str
    species: str
    dose: float
    interventions: dict[str, float | str]
    readout: str
    observable: str
    t_start: float
    t_end: float
    lower: float
    upper: float
    unit: str
    evidence: str
    citation: str
    note: str


def _interventions(text: str) -> dict[str, float | str]:
    """``key=value, ...`` of the interventions column; ``drug=<preset>`` names a preset of models/drugs.tsv."""
    out = parse_assignments(text, text_keys=("drug",))
    if ("n_doses" in out) != ("dose_interval_h" in out):
        raise TableError("a serial-dosing protocol needs both n_doses and dose_interval_h")
    if "n_doses" in out:
        n, h = out["n_doses"], out["dose_interval_h"]
        if not (float(n).is_integer() and n >= 1 and h > 0):
            raise TableError(f"n_doses must be a whole number >= 1 and dose_interval_h > 0, got {n}, {h}")
    return out


def read_targets(path=None) -> list[Target]:
    """Parse and check ``models/validation.tsv``."""
    path = path or MODELS / "validation.tsv"
    targets = []
    for n, r in enumerate(read_tsv(path, VALIDATION_COLUMNS), start=2):
        try:
            t = Target(
                id=r["id"],
                stage=r["stage"],
                species=r["species"],
                dose=float(r["dose"]),
                interventions=_interventions(r["interventions"]),
                readout=r["readout"],
                observable=r["observable"],
                t_start=float(r["t_start"]),
                t_end=float(r["t_end"]),
                lower=float(r["lower"]),
                upper=float(r["upper"]),
                unit=r["unit"],
                evidence=r["evidence"],
                citation=r["citation"],
                note=r["note"],
            )
        except ValueError as exc:
            raise TableError(f"validation.tsv:{n}: {exc}") from None
        if t.readout not in READOUTS and not DIALYSIS_READOUT.fullmatch(t.readout):
            raise TableError(f"validation.tsv:{n}: unknown readout {t.readout!r}")
        if not t.lower < t.upper:
            raise TableError(f"validation.tsv:{n}: lower {t.lower} >= upper {t.upper}")
        targets.append(t)
    return targets


def _grid(t_dose: float, t_max_min: float) -> np.ndarray:
    t_end = t_dose + max(t_max_min * 60.0, 3600.0) + 60.0
    dense = np.arange(0.0, min(t_end, t_dose + 12 * 3600.0), 30.0)
    return np.unique(np.concatenate([dense, np.linspace(dense[-1], t_end, 600), [t_dose]]))


class _Runner:
    """Simulations shared between targets (one per distinct scenario)."""

    def __init__(self):
        self.cache: dict[tuple, pd.DataFrame] = {}

    def run(
        self, model: CascadeModel, params: dict[str, float], t_dose: float, t_max: float, observables: list[str]
    ) -> pd.DataFrame:
        key = (model.model_id, tuple(sorted(params.items())), t_dose, t_max, tuple(observables))
        if key not in self.cache:
            df = model.simulate(_grid(t_dose, t_max), {**params, "t_dose": t_dose}, observables)
            df.index = (df.index - t_dose) / 60.0  # minutes after the dose
            self.cache[key] = df
        return self.cache[key]

    def run_serial(
        self,
        model: CascadeModel,
        params: dict[str, float],
        n_doses: int,
        interval_s: float,
        t_max: float,
        observables: list[str],
    ) -> pd.DataFrame:
        """``n_doses`` doses ``interval_s`` s apart (the first at t = 0), followed to ``t_max`` min after the first."""
        from analysis.analyses.doseresponse import repeated_dosing  # doseresponse imports this module

        key = ("serial", model.model_id, tuple(sorted(params.items())), n_doses, interval_s, t_max, tuple(observables))
        if key not in self.cache:
            horizon = max(t_max * 60.0 - (n_doses - 1) * interval_s, 3600.0) + 60.0
            df = repeated_dosing(
                model, n_doses, interval_s, horizon_s=horizon, scenario=params, observables=observables
            )
            df.index = df.index / 60.0  # minutes after the first dose
            self.cache[key] = df
        return self.cache[key]


def _observable_ids(obs: str) -> list[str]:
    return re.split(r"[/|]", obs.removeprefix("rel:"))


def _series(df: pd.DataFrame, obs: str) -> pd.Series:
    if obs.startswith("rel:"):
        s = df[obs[4:]]
        return s / s.iloc[0]
    if "/" in obs:
        a, b = obs.split("/")
        return df[a] / df[b]
    return df[obs]


def _at(s: pd.Series, t: float) -> float:
    return float(np.interp(t, s.index.values, s.values))


def _window(s: pd.Series, a: float, b: float) -> pd.Series:
    return s[(s.index >= a) & (s.index <= b)]


def dialysis_bins(s: pd.Series, t_start: float, t_end: float, width: float) -> pd.Series:
    """Mean of ``s`` over consecutive sampling bins of ``width`` (same unit as the index, here min).

    Bins start at ``t_start``; only whole bins ending at or before ``t_end`` count.  Each mean is the
    time average (trapezoidal rule on the simulated grid, with the bin edges interpolated), which is what a
    dialysate collected over the bin contains.  Returns the bin means indexed by bin start.
    """
    if not width > 0:
        raise ValueError(f"dialysis bin width must be positive, got {width}")
    starts = np.arange(t_start, t_end - width + 1e-9, width)
    if not len(starts):
        raise ValueError(f"no whole {width:g}-min bin fits in [{t_start:g}, {t_end:g}]")
    x, y = s.index.values.astype(float), s.values.astype(float)
    means = []
    for a in starts:
        b = a + width
        inside = (x > a) & (x < b)
        xs = np.concatenate([[a], x[inside], [b]])
        ys = np.interp(xs, x, y)
        means.append(float(np.sum(0.5 * (ys[1:] + ys[:-1]) * np.diff(xs)) / width))
    return pd.Series(means, index=starts, name=s.name)


def _onset(s: pd.Series) -> float:
    """Time at which ``s`` first reaches half of its largest deviation from its first value."""
    dev = s - s.iloc[0]
    peak = dev.abs().max()
    if peak == 0:
        return math.nan
    return float(dev.index[np.argmax(dev.abs().values >= 0.5 * peak)])


def _mgfree(m: CascadeModel, pop: str, v: float, mg: float) -> float:
    rr = m.rr
    return 1.0 / (1.0 + mg / rr[f"mg_k0_{pop}"] * math.exp(-rr["mg_delta"] * v))


def _ic50(m: CascadeModel, pop: str, v: float, mg: float) -> float:
    return m.rr["koff_ket"] / (m.rr["kon_ket"] * _mgfree(m, pop, v, mg))


def _clamp(spec: str) -> tuple[list[str], float, float]:
    """Parse 'pyr@-70mV,mg=0' or 'pyr/int@-66mV,mg=1' -> (pops, V in mV, Mg in mM)."""
    m = re.fullmatch(r"([a-z/]+)@(-?[\d.]+)mV,mg=([\d.]+)", spec)
    if not m:
        raise TableError(f"bad receptor clamp specification {spec!r}")
    return m.group(1).split("/"), float(m.group(2)), float(m.group(3))


def evaluate(target: Target, runner: _Runner | None = None) -> float:
    """Simulated value of one target's readout."""
    runner = runner or _Runner()
    m = load_model(target.species)
    if target.readout in ("ic50", "ic50_ratio", "mgfree"):
        pops, v, mg = _clamp(target.observable)
        if target.readout == "mgfree":
            return _mgfree(m, pops[0], v, mg)
        if target.readout == "ic50":
            return _ic50(m, pops[0], v, mg)
        return _ic50(m, pops[0], v, mg) / _ic50(m, pops[1], v, mg)
    obs_ids = _observable_ids(target.observable)
    t_max = max(target.t_start, target.t_end)
    interventions = dict(target.interventions)
    drug = interventions.pop("drug", None)
    base = with_drug(drug, target.species, {"dose": target.dose})
    if target.readout == "gain_ratio":

        def gain(iv: dict[str, float]) -> float:
            on = runner.run(m, {**base, **iv}, PRETREATMENT, t_max, obs_ids)
            off = runner.run(m, {**base, **iv, "dose": 0.0}, PRETREATMENT, t_max, obs_ids)
            return _at(_series(on, target.observable), target.t_start) - _at(
                _series(off, target.observable), target.t_start
            )

        control = gain({})
        if abs(control) < 1e-9:
            return math.nan
        return gain(interventions) / control
    if "n_doses" in interventions:
        n, interval_h = int(interventions.pop("n_doses")), float(interventions.pop("dose_interval_h"))
        df = runner.run_serial(m, {**base, **interventions}, n, interval_h * 3600.0, t_max, obs_ids)
    else:
        df = runner.run(m, {**base, **interventions}, 0.0, t_max, obs_ids)
    if target.readout == "lag":
        a, b = target.observable.split("|")
        return _onset(_window(df[b], target.t_start, target.t_end)) - _onset(
            _window(df[a], target.t_start, target.t_end)
        )
    s = _series(df, target.observable)
    if target.readout == "value":
        return _at(s, target.t_start)
    dialysis = DIALYSIS_READOUT.fullmatch(target.readout)
    if dialysis:
        bins = dialysis_bins(s, target.t_start, target.t_end, float(dialysis.group(2)))
        return float(bins.max() if dialysis.group(1) == "max" else bins.min())
    w = _window(s, target.t_start, target.t_end)
    if target.readout == "max":
        return float(w.max())
    if target.readout == "min":
        return float(w.min())
    if target.readout == "tmax":
        return float(w.idxmax())
    # half_life: slope of log(concentration) over the window, in hours
    w = w[w > 0]
    slope = np.polyfit(w.index.values / 60.0, np.log(w.values), 1)[0]
    return float(math.log(2) / -slope) if slope < 0 else math.inf


def run_validation(targets: list[Target] | None = None) -> pd.DataFrame:
    """Evaluate every literature target; one row per target with value and pass/fail."""
    targets = targets if targets is not None else read_targets()
    runner = _Runner()
    rows = []
    for t in targets:
        value = evaluate(t, runner)
        ok = bool(t.lower <= value <= t.upper)
        rows.append(
            {
                "id": t.id,
                "stage": t.stage,
                "species": t.species,
                "dose_mg_per_kg": t.dose,
                "readout": t.readout,
                "observable": t.observable,
                "time_min": t.t_start,
                "lower": t.lower,
                "upper": t.upper,
                "simulated": value,
                "unit": t.unit,
                "passed": ok,
                "evidence": t.evidence,
                "citation": t.citation,
            }
        )
    return pd.DataFrame(rows)
