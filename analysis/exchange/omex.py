"""COMBINE archive (OMEX) ``sbml/ketamine_cascade.omex``: SBML, SED-ML, PEtab problems, metadata, README and model
reports.

The archive is deterministic (same inputs -> byte-identical file), so it can be committed and
checked like the SBML files: it is written with :mod:`zipfile` with fixed entry order, time stamps,
permissions and compression level, and its ``manifest.xml`` and ``metadata.rdf`` (OMEX metadata
1.2 conventions) contain no creation dates.  libcombine is not used for writing because it stamps
every entry with the current time; it reads the result (see the tests).
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from analysis.core.io import write_atomic
from analysis.core.model import OBSERVABLES
from analysis.core.paths import MODELS, SPECIES
from analysis.exchange.metadata import CITATIONS, CREATOR, DESCRIPTION, LICENSE_URI, TAXA, TITLE, allowed_inputs
from analysis.exchange.sedml import SEDML_NAME, sbml_file_name, standard_experiments

OMEX_NAME = "ketamine_cascade.omex"
ARCHIVE_URI = f"http://omex-library.org/{OMEX_NAME}"
#: Fixed zip time stamp (the earliest the zip format can store) and entry permissions (rw-r--r--).
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
ZIP_FILE_MODE = 0o100644
FORMATS = {
    "omex": "http://identifiers.org/combine.specifications/omex",
    "manifest": "http://identifiers.org/combine.specifications/omex-manifest",
    "metadata": "http://identifiers.org/combine.specifications/omex-metadata",
    "sbml": "http://identifiers.org/combine.specifications/sbml.level-3.version-2",
    "sedml": "http://identifiers.org/combine.specifications/sed-ml",
    "markdown": "http://purl.org/NET/mediatypes/text/markdown",
    "yaml": "http://purl.org/NET/mediatypes/application/x-yaml",
    "tsv": "http://purl.org/NET/mediatypes/text/tab-separated-values",
}
#: PEtab files of each species in the archive (``petab/<species>/``); ``problem.yaml`` points at the SBML at the
#: archive root.  ``measurements_holdout.tsv`` is not part of the problem (held-out data, see README).
PETAB_FILES = ("problem.yaml", "conditions.tsv", "observables.tsv", "measurements.tsv", "parameters.tsv",
               "measurements_holdout.tsv")  # fmt: skip


@dataclass(frozen=True)
class Entry:
    """One file of the archive: location (relative), format URI, master flag, one-line description."""

    location: str
    format: str
    description: str
    master: bool = False


def archive_entries() -> list[Entry]:
    """The content files of the archive (without manifest.xml and metadata.rdf), in archive order."""
    entries = [
        Entry(sbml_file_name(sp), FORMATS["sbml"], f"SBML L3V2 model, {sp} (time s, concentrations uM)")
        for sp in SPECIES
    ]
    entries.append(Entry(SEDML_NAME, FORMATS["sedml"], "SED-ML L1V3: standard simulation experiments", True))
    entries += [
        Entry(f"ketamine_cascade_{sp}.md", FORMATS["markdown"], f"model report generated from the {sp} SBML")
        for sp in SPECIES
    ]
    entries += [
        Entry(
            f"petab/{sp}/{name}",
            FORMATS["yaml" if name.endswith(".yaml") else "tsv"],
            f"PEtab v1 calibration problem, {sp}: {name}",
        )
        for sp in SPECIES
        for name in PETAB_FILES
    ]
    entries.append(
        Entry(
            "drugs.tsv",
            FORMATS["tsv"],
            "drug presets: the SBML parameter values of each drug and species (experiments human_drugs, rat_drugs)",
        )
    )
    entries.append(Entry("README.md", FORMATS["markdown"], "what is in this archive and how to run it"))
    return entries


def petab_members() -> dict[str, bytes]:
    """The PEtab files of every species as archive members (generated from the model sources, like
    ``models/petab/``), with ``problem.yaml`` pointing at the SBML at the archive root."""
    from analysis.calibration.petab_problem import problem_tables

    out = {}
    for sp in SPECIES:
        tables = problem_tables(sp)
        tables["problem.yaml"] = re.sub(r"sbml_files: \[[^]]*\]", f"sbml_files: [../../{sbml_file_name(sp)}]",
                                        tables["problem.yaml"])  # fmt: skip
        out.update({f"petab/{sp}/{name}": tables[name].encode("utf-8") for name in PETAB_FILES})
    return out


def manifest_xml(entries: list[Entry]) -> str:
    """OMEX manifest listing the archive itself, the manifest, the metadata and every entry."""
    rows = [
        ("", FORMATS["omex"], False),
        ("manifest.xml", FORMATS["manifest"], False),
        ("metadata.rdf", FORMATS["metadata"], False),
        *((e.location, e.format, e.master) for e in entries),
    ]
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<omexManifest xmlns="http://identifiers.org/combine.specifications/omex-manifest">',
    ]
    for loc, fmt, master in rows:
        where = "." if not loc else f"./{loc}"
        flag = ' master="true"' if master else ""
        lines.append(f"  <content location={quoteattr(where)} format={quoteattr(fmt)}{flag}/>")
    lines.append("</omexManifest>")
    return "\n".join(lines) + "\n"


def metadata_rdf(entries: list[Entry]) -> str:
    """OMEX metadata (RDF/XML): title, description, creator, license, citations and each SBML file's taxon; no dates."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"',
        '         xmlns:dc="http://purl.org/dc/elements/1.1/"',
        '         xmlns:dcterms="http://purl.org/dc/terms/"',
        '         xmlns:foaf="http://xmlns.com/foaf/0.1/"',
        '         xmlns:bqmodel="http://biomodels.net/model-qualifiers/"',
        '         xmlns:bqbiol="http://biomodels.net/biology-qualifiers/">',
        f"  <rdf:Description rdf:about={quoteattr(ARCHIVE_URI)}>",
        f"    <dc:title>{escape(TITLE)}</dc:title>",
        f"    <dc:description>{escape(DESCRIPTION)}</dc:description>",
        "    <dc:creator>",
        "      <rdf:Description>",
        f"        <foaf:name>{escape(CREATOR)}</foaf:name>",
        "      </rdf:Description>",
        "    </dc:creator>",
        f"    <dcterms:license rdf:resource={quoteattr(LICENSE_URI)}/>",
    ]
    for uri, text in CITATIONS.items():
        lines += [
            "    <bqmodel:isDescribedBy>",
            f"      <rdf:Description rdf:about={quoteattr(uri)}>",
            f"        <dc:title>{escape(text)}</dc:title>",
            "      </rdf:Description>",
            "    </bqmodel:isDescribedBy>",
        ]
    lines.append("  </rdf:Description>")
    taxa = {sbml_file_name(sp): TAXA[sp] for sp in SPECIES}
    for e in entries:
        lines += [
            f"  <rdf:Description rdf:about={quoteattr(f'{ARCHIVE_URI}/{e.location}')}>",
            f"    <dc:description>{escape(e.description)}</dc:description>",
        ]
        if e.location in taxa:
            lines.append(f"    <bqbiol:hasTaxon rdf:resource={quoteattr(taxa[e.location])}/>")
        lines.append("  </rdf:Description>")
    lines.append("</rdf:RDF>")
    return "\n".join(lines) + "\n"


def _experiment_lines() -> list[str]:
    lines = []
    for exp in standard_experiments():
        lines.append(f"- `{exp.id}`: {exp.name}")
        for sc in exp.scenarios:
            inputs = ", ".join(f"{k} = {v:g}" for k, v in sc.changes.items())
            lines.append(f"  - `{sc.id}` ({sc.species}): {inputs}")
    return lines


def readme_text(entries: list[Entry]) -> str:
    """README of the archive (Markdown): contents, contract, dosing recipe, experiments."""
    lines = [
        "# ketamine-cascade COMBINE archive",
        "",
        DESCRIPTION,
        "",
        f"Creators: {CREATOR}. License: MIT. Generated by the ketamine-cascade build; do not edit.",
        "",
        "## Contents",
        "",
        *(f"- `{e.location}`: {e.description}{' (master)' if e.master else ''}" for e in entries),
        "- `manifest.xml`, `metadata.rdf`: OMEX manifest and metadata (creators, license, citations)",
        "",
        "## Exchange contract",
        "",
        "Model time unit second, substance umol, volume litre (concentrations in uM). Observables: "
        + ", ".join(f"`{o}`" for o in OBSERVABLES)
        + "; human also `madrs_change` (MADRS points relative to placebo). Inputs (units in each parameter's notes "
        "in the SBML; `infusion_duration`, `dose_intranasal`, "
        "`dose_step2` and `dose_step3` are human only) and their allowed values: "
        + allowed_inputs()
        + ". Simulators other than the package do not check them (an `infusion_duration` of 0 divides by zero).",
        "",
        "## Dosing",
        "",
        "The dose is an SBML event with trigger `time >= t_dose` (initialValue false, persistent), so it fires at "
        "`t_dose`, including `t_dose = 0`. Set the inputs in the SBML (or before the simulator's reset) and then "
        "simulate. The SED-ML experiments change inputs with `changeAttribute` on the SBML document, i.e. before the "
        "model is loaded, and list only inputs that differ from the SBML's values. To dose again in "
        "libroadrunner or tellurium, move `t_dose` past the current time and continue without a reset; in COPASI, "
        "carry the end state into the model (basico `update_model=True`), set any state left below 1e-200 "
        "particles to 0 (COPASI's LSODA cannot start from a value near underflow), move `t_dose` and run again (the "
        "repository's README has the code). Every `*_rel` is relative to the shipped drug-free state (the constant "
        "`*_baseline` parameters).",
        "",
        "Some tools fire a `t = 0` event twice: tellurium 2.2.13's SED-ML runner loads the model, applies the "
        "changes, then saves and reloads the current state. The dosing events therefore *set* their target "
        "(the rat i.p. depot, the human pump) instead of adding to it, so the dose is still given once. "
        "Consequence: an i.p. dose given while a previous one is still being absorbed (within about 1 h) "
        "replaces the remaining depot.",
        "",
        "## Simulation experiments (SED-ML)",
        "",
        "Every experiment simulates 7 days (604800 s, one output per minute; `human_drugs` 14 days) with CVODE from "
        "the drug-free steady state (`rat_val66met`: the genotype's own, set by its changes) and reports every "
        "observable against time (the contract observables, and "
        "`madrs_change` for human); one plot per observable compares the scenarios.",
        "",
        *_experiment_lines(),
        "",
        "## Citations",
        "",
        *(f"- {text}: {uri}" for uri, text in CITATIONS.items()),
        "",
    ]
    return "\n".join(lines)


def _write_zip(path: Path, members: list[tuple[str, bytes]]) -> None:
    """Zip ``members`` (name, bytes) in order, with fixed time stamps, permissions and compression."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so that the permission bits below are honoured everywhere
            info.external_attr = ZIP_FILE_MODE << 16
            zf.writestr(info, data, compresslevel=9)


def write_omex(sbml_dir: Path, path: Path | None = None) -> Path:
    """Write the COMBINE archive from the files in ``sbml_dir`` (default ``<sbml_dir>/ketamine_cascade.omex``).

    ``sbml_dir`` must hold both SBML files, the SED-ML and the model reports (see
    :func:`analysis.exchange.write_exchange_files`); the README, manifest and metadata are generated.
    Written atomically; raises FileNotFoundError naming a missing input.
    """
    sbml_dir = Path(sbml_dir)
    entries = archive_entries()
    generated = {
        "README.md": readme_text(entries).encode("utf-8"),
        "drugs.tsv": (MODELS / "drugs.tsv").read_bytes(),  # the model source's preset table, as it is
        **petab_members(),
    }
    members = [("manifest.xml", manifest_xml(entries).encode()), ("metadata.rdf", metadata_rdf(entries).encode())]
    for e in entries:
        if e.location in generated:
            members.append((e.location, generated[e.location]))
            continue
        src = sbml_dir / e.location
        if not src.exists():
            raise FileNotFoundError(f"COMBINE archive input missing: {src}")
        members.append((e.location, src.read_bytes()))
    return write_atomic(path or sbml_dir / OMEX_NAME, lambda tmp: _write_zip(tmp, members))
