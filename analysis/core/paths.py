"""Locations of the model sources and generated files."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
SBML_DIR = ROOT / "sbml"
RESULTS = ROOT / "results"
SPECIES = ("human", "rat")


def sbml_path(species: str) -> Path:
    """Path of the shipped SBML file for ``species`` ('human' or 'rat')."""
    if species not in SPECIES:
        raise ValueError(f"unknown species {species!r}; expected one of {SPECIES}")
    return SBML_DIR / f"ketamine_cascade_{species}.xml"
