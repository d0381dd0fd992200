"""Analyses: readouts, local sensitivity (CVODES known answer, finite-difference cross-check),
dose-response, interventions, regimens, scans, their figures and CLI subcommands, bad input."""

import argparse
import warnings

import antimony
import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from analysis.analyses import doseresponse as D
from analysis.analyses import sensitivity as S
from analysis.analyses.readouts import READOUTS, compute_readouts, simulate_readouts
from analysis.cli.analyses import register
from analysis.core.model import CascadeModel, ModelError, load_model
from analysis.core.simulate import simulate
from analysis.plots.analyses import plot_dose_response, plot_sensitivity_heatmap, plot_tornado, save_figure

K, K2, X0 = 0.5, 0.2, 2.0


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> CascadeModel:
    """dx/dt = -k x, x(0) = x0 (plus a product y so CVODES has two states: libroadrunner 2.10 returns
    zeros for a one-state model).  Known answer: d ln x / d ln k = -k t."""
    antimony.clearPreviousLoads()
    assert (
        antimony.loadAntimonyString(
            f"model toy\n compartment C = 1; species x in C, y in C; x = {X0}; y = 0; k = {K}; k2 = {K2}\n"
            " J1: x => y; k*x\n J2: y => ; k2*y\nend"
        )
        >= 0
    )
    path = tmp_path_factory.mktemp("toy") / "toy.xml"
    path.write_text(antimony.getSBMLString("toy"))
    return CascadeModel(path)


def _image_has_content(png) -> None:
    img = imread(png)
    assert img.shape[0] > 200 and img.shape[1] > 300
    assert len(np.unique(img.reshape(-1, img.shape[-1])[:, :3].round(2), axis=0)) > 30


# -- known answers ----------------------------------------------------------------------------------------------
def test_cvodes_known_answer(toy):
    t = np.linspace(0, 4, 9)
    cv = S.timecourse_sensitivities(toy, ["k", "k2"], {}, ["x", "y"], t, method="cvodes")
    assert cv.attrs["method"] == "cvodes"
    np.testing.assert_allclose(cv[("x", "k")].values, -K * t, atol=1e-4)
    np.testing.assert_allclose(cv[("x", "k2")].values, 0.0, atol=1e-8)
    # y = x0 k/(k2-k) (e^{-k t} - e^{-k2 t}); d ln y / d ln k2 analytically
    tt = t[1:]
    dy_dk2 = X0 * K * (-(np.exp(-K * tt) - np.exp(-K2 * tt)) / (K2 - K) ** 2 + tt * np.exp(-K2 * tt) / (K2 - K))
    y = X0 * K / (K2 - K) * (np.exp(-K * tt) - np.exp(-K2 * tt))
    np.testing.assert_allclose(cv[("y", "k2")].values[1:], dy_dk2 * K2 / y, rtol=1e-3)


def test_fd_known_answer_and_matches_cvodes_on_toy(toy):
    t = np.linspace(0, 4, 9)
    fd = S.fd_timecourse_sensitivities(toy, ["k", "k2"], {}, ["x", "y"], t, rel_step=1e-4, equilibrate=False)
    np.testing.assert_allclose(fd[("x", "k")].values, -K * t, atol=1e-5)
    cv = S.cvodes_sensitivities(toy, ["k", "k2"], ["x", "y"], 4.0, 9)
    np.testing.assert_allclose(fd.values[1:], cv.values[1:], rtol=2e-3, atol=1e-5)  # solver tolerances


def test_cvodes_vs_fd_on_real_model():
    """CVODES on the cascade (state-variable observables only) either agrees with finite differences
    or is refused; 'auto' always returns finite-difference-consistent values."""
    m = load_model("rat")
    t = np.linspace(0, 600, 7)
    params = ["vmax_eaat", "k_glu_release", "i_ext_pyr"]
    scen = {"dose": 0.0}  # the stored state is steady only for the shipped values: a drift each p causes
    fd = S.fd_timecourse_sensitivities(m, params, scen, ["rate_pyr", "rate_int"], t, rel_step=1e-4, equilibrate=False)
    # non-trivial sensitivities to compare (v2: release drives the NMDA-dominated interneurons most)
    assert np.abs(fd[("rate_int", "k_glu_release")].values[-1]) > 0.1
    assert np.abs(fd[("rate_pyr", "i_ext_pyr")].values[-1]) > 0.1
    try:
        cv = S.timecourse_sensitivities(m, params, scen, ["rate_pyr", "rate_int"], t, method="cvodes")
    except S.SensitivityError as exc:
        assert "disagree" in str(exc)
    else:
        assert cv.attrs["method"] == "cvodes"
        np.testing.assert_allclose(cv[fd.columns].values[1:], fd.values[1:], rtol=1e-2, atol=1e-4)
    auto = S.timecourse_sensitivities(m, params, scen, ["rate_pyr", "rate_int"], t, equilibrate=False)
    np.testing.assert_allclose(auto[fd.columns].values[1:], fd.values[1:], rtol=1e-2, atol=1e-4)
    with warnings.catch_warnings(record=True) as w:  # assignment-rule observables: finite differences
        warnings.simplefilter("always")
        ts = S.timecourse_sensitivities(m, params[:1], scen, ["glutamate_rel"], t, equilibrate=False)
    assert ts.attrs["method"] == "fd" and any("finite differences" in str(x.message) for x in w)
    m.apply({"dose": 0.0})  # CVODES left no parameter perturbed: the stored state is steady again
    assert abs(m.rr["v_pyr'"]) < 1e-9 * 65 and m.rr["i_ext_pyr"] == m.defaults["i_ext_pyr"]
    m.apply({})


@pytest.mark.xfail(
    strict=True, reason="libroadrunner 2.10 ForwardSensitivitySolver: wrong rows with assigned compartments"
)
def test_cvodes_matches_fd_on_model_with_assigned_compartment(tmp_path):
    antimony.clearPreviousLoads()
    antimony.loadAntimonyString(
        "model a\n compartment C; vol = 1; C := vol\n species x in C, y in C; x = 2; y = 0; k = 0.5; k2 = 0.2\n"
        " J1: x => y; C*k*x\n J2: y => ; C*k2*y\nend"
    )
    p = tmp_path / "a.xml"
    p.write_text(antimony.getSBMLString("a"))
    cv = S.cvodes_sensitivities(CascadeModel(p), ["k", "k2"], ["x"], 4.0, 5)
    np.testing.assert_allclose(cv[("x", "k")].values, -0.5 * np.linspace(0, 4, 5), atol=1e-4)


def test_fd_converges_on_real_model():
    """Central differences with two steps agree (the finite-difference engine is not noise-dominated)."""
    m = load_model("rat")
    a = S.readout_sensitivities(
        m, ["koff_ket", "k_mtorc1_akt"], readouts=["mtorc1_peak", "spine_gain_24h"], rel_step=1e-2
    )
    b = S.readout_sensitivities(
        m, ["koff_ket", "k_mtorc1_akt"], readouts=["mtorc1_peak", "spine_gain_24h"], rel_step=3e-3
    )
    np.testing.assert_allclose(a.values, b.values, rtol=2e-2, atol=1e-3)
    assert a.loc["koff_ket", "spine_gain_24h"] < 0  # faster unblocking -> less effect


# -- readouts ---------------------------------------------------------------------------------------------------
def test_readouts_of_default_rat():
    df = simulate("rat", {"dose": 10.0})
    r = compute_readouts(df)
    assert list(r.index) == list(READOUTS)
    assert r["glutamate_peak"] > 1.2 and 0 < r["glutamate_time_to_peak"] < 3
    assert r["nmda_block_int_peak"] > r["nmda_block_pyr_peak"]
    assert 0.01 < r["spine_gain_24h"] < 0.05 and r["spine_gain_7d"] > 0.03  # README: 1.025 and 1.058
    same = simulate_readouts(load_model("rat"), {"dose": 10.0}, ["spine_gain_24h", "glutamate_peak"])
    np.testing.assert_allclose(same.values, r[same.index].values, rtol=1e-3)


def test_equilibrated_readouts_remove_baseline_drift():
    """A parameter change alone (no drug) moves the stored state; with pre-equilibration the drug-free
    readouts are exactly 'no effect'."""
    m = load_model("rat")
    p = {"dose": 0.0, "k_spine_formation": m.defaults["k_spine_formation"] * 1.2}
    raw = simulate_readouts(m, p, ["spine_gain_7d"], equilibrate=False)
    eq = simulate_readouts(m, p, ["spine_gain_7d"], equilibrate=True)
    assert abs(raw.iloc[0]) > 0.01 and abs(eq.iloc[0]) < 1e-3


def test_readout_errors():
    df = simulate("rat", {"dose": 10.0}, t_end=6 * 3600)
    with pytest.raises(ModelError, match="unknown readout"):
        compute_readouts(df, ["glutamate_max"])
    with pytest.raises(ModelError, match="24 h after the dose"):
        compute_readouts(df, ["spine_gain_24h"])
    with pytest.raises(ModelError, match="lacks"):
        compute_readouts(df[["glutamate_rel"]], ["mtorc1_peak"])


# -- dose-response, interventions, regimens, scans ----------------------------------------------------------------
def _glutamate_dose_response():
    return D.dose_response(
        "rat", [3, 10, 30, 300], readouts=["glutamate_peak", "glutamate_trough", "nmda_block_int_peak"]
    )


def test_dose_response_rat_rises_with_dose_and_blocks_interneurons_monotonically():
    t = _glutamate_dose_response()
    assert t.loc[10.0, "glutamate_peak"] > t.loc[3.0, "glutamate_peak"] > 1.2
    assert t["nmda_block_int_peak"].is_monotonic_increasing


@pytest.mark.xfail(
    strict=True,
    reason="known failure glutamate_200_anaesthetic (README, Validation): the HCN1 block no longer outweighs the "
    "disinhibition at anaesthetic concentrations, so glutamate does not fall below 0.9",
)
def test_dose_response_rat_shows_fall_at_anaesthetic_doses():
    t = _glutamate_dose_response()
    assert t.loc[300.0, "glutamate_trough"] < 0.9 < t.loc[30.0, "glutamate_trough"]


def test_interventions_block_the_cascade():
    table, curves = D.interventions("rat", readouts=["mtorc1_peak", "spine_gain_24h"], horizon_s=1.1 * 86400)
    ratio = table.xs("ratio_to_control", level="quantity")
    assert ratio.loc["rapamycin", "mtorc1_peak"] < 0.05 and ratio.loc["NBQX", "spine_gain_24h"] < 0.5
    assert ratio.loc["control", "spine_gain_24h"] == pytest.approx(1.0)
    assert set(curves) == set(D.INTERVENTIONS) and curves["control"].index.min() < 0


def test_repeated_dosing_matches_single_dose_and_redoses():
    one = D.repeated_dosing("rat", 1, observables=["glutamate_rel"])
    ref = simulate("rat", {"dose": 10.0}, times=one.index.values, observables=["glutamate_rel"])
    np.testing.assert_allclose(one["glutamate_rel"].values, ref["glutamate_rel"].values, rtol=1e-6)
    three = D.repeated_dosing("rat", 3, 86400.0, horizon_s=86400.0, observables=["glutamate_rel", "ketamine_brain"])
    for k in range(3):
        r = compute_readouts(three, ["glutamate_peak", "ketamine_brain_peak"], k * 86400.0)
        assert r["glutamate_peak"] > 1.3 and r["ketamine_brain_peak"] > 3.0
    assert load_model("rat").rr["t_dose"] == 0.0  # restored
    human = load_model("human")
    D.repeated_dosing(human, 2, 86400.0, horizon_s=86400.0, observables=["ketamine_brain"])
    after = simulate("human", None, t_end=3 * 3600.0, observables=["ketamine_brain"])  # default scenario
    assert after["ketamine_brain"].max() > 0.3  # the next run is dosed again


def test_human_infusion_durations():
    table, curves = D.regimens("human", n_doses=(1,), readouts=["ketamine_brain_peak"], horizon_s=86400.0)
    peak = table["ketamine_brain_peak"]
    assert peak["infusion 1 min"] > peak["infusion 40 min"] > peak["infusion 100 min"]


def test_scans():
    s1 = D.scan_1d("rat", "koff_ket", n=3, readouts=["spine_gain_24h"])
    assert len(s1) == 3 and s1["spine_gain_24h"].is_monotonic_decreasing and (s1["error"] == "").all()
    s2 = D.scan_2d("rat", ("koff_ket", "vmax_eaat"), n=2, readouts=["glutamate_peak"])
    assert s2.shape == (4, 4)
    # a grid point without a physiological drug-free state is NaN with its reason, never a silent value
    failed = s2["error"] != ""
    assert (s2.loc[failed, "glutamate_peak"].isna()).all() and s2.loc[~failed, "glutamate_peak"].notna().all()


def test_scan_reports_runaway_instead_of_flat_effect():
    """A set without a low-activity drug-free state (here a homeostatic set point of 40 Hz, on the runaway branch)
    is NaN with its reason in a scan, never a flat 'no effect'."""
    s = D.scan_1d("rat", "rate_set_pyr", [40.0, 2.0], readouts=["glutamate_peak"])
    assert np.isnan(s.loc[40.0, "glutamate_peak"]) and "runaway" in s.loc[40.0, "error"]
    assert s.loc[2.0, "error"] == "" and s.loc[2.0, "glutamate_peak"] > 1.1


def test_bad_inputs():
    m = load_model("rat")
    with pytest.raises(ModelError, match="unknown parameter"):
        D.scan_1d(m, "k_nonexistent", n=3)
    with pytest.raises(ModelError, match="unknown parameter"):
        S.readout_sensitivities(m, ["k_nonexistent"])
    with pytest.raises(ModelError, match="unknown readout"):
        D.dose_response(m, [1.0], readouts=["not_a_readout"])
    with pytest.raises(ModelError, match="lower 2.0 >= upper 1.0"):
        S.check_bounds(m, {"koff_ket": (2.0, 1.0)})
    with pytest.raises(ModelError, match="lower >= upper"):
        S.parameter_bounds("rat", ["mw_ketamine"])
    with pytest.raises(ModelError, match="positive"):
        D.log_doses(0.0, 10.0, 5)
    with pytest.raises(ModelError, match="positive"):
        D.dose_response(m, [-1.0, 3.0])
    with pytest.raises(ModelError, match="undefined"):
        S.readout_sensitivities(m, ["inhib_ampa"])
    with pytest.raises(ModelError, match="rel_step"):
        S.readout_sensitivities(m, ["koff_ket"], rel_step=0.0)
    with pytest.raises(ModelError, match="unknown method"):
        S.timecourse_sensitivities(m, ["koff_ket"], method="adjoint")
    with pytest.raises(ModelError, match="two different"):
        D.scan_2d(m, ("koff_ket", "koff_ket"))


def test_parameter_bounds_helper():
    b = S.parameter_bounds("rat")
    assert (b.lower < b.upper).all() and (b.lower <= b.value).all() and (b.value <= b.upper).all()
    assert "dose" not in b.index and "inhib_ampa" not in b.index and "koff_ket" in b.index


# -- figures and CLI --------------------------------------------------------------------------------------------
def test_figures_have_content(tmp_path):
    rs = pd.DataFrame(np.random.default_rng(0).normal(size=(12, 5)), index=[f"p{i}" for i in range(12)],
                      columns=list(READOUTS)[:5])  # fmt: skip
    png, svg = save_figure(plot_sensitivity_heatmap(rs, "t"), tmp_path / "heat")
    _image_has_content(png)
    assert svg.read_text(encoding="utf-8").count("<path") + svg.read_text(encoding="utf-8").count("<image") > 5
    png, _ = save_figure(plot_tornado(S.tornado(rs, rs.columns[0], 8), rs.columns[0]), tmp_path / "tornado")
    _image_has_content(png)
    dr = D.dose_response("rat", [1, 10, 100], readouts=["nmda_block_int_peak", "glutamate_peak", "spine_gain_24h"])
    png, svg = save_figure(plot_dose_response(dr), tmp_path / "dr")
    _image_has_content(png)
    assert "dose (mg/kg)" in svg.read_text(encoding="utf-8")


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ketamine-cascade")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.mark.parametrize(
    "argv, files",
    [
        (["sensitivity", "--parameters", "koff_ket,kon_ket,vmax_eaat", "--readouts", "glutamate_peak,spine_gain_24h",
          "--hours", "6", "--n-times", "7", "--tornado", "spine_gain_24h"],
         ["sensitivity_timecourse.csv", "sensitivity_observables.csv", "sensitivity_readouts.csv",
          "sensitivity_heatmap.png", "sensitivity_heatmap.svg", "tornado_spine_gain_24h.png"]),
        (["dose-response", "--n", "3", "--readouts", "glutamate_peak,mtorc1_peak"],
         ["dose_response_rat.csv", "dose_response_rat.png", "dose_response_rat.svg"]),
        (["interventions", "--days", "1", "--repeat", "2", "--interval-h", "24",
          "--readouts", "mtorc1_peak,spine_gain_24h"],
         ["interventions_rat.csv", "interventions_rat.png", "regimens_rat.csv", "regimens_rat.svg"]),
        (["scan", "--parameter", "koff_ket", "--n", "3", "--readouts", "glutamate_peak"],
         ["scan_koff_ket.csv", "scan_koff_ket.png"]),
        (["scan", "--parameter", "koff_ket,kon_ket", "--n", "2", "--readouts", "glutamate_peak"],
         ["scan_koff_ket_kon_ket.csv", "scan_koff_ket_kon_ket_glutamate_peak.png"]),
    ],
)  # fmt: skip
def test_cli_subcommands(tmp_path, argv, files):
    assert _run(argv + ["--out", str(tmp_path)]) == 0
    for f in files:
        assert (tmp_path / f).stat().st_size > 0, f
    for png in tmp_path.glob("*.png"):
        _image_has_content(png)
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_cli_global_methods_check_sample_size(tmp_path):
    with pytest.raises(ModelError, match="power of 2"):
        _run(["sensitivity", "--method", "sobol", "--samples", "10", "--out", str(tmp_path)])
    with pytest.raises(ModelError, match="lower 1.0 >= upper 0.1"):
        _run(["dose-response", "--min-dose", "1", "--max-dose", "0.1", "--out", str(tmp_path)])
