"""Drugs and the clinic: the drug presets of ``models/drugs.tsv`` through the whole cascade.

:func:`compare_drugs` runs each clinical protocol of :data:`PROTOCOLS` (human, 14 days by default) and returns
the time courses and a summary table (exposure, NMDA block, glutamate, mTORC1, synapses, MADRS).
:func:`equal_block_dose` finds the dose of a preset that gives the same peak interneuron NMDA block as a
reference protocol, so drugs can also be compared at equal block rather than at clinical exposure.
Times in s, doses in mg/kg (IV, rat i.p.) or mg (intranasal), concentrations in uM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from analysis.analyses.readouts import DAY, HOUR
from analysis.core.drugs import PROTOCOLS, Protocol, with_drug
from analysis.core.errors import ModelError
from analysis.core.model import CascadeModel, load_model

__all__ = ["PROTOCOLS", "Protocol", "compare_drugs", "equal_block_dose", "calibrate_madrs_gain"]
#: Observables of the comparison (human model; madrs_change exists only there).
DRUG_OBSERVABLES = (
    "ketamine_plasma",
    "norketamine_plasma",
    "ketamine_brain",
    "nmda_block_int",
    "nmda_block_pyr",
    "glutamate_rel",
    "mtorc1_rel",
    "synaptic_proteins_rel",
    "spine_density_rel",
    "madrs_change",
)


def comparison_times(days: float = 14.0) -> np.ndarray:
    """Output times (s): every 5 min for the first 12 h, then hourly to ``days``."""
    if not days > 0:
        raise ModelError(f"days must be positive, got {days}")
    early = np.arange(0.0, min(12 * HOUR, days * DAY), 300.0)
    late = np.arange(12 * HOUR, days * DAY + 1.0, HOUR)
    return np.unique(np.concatenate([early, late, [days * DAY]]))


def simulate_protocol(
    protocol: Protocol,
    model: CascadeModel | None = None,
    times: np.ndarray | None = None,
    observables: Sequence[str] = DRUG_OBSERVABLES,
) -> pd.DataFrame:
    """Time course of one protocol on the human model (preset + inputs); DataFrame indexed by time (s)."""
    model = model or load_model("human")
    times = comparison_times() if times is None else times
    params = with_drug(protocol.drug, "human", dict(protocol.inputs))
    return model.simulate(times, params, tuple(observables), equilibrate=False)


def summarise(curve: pd.DataFrame) -> dict[str, float]:
    """Readouts of one time course: peaks (plasma uM, block, glutamate, mTORC1) and the synaptic and MADRS
    values at 24 h, 7 d and the last time."""
    t = curve.index.to_numpy()

    def at(obs: str, time: float) -> float:
        return float(np.interp(time, t, curve[obs].to_numpy()))

    out = {
        "peak_plasma_uM": float(curve["ketamine_plasma"].max()),
        "peak_norketamine_uM": float(curve["norketamine_plasma"].max()),
        "peak_block_int": float(curve["nmda_block_int"].max()),
        "peak_block_pyr": float(curve["nmda_block_pyr"].max()),
        "peak_glutamate_rel": float(curve["glutamate_rel"].max()),
        "peak_mtorc1_rel": float(curve["mtorc1_rel"].max()),
        "synaptic_proteins_24h": at("synaptic_proteins_rel", DAY),
        "spines_24h": at("spine_density_rel", DAY),
        "spines_7d": at("spine_density_rel", 7 * DAY),
        "madrs_24h": at("madrs_change", DAY),
        "madrs_7d": at("madrs_change", 7 * DAY),
        "madrs_end": float(curve["madrs_change"].iloc[-1]),
        "madrs_best": float(curve["madrs_change"].min()),
    }
    return out


def equal_block_dose(
    drug: str,
    target_block: float,
    model: CascadeModel | None = None,
    infusion_duration: float = 2400.0,
    bracket: tuple[float, float] = (1e-3, 100.0),
    rtol: float = 1e-3,
) -> float:
    """IV dose (mg/kg over ``infusion_duration`` s) of ``drug`` whose peak interneuron NMDA block equals
    ``target_block`` (bisection on log dose; the peak block rises monotonically with the dose)."""
    if not 0 < target_block < 1:
        raise ModelError(f"target block must be in (0, 1), got {target_block}")
    model = model or load_model("human")
    times = np.linspace(0.0, infusion_duration + 6 * HOUR, 400)

    def peak(dose: float) -> float:
        p = with_drug(drug, "human", {"dose": dose, "infusion_duration": infusion_duration})
        return float(model.simulate(times, p, ("nmda_block_int",), equilibrate=False)["nmda_block_int"].max())

    lo, hi = bracket
    if not peak(lo) < target_block < peak(hi):
        raise ModelError(f"{drug}: a peak block of {target_block:.3g} is not reached between {lo} and {hi} mg/kg")
    while hi / lo > 1 + rtol:
        mid = float(np.sqrt(lo * hi))
        lo, hi = (mid, hi) if peak(mid) < target_block else (lo, mid)
    return float(np.sqrt(lo * hi))


def compare_drugs(
    protocols: Mapping[str, Protocol] | None = None,
    days: float = 14.0,
    equal_block: bool = True,
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Run each protocol (default :data:`PROTOCOLS`) on the human model for ``days``.

    With ``equal_block`` a last protocol gives memantine IV at the dose whose peak interneuron block equals
    that of racemic ketamine 0.5 mg/kg: the comparison at equal NMDA block, as opposed to clinical exposure.
    Returns (time courses by protocol name, summary table indexed by protocol).
    """
    model = load_model("human")
    protocols = dict(PROTOCOLS if protocols is None else protocols)
    times = comparison_times(days)
    curves: dict[str, pd.DataFrame] = {}
    for name, protocol in tqdm(protocols.items(), desc="drug protocols", unit="protocol", disable=None):
        curves[name] = simulate_protocol(protocol, model, times)
    if equal_block:
        reference = "racemic ketamine 0.5 mg/kg IV"
        ref = curves.get(reference)
        if ref is None or protocols[reference] != PROTOCOLS[reference]:
            ref = simulate_protocol(PROTOCOLS[reference], model, times)
        target = float(ref["nmda_block_int"].max())
        dose = equal_block_dose("memantine", target, model)
        name = f"memantine {dose:.2g} mg/kg IV (equal block)"
        memantine_iv = Protocol("memantine", {"dose": dose, "infusion_duration": 2400.0})
        curves[name] = simulate_protocol(memantine_iv, model, times)
    summary = pd.DataFrame({name: summarise(c) for name, c in curves.items()}).T
    summary.index.name = "protocol"
    return curves, summary


#: The calibration point of the MADRS link: ketamine 0.5 mg/kg vs midazolam, MADRS 7.95 points lower at 24 h
#: (Murrough et al. 2013 Am J Psychiatry 170:1134).
MADRS_CALIBRATION = {"time_s": 24 * HOUR, "madrs_change": -7.95}


def calibrate_madrs_gain(model: CascadeModel | None = None, k_madrs_effect: float | None = None) -> float:
    """The ``madrs_gain`` that reproduces :data:`MADRS_CALIBRATION` for racemic ketamine 0.5 mg/kg over 40 min
    (the score is linear in the gain, so one simulation with gain 1 gives it); ``k_madrs_effect`` (/s) defaults
    to the shipped value."""
    model = model or load_model("human")
    params = {"dose": 0.5, "infusion_duration": 2400.0, "madrs_gain": 1.0}
    if k_madrs_effect is not None:
        params["k_madrs_effect"] = k_madrs_effect
    times = np.array([0.0, MADRS_CALIBRATION["time_s"]])
    unit = float(model.simulate(times, params, ("madrs_change",), equilibrate=False)["madrs_change"].iloc[-1])
    if not unit < 0:
        raise ModelError(f"ketamine gives no improvement to scale at 24 h (madrs_change per unit gain {unit:.3g})")
    return MADRS_CALIBRATION["madrs_change"] / unit
