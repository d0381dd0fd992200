"""SED-ML (Level 1 Version 3) description of the standard simulation experiments.

The experiments run the shipped SBML files (``ketamine_cascade_<species>.xml``, model time unit
second) for 7 days (``human_drugs`` for 14 days) and report every contract observable
(:data:`analysis.core.model.OBSERVABLES`), plus the species' own ones (``madrs_change`` for human,
:data:`analysis.core.model.SPECIES_OBSERVABLES`), against time:

* ``human_infusion`` - human, 0.5 mg/kg IV infusion over 2400 s;
* ``rat_ip`` - rat, 10 mg/kg i.p.;
* ``rat_dose`` - rat, 3, 10, 30 and 200 mg/kg i.p.;
* ``rat_interventions`` - rat, 10 mg/kg i.p. with control, rapamycin, NBQX, anti-BDNF, an L-type channel blocker and
  Val66Met, and the four inhibitors alone (no ketamine);
* ``human_drugs`` - human, each drug preset of ``models/drugs.tsv`` at its clinical dose, 14 days;
* ``rat_drugs`` - rat, 10 mg/kg i.p. of the racemate, esketamine and arketamine presets.

Every scenario is a SED-ML ``<model>`` whose ``changeAttribute`` elements set the inputs in the SBML
document *before* it is loaded.  The dose event (trigger ``time >= t_dose``) therefore fires with the
changed inputs in every simulator, including at ``t_dose = 0``.  Repeated tasks with ``setValue``
are deliberately not used: several tools reset the model (and so evaluate the t = 0 trigger) before
applying a ``setValue``, which would give the default dose.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import libsbml
import numpy as np

from analysis.core.drugs import PROTOCOLS, drug_parameters
from analysis.core.io import write_text_atomic
from analysis.core.model import OBSERVABLES, SPECIES_OBSERVABLES, CascadeModel
from analysis.core.steady_state import REL_TOLERANCE

if TYPE_CHECKING:
    import libsedml

SEDML_LEVEL = 1
SEDML_VERSION = 3
SEDML_NAME = "ketamine_cascade.sedml"
SBML_NS = "http://www.sbml.org/sbml/level3/version2/core"
SBML_LANGUAGE = "urn:sedml:language:sbml.level-3.version-2"
TIME_SYMBOL = "urn:sedml:symbol:time"
KISAO_CVODE = "KISAO:0000019"
#: CVODE settings (KiSAO id -> value): the package's relative tolerance (analysis.core.steady_state.REL_TOLERANCE,
#: 1e-7; at libroadrunner's default 1e-6 the global error of the v2 model reaches ~2e-4) and libroadrunner's
#: absolute tolerance 1e-12 (the package uses a per-state vector of that size, which SED-ML cannot express).
ALGORITHM_PARAMETERS = {"KISAO:0000209": REL_TOLERANCE, "KISAO:0000211": 1e-12}  # relative, absolute tolerance
DAY = 86400.0
#: Simulated days of an experiment unless it says otherwise.
DEFAULT_DAYS = 7
#: Drug presets simulated in the rat experiment ``rat_drugs`` (rows for species 'both' or 'rat' in drugs.tsv).
RAT_PRESETS = ("racemic_ketamine", "esketamine", "arketamine")
#: Output points per simulated day (one per minute).
STEPS_PER_DAY = 1440


def _lib() -> ModuleType:
    """libsedml, imported on first use only.

    libsedml wraps libsbml's ``ASTNode`` again: once it is imported, ``libsbml.ASTNode.getType()``
    returns an opaque SWIG pointer instead of an int for the rest of the process (``isRelational()``
    and the other boolean tests keep working).  Importing it lazily keeps that away from processes
    that only build or simulate.
    """
    return importlib.import_module("libsedml")


class SedmlError(ValueError):
    """The SED-ML document could not be generated or does not validate."""


@dataclass(frozen=True)
class Scenario:
    """One simulated condition: model inputs (SBML parameter id -> value in its SBML unit)."""

    id: str
    species: str
    changes: Mapping[str, float]
    name: str


@dataclass(frozen=True)
class Experiment:
    """A group of scenarios reported (and plotted) together, simulated for ``days`` days."""

    id: str
    name: str
    scenarios: Sequence[Scenario] = field(default_factory=tuple)
    days: int = DEFAULT_DAYS

    @property
    def simulation_id(self) -> str:
        return simulation_id(self.days)

    @property
    def t_end(self) -> float:
        """Simulated time (s)."""
        return self.days * DAY

    @property
    def n_steps(self) -> int:
        """Output intervals (one per minute)."""
        return self.days * STEPS_PER_DAY


def simulation_id(days: int) -> str:
    """Id of the uniform time course of ``days`` days ('sim_7d')."""
    return f"sim_{days}d"


def experiment_observables(species: str, observables: Sequence[str] = OBSERVABLES) -> list[str]:
    """The observables an experiment of ``species`` reports: ``observables`` and the species' own ones."""
    return [*observables, *(o for o in SPECIES_OBSERVABLES.get(species, ()) if o not in observables)]


def standard_experiments() -> list[Experiment]:
    """The standard simulation experiments (doses in mg/kg, times in s, inhibitions as fractions)."""
    rat_doses = (3.0, 10.0, 30.0, 200.0)
    interventions = {
        "control": ({}, "control"),
        "rapamycin": ({"inhib_mtorc1": 1.0}, "rapamycin (mTORC1 fully inhibited)"),
        "nbqx": ({"inhib_ampa": 0.9}, "NBQX (AMPA receptors 90% antagonised)"),
        "anti_bdnf": ({"inhib_trkb": 0.9}, "anti-BDNF (TrkB signalling 90% blocked)"),
        "ltype": ({"inhib_ltype": 0.9}, "L-type Ca2+ channel blocker (90% of L-type Ca2+ entry blocked)"),
        "val66met": (
            {"bdnf_secretion": 0.5},
            "Val66Met (BDNF sorting into the regulated pathway halved; from its drug-free state)",
        ),
    }
    drug_scenarios = tuple(
        Scenario(
            f"human_{re.sub(r'[^a-z0-9]+', '_', name.lower()).strip('_')}",
            "human",
            {**drug_parameters(p.drug, "human"), **p.inputs},
            f"human, {name} ({p.drug} preset)",
        )
        for name, p in PROTOCOLS.items()
    )
    rat_drug_scenarios = tuple(  # the presets that have rat rows (memantine's PK is human only)
        Scenario(f"rat_{drug}_10", "rat", {**drug_parameters(drug, "rat"), "dose": 10.0}, f"rat 10 mg/kg i.p., {drug}")
        for drug in RAT_PRESETS
    )
    return [
        Experiment(
            "human_infusion",
            "Human, 0.5 mg/kg IV infusion over 40 min (2400 s)",
            (Scenario("human_infusion", "human", {"dose": 0.5, "infusion_duration": 2400.0}, "human 0.5 mg/kg IV"),),
        ),
        Experiment(
            "human_escalating_infusion",
            "Human, 3-step escalating IV infusion, 0.28, 0.57 and 1.14 mg/kg over 60 min each (Kamp et al. 2020)",
            (
                Scenario(
                    "human_escalating_infusion",
                    "human",
                    {"dose": 0.28, "infusion_duration": 3600.0, "dose_step2": 0.57, "dose_step3": 1.14},
                    "human escalating IV infusion (Kamp 2020 racemic regimen)",
                ),
            ),
        ),
        Experiment(
            "rat_ip",
            "Rat, 10 mg/kg i.p.",
            (Scenario("rat_ip", "rat", {"dose": 10.0}, "rat 10 mg/kg i.p."),),
        ),
        Experiment(
            "rat_dose",
            "Rat, dose comparison 3, 10, 30, 200 mg/kg i.p.",
            tuple(Scenario(f"rat_dose_{d:g}", "rat", {"dose": d}, f"rat {d:g} mg/kg i.p.") for d in rat_doses),
        ),
        Experiment(
            "rat_interventions",
            "Rat, 10 mg/kg i.p. with interventions, and each inhibitor alone (no ketamine) as its control",
            tuple(
                Scenario(f"rat_{key}", "rat", {"dose": 10.0, **extra}, f"rat 10 mg/kg i.p., {label}")
                for key, (extra, label) in interventions.items()
            )
            + tuple(  # an inhibitor held for 7 days lowers synaptic proteins and spines on its own
                Scenario(f"rat_{key}_alone", "rat", {"dose": 0.0, **extra}, f"rat, no ketamine, {label}")
                for key, (extra, label) in interventions.items()
                if key in ("rapamycin", "nbqx", "anti_bdnf", "ltype")
            ),
        ),
        Experiment(
            "human_drugs",
            "Human, drug presets (drugs.tsv) at their clinical doses, 14 days",
            drug_scenarios,
            days=14,  # memantine's constant 14-day input, and the compare-drugs horizon
        ),
        Experiment("rat_drugs", "Rat, 10 mg/kg i.p. of the racemate and of each enantiomer preset", rat_drug_scenarios),
    ]


def sbml_file_name(species: str) -> str:
    """File name of one species' SBML (also its location in the COMBINE archive)."""
    return f"ketamine_cascade_{species}.xml"


def _xpath(model: libsbml.Model, sid: str, attribute: str | None = None) -> str:
    """XPath of a species or parameter of the SBML model (optionally of one of its attributes)."""
    if model.getSpecies(sid) is not None:
        path = f"/sbml:sbml/sbml:model/sbml:listOfSpecies/sbml:species[@id='{sid}']"
    elif model.getParameter(sid) is not None:
        path = f"/sbml:sbml/sbml:model/sbml:listOfParameters/sbml:parameter[@id='{sid}']"
    else:
        raise SedmlError(f"{sid!r} is neither a species nor a parameter of {model.getId()}")
    return f"{path}/@{attribute}" if attribute else path


def _read_models(sbml_dir: Path, species: set[str]) -> dict[str, libsbml.Model]:
    docs = {}
    for sp in sorted(species):
        path = sbml_dir / sbml_file_name(sp)
        if not path.exists():
            raise SedmlError(f"SBML file not found: {path}")
        docs[sp] = libsbml.readSBMLFromFile(str(path))
    return docs


def _check(code: int, what: str) -> None:
    if code != _lib().LIBSEDML_OPERATION_SUCCESS:
        raise SedmlError(f"libsedml failed to {what}: {_lib().OperationReturnValue_toString(code)}")


def _baseline_of(sbml: libsbml.Model, observable: str) -> str | None:
    """The ``*_baseline`` constant that a ``*_rel`` observable's rule divides by (None if there is none)."""
    rule = sbml.getAssignmentRuleByVariable(observable)
    if rule is None:
        return None
    found = re.findall(r"\b(\w+_baseline)\b", libsbml.formulaToL3String(rule.getMath()))
    return found[-1] if found else None


def equilibrated_start(model: CascadeModel, sc: Scenario, sbml: libsbml.Model) -> dict[str, float]:
    """Where the package starts a run of ``sc``: {} when its changes leave the drug-free physiology alone (inputs);
    otherwise the drug-free steady state of the changed parameters (e.g. the Val66Met genotype), as SBML values.

    The package equilibrates such a run and expresses every ``*_rel`` relative to that state
    (:meth:`analysis.core.model.CascadeModel.simulate`).  Another simulator gets the same run when the SED-ML sets
    the state (species' initial concentrations in uM, rate-ruled parameters) and the ``*_baseline`` constants to
    their values there; only values that differ from the SBML's are returned.
    """
    changes = {p: float(v) for p, v in sc.changes.items()}
    if not model.changes_physiology(changes):
        return {}
    check = model.drug_free_state(changes)
    if not check.ok:
        raise SedmlError(f"scenario {sc.id}: no drug-free steady state to start from ({check.reason})")
    rr = model.rr
    state = {sid: float(rr[sid]) for sid in [*model.floating, *sorted(model.rate_rules)]}
    for obs in [p.getId() for p in sbml.getListOfParameters() if p.getId().endswith("_rel")]:
        base = _baseline_of(sbml, obs)
        if base is not None:  # the rule's numerator at the new state: *_rel x the shipped constant
            state[base] = float(rr[obs]) * float(rr[base])
    model.apply({})
    shipped = {s.getId(): s.getInitialConcentration() for s in sbml.getListOfSpecies()}
    shipped.update({p.getId(): p.getValue() for p in sbml.getListOfParameters()})
    return {sid: v for sid, v in state.items() if not np.isclose(v, shipped[sid], rtol=1e-12, atol=0.0)}


def _add_model(doc: libsedml.SedDocument, sc: Scenario, sbml: libsbml.Model, engine: CascadeModel) -> None:
    """SED-ML model of one scenario: the species' SBML file with a changeAttribute per changed input, and, for
    changes of physiology, per value of the drug-free state they start from (:func:`equilibrated_start`)."""
    m = doc.createModel()
    _check(m.setId(f"model_{sc.id}"), f"set model id for {sc.id}")
    m.setName(sc.name)
    m.setLanguage(SBML_LANGUAGE)
    m.setSource(sbml_file_name(sc.species))
    for pid, value in sc.changes.items():
        if sbml.getParameter(pid) is None:
            raise SedmlError(f"scenario {sc.id}: {pid!r} is not a parameter of {sbml.getId()}")
        if sbml.getParameter(pid).getValue() == float(value):
            continue  # already the SBML's value: only real changes are listed
        ch = m.createChangeAttribute()
        ch.setTarget(_xpath(sbml, pid, "value"))
        ch.setNewValue(repr(float(value)))
    start = equilibrated_start(engine, sc, sbml)
    # parameters before species: tellurium applies the changes in reverse document order, and its setting of an
    # initial concentration resets the parameters set before it (measured with tellurium 2.2)
    for sid in sorted(start, key=lambda k: sbml.getSpecies(k) is not None):
        ch = m.createChangeAttribute()
        ch.setTarget(_xpath(sbml, sid, "initialConcentration" if sbml.getSpecies(sid) is not None else "value"))
        ch.setNewValue(repr(start[sid]))


def _add_simulation(doc: libsedml.SedDocument, days: int) -> None:
    sim = doc.createUniformTimeCourse()
    sim.setId(simulation_id(days))
    sim.setName(f"{days} days from the drug-free steady state, one output per minute (time in s)")
    sim.setInitialTime(0.0)
    sim.setOutputStartTime(0.0)
    sim.setOutputEndTime(days * DAY)
    sim.setNumberOfSteps(days * STEPS_PER_DAY)
    alg = sim.createAlgorithm()
    alg.setKisaoID(KISAO_CVODE)
    for kisao, value in ALGORITHM_PARAMETERS.items():
        p = alg.createAlgorithmParameter()
        p.setKisaoID(kisao)
        p.setValue(repr(value))


def _add_data_generator(
    doc: libsedml.SedDocument, dg_id: str, task_id: str, name: str, target: str | None = None
) -> None:
    """Data generator = one variable of one task (``target`` XPath; time if ``target`` is None)."""
    dg = doc.createDataGenerator()
    _check(dg.setId(dg_id), f"set data generator id {dg_id}")
    dg.setName(name)
    var = dg.createVariable()
    var.setId(f"v_{dg_id}")
    var.setTaskReference(task_id)
    if target is None:
        var.setSymbol(TIME_SYMBOL)
    else:
        var.setTarget(target)
    dg.setMath(_lib().parseL3Formula(var.getId()))


def data_generator_id(scenario_id: str, observable: str) -> str:
    """Id of the data generator of ``observable`` ('time' for time) in one scenario."""
    return f"dg_{scenario_id}_{observable}"


def _add_task(
    doc: libsedml.SedDocument, sc: Scenario, sbml: libsbml.Model, observables: Sequence[str], sim_id: str
) -> None:
    task = doc.createTask()
    task.setId(f"task_{sc.id}")
    task.setName(sc.name)
    task.setModelReference(f"model_{sc.id}")
    task.setSimulationReference(sim_id)
    _add_data_generator(doc, data_generator_id(sc.id, "time"), task.getId(), "time")
    for obs in observables:
        _add_data_generator(doc, data_generator_id(sc.id, obs), task.getId(), obs, _xpath(sbml, obs))


def _unit_label(sbml: libsbml.Model, sid: str) -> str:
    el = sbml.getSpecies(sid) or sbml.getParameter(sid)
    if isinstance(el, libsbml.Species):
        return "uM"
    return el.getUnits() if el is not None and el.isSetUnits() else "1"


def _add_outputs(doc: libsedml.SedDocument, exp: Experiment, sbml: libsbml.Model, observables: Sequence[str]) -> None:
    """One report (time + every observable of every scenario) and one plot per observable."""
    report = doc.createReport()
    report.setId(f"report_{exp.id}")
    report.setName(f"{exp.name}: contract observables vs time (s)")
    for sc in exp.scenarios:
        for obs in ("time", *observables):
            ds = report.createDataSet()
            ds.setId(f"ds_{sc.id}_{obs}")
            ds.setLabel(f"{sc.id}.{obs}" if len(exp.scenarios) > 1 else obs)
            ds.setDataReference(data_generator_id(sc.id, obs))
    for obs in observables:
        plot = doc.createPlot2D()
        plot.setId(f"plot_{exp.id}_{obs}")
        plot.setName(f"{exp.name}: {obs} [{_unit_label(sbml, obs)}] vs time [s]")
        for sc in exp.scenarios:
            curve = plot.createCurve()
            curve.setId(f"curve_{sc.id}_{obs}")
            curve.setName(sc.name)
            curve.setLogX(False)
            curve.setLogY(False)
            curve.setXDataReference(data_generator_id(sc.id, "time"))
            curve.setYDataReference(data_generator_id(sc.id, obs))


def build_sedml(
    sbml_dir: Path,
    experiments: Sequence[Experiment] | None = None,
    observables: Sequence[str] = OBSERVABLES,
) -> libsedml.SedDocument:
    """SED-ML document of ``experiments`` (default: :func:`standard_experiments`) on the SBML in ``sbml_dir``.

    Each experiment reports ``observables`` and its species' own ones (:func:`experiment_observables`) over
    its own duration (``Experiment.days``, one uniform time course per distinct duration).
    Model sources are the bare SBML file names, so the SED-ML must sit next to the SBML files
    (as in ``sbml/`` and in the COMBINE archive).  Raises :class:`SedmlError` if a changed input
    or an observable is not in the SBML.
    """
    experiments = list(experiments if experiments is not None else standard_experiments())
    models = {
        sp: d.getModel()
        for sp, d in _read_models(sbml_dir, {s.species for e in experiments for s in e.scenarios}).items()
    }
    doc = _lib().SedDocument(SEDML_LEVEL, SEDML_VERSION)
    doc.getNamespaces().add(SBML_NS, "sbml")
    for days in sorted({exp.days for exp in experiments}):
        _add_simulation(doc, days)
    engines = {sp: CascadeModel(sbml_dir / sbml_file_name(sp)) for sp in models}  # loaded once per species
    for exp in experiments:
        for sc in exp.scenarios:
            _add_model(doc, sc, models[sc.species], engines[sc.species])
            _add_task(doc, sc, models[sc.species], experiment_observables(sc.species, observables), exp.simulation_id)
    for exp in experiments:
        species = exp.scenarios[0].species
        _add_outputs(doc, exp, models[species], experiment_observables(species, observables))
    return doc


def _reference_errors(doc: libsedml.SedDocument) -> list[str]:
    """Dangling references (task -> model/simulation, variable -> task, output -> data generator, math -> ids)."""
    models = {m.getId() for m in doc.getListOfModels()}
    sims = {s.getId() for s in doc.getListOfSimulations()}
    tasks = {t.getId() for t in doc.getListOfTasks()}
    dgs = {d.getId() for d in doc.getListOfDataGenerators()}
    out = []
    for t in doc.getListOfTasks():
        if t.getModelReference() not in models or t.getSimulationReference() not in sims:
            out.append(f"task {t.getId()}: unknown model or simulation reference")
    for dg in doc.getListOfDataGenerators():
        names = set()
        for v in dg.getListOfVariables():
            names.add(v.getId())
            if v.getTaskReference() not in tasks:
                out.append(f"data generator {dg.getId()}: unknown task {v.getTaskReference()!r}")
        math = dg.getMath()
        if math is None or not _math_names(math) <= names:
            out.append(f"data generator {dg.getId()}: math missing or refers to unknown variables")
    for o in doc.getListOfOutputs():
        refs = (
            [d.getDataReference() for d in o.getListOfDataSets()]
            if o.getTypeCode() == _lib().SEDML_OUTPUT_REPORT
            else []
        )
        if o.getTypeCode() == _lib().SEDML_OUTPUT_PLOT2D:
            refs = [r for c in o.getListOfCurves() for r in (c.getXDataReference(), c.getYDataReference())]
        out.extend(f"output {o.getId()}: unknown data generator {r!r}" for r in refs if r not in dgs)
    return out


def _missing_required(el: libsedml.SedBase) -> bool:
    if el.getTypeCode() == _lib().SEDML_OUTPUT_CURVE and (el.getLevel(), el.getVersion()) < (1, 4):
        # libsedml 2.0 demands the L1V4 attribute 'type' of curves in every version; check L1V3's own
        return not (el.isSetXDataReference() and el.isSetYDataReference() and el.isSetLogX() and el.isSetLogY())
    return not (el.hasRequiredAttributes() and el.hasRequiredElements())


def _math_names(ast: libsedml.ASTNode) -> set[str]:
    names = {ast.getName()} if ast.isName() else set()
    for i in range(ast.getNumChildren()):
        names |= _math_names(ast.getChild(i))
    return names


def sedml_errors(text: str) -> list[str]:
    """Problems of a SED-ML document (text): libsedml read errors, missing required attributes, dangling ids.

    libsedml's Python bindings have no full consistency checker, so the read-back error log
    (schema-level problems of severity error or fatal) is combined with checks of the required
    attributes/elements of every object and of every cross-reference.
    """
    doc = _lib().readSedMLFromString(text)
    log = doc.getErrorLog()
    out = [
        f"{log.getError(i).getErrorId()}: {log.getError(i).getMessage().strip()}"
        for i in range(log.getNumErrors())
        if log.getError(i).getSeverity() >= _lib().LIBSEDML_SEV_ERROR
    ]
    elements = doc.getListOfAllElements()  # a SWIG list: index it (iterating it never stops)
    for el in [doc, *(elements.get(i) for i in range(elements.getSize()))]:
        if _missing_required(el):
            out.append(f"{el.getElementName()} {el.getId()}: missing required attribute or element")
    return out + _reference_errors(doc)


def sedml_string(sbml_dir: Path) -> str:
    """The standard experiments as SED-ML text; raises :class:`SedmlError` if it does not validate."""
    doc = build_sedml(sbml_dir)
    text = _lib().writeSedMLToString(doc)
    errors = sedml_errors(text)
    if errors:
        raise SedmlError("generated SED-ML does not validate:\n" + "\n".join(errors))
    return text


def write_sedml(sbml_dir: Path, path: Path | None = None) -> Path:
    """Write the SED-ML of the standard experiments (default ``<sbml_dir>/ketamine_cascade.sedml``), atomically."""
    sbml_dir = Path(sbml_dir)
    return write_text_atomic(path or sbml_dir / SEDML_NAME, sedml_string(sbml_dir))
