"""The equilibrium block used by the validation (IC50 = koff / (kon * mgfree)) is what the
NMDA receptor module actually does: simulate the module alone, clamped at fixed ketamine,
voltage and Mg2+, with the parameter values of the shipped table."""

import math

import antimony
import pytest
import roadrunner

from analysis.core.paths import MODELS
from analysis.core.tables import read_parameters


def clamp_model(ket: float, v: float, mg: float, pop: str):
    p = read_parameters("rat")
    src = (
        (MODELS / "nmda_receptor.ant").read_text()
        + f"""
model clamp()
  compartment brain = 1
  species C0 in brain, C1 in brain, O in brain, OB in brain, T1 in brain, T0 in brain, glu in brain
  species S in brain, OBn in brain, T1n in brain, T0n in brain, Sn in brain
  C0 = 1; C1 = 0; O = 0; OB = 0; T1 = 0; T0 = 0; S = 0; OBn = 0; T1n = 0; T0n = 0; Sn = 0; glu = 10
  R: nmda_receptor(C0, C1, O, OB, T1, T0, S, OBn, T1n, T0n, Sn, brain, glu, occ, ket, nor, mg, v, kon_glu, koff_glu, \
                   kopen, kclose, kon, koff, f_trap, kon_nor, koff_nor, f_trap_nor, k_escape, k0, delta, mgfree, \
                   block, open_unblocked)
  glu' = 0
  occ = 1; ket = {ket}; nor = 0; mg = {mg}; v = {v}
  f_trap = {p["f_trap_ket"].value}; kon_nor = {p["kon_nor"].value}; koff_nor = {p["koff_nor"].value}
  f_trap_nor = {p["f_trap_nor"].value}; k_escape = {p["k_trap_escape"].value}
  kon_glu = {p["k_nmda_glu_on"].value}; koff_glu = {p[f"k_nmda_glu_off_{pop}"].value}
  kopen = {p[f"k_nmda_open_{pop}"].value}; kclose = {p["k_nmda_close"].value}
  kon = {p["kon_ket"].value}; koff = {p["koff_ket"].value}
  k0 = {p[f"mg_k0_{pop}"].value}; delta = {p["mg_delta"].value}
end
"""
    )
    antimony.clearPreviousLoads()
    assert antimony.loadAntimonyString(src) >= 0, antimony.getLastError()
    return roadrunner.RoadRunner(antimony.getSBMLString("clamp")), p


@pytest.mark.parametrize("pop,v,mg", [("pyr", -70.0, 0.0), ("pyr", -66.0, 1.0), ("int", -66.0, 1.0)])
def test_block_at_ic50_is_half(pop, v, mg):
    rr, p = clamp_model(1.0, v, mg, pop)
    mgfree = 1.0 / (1.0 + mg / p[f"mg_k0_{pop}"].value * math.exp(-p["mg_delta"].value * v))
    ic50 = p["koff_ket"].value / (p["kon_ket"].value * mgfree)
    rr["ket"] = ic50
    rr.simulate(0, 2e5, 2)
    assert rr["block"] == pytest.approx(0.5, abs=1e-4)


def test_trapping_keeps_block_without_agonist():
    """Ketamine trapped in closed channels stays when the agonist is removed (full trapping)."""
    rr, _ = clamp_model(10.0, -70.0, 0.0, "pyr")
    rr.simulate(0, 600, 2)
    blocked = rr["block"]
    rr["glu"] = 0.0
    rr["ket"] = 0.0
    rr.simulate(600, 4200, 2)
    assert blocked > 0.5
    assert rr["block"] == pytest.approx(blocked, rel=0.02)  # only channels open at removal escape


def test_partial_trapping_releases_the_untrapped_fraction():
    """Memantine-like partial trapping (f_trap 0.8, escape tau 0.79 s; Kotermanski, Wood & Johnson 2009):
    after agonist removal about a fifth of the block leaves within seconds and the rest stays trapped."""
    rr, _ = clamp_model(10.0, -70.0, 0.0, "pyr")
    rr["f_trap"] = 0.8
    rr.simulate(0, 600, 2)
    blocked = rr["block"]
    rr["glu"] = 0.0
    rr["ket"] = 0.0
    rr.simulate(600, 610, 2)
    released = 1 - rr["block"] / blocked
    assert 0.1 < released < 0.35
    rr.simulate(610, 1200, 2)
    assert 1 - rr["block"] / blocked == pytest.approx(released, abs=0.01)  # the trapped part stays
