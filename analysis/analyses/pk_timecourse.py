"""Held-out check of the human disposition against measured plasma time courses.

The data are the human plasma ketamine/norketamine rows of ``models/calibration_data.tsv`` (``use`` holdout; they
are also in the human PEtab problem's held-out measurements).  The one study so far is Kamp et al. 2020 (Br J Anaesth
125:750): healthy volunteers, racemic ketamine or esketamine as a 3-step escalating i.v. infusion (three 60-min
steps, each doubling the rate), plasma ketamine and norketamine for 5 h; its mean curves were read off the paper's
Fig 1 by a third party (evidence ``digitised``; the ``obtained`` column says where).  The human PK parameters come
from Clements & Nimmo 1981, the Kamp et al. 2020 meta-analysis and the esketamine population model of Perez-Ruixo
et al. 2021 (``models/parameters.tsv``); none was fitted to these curves, so they test the disposition.

Each condition (dose and interventions of the rows, e.g. ``dose_step2``/``dose_step3`` for the escalating steps and
``drug=esketamine``) runs once on the shipped human SBML, as an outside simulator would run it.  Concentrations are
uM (= nmol/mL); times h after the start of the infusion.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.calibration.petab_problem import condition_label, read_data, row_inputs
from analysis.core.errors import ModelError
from analysis.core.model import CascadeModel, load_model

HOUR = 3600.0
#: Observables that make a data row a plasma time-course point.
PLASMA_OBSERVABLES = ("ketamine_plasma", "norketamine_plasma")
#: Data rows of this check: human, held out, a plasma observable, from these studies (``id`` prefix).
STUDIES = ("kamp2020",)


def read_timecourses(rows: list[dict[str, str]] | None = None) -> pd.DataFrame:
    """The plasma time-course rows of the calibration data: ``id``, ``study``, ``condition`` (label of dose and
    interventions), ``observable``, ``time_h`` (h), ``conc_uM`` (uM) and the row itself (``row``, for its inputs)."""
    rows = read_data() if rows is None else rows
    picked = [
        r
        for r in rows
        if r["species"] == "human"
        and r["use"] == "holdout"
        and r["observable"] in PLASMA_OBSERVABLES
        and r["id"].split("_")[0] in STUDIES
    ]
    if not picked:
        raise ModelError(f"no held-out human plasma time-course rows of {STUDIES} in the calibration data")
    bad = [r["id"] for r in picked if r["unit"] != "uM"]
    if bad:
        raise ModelError(f"plasma time-course rows must be in uM: {bad}")
    return pd.DataFrame(
        {
            "id": [r["id"] for r in picked],
            "study": [r["id"].split("_")[0] for r in picked],
            "condition": [condition_label(r) for r in picked],
            "observable": [r["observable"] for r in picked],
            "time_h": [float(r["time_s"]) / HOUR for r in picked],
            "conc_uM": [float(r["value"]) for r in picked],
            "row": picked,
        }
    )


def timecourse_check(
    table: pd.DataFrame | None = None, model: CascadeModel | None = None
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Every data point with the model's value at its time (``simulated`` uM, ``rel_error`` = (simulated - data) /
    data), and the simulated time course of each condition (index h, to 0.1 h past its last point, both plasma
    observables), from one simulation per condition."""
    table = read_timecourses() if table is None else table
    model = model or load_model("human")
    out, curves = [], {}
    for condition, rows in table.groupby("condition", sort=False):
        params = row_inputs(rows.row.iloc[0], "human")
        grid = np.arange(0.0, (rows.time_h.max() + 0.1) * HOUR + 1.0, 60.0)
        grid = np.unique(np.concatenate([grid, rows.time_h.values * HOUR]))
        curve = model.simulate(grid, params, PLASMA_OBSERVABLES)
        curve.index = curve.index / HOUR
        curves[condition] = curve
        rows = rows.copy()
        rows["simulated"] = [
            float(np.interp(t, curve.index.values, curve[o].values))
            for t, o in zip(rows.time_h, rows.observable, strict=True)
        ]
        out.append(rows)
    frame = pd.concat(out, ignore_index=True).drop(columns="row")
    frame["rel_error"] = (frame.simulated - frame.conc_uM) / frame.conc_uM
    return frame, curves


def timecourse_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Median absolute and median signed relative error per condition and observable, and overall (``all``)."""
    if not len(frame):
        raise ModelError("no time-course points")
    rows = []
    for (condition, obs), g in frame.groupby(["condition", "observable"], sort=False):
        rows.append((condition, obs, len(g), g.rel_error.abs().median(), g.rel_error.median()))
    rows.append(("all", "", len(frame), frame.rel_error.abs().median(), frame.rel_error.median()))
    return pd.DataFrame(rows, columns=["condition", "observable", "n", "median_abs_rel_error", "median_rel_error"])
