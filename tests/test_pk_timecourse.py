"""Dosing schedules (step-wise infusions) and the held-out human plasma time courses."""

import numpy as np
import pytest

from analysis.analyses import pk_timecourse as P
from analysis.analyses.doseresponse import dosing_schedule
from analysis.core.model import ModelError, load_model
from analysis.core.simulate import simulate

OBS = ["ketamine_plasma", "norketamine_plasma"]


def _at(curve, t):
    return np.interp(t, curve.index.values, curve.values)


def test_consecutive_steps_equal_one_infusion():
    """Two 20-min steps of 0.25 mg/kg deliver what one 40-min infusion of 0.5 mg/kg does."""
    human = load_model("human")
    two = dosing_schedule(human, [(0.0, 0.25, 1200.0), (1200.0, 0.25, 1200.0)], 6 * 3600.0, observables=OBS)
    one = dosing_schedule(human, [(0.0, 0.5, 2400.0)], 6 * 3600.0 + 1200.0, observables=OBS)
    t = np.array([600.0, 1800.0, 2400.0, 3600.0, 7200.0, 18000.0])
    for obs in OBS:
        np.testing.assert_allclose(_at(two[obs], t), _at(one[obs], t), rtol=1e-6)
    # and one step equals the plain dosed run
    plain = human.simulate(np.array([0.0, 2400.0, 7200.0]), {"dose": 0.5, "infusion_duration": 2400.0}, OBS)
    np.testing.assert_allclose(_at(one.ketamine_plasma, [2400.0, 7200.0]), plain.ketamine_plasma.values[1:], rtol=1e-5)


def test_a_schedule_leaves_the_model_as_it_was():
    before = simulate("human", None, t_end=6 * 3600.0, observables=OBS)
    steps = [(0.0, 0.3, 600.0), (3600.0, 0.2, 7200.0), (5000.0, 0.1, 60.0)]
    dosing_schedule("human", steps, 3600.0, observables=OBS)
    human = load_model("human")
    for name in ("dose", "t_dose", "infusion_duration"):
        assert human.rr[name] == human.defaults[name]
    after = simulate("human", None, t_end=6 * 3600.0, observables=OBS)
    np.testing.assert_array_equal(before.values, after.values)


def test_a_new_step_replaces_a_running_infusion_from_its_start():
    """Until the second step starts, the first runs at its own rate, whatever the second step's duration."""
    human = load_model("human")
    steps = [(0.0, 0.5, 3600.0), (1800.0, 0.1, 60.0)]
    c = dosing_schedule(human, steps, 3600.0, observables=["ketamine_plasma"]).ketamine_plasma
    alone = dosing_schedule(human, [(0.0, 0.5, 3600.0)], 3600.0, observables=["ketamine_plasma"]).ketamine_plasma
    # (the grids differ near 1800 s, so the reading is interpolated to ~4e-6; a second run at the new step's
    # rate would be 5 % off at 1800 s)
    np.testing.assert_allclose(_at(c, [600.0, 1799.0, 1800.0]), _at(alone, [600.0, 1799.0, 1800.0]), rtol=1e-4)
    # after it, the short second step's 0.1 mg/kg (then nothing) instead of the rest of the first
    assert _at(c, 3600.0) < 0.6 * _at(alone, 3600.0)


def test_a_step_without_duration_uses_the_scenarios():
    human = load_model("human")
    scenario = {"dose": 0.0, "infusion_duration": 2400.0}
    c = dosing_schedule(human, [(0.0, 0.5, 600.0), (7200.0, 0.5, None)], 3 * 3600.0, scenario, ["ketamine_plasma"])
    ref = dosing_schedule(human, [(0.0, 0.5, 600.0), (7200.0, 0.5, 2400.0)], 3 * 3600.0, scenario, ["ketamine_plasma"])
    short = dosing_schedule(human, [(0.0, 0.5, 600.0), (7200.0, 0.5, 600.0)], 3 * 3600.0, scenario, ["ketamine_plasma"])
    np.testing.assert_allclose(c.ketamine_plasma.values, ref.ketamine_plasma.values, rtol=1e-9)
    assert _at(short.ketamine_plasma, 7800.0) > 1.2 * _at(c.ketamine_plasma, 7800.0)


def test_escalating_infusion_rises_in_steps_and_falls_after():
    human = load_model("human")
    steps = [(0.0, 0.2, 3600.0), (3600.0, 0.4, 3600.0), (7200.0, 0.8, 3600.0)]
    c = dosing_schedule(human, steps, 3 * 3600.0, observables=["ketamine_plasma"]).ketamine_plasma
    at = {h: float(_at(c, h * 3600.0)) for h in (1.0, 2.0, 3.0, 4.0)}
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
        ([(0.0, 0.5, True)], "of numbers"),
        ([(0.0, "half", 600.0)], "of numbers"),
        ([0.5], "of numbers"),
        ([(0.0, 0.5, 600.0), (0.0, 0.5, 600.0)], "start at 0 s and follow"),
        ([(60.0, 0.5, 600.0)], "start at 0 s"),
        ([(0.0, 0.5)], "of numbers"),
    ],
)
def test_bad_schedules_are_refused(steps, match):
    with pytest.raises(ModelError, match=match):
        dosing_schedule("human", steps, 3600.0, observables=["ketamine_plasma"])


def test_a_duration_needs_an_infusion_input():
    with pytest.raises(ModelError, match="no infusion_duration input"):
        dosing_schedule("rat", [(0.0, 10.0, 600.0)], 3600.0, observables=["ketamine_plasma"])


def test_escalating_infusion_inputs_equal_the_schedule():
    """The SBML's dose_step2/dose_step3 inputs give what three consecutive infusion steps give."""
    human = load_model("human")
    t = np.array([0.0, 1800.0, 3600.0, 5400.0, 9000.0, 10800.0, 11700.0, 18000.0])
    inputs = {"dose": 0.28, "infusion_duration": 3600.0, "dose_step2": 0.57, "dose_step3": 1.14}
    a = human.simulate(t, inputs, OBS)
    steps = [(0.0, 0.28, 3600.0), (3600.0, 0.57, 3600.0), (7200.0, 1.14, 3600.0)]
    b = dosing_schedule(human, steps, 4 * 3600.0, observables=OBS)
    for obs in OBS:
        np.testing.assert_allclose(a[obs].values[1:], _at(b[obs], t[1:]), rtol=1e-5)
    # the defaults (0) are the single infusion
    single = human.simulate(t, {"dose": 0.5}, OBS)
    zero = human.simulate(t, {"dose": 0.5, "dose_step2": 0.0, "dose_step3": 0.0}, OBS)
    np.testing.assert_array_equal(single.values, zero.values)


def test_kamp_comparison_scores_every_held_out_plasma_point():
    table = P.read_timecourses()
    assert len(table) == 48 and (table.time_h >= 1.0).all() and set(table.study) == {"kamp2020"}
    frame, curves = P.timecourse_check(table)
    assert len(frame) == len(table) and np.isfinite(frame.simulated).all() and (frame.simulated >= 0).all()
    assert set(curves) == set(frame.condition) and len(curves) == 2
    # the regimen and units are right to well within a factor of 2 at the end of the infusion (a wrong step
    # order or mg/kg per 70 kg would be 2-4x off)
    racemic = frame[~frame.condition.str.contains("esketamine")]
    end = racemic[(racemic.time_h == 3.0) & (racemic.observable == "ketamine_plasma")].iloc[0]
    assert 0.5 < end.simulated / end.conc_uM < 2.0
    # the simulated column is the curve read at the data time
    row = frame.iloc[-1]
    assert row.simulated == pytest.approx(float(_at(curves[row.condition][row.observable], row.time_h)), rel=1e-12)
    summary = P.timecourse_summary(frame).set_index("condition")
    assert summary.loc["all", "median_abs_rel_error"] == pytest.approx(frame.rel_error.abs().median())
    assert summary.loc["all", "n"] == 48


def test_bad_timecourse_rows_are_refused():
    from analysis.calibration.petab_problem import read_data

    rows = [dict(r) for r in read_data()]
    with pytest.raises(ModelError, match="no held-out human plasma"):
        P.read_timecourses([r for r in rows if not r["id"].startswith("kamp2020")])
    kamp = [r for r in rows if r["id"].startswith("kamp2020")]
    kamp[0]["unit"] = "ng/ml"
    with pytest.raises(ModelError, match="must be in uM"):
        P.read_timecourses(kamp)
