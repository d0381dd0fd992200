"""Model report generated from an SBML file (Markdown): equations, rules, events, reactions, parameters.

Everything in the report is read from the SBML document itself (math via libsbml's L3 formula
syntax, units, SBO terms, identifiers.org annotations and the notes written by the build, which
carry each parameter's description, unit, source and evidence).  The plausible range of a
parameter is added from ``models/parameters.tsv`` when the table has the parameter.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import libsbml

from analysis.core.io import write_text_atomic
from analysis.core.tables import Parameter, read_parameters

_SETTINGS = libsbml.L3ParserSettings()
_SETTINGS.setParseUnits(False)  # literal numbers are written without their (mostly dimensionless) units


class ReportError(ValueError):
    """The SBML file cannot be reported (missing or unreadable)."""


# -- small text helpers -----------------------------------------------------------------------------
def formula(math: libsbml.ASTNode | None) -> str:
    """L3 infix text of a MathML expression (literal numbers without units); '' if absent."""
    return libsbml.formulaToL3StringWithSettings(math, _SETTINGS) if math is not None else ""


def cell(text: object) -> str:
    """Text safe inside a Markdown table cell (pipes escaped, no line breaks)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def code(text: object) -> str:
    """Inline code in a table cell ('' stays empty)."""
    t = cell(text)
    return f"`{t}`" if t else ""


def notes_text(el: libsbml.SBase) -> str:
    """Plain text of an element's notes (the build writes one XHTML paragraph)."""
    if not el.isSetNotes():
        return ""
    raw = re.sub(r"<[^>]+>", " ", el.getNotesString())
    return " ".join(html.unescape(raw).split())


def annotation_uris(el: libsbml.SBase) -> list[str]:
    """'qualifier: URI' for every controlled-vocabulary term of ``el``."""
    out = []
    for i in range(el.getNumCVTerms()):
        cv = el.getCVTerm(i)
        if cv.getQualifierType() == libsbml.BIOLOGICAL_QUALIFIER:
            qual = libsbml.BiolQualifierType_toString(cv.getBiologicalQualifierType())
        else:
            qual = libsbml.ModelQualifierType_toString(cv.getModelQualifierType())
        out.extend(f"{qual}: {cv.getResourceURI(j)}" for j in range(cv.getNumResources()))
    return out


def number(x: float) -> str:
    """Shortest round-trip text of a float ('' for NaN = unset)."""
    return "" if x != x else repr(float(x))


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Markdown table lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(r) + " |" for r in rows)
    return lines


# -- model sections ---------------------------------------------------------------------------------
def _species_unit(model: libsbml.Model, sp: libsbml.Species) -> str:
    sub = sp.getSubstanceUnits() or model.getSubstanceUnits()
    if sp.getHasOnlySubstanceUnits():
        return sub
    vol = model.getCompartment(sp.getCompartment()).getUnits() or model.getVolumeUnits()
    return f"{sub}/{vol} (= uM)" if (sub, vol) == ("umol", "litre") else f"{sub}/{vol}"


def _targets(model: libsbml.Model) -> dict[str, list[str]]:
    """How each variable is determined: assignment/rate rule, initial assignment, event."""
    out: dict[str, list[str]] = {}
    for r in model.getListOfRules():
        kind = "rate rule" if r.isRate() else "assignment rule" if r.isAssignment() else "algebraic rule"
        out.setdefault(r.getVariable(), []).append(kind)
    for ia in model.getListOfInitialAssignments():
        out.setdefault(ia.getSymbol(), []).append("initial assignment")
    for e in model.getListOfEvents():
        for ea in e.getListOfEventAssignments():
            out.setdefault(ea.getVariable(), []).append(f"event {e.getId()}")
    return out


def _names(ast: libsbml.ASTNode | None) -> set[str]:
    """Identifiers in an expression ('time' for the time csymbol)."""
    if ast is None:
        return set()
    # the csymbol's definition URL, not getType(): with libsedml loaded too, SWIG warns on the enum return type
    is_time = ast.getDefinitionURLString() == "http://www.sbml.org/sbml/symbols/time"
    out = {"time"} if is_time else {ast.getName()} if ast.isName() else set()
    for i in range(ast.getNumChildren()):
        out |= _names(ast.getChild(i))
    return out


def _time_varying(model: libsbml.Model, sid: str, targets: dict[str, list[str]], seen: frozenset = frozenset()) -> bool:
    """Can ``sid`` change during a simulation (rate rule, event, or an assignment rule on something that can)?"""
    kinds = targets.get(sid, [])
    if sid == "time" or sid in seen or any(k == "rate rule" or k.startswith("event") for k in kinds):
        return True
    sp = model.getSpecies(sid)
    if sp is not None:
        return not (sp.getConstant() or sp.getBoundaryCondition())
    if "assignment rule" in kinds:
        math = model.getAssignmentRule(sid).getMath()
        return any(_time_varying(model, n, targets, seen | {sid}) for n in _names(math))
    return False


def _header(model: libsbml.Model, source: str) -> list[str]:
    counts = {
        "compartments": model.getNumCompartments(),
        "species": model.getNumSpecies(),
        "reactions": model.getNumReactions(),
        "parameters": model.getNumParameters(),
        "rules": model.getNumRules(),
        "initial assignments": model.getNumInitialAssignments(),
        "events": model.getNumEvents(),
    }
    return [
        f"# Model report: `{model.getId()}`",
        "",
        f"{model.getName()}",
        "",
        f"Generated from `{source}` by `analysis.exchange.report` (do not edit; rebuilt with the SBML).",
        f"Model units: time `{model.getTimeUnits()}`, substance `{model.getSubstanceUnits()}`, "
        f"volume `{model.getVolumeUnits()}`; species are concentrations in uM unless stated.",
        "Math is written in libsbml's L3 infix syntax; literal numbers are dimensionless in the SBML "
        "unless they stand for a quantity (then they carry that quantity's unit).",
        "",
        ", ".join(f"{n} {k}" for k, n in counts.items()) + ".",
        "",
    ]


def _units_section(model: libsbml.Model) -> list[str]:
    rows = [
        (code(u.getId()), cell(libsbml.UnitDefinition.printUnits(u, True))) for u in model.getListOfUnitDefinitions()
    ]
    return ["## Units", "", *table(["id", "definition"], rows), ""]


def _compartments_section(model: libsbml.Model, targets: dict[str, list[str]], initial: dict[str, float]) -> list[str]:
    rows = []
    for c in model.getListOfCompartments():
        ia = model.getInitialAssignment(c.getId())
        rule = model.getAssignmentRule(c.getId())
        if ia is not None:
            size = f"= {formula(ia.getMath())}"
        elif rule is not None:  # sized by a rule (e.g. body weight): the formula and its default value
            size = f"= {formula(rule.getMath())} ({number(initial.get(c.getId(), float('nan')))})"
        else:
            size = number(c.getSize())
        rows.append(
            (
                code(c.getId()),
                code(size),
                code(c.getUnits()),
                cell(c.getSBOTermID()),
                cell("; ".join(annotation_uris(c))),
                cell(notes_text(c)),
            )
        )
    return ["## Compartments", "", *table(["id", "size", "unit", "SBO", "annotations", "description"], rows), ""]


def _species_section(model: libsbml.Model) -> list[str]:
    rows = []
    for s in model.getListOfSpecies():
        flags = [f for f, on in (("boundary", s.getBoundaryCondition()), ("constant", s.getConstant())) if on]
        init = number(s.getInitialAmount() if s.isSetInitialAmount() else s.getInitialConcentration())
        rows.append(
            (
                code(s.getId()),
                code(s.getCompartment()),
                cell(init),
                cell(_species_unit(model, s)),
                cell(", ".join(flags)),
                cell(s.getSBOTermID()),
                cell("; ".join(annotation_uris(s))),
                cell(notes_text(s)),
            )
        )
    header = ["id", "compartment", "initial value", "unit", "flags", "SBO", "annotations", "description"]
    return ["## Species", "", *table(header, rows), ""]


def _stoich_terms(model: libsbml.Model) -> dict[str, list[str]]:
    """Species id -> signed 'n*reaction' terms of its rate of change (amount per time)."""
    terms: dict[str, list[str]] = {}

    def add(sid: str, n: float, rid: str, sign: str) -> None:
        factor = "" if n == 1 else f"{n:g}*"
        terms.setdefault(sid, []).append(f"{sign} {factor}{rid}")

    for r in model.getListOfReactions():
        for ref in r.getListOfReactants():
            add(ref.getSpecies(), ref.getStoichiometry(), r.getId(), "-")
        for ref in r.getListOfProducts():
            add(ref.getSpecies(), ref.getStoichiometry(), r.getId(), "+")
    return terms


def _odes_section(model: libsbml.Model, targets: dict[str, list[str]]) -> list[str]:
    """Every ODE: species from reactions (divided by their compartment volume) and rate rules."""
    terms = _stoich_terms(model)
    lines = [
        "## Ordinary differential equations",
        "",
        "Reaction rates are extents per time (umol/s); a species in concentration units changes by the "
        "sum of stoichiometry x rate divided by its compartment's volume.",
    ]
    varying = [c.getId() for c in model.getListOfCompartments() if _time_varying(model, c.getId(), targets)]
    if not varying:
        lines.append("No compartment volume changes during a simulation (volumes depend on constants only).")
    lines += ["", "```"]
    for s in model.getListOfSpecies():
        sid = s.getId()
        if s.getBoundaryCondition() or s.getConstant():
            continue
        if sid not in terms:
            lines.append(f"d[{sid}]/dt = 0  (in no reaction; changed only by events)")
            continue
        rhs = " ".join(terms[sid]).lstrip("+ ").strip()
        rhs = rhs if not rhs.startswith("- ") else "-" + rhs[2:]
        if s.getHasOnlySubstanceUnits():
            lines.append(f"d{sid}/dt = {rhs}")
        else:
            dilution = (
                f" - [{sid}]/{s.getCompartment()} * d{s.getCompartment()}/dt" if s.getCompartment() in varying else ""
            )
            lines.append(f"d[{sid}]/dt = ({rhs}) / {s.getCompartment()}{dilution}")
    for r in model.getListOfRules():
        if r.isRate():
            lines.append(f"d{r.getVariable()}/dt = {formula(r.getMath())}")
    lines += ["```", ""]
    return lines


def _rules_section(model: libsbml.Model) -> list[str]:
    lines = ["## Assignment rules", "", "```"]
    lines += [f"{r.getVariable()} = {formula(r.getMath())}" for r in model.getListOfRules() if r.isAssignment()]
    lines += ["```", "", "## Initial assignments", "", "```"]
    lines += [f"{ia.getSymbol()} = {formula(ia.getMath())}" for ia in model.getListOfInitialAssignments()]
    lines += ["```", ""]
    return lines


def _events_section(model: libsbml.Model) -> list[str]:
    lines = ["## Events", ""]
    for e in model.getListOfEvents():
        trig = e.getTrigger()
        lines += [
            f"### `{e.getId()}`",
            "",
            notes_text(e),
            "",
            f"- trigger: `{formula(trig.getMath())}` (initialValue={str(trig.getInitialValue()).lower()}, "
            f"persistent={str(trig.getPersistent()).lower()})",
            f"- delay: `{formula(e.getDelay().getMath())}`" if e.isSetDelay() else "- delay: none",
            f"- priority: `{formula(e.getPriority().getMath())}`" if e.isSetPriority() else "- priority: none",
            f"- useValuesFromTriggerTime: {str(e.getUseValuesFromTriggerTime()).lower()}",
            "- assignments:",
        ]
        lines += [f"  - `{ea.getVariable()} = {formula(ea.getMath())}`" for ea in e.getListOfEventAssignments()]
        lines.append("")
    return lines


def _reaction_equation(r: libsbml.Reaction) -> str:
    def side(refs: libsbml.ListOfSpeciesReferences) -> str:
        parts = [f"{'' if x.getStoichiometry() == 1 else f'{x.getStoichiometry():g} '}{x.getSpecies()}" for x in refs]
        return " + ".join(parts) or "∅"

    arrow = "<->" if r.getReversible() else "->"
    mods = [m.getSpecies() for m in r.getListOfModifiers()]
    eq = f"{side(r.getListOfReactants())} {arrow} {side(r.getListOfProducts())}"
    return eq + (f"; modifiers {', '.join(mods)}" if mods else "")


def _reactions_section(model: libsbml.Model) -> list[str]:
    rows = []
    for r in model.getListOfReactions():
        kl = r.getKineticLaw()
        local = [f"{p.getId()}={number(p.getValue())}" for p in kl.getListOfLocalParameters()] if kl else []
        rows.append(
            (
                code(r.getId()),
                code(_reaction_equation(r)),
                code(formula(kl.getMath() if kl else None)) + (f" ({cell(', '.join(local))})" if local else ""),
                cell(r.getSBOTermID()),
                cell("; ".join(annotation_uris(r))),
                cell(notes_text(r)),
            )
        )
    header = ["id", "equation", "rate (kinetic law, umol/s)", "SBO", "annotations", "description"]
    return ["## Reactions", "", *table(header, rows), ""]


def _initial_values(sbml_path: Path) -> dict[str, float]:
    """Every global parameter's and compartment's value at t = 0 (rules evaluated at the drug-free initial state),
    by libroadrunner."""
    import roadrunner

    rr = roadrunner.RoadRunner(str(sbml_path))
    ids = list(rr.model.getGlobalParameterIds()) + list(rr.model.getCompartmentIds())
    return {sid: float(rr[sid]) for sid in ids}


def _parameters_section(
    model: libsbml.Model,
    targets: dict[str, list[str]],
    table_rows: dict[str, Parameter],
    initial: dict[str, float],
) -> list[str]:
    rows = []
    for p in model.getListOfParameters():
        pid = p.getId()
        row = table_rows.get(pid)
        rng = f"{row.lower:g} - {row.upper:g}" if row is not None else ""
        value = p.getValue() if p.isSetValue() else initial.get(pid, float("nan"))
        rows.append(
            (
                code(pid),
                cell(number(value)),
                code(p.getUnits()),
                cell(p.getSBOTermID()),
                cell(", ".join(targets.get(pid, [])) or ("constant" if p.getConstant() else "")),
                cell(rng),
                cell("; ".join(annotation_uris(p))),
                cell(notes_text(p)),
            )
        )
    header = ["id", "value", "unit", "SBO", "determined by", "plausible range", "annotations", "description and source"]
    return [
        "## Parameters",
        "",
        "Values are those in the SBML; for parameters set by an assignment rule, the rule's value at the drug-free "
        "initial state (libroadrunner). "
        "The plausible range is from `models/parameters.tsv`.",
        "",
        *table(header, rows),
        "",
    ]


def _species_of(model: libsbml.Model) -> str | None:
    return next((sp for sp in ("human", "rat") if model.getId().endswith(sp)), None)


def report_markdown(sbml_path: Path) -> str:
    """The Markdown report of one SBML file."""
    sbml_path = Path(sbml_path)
    if not sbml_path.exists():
        raise ReportError(f"SBML file not found: {sbml_path}")
    doc = libsbml.readSBMLFromFile(str(sbml_path))
    model = doc.getModel()
    if model is None or doc.getNumErrors(libsbml.LIBSBML_SEV_ERROR) + doc.getNumErrors(libsbml.LIBSBML_SEV_FATAL):
        raise ReportError(f"cannot read SBML model from {sbml_path}")
    species = _species_of(model)
    table_rows = read_parameters(species) if species else {}
    targets = _targets(model)
    lines = _header(model, sbml_path.name)
    lines += _odes_section(model, targets)
    lines += _rules_section(model)
    lines += _events_section(model)
    lines += _reactions_section(model)
    initial = _initial_values(sbml_path)
    lines += _parameters_section(model, targets, table_rows, initial)
    lines += _compartments_section(model, targets, initial)
    lines += _species_section(model)
    lines += _units_section(model)
    return "\n".join(lines).rstrip() + "\n"


def report_path(sbml_path: Path) -> Path:
    """``sbml/ketamine_cascade_<species>.xml`` -> ``sbml/ketamine_cascade_<species>.md``."""
    return Path(sbml_path).with_suffix(".md")


def write_report(sbml_path: Path, path: Path | None = None) -> Path:
    """Write the Markdown report of ``sbml_path`` (default: same name, ``.md``), atomically."""
    return write_text_atomic(path or report_path(sbml_path), report_markdown(sbml_path))
