"""Exchange files derived from the built SBML: SED-ML, model reports and the COMBINE archive.

Called by the build after the SBML files are written::

    from analysis.exchange import write_exchange_files
    write_exchange_files(sbml_dir)   # -> [.sedml, _human.md, _rat.md, .omex]
"""

from __future__ import annotations

from pathlib import Path

from analysis.core.paths import SPECIES
from analysis.exchange.omex import write_omex
from analysis.exchange.report import write_report
from analysis.exchange.sedml import sbml_file_name, write_sedml


def write_exchange_files(sbml_dir: Path) -> list[Path]:
    """Write the SED-ML, one Markdown report per species and the OMEX archive into ``sbml_dir``.

    ``sbml_dir`` must already hold ``ketamine_cascade_<species>.xml`` for every species.  Every file
    is written atomically and deterministically (same SBML -> byte-identical outputs).  Returns the
    paths written, the archive last.
    """
    sbml_dir = Path(sbml_dir)
    written = [write_sedml(sbml_dir)]
    written += [write_report(sbml_dir / sbml_file_name(sp)) for sp in SPECIES]
    written.append(write_omex(sbml_dir))
    return written
