"""Dosing schedules (step-wise infusions) and the held-out human plasma time courses."""

import numpy as np
import pandas as pd
import pytest

from analysis.analyses import pk_timecourse as P
from analysis.analyses.doseresponse import dosing_schedule
from analysis.core.model import ModelError, load_model

OBS = ["ketamine_plasma", "norketamine_plasma"]


def test_consecutive_steps_equal_one_infusion():
    """Two 20-min steps of 0.25 mg/kg deliver what one 40-min infusion of 0.5 mg/kg does."""
    human = load_model("human")
    two = dosing_schedule(human, [(0.0, 0.25, 1200.0), (1200.0, 0.25, 1200.0)], 6 * 3600.0, observables=OBS)
    one = dosing_schedule(human, [(0.0, 0.5, 2400.0)], 6 * 3600.0 + 1200.0, observables=OBS)
    t = np.array([600.0, 1800.0, 2400.0, 3600.0, 7200.0, 18000.0])
    for obs in OBS:
        np.testing.assert_allclose(np.interp(t, two.index, two[obs]), np.interp(t, one.index, one[obs]), rtol=1e-5)
    # and one step equals the plain dosed run
    plain = human.simulate(np.array([0.0, 2400.0, 7200.0]), {"dose": 0.5, "infusion_duration": 2400.0}, OBS)
    np.testing.assert_allclose(np.interp([2400.0, 7200.0], one.index, one.ketamine_plasma),
                               plain.ketamine_plasma.values[1:], rtol=1e-5)  # fmt: skip
    assert human.rr["infusion_duration"] == human.defaults["infusion_duration"]  # inputs restored


def test_escalating_infusion_rises_in_steps_and_falls_after():
    human = load_model("human")
    steps = [(0.0, 0.2, 3600.0), (3600.0, 0.4, 3600.0), (7200.0, 0.8, 3600.0)]
    c = dosing_schedule(human, steps, 3 * 3600.0, observables=["ketamine_plasma"]).ketamine_plasma
    at = {h: float(np.interp(h * 3600.0, c.index, c.values)) for h in (1.0, 2.0, 3.0, 4.0)}
    assert 0 < at[1.0] < at[2.0] < at[3.0] and at[4.0] < 0.6 * at[3.0]
    # the rate doubles at each step: the slope just after a step is larger than just before it
    slope = np.gradient(c.values, c.index.values)
    before, after = np.interp([3500.0, 3700.0], c.index, slope)
    assert after > 1.5 * before


@pytest.mark.parametrize(
    "steps, match",
    [
        ([], "at least one step"),
        ([(0.0, -1.0, 600.0)], "dose >= 0"),
        ([(0.0, 0.5, 0.0)], "duration must be > 0"),
        ([(0.0, 0.5, 600.0), (0.0, 0.5, 600.0)], "start at 0 s and follow"),
        ([(60.0, 0.5, 600.0)], "start at 0 s"),
        ([(0.0, 0.5)], "must be"),
    ],
)
def test_bad_schedules_are_refused(steps, match):
    with pytest.raises(ModelError, match=match):
        dosing_schedule("human", steps, 3600.0, observables=["ketamine_plasma"])


def test_a_duration_needs_an_infusion_input():
    with pytest.raises(ModelError, match="no infusion_duration input"):
        dosing_schedule("rat", [(0.0, 10.0, 600.0)], 3600.0, observables=["ketamine_plasma"])


def test_kamp_comparison_scores_every_point():
    table = P.read_timecourses()
    frame = P.compare_timecourses(table)
    assert len(frame) == len(table) and np.isfinite(frame.simulated).all() and (frame.simulated >= 0).all()
    assert set(frame.loc[frame.scored, "time_h"]) == set(table.time_h[table.time_h >= P.MIN_SCORED_TIME_H])
    # the regimen and units are right to well within a factor of 2 at the end of the infusion (a wrong step
    # order or mg/kg per 70 kg would be 2-4x off)
    end = frame[(frame.time_h == 3.0) & (frame.analyte == "ketamine (S + R)")].iloc[0]
    assert 0.5 < end.simulated / end.conc_uM < 2.0
    summary = P.timecourse_summary(frame).set_index(["study", "arm", "analyte"])
    scored = frame[frame.scored]
    assert summary.loc[("all", "", ""), "median_abs_rel_error"] == pytest.approx(scored.rel_error.abs().median())
    assert summary.loc[("all", "", ""), "n"] == len(scored)


def test_bad_timecourse_tables_are_refused(tmp_path):
    good = P.read_timecourses()
    path = tmp_path / "t.tsv"
    good.drop(columns=["conc_uM"]).to_csv(path, sep="\t", index=False)
    with pytest.raises(ModelError, match="missing column"):
        P.read_timecourses(path)
    bad = good.copy()
    bad.loc[0, "conc_uM"] = -1.0
    bad.to_csv(path, sep="\t", index=False)
    with pytest.raises(ModelError, match=">= 0"):
        P.read_timecourses(path)
    other = good.copy()
    other.loc[0, "arm"] = "oral"
    other.to_csv(path, sep="\t", index=False)
    with pytest.raises(ModelError, match="no dosing regimen"):
        P.read_timecourses(path)
    with pytest.raises(ModelError, match="no dosing regimen"):
        P.simulate_regimen("kamp2020", "oral", ("ketamine_plasma",), 5.0)
    assert isinstance(good, pd.DataFrame)
