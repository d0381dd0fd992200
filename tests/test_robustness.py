"""Robustness analyses of the drug-free operating point (range ends, joint box, continuation)."""

import numpy as np
import pandas as pd
import pytest

from analysis.analyses import robustness as R
from analysis.analyses.sensitivity import parameter_bounds
from analysis.cli.commands import main


def test_range_ends_report_each_end_with_consistent_checks():
    ends = R.range_ends("rat", ["mg_ext", "koff_ket", "e_gaba"], progress=False)
    assert list(ends.index) == [(p, e) for p in ("mg_ext", "koff_ket", "e_gaba") for e in ("lower", "upper")]
    assert ((ends["reason"] == "") == ends["ok"]).all()
    assert (ends.loc[ends["ok"], "rate_pyr"] <= 20).all()
    assert ends.loc[("koff_ket", "lower"), "ok"]  # a drug-only parameter cannot break the drug-free state
    assert ends.loc[("mg_ext", "upper"), "ok"]


def test_dosed_check_runs_each_physiological_set_through_a_dose(monkeypatch):
    ends = R.range_ends("rat", ["mg_ext", "e_gaba", "koff_ket"], progress=False, dose=10.0)
    assert {"dosed_ok", "dosed_reason"} <= set(ends.columns)
    # v2: the ends of the parameters that broke v1 (mg_ext low, e_gaba high) hold, drug-free and dosed
    assert ends["ok"].all() and ends["dosed_ok"].all() and (ends["dosed_reason"] == "").all()
    m = R.as_model("rat")
    assert R.dosed_check(m, {}, 10.0) == (True, "")
    ok, why = R.dosed_check(m, {"rate_set_pyr": 40.0}, 10.0)  # no physiological drug-free state
    assert not ok and why.startswith("DrugFreeStateError") and "with parameters" not in why
    monkeypatch.setitem(R.steady_state.MAX_RATE, "rate_pyr", 2.5)  # a surge that ends above the bound: refused
    monkeypatch.setattr(R, "DOSED_TIMES", np.array([0.0, 600.0, 1800.0]))
    ok, why = R.dosed_check(m, {"e_gaba": -70.0}, 10.0)
    assert not ok and why.startswith("RunawayError")
    box = R.joint_box("rat", 6, seed=2, progress=False, dose=10.0)
    assert box["dosed_ok"].le(box["ok"]).all()  # a dosed pass needs a drug-free pass


def test_joint_box_is_log_uniform_inside_the_ranges():
    params = R.survey_parameters("rat")
    assert "koff_ket" not in params and "dose" not in params and "mg_ext" in params
    box = R.sample_box("rat", 400, seed=1, parameters=["mg_ext", "k_nmda_open_pyr"])
    b = parameter_bounds("rat", ["mg_ext", "k_nmda_open_pyr"])
    for p in box:
        assert box[p].between(b.loc[p, "lower"], b.loc[p, "upper"]).all()
        u = (np.log(box[p]) - np.log(b.loc[p, "lower"])) / np.log(b.loc[p, "upper"] / b.loc[p, "lower"])
        assert abs(u.mean() - 0.5) < 0.05  # uniform in log space
    pd.testing.assert_frame_equal(box, R.sample_box("rat", 400, seed=1, parameters=["mg_ext", "k_nmda_open_pyr"]))
    res = R.joint_box("rat", 20, seed=1, progress=False)
    assert len(res) == 20 and {"ok", "rate_pyr", "max_eigenvalue", "reason"} <= set(res.columns)


def test_continuation_follows_the_physiological_branch_until_it_ends():
    scan = R.continuation("rat", "mg_ext", n=21)
    assert scan.loc[1.0, "ok"] and scan.loc[1.0, "rate_pyr"] < 5  # the table value is on the branch
    lo, hi = R.branch_end(scan)
    if lo is not None:  # past the end of the branch the circuit runs away
        assert (scan.loc[scan.index <= lo, "branch"] == "runaway").all()
    assert (scan.loc[scan["ok"], "rate_pyr"] <= 20).all()
    # every state on the branch is stable: its leading eigenvalue is the persistent-spine mode (~ -8e-8 /s)
    assert (scan.loc[scan["ok"], "max_eigenvalue"] < 0).all()


def test_branch_kind_names_the_bifurcation_at_the_end_of_the_branch():
    """The steepest pyramidal rate curves end the branch in the fast E-I loop: at the first step past the end the
    state still exists, at the set-point rates, with a complex pair in the right half-plane (Hopf; a period of
    about a second), or the circuit oscillates around it; far past it the state jumps to the runaway branch.
    (Natural-parameter continuation needs steps fine enough to land between the two: at steps of 0.37 mV the first
    step off the branch is already a runaway.)"""
    scan = R.continuation("rat", "v_slope_pyr", n=41, span=(0.3, 4.0))
    assert R.branch_kind(scan, "above") is None
    kind = R.branch_kind(scan, "below")
    end = R.branch_end(scan)[0]
    assert 1.0 < end < 1.5
    # which of the two the first step off the branch lands on depends on whether the relaxation there ends on the
    # unstable state (Newton-polished) or keeps oscillating around it; both are the fast loop's Hopf
    assert kind in ("Hopf", "oscillation")
    if kind == "Hopf":
        assert scan.loc[end, "leading_imag"] > 1.0  # rad/s: a period of seconds
    assert scan.loc[scan.index.min(), "branch"] == "runaway"
    with pytest.raises(ValueError):
        R.branch_kind(scan, "left")


def test_cli_robustness_writes_tables_and_figures(tmp_path):
    assert main(["robustness", "--samples", "10", "--continuation", "mg_ext", "--out", str(tmp_path)]) == 0
    tables = ("range_ends.csv", "joint_box.csv", "continuation_mg_ext.csv", "oscillatory_modes.csv")
    loop = ("synapse_drive_spine_density_rel.csv", "synapse_drive_synaptic_proteins_rel.csv", "loop_elasticities.csv")
    for name in (*tables, *loop, "continuation.png", "range_ends.png", "synapse_drive_loop.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_the_homeostat_loop_is_designed_not_to_ring():
    """Without the Narp term the two integral homeostats ring (the one slow complex pair of the full drug-free
    Jacobian, owned by them); the reduced two-state analysis finds the same mode, the weight where it stops
    ringing, and that the shipped weight (and its whole range) is above it: no slow oscillation is left."""
    off = R.oscillatory_modes("rat", {R.NARP_WEIGHT: 0.0})
    assert len(off) == 1
    mode = off.iloc[0]
    assert {s.split(" ")[0] for s in mode["states"].split(", ")[:2]} == set(R.HOMEOSTATS)
    assert 0.3 < mode["damping_ratio"] < 1
    loop_off = R.homeostat_loop("rat", {R.NARP_WEIGHT: 0.0})
    assert loop_off["damping_ratio"] == pytest.approx(mode["damping_ratio"], rel=1e-3)
    period = 2 * np.pi / np.abs(loop_off["eigenvalues"].imag).max() / 86400.0
    assert period == pytest.approx(mode["period_days"], rel=1e-3)
    # the period scales with the homeostats' time constant, the damping does not (a property of the loop)
    slow = R.oscillatory_modes("rat", {R.NARP_WEIGHT: 0.0, "tau_homeostasis": 2 * 172800.0}).iloc[0]
    assert slow["period_days"] == pytest.approx(2 * mode["period_days"], rel=0.02)
    assert slow["damping_ratio"] == pytest.approx(mode["damping_ratio"], abs=0.01)

    lower, upper = parameter_bounds("rat", [R.NARP_WEIGHT]).loc[R.NARP_WEIGHT, ["lower", "upper"]]
    for species in ("rat", "human"):
        shipped = R.homeostat_loop(species)
        assert shipped["damping_ratio"] >= 1 and np.isreal(shipped["eigenvalues"]).all()
        assert (shipped["eigenvalues"].real < 0).all()
        assert 0 < shipped["critical_narp_weight"] < lower <= shipped["narp_weight"] <= upper
        # the steady state does not depend on the weight, so its critical value is the same from any weight
        at_end = R.homeostat_loop(species, {R.NARP_WEIGHT: upper})
        assert at_end["critical_narp_weight"] == pytest.approx(shipped["critical_narp_weight"], rel=1e-3)
        assert at_end["damping_ratio"] > shipped["damping_ratio"]
        assert R.oscillatory_modes(species).empty


def _spine_drive_variant(tmp_path, carrier: str):
    """The shipped rat SBML with a share ``w_syn`` of the pyramidal AMPA and NMDA conductances scaled by the
    carrier observable: the model variant that :func:`R.synapse_drive_loop` analyses without building it."""
    import libsbml

    from analysis.core.model import CascadeModel
    from analysis.core.paths import sbml_path

    doc = libsbml.readSBMLFromFile(str(sbml_path("rat")))
    model = doc.getModel()
    for sid in ("w_syn", "syn_drive"):
        p = model.createParameter()
        p.setId(sid)
        p.setConstant(sid == "w_syn")
        p.setValue(0.0 if sid == "w_syn" else 1.0)
        p.setUnits("dimensionless")
    rule = model.createAssignmentRule()
    rule.setVariable("syn_drive")
    rule.setMath(libsbml.parseL3Formula(f"1 - w_syn + w_syn * {carrier}"))
    for current in ("i_ampa_pyr", "i_nmda_pyr"):
        r = model.getAssignmentRuleByVariable(current)
        formula = libsbml.formulaToL3String(r.getMath())
        assert formula.count("homeo_syn_pyr") == 1, formula
        r.setMath(libsbml.parseL3Formula(formula.replace("homeo_syn_pyr", "homeo_syn_pyr * syn_drive")))
    path = tmp_path / "variant.xml"
    assert libsbml.writeSBMLToFile(doc, str(path))
    return CascadeModel(path)


def _leading_real(m, w: float) -> float:
    m.apply({"t_dose": 1e30, "w_syn": w})
    jac = R.steady_state.jacobian(m.rr, m.space)[0]
    q = R.steady_state.drug_free_basis(m.space)
    return float(np.linalg.eigvals(q.T @ jac @ q).real.max())


def test_synapse_drive_loop_matches_the_built_variant_and_the_open_loop_steady_state(tmp_path):
    """The rank-one analysis of 'new synapses carry drive' (model-v2 item 3) gives the same leading eigenvalue as
    the variant model with the loop built in, on both sides of the critical weight; its open-loop elasticities
    match the steady state reached with the homeostats held."""
    loop = R.synapse_drive_loop("rat", "spine_density_rel", weights=[0.0, 0.02, 0.05, 0.5])
    w_c = loop["critical_weight"]
    assert 0.02 < w_c < 0.05
    scan = loop["scan"].set_index("weight")
    assert scan.loc[0.0, "max_real"] < 0 < scan.loc[0.05, "max_real"]
    variant = _spine_drive_variant(tmp_path, "spine_density_rel")
    for w in (0.02, 0.05, 0.5):
        assert _leading_real(variant, w) == pytest.approx(scan.loc[w, "max_real"], rel=0.02)
    assert _leading_real(variant, 0.9 * w_c) < 0 < _leading_real(variant, 1.1 * w_c)

    # open loop: hold the homeostats (a time constant of 3e7 years) and relax a 0.1 % rise of the conductances
    m = R.as_model("rat")
    step = 1e-3
    try:
        m.apply({"t_dose": 1e30, "tau_homeostasis": 1e15})
        base = {s: m.rr[s] for s in ("rate_pyr", "syn_program", "spine_density_rel")}
        for g in R.EXCITATORY_PYR:
            m.rr[g] = m.rr[g] * (1 + step)
        m.rr.simulate(0, 2000 * 86400.0, 50)
        for s, y0 in base.items():
            e = np.log(m.rr[s] / y0) / np.log(1 + step)
            assert e == pytest.approx(loop["elasticities"][s], rel=0.05), s
    finally:
        m.apply({})
    assert loop["open_loop_gain"] == loop["elasticities"]["spine_density_rel"] > 10


def test_synapse_drive_loop_refuses_bad_input():
    with pytest.raises(ValueError, match="carrier"):
        R.synapse_drive_loop("rat", "rate_pyr")
    with pytest.raises(ValueError, match="weights"):
        R.synapse_drive_loop("rat", weights=[-0.1])
    # weights in any order: the scan is ascending and the critical weight the same
    shuffled = R.synapse_drive_loop("rat", weights=[0.05, 0.0, 0.02, 0.05])
    assert list(shuffled["scan"]["weight"]) == [0.0, 0.02, 0.05]
    assert 0.02 < shuffled["critical_weight"] < 0.05
