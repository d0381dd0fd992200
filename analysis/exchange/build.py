"""Build the exchanged SBML files from the Antimony sources and tables in ``models/``.

Pipeline (deterministic: same sources -> byte-identical files)::

    models/*.ant + parameters.tsv  --antimony-->  SBML L3V2
    + units.tsv, annotations.tsv, proteins.tsv   (units, SBO terms, identifiers.org)
    + drug-free steady state written as the initial values
    + libsbml validation (no errors, no unit warnings)   -->  sbml/ketamine_cascade_<species>.xml
"""

from __future__ import annotations

import re
from pathlib import Path

import antimony
import libsbml

from analysis.core import steady_state
from analysis.core.io import write_text_atomic
from analysis.core.paths import MODELS, SBML_DIR, SPECIES, sbml_path
from analysis.core.tables import (
    Parameter,
    TableError,
    read_annotations,
    read_parameters,
    read_proteins,
    read_units,
)
from analysis.exchange.metadata import CITATIONS, CREATOR, DESCRIPTION, LICENSE_URI, TAXA, allowed_inputs

#: Antimony modules (defined once, instantiated in the fragments) and the
#: fragments composed, in order, into each species' model.  One file per stage.
MODULES = ["nmda_receptor.ant"]
#: Every stage after pharmacokinetics is shared by both species.
SHARED_FRAGMENTS = [
    "brain_exposure.ant",
    "circuit.ant",
    "glutamate_ampa.ant",
    "signalling.ant",
    "synaptogenesis.ant",
    "homeostasis.ant",
    "outputs.ant",
]
#: Species-specific stages after the shared ones (the clinical readout exists for human only).
EXTRA_FRAGMENTS = {"human": ["clinical_human.ant"]}
FRAGMENTS = {sp: [f"pk_{sp}.ant", *SHARED_FRAGMENTS, *EXTRA_FRAGMENTS.get(sp, [])] for sp in SPECIES}
MODEL_UNITS = {"substance": "umol", "extent": "umol", "time": "second", "volume": "litre"}
QUALIFIERS = {
    "is": libsbml.BQB_IS,
    "isVersionOf": libsbml.BQB_IS_VERSION_OF,
    "hasPart": libsbml.BQB_HAS_PART,
    "occursIn": libsbml.BQB_OCCURS_IN,
    "isHomologTo": libsbml.BQB_IS_HOMOLOG_TO,
    "hasProperty": libsbml.BQB_HAS_PROPERTY,  # a phosphorylated form: MOD:00046 (phospho-Ser), 00047 (-Thr), 00696
    "isPropertyOf": libsbml.BQB_IS_PROPERTY_OF,
}
#: Significant digits kept for the computed steady-state initial values.
SS_DIGITS = 12


class BuildError(RuntimeError):
    """The model could not be built into valid, consistent SBML."""


def model_id(species: str) -> str:
    return f"ketamine_cascade_{species}"


def antimony_source(species: str, params: dict[str, Parameter] | None = None) -> str:
    """The complete Antimony text of one species' model (modules, fragments, parameter values)."""
    if species not in SPECIES:
        raise ValueError(f"unknown species {species!r}; expected one of {SPECIES}")
    params = params if params is not None else read_parameters(species)
    parts = [(MODELS / f).read_text(encoding="utf-8") for f in MODULES]
    parts.append(f"model {model_id(species)}()")
    for f in FRAGMENTS[species]:
        parts.append(f"// ---- {f} ----\n" + (MODELS / f).read_text(encoding="utf-8"))
    parts.append("// ---- parameters.tsv ----")
    parts.extend(f"{p.id} = {p.value!r}" for p in params.values())
    parts.append("end\n")
    return "\n".join(parts)


def antimony_to_sbml(source: str, mid: str) -> libsbml.SBMLDocument:
    """Translate Antimony text to a flattened SBML L3V2 document."""
    antimony.clearPreviousLoads()
    if antimony.loadAntimonyString(source) < 0:
        raise BuildError(f"Antimony error: {antimony.getLastError()}")
    sbml = antimony.getSBMLString(mid)
    if not sbml:
        raise BuildError(f"Antimony produced no SBML for {mid}: {antimony.getLastError()}")
    doc = libsbml.readSBMLFromString(sbml)
    if doc.getNumErrors(libsbml.LIBSBML_SEV_ERROR) + doc.getNumErrors(libsbml.LIBSBML_SEV_FATAL):
        raise BuildError(f"Antimony output is not valid SBML: {doc.getErrorLog().toString()}")
    return doc


def _check(code: int, what: str) -> None:
    if code != libsbml.LIBSBML_OPERATION_SUCCESS:
        raise BuildError(f"libsbml failed to {what}: {libsbml.OperationReturnValue_toString(code)}")


def add_unit_definitions(model: libsbml.Model) -> None:
    """Replace Antimony's unit definitions by those of ``units.tsv``."""
    while model.getNumUnitDefinitions():
        model.removeUnitDefinition(0)
    for uid, terms in read_units().items():
        ud = model.createUnitDefinition()
        _check(ud.setId(uid), f"set unit id {uid}")
        for kind, exp, scale, mult in terms:
            u = ud.createUnit()
            u.setKind(libsbml.UnitKind_forName(kind))
            u.setExponent(exp)
            u.setScale(scale)
            u.setMultiplier(mult)
    model.setSubstanceUnits(MODEL_UNITS["substance"])
    model.setExtentUnits(MODEL_UNITS["extent"])
    model.setTimeUnits(MODEL_UNITS["time"])
    model.setVolumeUnits(MODEL_UNITS["volume"])


def _uri(token: str, species: str, proteins: dict[str, dict[str, str]]) -> str | None:
    """identifiers.org URI of an annotation token; ``{SYMBOL}`` is the species' UniProt accession from
    proteins.tsv.  None where that accession is left empty (no verified entry for the species)."""
    missing = False

    def sub(m: re.Match) -> str:
        nonlocal missing
        sym = m.group(1)
        if sym not in proteins:
            raise TableError(f"annotations.tsv: unknown protein symbol {sym!r} (add it to proteins.tsv)")
        missing = missing or not proteins[sym][species].strip()
        return proteins[sym][species].strip()

    uri = "https://identifiers.org/" + re.sub(r"\{(\w+)\}", sub, token)
    return None if missing else uri


def _set_notes(el: libsbml.SBase, text: str) -> None:
    xhtml = f'<body xmlns="http://www.w3.org/1999/xhtml"><p>{_xml_escape(text)}</p></body>'
    _check(el.setNotes(xhtml), f"set notes of {el.getId()}")


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def annotate(model: libsbml.Model, species: str, params: dict[str, Parameter]) -> None:
    """Units, SBO terms, identifiers.org CV terms and notes on every model element."""
    notes = read_annotations()
    proteins = read_proteins()
    elements: dict[str, libsbml.SBase] = {}
    for lst in (
        model.getListOfCompartments(),
        model.getListOfSpecies(),
        model.getListOfParameters(),
        model.getListOfReactions(),
        model.getListOfEvents(),
    ):
        for el in lst:
            elements[el.getId()] = el
    for sid, el in elements.items():
        if not el.isSetMetaId():
            el.setMetaId(f"meta_{sid}")
        # name = id, so that every simulator (COPASI addresses parameters by name) shows the
        # contract ids; the human-readable description goes into the element's notes
        el.setName(sid)
        if sid in params:
            p = params[sid]
            _check(el.setSBOTerm(p.sbo), f"set SBO of {sid}")
            _check(el.setUnits(p.unit), f"set units of {sid}")
            _set_notes(el, f"{p.description} [{p.unit}]. Source: {p.source} ({p.evidence}).")
            continue
        if sid not in notes:
            raise BuildError(f"{sid!r} has no row in models/annotations.tsv (or parameters.tsv)")
        row = notes[sid]
        _set_notes(el, row["description"].replace("CONTRACT ", "Exchange contract observable: "))
        if row["sbo"]:
            _check(el.setSBOTerm(row["sbo"]), f"set SBO of {sid}")
        if row["unit"]:
            if isinstance(el, libsbml.Species):
                _check(el.setSubstanceUnits(MODEL_UNITS["substance"]), f"set units of {sid}")
            else:
                _check(el.setUnits(row["unit"]), f"set units of {sid}")
        for term in filter(None, (t.strip() for t in row["annotations"].split(";"))):
            qual, token = term.split()
            uri = _uri(token, species, proteins)
            if uri is None:  # no verified accession of this protein for this species (proteins.tsv)
                continue
            cv = libsbml.CVTerm(libsbml.BIOLOGICAL_QUALIFIER)
            cv.setBiologicalQualifierType(QUALIFIERS[qual])
            cv.addResource(uri)
            _check(el.addCVTerm(cv), f"annotate {sid}")
    for r in model.getListOfReactions():
        r.setReversible(False)  # every flux is written irreversibly (net fluxes are separate reactions)


def _units_of(model: libsbml.Model, ast: libsbml.ASTNode) -> str | None:
    """Declared units of a bare identifier (species as concentration, parameter, compartment)."""
    if not ast.isName():
        return None
    sid = ast.getName()
    if model.getSpecies(sid) is not None:
        return "uM"
    el = model.getParameter(sid) or model.getCompartment(sid)
    return el.getUnits() if el is not None and el.isSetUnits() else None


def set_number_units(model: libsbml.Model) -> None:
    """Give every literal number in the model's math a unit.

    A literal zero compared with, or standing in for, a quantity (``x > 0``,
    ``piecewise(rate, cond, 0)``, an event assigning ``x = 0``) takes that
    quantity's units; every other literal is dimensionless.
    """

    def zero_units(ast: libsbml.ASTNode, units: str | None) -> None:
        if units and ast.isNumber() and ast.getValue() == 0 and not ast.hasUnits():
            ast.setUnits(units)

    def visit(ast: libsbml.ASTNode | None) -> None:
        if ast is None:
            return
        kids = [ast.getChild(i) for i in range(ast.getNumChildren())]
        # isRelational()/isPiecewise(), not getType(): once libsedml is imported in the same process,
        # libsbml's getType() returns an opaque SWIG object
        if ast.isRelational() and len(kids) == 2:
            zero_units(kids[1], _units_of(model, kids[0]))
            zero_units(kids[0], _units_of(model, kids[1]))
        if ast.isPiecewise() and kids:
            for k in kids[2::2] if len(kids) % 2 else kids[2::2]:
                zero_units(k, _units_of(model, kids[0]))
        if ast.isNumber() and not ast.hasUnits():
            ast.setUnits("dimensionless")
        for k in kids:
            visit(k)

    maths = [r.getMath() for r in model.getListOfRules()]
    maths += [r.getKineticLaw().getMath() for r in model.getListOfReactions()]
    maths += [ia.getMath() for ia in model.getListOfInitialAssignments()]
    for e in model.getListOfEvents():
        maths.append(e.getTrigger().getMath())
        for ea in e.getListOfEventAssignments():
            target = model.getSpecies(ea.getVariable())
            zero_units(ea.getMath(), "uM" if target is not None else None)
            maths.append(ea.getMath())
    for m in maths:
        visit(m)


#: Suffix of the drug-free reference values of the ``*_rel`` observables (models/outputs.ant).
BASELINE_SUFFIX = "_baseline"


def check_parameter_table(model: libsbml.Model, params: dict[str, Parameter]) -> None:
    """The model's free parameters and the table must match one to one, with equal values.

    The ``*_baseline`` reference values are not table parameters: the shipped file carries them as numbers
    evaluated at the drug-free state (:func:`freeze_baselines`)."""
    ruled = {r.getVariable() for r in model.getListOfRules()}
    ruled |= {p.getId() for p in model.getListOfParameters() if p.getId().endswith(BASELINE_SUFFIX)}
    ruled |= {ia.getSymbol() for ia in model.getListOfInitialAssignments()}
    ruled |= {ea.getVariable() for e in model.getListOfEvents() for ea in e.getListOfEventAssignments()}
    free = {p.getId(): p for p in model.getListOfParameters() if p.getId() not in ruled}
    missing = sorted(set(free) - set(params))
    unused = sorted(set(params) - set(free))
    if missing or unused:
        raise BuildError(
            f"model and models/parameters.tsv disagree: in the model but not the table {missing}; "
            f"in the table but not the model {unused}"
        )
    for pid, p in free.items():
        if p.getValue() != params[pid].value:
            raise BuildError(f"parameter {pid}: model value {p.getValue()} != table value {params[pid].value}")


#: Residue (amount) below which a drug state (0 in the model sources) is set to exactly 0 in the shipped drug-free
#: state; the steady-state check that follows fails the build if that was not a drug-free steady state.
BUILD_ZERO_SNAP = 1e-9


def steady_state_values(sbml: str) -> dict[str, float]:
    """Drug-free steady state (dose = 0) of every state variable, rounded to SS_DIGITS."""
    import roadrunner

    rr = roadrunner.RoadRunner(sbml)
    rr["dose"] = 0.0
    rr.reset()
    rr.integrator.absolute_tolerance = 1e-12
    rr.integrator.relative_tolerance = 1e-9
    # relax through the fast (ms) and slow (weeks, homeostats) time scales from the designed state, which is
    # near its steady state (no pseudo-transient start needed), then Newton-polish the slowest
    space = steady_state.state_space(rr)
    try:
        steady_state.pre_run(rr, fast_start=False)
    except RuntimeError:
        # CVODE can stall where the homeostats' synaptic scaling has its kink (homeo_scale = 1, min(scale, 1)),
        # which the drug-free state sits next to; a full Newton solve from where it stopped finishes the job
        # (the check below decides whether it did).
        steady_state._newton(rr, space, steady_state.CONTINUATION_ITERATIONS * 4, drug_free=False)
    steady_state.polish(rr, space, drug_free=False)
    # drug states (0 in the sources) are exactly 0 at any drug-free state; CVODE's corrector can leave residue of a
    # few 1e-12 in one whose rate is identically 0 (the human pump: -5.8e-12 uM), which would then ship as a
    # negative initial value and hide the state from the structural zeros that the drug-free Newton solve needs
    steady_state.snap_structural_zeros(rr, space, BUILD_ZERO_SNAP)
    species = list(rr.model.getFloatingSpeciesIds())
    ids = species + list(rr.model.getRateRuleSymbols())
    # species as concentrations ([id]); rate-rule parameters by value
    raw = {i: rr[f"[{i}]" if i in species else i] for i in ids}
    # drug-related states relax to zero; drop solver round-off (|x| < 1e-15 uM)
    values = {i: float(f"{v:.{SS_DIGITS}g}") if abs(v) > 1e-15 else 0.0 for i, v in raw.items()}
    amounts = {i: rr[i] for i in ids}
    # |dx/dt| relative to the state, with an absolute floor for states that are ~0 (drug-bound)
    rel = {i: abs(rr[f"{i}'"]) / (abs(amounts[i]) + 1e-6) for i in ids}
    worst = max(rel.values())
    if worst > 1e-9:
        raise BuildError(
            f"drug-free steady state not reached (max relative |dx/dt| = {worst:.3g} /s, {max(rel, key=rel.get)})"
        )
    return values


def apply_initial_values(model: libsbml.Model, values: dict[str, float]) -> None:
    for sid, v in values.items():
        s = model.getSpecies(sid)
        if s is not None:
            _check(s.setInitialConcentration(v), f"set initial value of {sid}")
        else:
            _check(model.getParameter(sid).setValue(v), f"set initial value of {sid}")


def freeze_baselines(doc: libsbml.SBMLDocument) -> dict[str, float]:
    """Replace the ``*_baseline`` initial assignments of models/outputs.ant by their values at the shipped initial
    (drug-free) state, so that the exchanged file carries them as constant numbers.

    The sources define each baseline by its expression (``glutamate_baseline = glutamate``).  As an SBML initial
    assignment it would be re-evaluated by any simulator that re-initialises from a changed state (COPASI's
    ``update_model``, a PEtab pre-equilibration), silently rescaling every ``*_rel``, and AMICI's PEtab import stops
    on it (libpetab keeps parameters with non-numeric initial assignments out of its mapping).  The values are
    evaluated by libroadrunner with the same arithmetic as the model's own rules; the file keeps 15 significant
    digits, so every ``*_rel`` is 1 at t = 0 to within 1e-15.  Returns {id: value}.
    """
    import roadrunner

    model = doc.getModel()
    ids = [ia.getSymbol() for ia in model.getListOfInitialAssignments() if ia.getSymbol().endswith(BASELINE_SUFFIX)]
    rr = roadrunner.RoadRunner(libsbml.writeSBMLToString(doc))
    values = {sid: float(rr[sid]) for sid in ids}
    for sid, value in values.items():
        if model.removeInitialAssignment(sid) is None:
            raise BuildError(f"libsbml failed to remove the initial assignment of {sid}")
        p = model.getParameter(sid)
        _check(p.setValue(value), f"set the value of {sid}")
        _check(p.setConstant(True), f"make {sid} constant")
    return values


def validation_messages(doc: libsbml.SBMLDocument) -> list[tuple[str, int, str]]:
    """libsbml consistency check (general, identifiers, units, MathML, SBO, overdetermined).

    Returns (severity, error id, message) of every problem found.
    """
    doc.setConsistencyChecks(libsbml.LIBSBML_CAT_UNITS_CONSISTENCY, True)
    doc.setConsistencyChecks(libsbml.LIBSBML_CAT_MODELING_PRACTICE, False)
    doc.checkConsistency()
    out = []
    for i in range(doc.getNumErrors()):
        e = doc.getError(i)
        out.append((e.getSeverityAsString(), e.getErrorId(), e.getMessage().strip()))
    return out


def describe_model(model: libsbml.Model, species: str) -> None:
    """Model-level metadata: notes (what the model is, how to dose it, where it comes from), the taxon and the
    main citations (:mod:`analysis.exchange.metadata`, shared with the COMBINE archive)."""
    from analysis.core.model import INPUT_RANGES, OBSERVABLES

    inputs = [pid for pid in INPUT_RANGES if model.getParameter(pid) is not None]
    paragraphs = [
        f"{DESCRIPTION} This file: the {species} model.",
        "Dosing: set the inputs, then reset to the initial values (the drug-free steady state) and simulate. To "
        "dose again in libroadrunner, move t_dose past the current time and continue without a reset; in COPASI, "
        "carry the end state into the model, then move t_dose. Inputs and their allowed values: "
        + allowed_inputs(inputs)
        + " (units in each parameter's notes; time in s, "
        "concentrations in uM).",
        "Exchange contract observables (stable ids; every *_rel is relative to the shipped drug-free state, whose "
        "values the constant *_baseline parameters hold; after changing a physiological parameter, divide by the "
        "value at the new drug-free state): " + ", ".join(OBSERVABLES) + ".",
        "Generated from the Antimony sources and parameter tables of ketamine-cascade (models/) by "
        "analysis.exchange.build; not edited by hand. Every parameter's notes give its unit, source and evidence. "
        f"Creator: {CREATOR}. License: {LICENSE_URI}.",
    ]
    body = "".join(f"<p>{_xml_escape(p)}</p>" for p in paragraphs)
    _check(model.setNotes(f'<body xmlns="http://www.w3.org/1999/xhtml">{body}</body>'), "set model notes")
    if not model.isSetMetaId():
        model.setMetaId(f"meta_{model.getId()}")
    taxon = libsbml.CVTerm(libsbml.BIOLOGICAL_QUALIFIER)
    taxon.setBiologicalQualifierType(libsbml.BQB_HAS_TAXON)
    taxon.addResource(TAXA[species])
    _check(model.addCVTerm(taxon), "annotate the model's taxon")
    cited = libsbml.CVTerm(libsbml.MODEL_QUALIFIER)
    cited.setModelQualifierType(libsbml.BQM_IS_DESCRIBED_BY)
    for uri in CITATIONS:
        cited.addResource(uri.replace("http://", "https://", 1))
    _check(model.addCVTerm(cited), "annotate the model's citations")


def build_sbml(species: str) -> str:
    """Build, annotate, equilibrate and validate one species' SBML; return it as text."""
    params = read_parameters(species)
    doc = antimony_to_sbml(antimony_source(species, params), model_id(species))
    model = doc.getModel()
    model.setName(
        f"Ketamine cascade ({species}): PK, NMDA trapping block, disinhibition, "
        "glutamate/AMPA, mTORC1/BDNF, synaptogenesis"
    )
    check_parameter_table(model, params)
    add_unit_definitions(model)
    annotate(model, species, params)
    describe_model(model, species)
    set_number_units(model)
    apply_initial_values(model, steady_state_values(libsbml.writeSBMLToString(doc)))
    freeze_baselines(doc)
    problems = validation_messages(doc)
    if problems:
        text = "\n".join(f"  {sev} {eid}: {msg[-400:]}" for sev, eid, msg in problems)
        raise BuildError(f"SBML for {species} does not validate cleanly:\n{text}")
    return libsbml.writeSBMLToString(doc)


def build_all(outdir: Path | None = None) -> list[Path]:
    """Build every species' SBML into ``outdir`` (default ``sbml/``), atomically, then the exchange
    files generated from it: SED-ML, model reports and the COMBINE archive; for the default ``outdir`` also the
    PEtab problems in ``models/petab/`` (:mod:`analysis.calibration.petab_problem`)."""
    from analysis.exchange import write_exchange_files

    outdir = Path(outdir) if outdir is not None else SBML_DIR
    texts = {sp: build_sbml(sp) for sp in SPECIES}  # build all before writing any
    written = [write_text_atomic(outdir / sbml_path(sp).name, text) for sp, text in texts.items()]
    written += write_exchange_files(outdir)
    if outdir == SBML_DIR:  # the shipped build: also the PEtab problems, which point at sbml/
        from analysis.calibration.petab_problem import write_problems

        written += write_problems()
    return written


if __name__ == "__main__":  # pragma: no cover
    for p in build_all():
        print(p)
