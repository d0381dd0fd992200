"""Descriptive metadata of the model, shared by the SBML files (model notes and CV terms) and the COMBINE archive.

One place for the title, description, creator, license, the main citations and the taxon of each species'
model, so that the SBML and ``metadata.rdf`` say the same thing.
"""

from __future__ import annotations

CREATOR = "ketamine-cascade developers"
LICENSE_URI = "https://spdx.org/licenses/MIT"
TITLE = "ketamine-cascade: mechanistic model of ketamine action from dose to synapses"
DESCRIPTION = (
    "Mechanistic systems-biology model of one dose of ketamine: pharmacokinetics (human IV infusion, rat i.p.), "
    "open-channel trapping block of NMDA receptors with Mg2+ and voltage, preferential block on GABAergic "
    "interneurons, disinhibition of pyramidal neurons, glutamate surge and AMPA activation, Ca2+/BDNF-TrkB-Akt-"
    "mTORC1 and eEF2K/eEF2 signalling, synaptic-protein synthesis and dendritic-spine turnover over days. "
    "SBML Level 3 Version 2 (time in s, concentrations in uM) with SED-ML of the standard simulation experiments."
)
#: Main papers behind the model: identifiers.org URI -> short citation.
CITATIONS = {
    "http://identifiers.org/pubmed:19371579": (
        "Gilling et al. 2009, Neuropharmacology 56:866 (NMDA channel block kinetics)"
    ),
    "http://identifiers.org/doi:10.1126/science.1190287": (
        "Li et al. 2010, Science 329:959 (mTOR-dependent synapse formation)"
    ),
    "http://identifiers.org/doi:10.1038/nature10130": (
        "Autry et al. 2011, Nature 475:91 (NMDA receptor blockade at rest, eEF2)"
    ),
    "http://identifiers.org/doi:10.1523/JNEUROSCI.17-08-02921.1997": (
        "Moghaddam et al. 1997, J Neurosci 17:2921 (ketamine increases prefrontal glutamate)"
    ),
    "http://identifiers.org/doi:10.1097/ALN.0000000000003577": (
        "Kamp et al. 2020, Anesthesiology 133:1192 (ketamine pharmacokinetics)"
    ),
}
#: NCBI taxon of each species' model (identifiers.org, ``bqbiol:hasTaxon``).
TAXA = {"rat": "https://identifiers.org/taxonomy:10116", "human": "https://identifiers.org/taxonomy:9606"}


def allowed_inputs(input_ids: list[str] | None = None) -> str:
    """'dose >= 0; t_dose >= 0; ...': the contract inputs (default: all) with the values the package accepts."""
    from analysis.core.model import INPUT_RANGES

    def allowed(pid: str) -> str:
        lo, hi = INPUT_RANGES[pid]
        if lo > 0:
            return f"{pid} > 0"
        return f"{pid} in [0, 1]" if hi == 1 else f"{pid} >= 0"

    return "; ".join(allowed(pid) for pid in (INPUT_RANGES if input_ids is None else input_ids))
