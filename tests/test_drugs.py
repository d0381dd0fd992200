"""Drug presets (models/drugs.tsv), norketamine, intranasal dosing and the MADRS readout (issue 11)."""

import numpy as np
import pytest

from analysis.analyses.drugs import calibrate_madrs_link, compare_drugs, equal_block_dose, madrs_points
from analysis.core.drugs import PROTOCOLS, drug_parameters, drugs, read_drugs, with_drug
from analysis.core.errors import ModelError
from analysis.core.model import load_model
from analysis.core.tables import TableError, read_parameters

HOUR, DAY = 3600.0, 86400.0


def test_presets_are_listed_with_sources():
    assert drugs()[:4] == ["racemic_ketamine", "esketamine", "arketamine", "memantine"]
    assert all(s.source for s in read_drugs())


def test_racemic_preset_restates_the_shipped_values():
    params = read_parameters("human")
    for pid, value in drug_parameters("racemic_ketamine", "human").items():
        assert params[pid].value == value, pid


def test_enantiomer_potency_order():
    """Ebert 1997: S-ketamine binds ~2x tighter than the racemate, R-ketamine ~3x weaker (same kon)."""
    rac = drug_parameters("racemic_ketamine", "rat")["koff_ket"]
    assert drug_parameters("esketamine", "rat")["koff_ket"] < rac < drug_parameters("arketamine", "rat")["koff_ket"]


def test_unknown_drug_and_clash_are_errors():
    with pytest.raises(ModelError, match="unknown drug 'lsd'"):
        drug_parameters("lsd", "human")
    with pytest.raises(ModelError, match="both by the memantine preset and explicitly"):
        with_drug("memantine", "human", {"koff_ket": 1.0})
    with pytest.raises(ModelError, match="no rat clearance"):
        drug_parameters("memantine", "rat")


def test_bad_preset_table_is_reported(tmp_path):
    bad = tmp_path / "drugs.tsv"
    bad.write_text(
        "drug\tspecies\tparameter\tvalue\tunit\tsource\tnote\nx\tboth\tnot_a_parameter\t1\tper_second\tsomewhere\t\n"
    )
    with pytest.raises(TableError, match="not_a_parameter"):
        read_drugs(bad)
    bad.write_text("drug\tspecies\tparameter\tvalue\tunit\tsource\tnote\nx\tboth\tkoff_ket\t1\tmM\tsomewhere\t\n")
    with pytest.raises(TableError, match="unit 'mM'"):
        read_drugs(bad)


def test_presets_are_drug_only_so_no_equilibration_is_needed():
    m = load_model("human")
    for drug in drugs():
        assert not m.changes_physiology(drug_parameters(drug, "human")), drug


def test_intranasal_route_absorbs_the_bioavailable_fraction():
    """84 mg intranasal: Tmax 20-40 min (label); the amount reaching plasma is f_nasal of the dose."""
    m = load_model("human")
    t = np.arange(0.0, 12 * HOUR, 60.0)
    df = m.simulate(t, {"dose": 0.0, "dose_intranasal": 84.0}, ("ketamine_plasma",))
    tmax = df["ketamine_plasma"].idxmax() / 60.0
    assert 20.0 <= tmax <= 40.0
    # same exposure (AUC) as an IV dose of f_nasal x 84 mg (linear PK)
    iv = m.simulate(t, {"dose": 0.48 * 84.0 / 70.0, "infusion_duration": 60.0}, ("ketamine_plasma",))
    auc = [np.trapezoid(d["ketamine_plasma"].to_numpy(), t) for d in (df, iv)]
    assert auc[0] == pytest.approx(auc[1], rel=0.03)


def test_repeated_intranasal_dose_by_moving_t_dose():
    m = load_model("human")
    t = np.arange(0.0, 6 * HOUR, 60.0)
    later = m.simulate(t, {"dose": 0.0, "dose_intranasal": 56.0, "t_dose": 2 * HOUR}, ("ketamine_plasma",))
    assert later["ketamine_plasma"].loc[: 2 * HOUR - 60].max() == 0.0
    assert later["ketamine_plasma"].max() > 0.2


def test_norketamine_is_formed_and_blocks():
    m = load_model("human")
    t = np.arange(0.0, 12 * HOUR, 300.0)
    df = m.simulate(t, {"dose": 0.5}, ("ketamine_plasma", "norketamine_plasma", "nmda_block_int"))
    assert df["norketamine_plasma"].max() > 0.1
    # norketamine outlasts ketamine (Zarate 2012)
    assert df["norketamine_plasma"].idxmax() > df["ketamine_plasma"].idxmax()
    without = m.simulate(t, {"dose": 0.5, "kon_nor": 0.0}, ("nmda_block_int",))
    assert df["nmda_block_int"].loc[4 * HOUR] > without["nmda_block_int"].loc[4 * HOUR]


def test_partial_trapping_lowers_block_at_equal_affinity():
    """Same kon and koff, memantine's partial trapping (f_trap 0.8) leaves fewer channels blocked."""
    m = load_model("human")
    t = np.linspace(0.0, 3 * HOUR, 200)
    full = m.simulate(t, {"dose": 0.5}, ("nmda_block_int",))["nmda_block_int"].max()
    partial = m.simulate(t, {"dose": 0.5, "f_trap_ket": 0.8}, ("nmda_block_int",))["nmda_block_int"].max()
    assert partial < 0.8 * full


def test_madrs_link_reproduces_its_fit():
    """The shipped link parameters are the weighted least-squares fit to the clinical points, and the SBML's
    madrs_change reproduces the fitted values."""
    fit = calibrate_madrs_link()
    table = read_parameters("human")
    assert fit["madrs_emax"] == pytest.approx(table["madrs_emax"].value, rel=0.01)
    assert fit["madrs_x50"] == pytest.approx(table["madrs_x50"].value, rel=0.01)
    m = load_model("human")
    points = madrs_points("fit")
    assert len(points) >= 3
    for point in points:
        df = m.simulate([0.0, point.time_s], dict(point.parameters), ("madrs_change",))
        assert df["madrs_change"].iloc[0] == 0.0
        assert df["madrs_change"].iloc[-1] == pytest.approx(fit[f"fit: {point.name}"], rel=0.01)
        # within two standard errors of the trial's difference from placebo
        assert abs(-df["madrs_change"].iloc[-1] - point.improvement) < 2 * point.sigma_log * point.improvement


def test_madrs_link_saturates_and_is_odd():
    """Larger synaptic effects give diminishing clinical returns (Daly 2018: 28-84 mg nearly flat at 24 h),
    and a deficit of the same size worsens the score by the same amount."""
    from analysis.analyses.drugs import madrs_link

    table = read_parameters("human")
    emax, x50 = table["madrs_emax"].value, table["madrs_x50"].value
    small, large = madrs_link([1.0 + x50, 1.0 + 10 * x50], emax, x50)
    assert small == pytest.approx(-emax / 2)
    assert 2 * small < large < small  # ten times the effect, less than twice the improvement
    assert madrs_link(1.0 - x50, emax, x50) == pytest.approx(-small)


def test_memantine_fails_at_clinical_exposure_for_mechanistic_reasons():
    """At 0.5-1 uM plasma memantine blocks almost no interneuron receptors in Mg2+ (entry only into open,
    Mg2+-free pores, fast koff, partial trapping) and so has no lasting effect; at equal block it would."""
    curves, summary = compare_drugs(days=7.0)
    mem = summary.loc["memantine 20 mg/day"]
    ket = summary.loc["racemic ketamine 0.5 mg/kg IV"]
    assert 0.4 < curves["memantine 20 mg/day"]["ketamine_plasma"].iloc[-1] < 1.0
    assert mem["peak_block_int"] < 0.2 * ket["peak_block_int"]
    assert abs(mem["madrs_24h"]) < 1.0 and mem["spines_7d"] == pytest.approx(1.0, abs=0.005)
    equal = [n for n in summary.index if "equal block" in n]
    assert len(equal) == 1
    assert summary.loc[equal[0], "peak_block_int"] == pytest.approx(ket["peak_block_int"], rel=0.01)
    assert summary.loc[equal[0], "peak_glutamate_rel"] > 1.1


def test_equal_block_dose_rejects_unreachable_targets():
    with pytest.raises(ModelError, match="target block"):
        equal_block_dose("memantine", 1.5)


def test_default_protocols_cover_each_preset():
    assert {p.drug for p in PROTOCOLS.values()} == set(drugs())


def test_cli_drug_options(tmp_path, capsys):
    from analysis.cli import commands as cli

    out = tmp_path / "mem.csv"
    args = ["simulate", "--species", "human", "--drug", "memantine", "--dose", "1", "--t-end-h", "6", "--out", str(out)]
    assert cli.main(args) == 0
    assert out.exists()
    assert cli.main(["simulate", "--species", "rat", "--drug", "memantine"]) == 2
    assert "no rat clearance" in capsys.readouterr().err
    assert cli.main(["compare-drugs", "--days", "2", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "drug_comparison.csv").read_text()
    assert "memantine 20 mg/day" in table and (tmp_path / "drug_comparison.png").exists()
