"""Literature targets (models/validation.tsv) evaluated on the shipped SBML.

Targets the model does not reproduce are listed in KNOWN_FAILURES with the reason
(also in README, "Validation"); they are strict xfails, so a change that makes one
pass, or makes any other target fail, turns this test red.
"""

import math

import pytest

from analysis.analyses.validate import evaluate, read_targets

KNOWN_FAILURES = {
    "madrs_esketamine_84mg_24h_aspire": "ASPIRE I (Fu 2020): -3.8 at 24 h against -10.9 simulated; its hospitalised, "
    "suicidal patients all received comprehensive standard of care (hospitalisation, new or optimised "
    "antidepressants), which the model (drug effect only, no placebo or standard-of-care response) does not "
    "represent; Daly 2018 and Canuso 2018 at the same dose pass",
    "glutamate_50_no_effect": "conflicts with glutamate_30 and glutamate_200 under one brain exposure: as the drug "
    "washes out, any dose passes through the disinhibition window, so 50 mg/kg shows a "
    "delayed rise within 3 h",
    "glutamate_200_anaesthetic": "read as the dialysis study reads it (20-min means), 200 mg/kg stays at 1.10: the "
    "HCN1 block (90 % at 78 uM) hyperpolarises the pyramidal cells by ~5 mV, less than the disinhibition of the "
    "NMDA-driven interneurons depolarises them; a stronger hypnotic mechanism (or the anaesthetic network state) "
    "is missing",
    "spines_24h": "model v2.1 caps spine formation at 3x its drug-free rate (Hofer 2009: 2x; Keck 2008: 3x; "
    "ketamine 1.3-1.7x in vivo), and new protrusions take ~14 h to become spines (Moda-Sava 2019: no rise at 3-6 h), "
    "so the density is 1.025 at 24 h (band >= 1.05, recalled; in vivo day 1: 1.054 +- 0.036, Phoumthipphavong 2016 "
    "deposited data); the ceiling is what keeps strong responders from running away now that new synapses carry "
    "drive (v2 passed with an unsourced 20x ceiling)",
    "madrs_esketamine_28mg_2h": "onset (Daly 2018, 2 h: -6.7): the empirical MADRS link reads the synapse-bound "
    "scaffold through a 1-day effect compartment, so the model's effect at 2 h is -0.2; no fast route to the score "
    "that bypasses the synaptic scaffold is modelled (README, 'Where the model disagrees')",
    "madrs_esketamine_84mg_2h": "onset (Daly 2018, 2 h: -7.9): as madrs_esketamine_28mg_2h; model -0.8",
    "madrs_esketamine_transform2_day28": "TRANSFORM-2 (Popova 2019): -4.0 at day 28 against a newly started oral "
    "antidepressant; the model (drug effect only, no active-comparator or placebo response) accumulates -11.2 over "
    "eight sessions; as ASPIRE I, the trial's control arm improves with its own new treatment",
    "memantine_clinical_no_effect": "memantine's steady block (<1 % of the NMDA receptors) raises eEF2-dependent "
    "translation and BDNF synthesis by ~0.2 % for as long as it is given, a synaptic signal 1/7 of the racemate's at "
    "24 h; "
    "the empirical MADRS link fitted to the three ketamine/esketamine points is steep at small effects (madrs_x50 "
    "0.0086) and turns it into -2.6 points (band +-2). In v2 the signal was cancelled by an over-sensitive Ca2+ -> "
    "programme chain",
}
TARGETS = read_targets()


@pytest.mark.parametrize("target", TARGETS, ids=[t.id for t in TARGETS])
def test_literature_target(target):
    if target.id in KNOWN_FAILURES:
        pytest.xfail(KNOWN_FAILURES[target.id])
    value = evaluate(target)
    assert math.isfinite(value)
    assert target.lower <= value <= target.upper, (
        f"{target.id}: simulated {value:.4g} {target.unit} outside [{target.lower}, {target.upper}] ({target.citation})"
    )


def test_known_failures_still_fail():
    """If a known failure starts passing, update KNOWN_FAILURES and the README."""
    for t in TARGETS:
        if t.id in KNOWN_FAILURES:
            v = evaluate(t)
            assert not (t.lower <= v <= t.upper), f"{t.id} now passes ({v:.4g}): remove it from KNOWN_FAILURES"


def test_dialysis_bins_are_time_averages_over_whole_sampling_intervals():
    import numpy as np
    import pandas as pd

    from analysis.analyses.validate import DIALYSIS_READOUT, dialysis_bins

    t = np.arange(0.0, 100.5, 0.5)  # min
    s = pd.Series(1.0 + np.where(t < 30, t / 30, 0.0), index=t)  # ramp to 2 over 30 min, then back to 1
    bins = dialysis_bins(s, 0.0, 95.0, 20.0)
    assert list(bins.index) == [0.0, 20.0, 40.0, 60.0]  # only whole bins inside [0, 95]
    assert bins.iloc[0] == pytest.approx(1.0 + 10 / 30, abs=1e-3)  # mean of the ramp over 0-20 min
    assert bins.iloc[1] == pytest.approx((10 + (30**2 - 20**2) / 60 + 10) / 20, abs=2e-2)  # ramp to 30 min, then 1
    assert bins.iloc[2] == pytest.approx(1.0) and bins.max() < s.max()  # binning flattens the peak
    assert DIALYSIS_READOUT.fullmatch("dialysis_min:20") and not DIALYSIS_READOUT.fullmatch("dialysis_min")
    with pytest.raises(ValueError, match="no whole"):
        dialysis_bins(s, 0.0, 10.0, 20.0)


def test_every_stage_is_covered():
    stages = {t.stage.split()[0] for t in TARGETS}
    assert {"1", "2", "3", "4", "5", "6", "7", "blockade"} <= stages
    assert len(TARGETS) >= 12


def test_serial_dosing_protocol_is_parsed_and_one_dose_equals_the_single_dose_run():
    from dataclasses import replace

    from analysis.analyses.validate import _interventions
    from analysis.core.tables import TableError

    with pytest.raises(TableError, match="both n_doses and dose_interval_h"):
        _interventions("n_doses=6")
    with pytest.raises(TableError, match="whole number"):
        _interventions("n_doses=2.5, dose_interval_h=56")
    single = next(t for t in TARGETS if t.id == "madrs_ketamine_24h")
    serial_one = replace(single, interventions={"n_doses": 1.0, "dose_interval_h": 56.0})
    assert evaluate(serial_one) == pytest.approx(evaluate(single), rel=1e-4)
    thrice = next(t for t in TARGETS if t.id == "madrs_ketamine_serial_thrice_weekly_day15")
    fewer = replace(thrice, interventions={"n_doses": 2.0, "dose_interval_h": 56.0})
    assert evaluate(thrice) < evaluate(fewer) < 0  # six infusions help more at day 15 than two


def test_tmax_readout_is_the_time_of_the_maximum():
    t = next(t for t in TARGETS if t.id == "pk_esketamine_84mg_intranasal_tmax")
    tmax = evaluate(t)
    assert 20 < tmax < 50  # first-order nasal absorption: a peak well after the dose
    from dataclasses import replace

    infusion = replace(t, interventions={}, dose=0.5)  # the racemate's 40-min IV infusion peaks at its end
    assert evaluate(infusion) == pytest.approx(40.0, abs=0.5)
