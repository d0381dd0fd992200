"""The exchanged SBML: valid, unit-consistent, annotated, and carrying the contract IDs."""

import libsbml
import pytest

from analysis.core.model import OBSERVABLES
from analysis.core.paths import sbml_path
from analysis.core.tables import read_parameters
from analysis.exchange.build import validation_messages
from analysis.exchange.report import _names as math_names

CONTRACT_INPUTS = ["dose", "t_dose", "body_weight", "inhib_ampa", "inhib_mtorc1", "inhib_trkb", "bdnf_secretion"]
UNITS = {"ketamine_plasma": "uM", "ketamine_brain": "uM", "rate_int": "Hz", "rate_pyr": "Hz"}


@pytest.fixture(scope="module")
def doc(species):
    return libsbml.readSBMLFromFile(str(sbml_path(species)))


def test_level_version_and_time_unit(doc):
    assert (doc.getLevel(), doc.getVersion()) == (3, 2)
    m = doc.getModel()
    assert m.getTimeUnits() == "second"
    assert m.getSubstanceUnits() == "umol" and m.getVolumeUnits() == "litre"


def test_validates_without_errors_or_unit_warnings(doc):
    assert validation_messages(doc) == []


def test_contract_ids_present_with_units(doc, species):
    m = doc.getModel()
    ids = CONTRACT_INPUTS + OBSERVABLES + (["infusion_duration"] if species == "human" else [])
    missing = [i for i in ids if m.getElementBySId(i) is None]
    assert missing == []
    for pid, unit in UNITS.items():
        assert m.getParameter(pid).getUnits() == unit
    for pid in OBSERVABLES:
        if pid not in UNITS:
            assert m.getParameter(pid).getUnits() == "dimensionless", pid


def test_every_element_has_sbo_term(doc):
    m = doc.getModel()
    lists = (m.getListOfSpecies(), m.getListOfReactions(), m.getListOfParameters(), m.getListOfCompartments())
    for lst in (*lists, m.getListOfEvents()):
        for el in lst:
            assert el.isSetSBOTerm(), f"{el.getId()} has no SBO term"
    for ev in m.getListOfEvents():  # a dose is a process (occurring entity), not a material entity
        assert libsbml.SBO.isOccurringEntityRepresentation(ev.getSBOTerm()), ev.getId()


def _resources(el):
    out = []
    for i in range(el.getNumCVTerms()):
        cv = el.getCVTerm(i)
        out += [cv.getResourceURI(j) for j in range(cv.getNumResources())]
    return out


def test_entities_carry_identifiers_org_annotations(doc, species):
    m = doc.getModel()
    for s in m.getListOfSpecies():
        res = _resources(s)
        assert res, f"species {s.getId()} has no annotation"
        assert all(r.startswith("https://identifiers.org/") for r in res)
    assert "https://identifiers.org/CHEBI:6121" in _resources(m.getSpecies("ket_central"))
    assert "https://identifiers.org/CHEBI:29985" in _resources(m.getSpecies("glutamate"))
    bdnf = {"human": "P23560", "rat": "P23363"}[species]
    assert f"https://identifiers.org/uniprot:{bdnf}" in _resources(m.getSpecies("bdnf_vesicle"))
    mtor = {"human": "P42345", "rat": "P42346"}[species]
    assert f"https://identifiers.org/uniprot:{mtor}" in _resources(m.getSpecies("mtorc1_p"))
    assert any("GO:" in r for r in _resources(m.getReaction("glutamate_uptake")))


def test_protein_accessions_are_well_formed_and_distinct():
    """UniProt accessions in proteins.tsv: the UniProt format, no accession used for two proteins or two species
    (an accession copied into the wrong row, like the mouse Htr6 entry once given as rat raptor, often is one)."""
    import re

    from analysis.core.tables import read_proteins

    pattern = re.compile(r"^([OPQ][0-9][A-Z0-9]{3}[0-9]|[A-NR-Z][0-9]([A-Z][A-Z0-9]{2}[0-9]){1,2})$")
    seen: dict[str, str] = {}
    for sym, row in read_proteins().items():
        for sp in ("human", "rat"):
            acc = row[sp].strip()
            if not acc:
                continue
            assert pattern.match(acc), f"{sym} ({sp}): {acc!r} is not a UniProt accession"
            assert acc not in seen, f"{acc} is given for both {seen[acc]} and {sym} ({sp})"
            seen[acc] = f"{sym} ({sp})"


def test_rat_raptor_has_no_unverified_accession(doc, species):
    resources = _resources(doc.getModel().getSpecies("mtorc1_p"))
    assert "https://identifiers.org/uniprot:Q9R1C8" not in resources  # mouse Htr6, not rat raptor
    if species == "human":
        assert "https://identifiers.org/uniprot:Q8N122" in resources


def test_model_level_metadata(doc, species):
    """Notes (what, how to dose, where it comes from), the taxon and the main citations on the model element."""
    m = doc.getModel()
    notes = m.getNotesString()
    assert f"the {species} model" in notes and "Exchange contract observables" in notes and "dose" in notes
    assert "not edited by hand" in notes
    taxon = {"rat": "taxonomy:10116", "human": "taxonomy:9606"}[species]
    terms = [m.getCVTerm(i) for i in range(m.getNumCVTerms())]
    has_taxon = [t for t in terms if t.getBiologicalQualifierType() == libsbml.BQB_HAS_TAXON]
    assert [t.getResourceURI(0) for t in has_taxon] == [f"https://identifiers.org/{taxon}"]
    described = [t for t in terms if t.getModelQualifierType() == libsbml.BQM_IS_DESCRIBED_BY]
    assert described and described[0].getNumResources() >= 3


def test_baselines_are_constant_numbers_at_the_drug_free_state(doc, species):
    """The ``*_baseline`` reference values ship as constants (no initial assignment a simulator could re-evaluate
    from a changed state), equal to the drug-free initial state: every ``*_rel`` is 1 at t = 0."""
    import roadrunner

    m = doc.getModel()
    baselines = [p for p in m.getListOfParameters() if p.getId().endswith("_baseline")]
    assert len(baselines) == 8
    assert all(p.getConstant() and p.isSetValue() for p in baselines)
    assert not [ia.getSymbol() for ia in m.getListOfInitialAssignments() if ia.getSymbol().endswith("_baseline")]
    rr = roadrunner.RoadRunner(str(sbml_path(species)))
    rel = {i: rr[i] for i in rr.model.getGlobalParameterIds() if i.endswith("_rel")}
    assert len(rel) >= 8 and all(abs(v - 1.0) < 1e-14 for v in rel.values()), rel


def test_parameter_values_equal_table(doc, species):
    m = doc.getModel()
    for pid, p in read_parameters(species).items():
        el = m.getParameter(pid)
        assert el is not None, pid
        assert el.getValue() == p.value, pid
        assert el.getUnits() == p.unit, pid


def test_initial_values_are_a_clean_drug_free_state(doc, species):
    """No negative initial concentration, and every drug state (0 in the model sources) is exactly 0, so the
    drug-free Newton solve sees it as a structural zero and its reduced Jacobian is nonsingular.  (A -5.8e-12 uM
    residue in the human pump once shipped; every human equilibrated run then fell back to the slow relaxation.)"""
    import numpy as np

    from analysis.core import steady_state
    from analysis.core.model import load_model

    negative = [s.getId() for s in doc.getModel().getListOfSpecies() if s.getInitialConcentration() < 0]
    assert not negative, negative
    m = load_model(species)
    m.apply({"t_dose": 1e30})
    try:
        jac = steady_state.grouped_jacobian(m.rr, m.space)[0]
    finally:
        m.apply({})
    q = m.space.free_basis
    reduced = q.T @ jac @ q
    assert np.linalg.matrix_rank(reduced) == reduced.shape[0]
    for pid in ("ket_pump", "ket_depot", "ket_central", "nmda_int_OB"):
        if pid in m.space.ids:
            assert m.space.ids.index(pid) - m.space.n_rules in m.space.structural_zeros, pid


def test_events_read_no_assignment_rule_parameters(doc):
    """Event triggers, delays and assignments use only species, compartments and plain parameters: AMICI 1.0 does
    not substitute parameter assignment rules into event code, and the models failed to compile there while the
    dose events read `dose_amount`."""
    m = doc.getModel()
    ruled = {r.getVariable() for r in m.getListOfRules() if r.isAssignment() and m.getParameter(r.getVariable())}
    used = {}
    for ev in m.getListOfEvents():
        maths = [ev.getTrigger().getMath()] + [a.getMath() for a in ev.getListOfEventAssignments()]
        if ev.isSetDelay():
            maths.append(ev.getDelay().getMath())
        for math in maths:
            for name in math_names(math) & ruled:
                used.setdefault(ev.getId(), set()).add(name)
    assert used == {}


def test_dose_events_give_dose_amount(species):
    """The dose events spell out dose * body_weight / mw_ketamine (above); what they give stays `dose_amount`."""
    import roadrunner

    r = roadrunner.RoadRunner(str(sbml_path(species)))
    r["dose"], r["t_dose"] = 7.0, 0.0
    r["body_weight"] = 1.3 * r["body_weight"]
    r.reset()  # the t = 0 event fires here
    given = r["ket_depot"] / r["f_ip"] if species == "rat" else r["ket_pump"]  # umol
    assert given == pytest.approx(r["dose_amount"], rel=1e-12)
    assert given == pytest.approx(7.0 * r["body_weight"] / r["mw_ketamine"], rel=1e-12)
