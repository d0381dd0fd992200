"""The literature data as PEtab (v1) problems, one per species, generated from the model sources.

Inputs (``models/``):

* ``calibration_data.tsv``: one row per literature measurement: species, dose (mg/kg), interventions, the
  observable (an SBML id or an expression of SBML ids), time (s), value, unit, the noise (``sigma_log``: SD of a
  log-normal error), ``use`` (``fit`` or ``holdout``), ``evidence`` (``reported``/``recalled``), how the number
  was ``obtained`` (text, table, figure, or a stated derivation) and the citation.
* ``parameters.tsv``: bounds and nominal values of the estimated parameters (:data:`ESTIMATED`), and a prior for
  each measured one (:func:`prior`: its value and plausible range).  An estimated parameter that a condition
  also sets (a drug preset) is estimated as ``<id>_shipped`` and mapped through the condition table
  (:data:`SHIPPED_SUFFIX`).

Outputs (``models/petab/<species>/``, committed, rewritten by ``make build``): ``problem.yaml`` (pointing at the
shipped SBML in ``sbml/``), ``conditions.tsv``, ``observables.tsv``, ``measurements.tsv`` (the ``fit`` rows),
``measurements_holdout.tsv`` (the ``holdout`` rows, not part of the problem), ``parameters.tsv``.

Conditions set the dose (``dose``, mg/kg; the human one also ``infusion_duration``), the intervention
parameters and, for ``drug=<preset>``, the parameters of that drug preset (``models/drugs.tsv``).  Observables
are log-normal (``observableTransformation`` log) with the noise of the data row; a quantity that is negative
when it is large (the MADRS change, negative = improvement) is observed as its negative, e.g.
``-madrs_change``, the improvement against placebo.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from analysis.core.drugs import with_drug
from analysis.core.io import write_text_atomic
from analysis.core.paths import MODELS, SPECIES, sbml_path
from analysis.core.simulate import DEFAULT_SCENARIOS
from analysis.core.tables import Parameter, TableError, parse_assignments, read_parameters, read_tsv

DATA = MODELS / "calibration_data.tsv"
PETAB_DIR = MODELS / "petab"
#: Evidence of a data row: a number the paper states (text or table), one computed by a committed script from the
#: authors' deposited primary data (``docs/calibration/data/``), one read off a figure by pixel digitisation (the
#: ``obtained`` column says by whom), or one recalled from a figure (weakest).
EVIDENCE = ("reported", "computed", "digitised", "recalled")
DATA_COLUMNS = [
    "id", "species", "dose", "interventions", "observable", "time_s", "value", "unit", "sigma_log", "use",
    "evidence", "obtained", "citation", "note",
]  # fmt: skip

#: Parameters each species' problem estimates.  Chosen because the ``fit`` data of that species inform them; the
#: human plasma level at the end of the infusion informs the central volume.  Everything else stays at its table
#: value (PEtab: not listed, so the SBML value is used).
#: The clinical MADRS differences (human) inform the two parameters of the empirical MADRS link.
ESTIMATED: dict[str, list[str]] = {"human": ["v1_per_kg", "madrs_emax", "madrs_x50"], "rat": []}
#: Suffix of the PEtab id of an estimated parameter that some condition also sets (a drug preset: the esketamine
#: preset sets its own disposition, ``v1_per_kg`` included).  PEtab forbids estimating a parameter that the
#: condition table sets, so the condition table gets a column for it: the conditions that set it carry their
#: number, every other condition the estimated PEtab parameter ``<id>_shipped`` (the shipped model's value).
SHIPPED_SUFFIX = "_shipped"


def table_id(petab_id: str) -> str:
    """The ``models/parameters.tsv`` id of an estimated PEtab parameter (``v1_per_kg_shipped`` -> ``v1_per_kg``)."""
    return petab_id.removesuffix(SHIPPED_SUFFIX)


class CalibrationDataError(TableError):
    """A row of ``calibration_data.tsv`` is incomplete or inconsistent (the message names it)."""


def read_data(path: Path = DATA) -> list[dict[str, str]]:
    """The rows of ``calibration_data.tsv``, checked: every column filled where required, numbers finite and
    positive, ``use`` in {fit, holdout}, ``evidence`` in :data:`EVIDENCE`
    (computed: derived by a committed script from the authors' deposited primary data)."""
    rows = read_tsv(Path(path), DATA_COLUMNS)
    seen = set()
    for n, r in enumerate(rows, start=2):
        where = f"{path.name} line {n} ({r['id']!r})"
        if r["id"] in seen:
            raise CalibrationDataError(f"{where}: duplicate id")
        seen.add(r["id"])
        for col in ("species", "observable", "citation", "obtained"):
            if not r[col].strip():
                raise CalibrationDataError(f"{where}: empty {col}")
        if r["species"] not in SPECIES:
            raise CalibrationDataError(f"{where}: unknown species {r['species']!r}")
        for col in ("dose", "time_s", "value", "sigma_log"):
            try:
                x = float(r[col])
            except ValueError:
                raise CalibrationDataError(f"{where}: {col} is not a number: {r[col]!r}") from None
            if not math.isfinite(x) or x < 0 or (col in ("value", "sigma_log") and x == 0):
                raise CalibrationDataError(f"{where}: {col} must be finite and positive, got {x}")
        if r["use"] not in ("fit", "holdout"):
            raise CalibrationDataError(f"{where}: use must be fit or holdout, got {r['use']!r}")
        if r["evidence"] not in EVIDENCE:
            raise CalibrationDataError(f"{where}: evidence must be one of {', '.join(EVIDENCE)}, got {r['evidence']!r}")
    return rows


def _split_drug(text: str) -> tuple[str | None, dict[str, float]]:
    """The interventions column as (drug preset or None, the explicit parameter values)."""
    values = parse_assignments(text, text_keys=("drug",))
    drug = values.pop("drug", None)
    return (str(drug) if drug else None), values  # type: ignore[return-value]  (only "drug" is text)


def interventions(text: str, species: str) -> dict[str, float]:
    """``"inhib_mtorc1=1;inhib_ampa=0.9"`` -> {"inhib_mtorc1": 1.0, "inhib_ampa": 0.9}; ``drug=<preset>`` is
    expanded into the parameters of that preset of ``models/drugs.tsv`` for ``species`` (a parameter given both
    ways raises)."""
    drug, values = _split_drug(text)
    return with_drug(drug, species, values)


def row_inputs(row: dict[str, str], species: str, parameters: dict[str, float] | None = None) -> dict[str, float]:
    """Model inputs of one data row: the species' default scenario without its dose, then ``parameters``, then
    the row's dose (mg/kg) and interventions (with any drug preset expanded)."""
    base = {k: v for k, v in DEFAULT_SCENARIOS[species].items() if k != "dose"}
    return {**base, **(parameters or {}), "dose": float(row["dose"]), **interventions(row["interventions"], species)}


def condition_label(row: dict[str, str]) -> str:
    """Human-readable condition of a data row, e.g. ``dose 0; drug=esketamine; dose_intranasal=56``."""
    return f"dose {float(row['dose']):g}" + (f"; {row['interventions']}" if row["interventions"] else "")


def condition_id(species: str, dose: float, extra: dict[str, float], drug: str | None = None) -> str:
    """A readable PEtab condition id, e.g. ``rat_dose_10``, ``rat_dose_10_inhib_mtorc1_1`` or
    ``human_esketamine_dose_0_dose_intranasal_56``."""
    parts = [species] + ([drug] if drug else []) + ["dose", f"{dose:g}"]
    parts += [f"{k}_{v:g}" for k, v in sorted(extra.items())]
    return re.sub(r"[^A-Za-z0-9_]", "p", "_".join(parts))


def observable_id(expression: str) -> str:
    """PEtab observable id of an SBML id or expression (``ket_brain_tissue / ket_central`` ->
    ``obs_ket_brain_tissue_over_ket_central``)."""
    text = expression.strip()
    text = ("minus " + text[1:]) if text.startswith("-") else text
    text = text.replace("/", " over ").replace("*", " times ")
    return "obs_" + "_".join(re.findall(r"[A-Za-z0-9_]+", text))


#: Evidence whose value is a measurement with a sourced plausible range: its estimate gets a prior.
PRIOR_EVIDENCE = ("measured",)
#: z of the two-sided 95 % interval: a measured parameter's plausible range is read as its 95 % interval.
Z95 = 1.959964


def prior(p: Parameter) -> tuple[str, str]:
    """PEtab prior columns (``objectivePriorType``, ``objectivePriorParameters``) of an estimated parameter.

    A measured parameter gets a normal prior on its log10 scale, centred on its table value, whose 95 % interval
    spans the table's plausible range (sd = log10(upper / lower) / (2 x 1.96)): the source's value and range, not a
    number chosen for the fit.  Other evidence (assumed, derived, fitted) gets no prior (empty cells)."""
    if p.evidence not in PRIOR_EVIDENCE or not 0 < p.lower < p.value < p.upper:
        return "", ""
    sd = math.log10(p.upper / p.lower) / (2 * Z95)
    return "parameterScaleNormal", f"{math.log10(p.value):.6g};{sd:.6g}"


def _tsv(header: list[str], rows: list[list[object]]) -> str:
    lines = ["\t".join(header)] + ["\t".join(str(x) for x in row) for row in rows]
    return "\n".join(lines) + "\n"


def problem_tables(species: str, data: list[dict[str, str]] | None = None) -> dict[str, str]:
    """The PEtab files of ``species`` as {file name: text}."""
    data = read_data() if data is None else data
    rows = [r for r in data if r["species"] == species]
    params = read_parameters(species)
    base = {k: v for k, v in DEFAULT_SCENARIOS[species].items() if k != "dose"}
    conditions: dict[str, dict[str, float]] = {}
    meas: dict[str, list[list[object]]] = {"fit": [], "holdout": []}
    observables: dict[str, list[object]] = {}
    for r in rows:
        drug, named = _split_drug(r["interventions"])
        extra = with_drug(drug, species, named)
        unknown = [k for k in extra if k not in params]
        if unknown:
            raise CalibrationDataError(f"{r['id']}: unknown intervention parameter(s) {unknown}")
        cid = condition_id(species, float(r["dose"]), named, drug)
        conditions[cid] = {"dose": float(r["dose"]), **base, **extra}
        oid = observable_id(r["observable"])
        observables[oid] = [oid, r["observable"], f"noiseParameter1_{oid}", "log", "normal"]
        meas[r["use"]].append([oid, cid, r["value"], r["time_s"], r["sigma_log"], r["id"]])
    est = ESTIMATED[species]
    set_by_condition = {k for c in conditions.values() for k in c}
    petab_ids = {p: p + SHIPPED_SUFFIX if p in set_by_condition else p for p in est}
    for c in conditions.values():
        for p, pid in petab_ids.items():
            if pid != p:
                c.setdefault(p, pid)  # type: ignore[arg-type]  (a PEtab parameter id, not a number)
    columns = sorted({k for c in conditions.values() for k in c})
    cond_rows = [[cid] + [c.get(k, params[k].value) for k in columns] for cid, c in sorted(conditions.items())]
    par_rows = [
        [petab_ids[p], "log10", params[p].lower, params[p].upper, params[p].value, 1, *prior(params[p]),
         params[p].unit, params[p].evidence]
        for p in est
    ]  # fmt: skip
    sbml_rel = os.path.relpath(sbml_path(species), PETAB_DIR / species).replace(os.sep, "/")
    yaml = (
        "format_version: 1\n"
        "parameter_file: parameters.tsv\n"
        "problems:\n"
        "- condition_files: [conditions.tsv]\n"
        "  measurement_files: [measurements.tsv]\n"
        "  observable_files: [observables.tsv]\n"
        f"  sbml_files: [{sbml_rel}]\n"
    )
    mcols = ["observableId", "simulationConditionId", "measurement", "time", "noiseParameters", "datasetId"]
    # Measurements grouped by condition in sorted order (then by time, observable): pyPESTO's (0.7.0) libroadrunner
    # objective pairs its per-condition data (conditions in order of first appearance in the measurement table)
    # with PEtab's parameter mapping (conditions sorted) by position, so any other order gives a condition the
    # inputs of another one (measured: the escalating-infusion rows of Kamp 2020 were simulated as 0.5 mg/kg over
    # 40 min; tests/test_calibration.py compares every measurement with the engine).
    for table in meas.values():
        table.sort(key=lambda m: (m[1], float(m[3]), m[0]))
    return {
        "problem.yaml": yaml,
        "conditions.tsv": _tsv(["conditionId"] + columns, cond_rows),
        "observables.tsv": _tsv(
            ["observableId", "observableFormula", "noiseFormula", "observableTransformation", "noiseDistribution"],
            [observables[k] for k in sorted(observables)],
        ),
        "measurements.tsv": _tsv(mcols, meas["fit"]),
        "measurements_holdout.tsv": _tsv(mcols, meas["holdout"]),
        "parameters.tsv": _tsv(
            [
                "parameterId",
                "parameterScale",
                "lowerBound",
                "upperBound",
                "nominalValue",
                "estimate",
                "objectivePriorType",
                "objectivePriorParameters",
                "unit",
                "evidence",
            ],
            par_rows,
        ),  # fmt: skip
    }


def write_problems(outdir: Path = PETAB_DIR) -> list[Path]:
    """Write every species' PEtab problem into ``outdir/<species>/`` (each file atomically; all tables are
    generated before any is written)."""
    data = read_data()
    tables = {sp: problem_tables(sp, data) for sp in SPECIES}
    return [
        write_text_atomic(Path(outdir) / sp / name, text)
        for sp, files in tables.items()
        for name, text in files.items()
    ]


def problem_yaml(species: str, petab_dir: Path = PETAB_DIR) -> Path:
    """Path of the committed ``problem.yaml`` of ``species``."""
    if species not in SPECIES:
        raise ValueError(f"unknown species {species!r}; expected one of {SPECIES}")
    return Path(petab_dir) / species / "problem.yaml"


__all__ = [
    "CalibrationDataError", "ESTIMATED", "PETAB_DIR", "SHIPPED_SUFFIX", "condition_id", "condition_label",
    "interventions", "observable_id", "problem_tables", "problem_yaml", "read_data", "row_inputs", "table_id",
    "write_problems",
]  # fmt: skip
