"""Readers for the machine-readable tables under ``models/`` (TSV, one row per entry).

* ``parameters.tsv``  - every model parameter: value, unit, bounds, evidence, source, SBO
* ``annotations.tsv`` - SBO term, unit and identifiers.org annotations of every
  compartment, species, reaction, rule variable and event
* ``units.tsv``       - SBML unit definitions
* ``proteins.tsv``    - UniProt accessions per species for the protein symbols used
* ``validation.tsv``  - literature targets (read by :mod:`analysis.analyses.validate`)
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from analysis.core.paths import MODELS

PARAMETER_COLUMNS = ["id", "model", "value", "unit", "sbo", "lower", "upper", "evidence", "source", "description"]
EVIDENCE = {"measured", "derived", "assumed", "fitted"}


class TableError(ValueError):
    """A model table is malformed."""


def read_tsv(path: Path, columns: list[str] | None = None) -> list[dict[str, str]]:
    """Read a TSV file into a list of row dicts, checking the header if ``columns`` is given."""
    if not path.exists():
        raise TableError(f"table not found: {path}")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        if columns is not None and reader.fieldnames != columns:
            raise TableError(f"{path.name}: columns {reader.fieldnames} != expected {columns}")
        rows = [dict(r) for r in reader]
    for n, row in enumerate(rows, start=2):
        if any(v is None for v in row.values()):
            raise TableError(f"{path.name}:{n}: wrong number of fields")
    return rows


@dataclass(frozen=True)
class Parameter:
    """One row of ``parameters.tsv``; ``value``/``lower``/``upper`` in ``unit``."""

    id: str
    model: str
    value: float
    unit: str
    sbo: str
    lower: float
    upper: float
    evidence: str
    source: str
    description: str


def parse_assignments(text: str, text_keys: tuple[str, ...] = ()) -> dict[str, float | str]:
    """``"inhib_mtorc1=1; inhib_ampa=0.9"`` (``;`` or ``,`` separated) -> {"inhib_mtorc1": 1.0, "inhib_ampa": 0.9};
    the values of ``text_keys`` (e.g. ``drug``) stay strings.  Raises :class:`TableError` for a non-number."""
    out: dict[str, float | str] = {}
    for item in filter(None, (t.strip() for t in re.split(r"[;,]", text or ""))):
        key, _, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if key in text_keys:
            out[key] = value
            continue
        try:
            out[key] = float(value)
        except ValueError:
            raise TableError(f"{key}: value {value!r} is not a number") from None
    return out


def _float(where: str, n: int, name: str, text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise TableError(f"{where}: {name} {text!r} is not a number") from None
    if not math.isfinite(x):
        raise TableError(f"{where}: {name} {text!r} is not finite")
    return x


def read_parameters(species: str | None = None, path: Path | None = None) -> dict[str, Parameter]:
    """Parameters of one species' model (``model`` column 'both' or ``species``).

    With ``species=None`` all rows are checked and returned keyed by ``id/model``.
    Raises :class:`TableError` on a malformed row, a duplicate, an unknown unit,
    an unknown evidence class or a value outside its own bounds.
    """
    path = path or MODELS / "parameters.tsv"
    units = read_units()
    out: dict[str, Parameter] = {}
    for n, row in enumerate(read_tsv(path, PARAMETER_COLUMNS), start=2):
        loc = f"{path.name}:{n} ({row['id']})"
        p = Parameter(
            id=row["id"],
            model=row["model"],
            value=_float(loc, n, "value", row["value"]),
            unit=row["unit"],
            sbo=row["sbo"],
            lower=_float(loc, n, "lower", row["lower"]),
            upper=_float(loc, n, "upper", row["upper"]),
            evidence=row["evidence"],
            source=row["source"],
            description=row["description"],
        )
        where = f"{path.name}:{n} ({p.id})"
        if p.model not in ("both", "human", "rat"):
            raise TableError(f"{where}: model must be both/human/rat, not {p.model!r}")
        if p.unit not in units and p.unit not in SBML_BASE_UNITS:
            raise TableError(f"{where}: unknown unit {p.unit!r}")
        if p.evidence not in EVIDENCE:
            raise TableError(f"{where}: evidence must be one of {sorted(EVIDENCE)}")
        if not p.source.strip():
            raise TableError(f"{where}: source is empty")
        if not p.sbo.startswith("SBO:"):
            raise TableError(f"{where}: sbo {p.sbo!r} is not an SBO term")
        if not p.lower <= p.value <= p.upper:
            raise TableError(f"{where}: value {p.value} outside its bounds [{p.lower}, {p.upper}]")
        if species is None:
            key = f"{p.id}/{p.model}"
        elif p.model in ("both", species):
            key = p.id
        else:
            continue
        if key in out:
            raise TableError(f"{where}: duplicate parameter {key!r}")
        out[key] = p
    return out


SBML_BASE_UNITS = {"dimensionless", "second", "litre", "kilogram", "metre", "mole", "volt", "ampere"}


def read_units(path: Path | None = None) -> dict[str, list[tuple[str, float, int, float]]]:
    """Unit definitions: id -> list of (kind, exponent, scale, multiplier)."""
    path = path or MODELS / "units.tsv"
    out: dict[str, list[tuple[str, float, int, float]]] = {}
    for n, row in enumerate(read_tsv(path, ["id", "definition", "meaning"]), start=2):
        parts = []
        for term in row["definition"].split():
            try:
                kind, exp, scale, mult = term.split(":")
                parts.append((kind, float(exp), int(scale), float(mult)))
            except ValueError:
                raise TableError(f"units.tsv:{n}: bad unit term {term!r}") from None
        out[row["id"]] = parts
    return out


def read_annotations(path: Path | None = None) -> dict[str, dict[str, str]]:
    """Annotation rows keyed by SBML id."""
    path = path or MODELS / "annotations.tsv"
    rows = read_tsv(path, ["id", "kind", "unit", "sbo", "annotations", "description"])
    out = {}
    for row in rows:
        if row["id"] in out:
            raise TableError(f"annotations.tsv: duplicate id {row['id']!r}")
        out[row["id"]] = row
    return out


def read_proteins(path: Path | None = None) -> dict[str, dict[str, str]]:
    """UniProt accessions keyed by gene symbol, with 'human' and 'rat' columns."""
    path = path or MODELS / "proteins.tsv"
    return {r["symbol"]: r for r in read_tsv(path, ["symbol", "human", "rat", "name"])}


def parameter_bounds(species: str, parameters: list[str]):
    """Plausible bounds of ``parameters`` from ``models/parameters.tsv`` (a property of the table).

    Returns a DataFrame indexed by parameter id with columns ``value``, ``lower``, ``upper`` (in ``unit``),
    ``unit``, ``evidence``, ``description``.  Raises :class:`analysis.core.errors.ModelError` for an unknown id
    or a parameter whose bounds do not span an interval (lower >= upper).
    """
    import pandas as pd

    from analysis.core.errors import ModelError

    table = read_parameters(species)
    ids = list(parameters)
    unknown = [p for p in ids if p not in table]
    if unknown:
        raise ModelError(f"unknown parameter(s) {unknown} for species {species!r} (not in parameters.tsv)")
    fixed = [p for p in ids if not table[p].lower < table[p].upper]
    if fixed:
        raise ModelError(f"parameter(s) {fixed} have lower >= upper in parameters.tsv; they cannot be varied")
    rows = {
        p: {
            "value": table[p].value,
            "lower": table[p].lower,
            "upper": table[p].upper,
            "unit": table[p].unit,
            "evidence": table[p].evidence,
            "description": table[p].description,
        }
        for p in ids
    }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("parameter")
