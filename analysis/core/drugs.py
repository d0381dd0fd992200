"""Drug presets (``models/drugs.tsv``): other NMDA-receptor channel blockers through the same mechanism.

A preset is a set of SBML parameter values (channel kinetics, trapping fraction, pharmacokinetics, the
metabolite's kinetics) that replaces the racemic-ketamine values of the shipped model.  Applying one means
setting those parameters *before* ``reset()``, exactly like a dose (README, "Drug presets").  Nothing else
changes: there is no drug-specific switch in the model, so every difference between drugs comes from numbers
with sources.  Presets change drug-only parameters, so the drug-free steady state (the shipped initial values)
holds for every preset and no equilibration is needed.

The contract observables keep their ids: under a preset ``ketamine_plasma`` and ``ketamine_brain`` report the
preset's parent drug (e.g. memantine), ``norketamine_*`` its active metabolite (zero for memantine).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from analysis.core.errors import ModelError
from analysis.core.paths import MODELS, SPECIES
from analysis.core.simulate import DAY
from analysis.core.tables import TableError, _float, read_parameters, read_tsv

DRUG_COLUMNS = ["drug", "species", "parameter", "value", "unit", "source", "note"]


@dataclass(frozen=True)
class DrugSetting:
    """One row of ``models/drugs.tsv``: a parameter value of a drug preset."""

    drug: str
    species: str
    parameter: str
    value: float
    unit: str
    source: str
    note: str


@lru_cache(maxsize=4)
def _read(path: Path) -> tuple[DrugSetting, ...]:
    params = {sp: read_parameters(sp) for sp in SPECIES}
    rows: list[DrugSetting] = []
    seen: set[tuple[str, str, str]] = set()
    for n, row in enumerate(read_tsv(path, DRUG_COLUMNS), start=2):
        where = f"{path.name}:{n} ({row['drug']}, {row['parameter']})"
        s = DrugSetting(
            drug=row["drug"].strip(),
            species=row["species"].strip(),
            parameter=row["parameter"].strip(),
            value=_float(where, n, "value", row["value"]),
            unit=row["unit"].strip(),
            source=row["source"].strip(),
            note=row["note"].strip(),
        )
        if not s.drug:
            raise TableError(f"{where}: drug is empty")
        if s.species not in ("both", *SPECIES):
            raise TableError(f"{where}: species must be both/human/rat, not {s.species!r}")
        if not s.source:
            raise TableError(f"{where}: source is empty")
        if s.value < 0:
            raise TableError(f"{where}: value {s.value} is negative")
        for sp in SPECIES if s.species == "both" else (s.species,):
            p = params[sp].get(s.parameter)
            if p is None:
                raise TableError(f"{where}: {s.parameter!r} is not a parameter of the {sp} model")
            if p.unit != s.unit:
                raise TableError(f"{where}: unit {s.unit!r} != the model's unit {p.unit!r} of {s.parameter}")
            key = (s.drug, sp, s.parameter)
            if key in seen:
                raise TableError(f"{where}: {s.parameter} set twice for {s.drug} ({sp})")
            seen.add(key)
        rows.append(s)
    return tuple(rows)


def read_drugs(path: Path | None = None) -> tuple[DrugSetting, ...]:
    """All rows of the preset table, checked (known parameter of that species, its unit, a source)."""
    return _read((path or MODELS / "drugs.tsv").resolve())


def drugs(path: Path | None = None) -> list[str]:
    """Names of the presets, in table order."""
    return list(dict.fromkeys(s.drug for s in read_drugs(path)))


def drug_parameters(drug: str, species: str, path: Path | None = None) -> dict[str, float]:
    """SBML parameter values of ``drug`` for the ``species`` model (set them before ``reset()``).

    Raises :class:`ModelError` for an unknown drug or species.
    """
    if species not in SPECIES:
        raise ModelError(f"unknown species {species!r}; expected one of {SPECIES}")
    rows = read_drugs(path)
    known = drugs(path)
    if drug not in known:
        raise ModelError(f"unknown drug {drug!r}; presets in models/drugs.tsv: {', '.join(known)}")
    values = {s.parameter: s.value for s in rows if s.drug == drug and s.species in ("both", species)}
    if "mw_ketamine" in values and "cl_per_kg" not in values:
        raise ModelError(
            f"the {drug} preset is another molecule but gives no {species} clearance (cl_per_kg) in "
            "models/drugs.tsv: its pharmacokinetics would silently be ketamine's"
        )
    return values


def with_drug(drug: str | None, species: str, parameters: dict[str, float] | None = None) -> dict[str, float]:
    """``parameters`` on top of the preset of ``drug`` (None: the shipped racemic model).  A parameter given
    both ways raises, so a preset is never silently half-overridden."""
    parameters = dict(parameters or {})
    if drug is None:
        return parameters
    preset = drug_parameters(drug, species)
    clash = sorted(set(preset) & set(parameters))
    if clash:
        raise ModelError(f"parameters {clash} are set both by the {drug} preset and explicitly; give each once")
    return {**preset, **parameters}


@dataclass(frozen=True)
class Protocol:
    """A drug preset with its dosing inputs (``dose`` mg/kg IV over ``infusion_duration`` s, or
    ``dose_intranasal`` mg)."""

    drug: str
    inputs: Mapping[str, float] = field(default_factory=dict)
    note: str = ""


#: Memantine's clinical maintenance dose, 20 mg/day, as a constant-rate input for 14 days: oral memantine is
#: almost completely absorbed, and its 60-80 h half-life smooths the daily doses, so the plasma level climbs to
#: the 0.5-1 uM steady state of patients over the first week or two, as with daily tablets.
MEMANTINE_DAILY_MG = 20.0
REFERENCE_WEIGHT_KG = 70.0

PROTOCOLS: dict[str, Protocol] = {
    "racemic ketamine 0.5 mg/kg IV": Protocol(
        "racemic_ketamine", {"dose": 0.5, "infusion_duration": 2400.0}, "40-min infusion (Zarate 2006)"
    ),
    "esketamine 56 mg IN": Protocol("esketamine", {"dose": 0.0, "dose_intranasal": 56.0}, "nasal spray"),
    "esketamine 84 mg IN": Protocol("esketamine", {"dose": 0.0, "dose_intranasal": 84.0}, "nasal spray"),
    "arketamine 0.5 mg/kg IV": Protocol(
        "arketamine", {"dose": 0.5, "infusion_duration": 2400.0}, "40-min infusion (Leal 2021)"
    ),
    "memantine 20 mg/day": Protocol(
        "memantine",
        {"dose": MEMANTINE_DAILY_MG * 14 / REFERENCE_WEIGHT_KG, "infusion_duration": 14 * DAY},
        "clinical exposure: 20 mg/day as a constant input for 14 days",
    ),
}
