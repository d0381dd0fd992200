"""Drug-free steady state, conservation, positivity, and dose response sanity."""

import numpy as np
import pytest

from analysis.core.model import OBSERVABLES

DAY = 86400.0
HIGH_DOSE = {"human": 5.0, "rat": 300.0}
POPS = ("int", "pyr")
STATES = ("C0", "C1", "O", "OB", "T1", "T0", "S", "OBn", "T1n", "T0n", "Sn")


def test_initial_values_are_the_drug_free_steady_state(model):
    rr = model.rr
    model.apply({"dose": 0.0})
    ids = list(rr.model.getFloatingSpeciesIds()) + list(rr.model.getRateRuleSymbols())
    for i in ids:
        amount = rr[i]
        assert abs(rr[f"{i}'"]) <= 1e-9 * (abs(amount) + 1e-6), i
    t = np.linspace(0, 7 * DAY, 50)
    df = model.simulate(t, {"dose": 0.0}, OBSERVABLES + ["glutamate", "spine_density"])
    for col in df:
        assert np.allclose(df[col], df[col].iloc[0], rtol=1e-6, atol=1e-12), col
    for col in [c for c in OBSERVABLES if c.endswith("_rel")]:
        assert df[col].iloc[0] == pytest.approx(1.0, abs=1e-12)


def test_receptor_fractions_conserved_and_bounded(model, species):
    obs = [f"nmda_{p}_{s}" for p in POPS for s in STATES] + ["ampa_C", "ampa_O", "ampa_D"]
    df = model.simulate(np.linspace(0, 2 * DAY, 400), {"dose": HIGH_DOSE[species]}, obs)
    for p in POPS:
        states = df[[f"nmda_{p}_{s}" for s in STATES]]
        total = states.sum(axis=1)
        assert np.allclose(total, total.iloc[0], rtol=1e-8)
        frac = states.div(total, axis=0)
        assert (frac.values >= -1e-9).all() and (frac.values <= 1 + 1e-9).all()
    ampa = df[["ampa_C", "ampa_O", "ampa_D"]].sum(axis=1)
    assert np.allclose(ampa, ampa.iloc[0], rtol=1e-8)


@pytest.mark.parametrize("scale", [0.1, 1.0, 10.0, 30.0])
def test_no_negative_concentrations_up_to_anaesthetic_doses(model, species, scale):
    dose = HIGH_DOSE[species] * scale / 30.0
    species_ids = list(model.rr.model.getFloatingSpeciesIds())
    df = model.simulate(np.linspace(0, 3 * DAY, 600), {"dose": dose}, species_ids + OBSERVABLES)
    worst = df.min()
    assert (worst >= -1e-9).all(), worst[worst < -1e-9]
    for b in ("nmda_block_int", "nmda_block_pyr"):
        assert df[b].max() <= 1.0 + 1e-9


def test_interneuron_preference_emerges_and_pyramidal_block_at_anaesthetic_dose(model, species):
    t = np.linspace(0, 6 * 3600, 721)
    low = model.simulate(t, {"dose": {"human": 0.5, "rat": 10.0}[species]})
    high = model.simulate(t, {"dose": HIGH_DOSE[species]})
    assert low.nmda_block_int.max() > 2 * low.nmda_block_pyr.max()
    # anaesthetic exposure (plasma above the 1.2 ug/ml = 5 uM anaesthetic level) blocks pyramidal NMDARs too
    assert high.ketamine_plasma.max() > 5.0
    assert high.nmda_block_pyr.max() > max(0.25, 2.5 * low.nmda_block_pyr.max())
    assert high.nmda_block_int.max() > 0.6


def test_runs_do_not_leak_into_each_other(model):
    t = np.linspace(0, DAY, 97)
    a = model.simulate(t, {"dose": 1.0})
    model.simulate(t, {"dose": 3.0, "inhib_mtorc1": 1.0, "t_dose": 600.0})
    b = model.simulate(t, {"dose": 1.0})
    assert np.array_equal(a.values, b.values)


def test_values_set_directly_on_the_roadrunner_object_do_not_leak(model):
    """A re-dose recipe sets inputs on ``model.rr`` directly; the next ``simulate`` starts from the shipped values."""
    t = np.linspace(0, DAY, 97)
    a = model.simulate(t, {"dose": 1.0})
    model.rr["t_dose"] = 1e30  # disarm the dose, as a user re-dosing by hand might
    model.rr["kon_ket"] = 0.5 * model.defaults["kon_ket"]
    b = model.simulate(t, {"dose": 1.0})
    assert np.array_equal(a.values, b.values)
