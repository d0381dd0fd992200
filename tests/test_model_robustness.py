"""The model-v2 robustness criterion on the shipped rat model: every parameter set drawn from the table's own
plausible ranges has a physiological, stable drug-free state, and 10 mg/kg neither switches it onto the runaway
branch nor makes the solver fail (issue 8, "A robust operating point")."""

import numpy as np
import pytest

from analysis.analyses import robustness as R


def _failures(df) -> list[str]:
    bad = df[~(df["ok"] & df["dosed_ok"])]
    return [f"{i}: {r['reason'] or r['dosed_reason']}"[:200] for i, r in bad.iterrows()]


def test_every_parameter_alone_at_either_range_end_holds_drug_free_and_after_10_mg_kg():
    ends = R.range_ends("rat", progress=False, dose=10.0)
    assert len(ends) == 2 * len(R.survey_parameters("rat")) >= 50
    assert not _failures(ends), _failures(ends)
    assert (ends["rate_pyr"] <= 20).all() and (ends["max_eigenvalue"] < 0).all()


#: Beyond the issue's criterion (measured and derived parameters): every table parameter, the assumed ones
#: included, alone at either end, in both species.  Until the Narp term of the interneuron homeostat (model v2,
#: item 3) the steepest pyramidal rate curve (v_slope_pyr 1.5 mV) failed here: the two homeostats' mode lost
#: its damping as the curve steepened (unstable below ~1.75 mV).
@pytest.mark.parametrize("species", ["rat", "human"])
def test_every_table_parameter_alone_at_either_end_holds(species):
    ids = R.survey_parameters(species, evidence=None)
    assert len(ids) > 2 * len(R.survey_parameters(species))  # the assumed parameters are in
    ends = R.range_ends(species, ids, progress=False, dose=10.0 if species == "rat" else 0.5)
    assert not _failures(ends), _failures(ends)


def test_1000_joint_log_uniform_subjects_hold_drug_free_and_after_10_mg_kg():
    box = R.joint_box("rat", 1000, seed=0, progress=False, dose=10.0)
    assert len(box) == 1000
    assert not _failures(box), _failures(box)
    # the homeostats hold each population at its set point; every state is stable (largest eigenvalue < 0)
    np.testing.assert_allclose(box["rate_pyr"], 2.0, rtol=1e-3)
    assert (box["max_eigenvalue"] < 0).all()


def test_the_box_also_holds_at_an_anaesthetic_dose():
    """Beyond the issue's 10 mg/kg: 200 mg/kg (anaesthetic in the rat) given to every range end and to the 1000
    joint subjects neither switches a circuit onto the runaway branch nor makes the solver fail.  A v3 with
    synapses that carry drive must hold here too: a steep synaptogenic switch inside that loop runs away above
    some dose even where the drug-free state is linearly stable (README, issue-8 analysis)."""
    ends = R.range_ends("rat", progress=False, dose=200.0)
    assert not _failures(ends), _failures(ends)
    box = R.joint_box("rat", 1000, seed=0, progress=False, dose=200.0)
    assert len(box) == 1000
    assert not _failures(box), _failures(box)
