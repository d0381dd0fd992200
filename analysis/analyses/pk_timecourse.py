"""Held-out check of the human disposition against plasma time courses (``models/pk_timecourses.tsv``).

The human PK parameters come from Clements & Nimmo 1981, the Kamp et al. 2020 meta-analysis and the esketamine
population model of Perez-Ruixo et al. 2021 (``models/parameters.tsv``); none was fitted to the curves here, so they
are a test of the disposition, not a fit.  The one study so far is Kamp et al. 2020 (Br J Anaesth 125:750): healthy
volunteers, racemic ketamine or esketamine as a 3-step escalating i.v. infusion (three 60-min steps, each doubling
the rate), plasma ketamine and norketamine for 5 h.  Its mean curves were read off the paper's Fig 1 by a third
party (the table's ``source`` column); they are used as given.

Each regimen runs on the shipped human model through :func:`analysis.analyses.doseresponse.dosing_schedule`
(consecutive infusion steps give the piecewise-constant rate), the esketamine arm with the ``esketamine`` preset.
Concentrations are uM (= nmol/mL); times h after the start of the first step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.core.drugs import with_drug
from analysis.core.errors import ModelError
from analysis.core.model import CascadeModel, load_model
from analysis.core.paths import ROOT

HOUR = 3600.0
#: The digitised plasma time courses (uM, h).
TIMECOURSES_PATH = ROOT / "models" / "pk_timecourses.tsv"
#: Dosing of each (study, arm): the drug preset (None = the racemate) and the schedule, (start s, dose mg/kg,
#: duration s) per step.  Kamp 2020: three 60-min steps doubling the rate, racemate 0.28, 0.57 and 1.14 mg/kg/h,
#: esketamine 0.14, 0.28 and 0.57 mg/kg/h (rates as given with the digitised curves, from Olofsen et al. 2021 on
#: the same Leiden data set; not re-read here).  The digitised files' own header says "0.5 mg/kg", which cannot
#: be the total: 1 uM of S-ketamine at 3 h needs ~1 mg/kg of esketamine with any published human disposition.
REGIMENS: dict[tuple[str, str], tuple[str | None, tuple[tuple[float, float, float], ...]]] = {
    ("kamp2020", "racemic"): (
        None,
        ((0.0, 0.28, HOUR), (HOUR, 0.57, HOUR), (2 * HOUR, 1.14, HOUR)),
    ),
    ("kamp2020", "esketamine"): (
        "esketamine",
        ((0.0, 0.14, HOUR), (HOUR, 0.28, HOUR), (2 * HOUR, 0.57, HOUR)),
    ),
}
#: Points before this time (h) are not scored: at t = 0 the digitised ketamine curves read 0.03-0.08 uM per
#: enantiomer (an offset of the digitisation, the true value is 0), which dominates the first hour's
#: concentrations (0.1-0.4 uM).
MIN_SCORED_TIME_H = 1.0
COLUMNS = ["study", "arm", "analyte", "observable", "time_h", "conc_uM", "source"]


def read_timecourses(path: str | Path | None = None) -> pd.DataFrame:
    """The plasma time-course table (columns :data:`COLUMNS`; ``conc_uM`` uM, ``time_h`` h)."""
    path = Path(path) if path is not None else TIMECOURSES_PATH
    try:
        table = pd.read_csv(path, sep="\t")
    except (OSError, pd.errors.ParserError) as exc:
        raise ModelError(f"cannot read the PK time courses {path}: {exc}") from None
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ModelError(f"{path}: missing column(s) {missing}")
    bad = table[~(np.isfinite(table.time_h) & np.isfinite(table.conc_uM)) | (table.conc_uM < 0) | (table.time_h < 0)]
    if len(bad):
        raise ModelError(f"{path}: times and concentrations must be finite and >= 0 (rows {list(bad.index)})")
    unknown = sorted({(s, a) for s, a in zip(table.study, table.arm, strict=True)} - set(REGIMENS))
    if unknown:
        raise ModelError(f"{path}: no dosing regimen for (study, arm) {unknown}; add it to REGIMENS")
    return table


def simulate_regimen(
    study: str, arm: str, observables: tuple[str, ...], horizon_h: float, model: CascadeModel | None = None
) -> pd.DataFrame:
    """Time course (index: h after the first step) of one (study, arm) regimen on the human model."""
    from analysis.analyses.doseresponse import dosing_schedule

    if (study, arm) not in REGIMENS:
        raise ModelError(f"no dosing regimen for ({study!r}, {arm!r}); known: {sorted(REGIMENS)}")
    drug, steps = REGIMENS[(study, arm)]
    model = model or load_model("human")
    scenario = with_drug(drug, "human", {"dose": 0.0})
    last = steps[-1][0]
    curve = dosing_schedule(model, steps, max(horizon_h * HOUR - last, HOUR), scenario, list(observables))
    curve.index = curve.index / HOUR
    return curve


def compare_timecourses(table: pd.DataFrame | None = None, model: CascadeModel | None = None) -> pd.DataFrame:
    """Every data point with the model's value at its time: columns of the table plus ``simulated`` (uM),
    ``rel_error`` ((simulated - data) / data) and ``scored`` (time >= :data:`MIN_SCORED_TIME_H`)."""
    return timecourse_check(table, model)[0]


def timecourse_check(
    table: pd.DataFrame | None = None, model: CascadeModel | None = None
) -> tuple[pd.DataFrame, dict[tuple[str, str], pd.DataFrame]]:
    """:func:`compare_timecourses` and the simulated time course of each (study, arm) (index h, 0.1 h past its
    last data point), from one simulation per arm."""
    table = read_timecourses() if table is None else table
    model = model or load_model("human")
    out, curves = [], {}
    for (study, arm), rows in table.groupby(["study", "arm"], sort=False):
        observables = tuple(sorted(set(rows.observable)))
        curve = simulate_regimen(study, arm, observables, float(rows.time_h.max()) + 0.1, model)
        curves[(study, arm)] = curve
        rows = rows.copy()
        rows["simulated"] = [
            float(np.interp(t, curve.index.values, curve[o].values))
            for t, o in zip(rows.time_h, rows.observable, strict=True)
        ]
        out.append(rows)
    frame = pd.concat(out, ignore_index=True)
    frame["rel_error"] = (frame.simulated - frame.conc_uM) / frame.conc_uM.where(frame.conc_uM > 0)
    frame["scored"] = frame.time_h >= MIN_SCORED_TIME_H
    return frame, curves


def timecourse_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Median absolute relative error and median signed error of the scored points, per analyte and arm and
    overall (row ``all``)."""
    scored = frame[frame.scored]
    if not len(scored):
        raise ModelError("no scored time-course points")
    rows = []
    for (study, arm, analyte), g in scored.groupby(["study", "arm", "analyte"], sort=False):
        rows.append((study, arm, analyte, len(g), g.rel_error.abs().median(), g.rel_error.median()))
    rows.append(("all", "", "", len(scored), scored.rel_error.abs().median(), scored.rel_error.median()))
    return pd.DataFrame(rows, columns=["study", "arm", "analyte", "n", "median_abs_rel_error", "median_rel_error"])
