"""Drugs and the clinic: the drug presets of ``models/drugs.tsv`` through the whole cascade.

:func:`compare_drugs` runs each clinical protocol of :data:`PROTOCOLS` (human, 14 days by default) and returns
the time courses and a summary table (exposure, NMDA block, glutamate, mTORC1, synapses, MADRS).
:func:`equal_block_dose` finds the dose of a preset that gives the same peak interneuron NMDA block as a
reference protocol, so drugs can also be compared at equal block rather than at clinical exposure.
Times in s, doses in mg/kg (IV, rat i.p.) or mg (intranasal), concentrations in uM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import least_squares
from tqdm import tqdm

from analysis.analyses.readouts import DAY, HOUR
from analysis.core.drugs import PROTOCOLS, Protocol, with_drug
from analysis.core.errors import ModelError
from analysis.core.model import CascadeModel, load_model

__all__ = [
    "PROTOCOLS",
    "Protocol",
    "compare_drugs",
    "equal_block_dose",
    "calibrate_madrs_link",
    "madrs_link",
    "madrs_points",
]
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


@dataclass(frozen=True)
class ClinicalPoint:
    """A published placebo-controlled MADRS improvement (points, positive = better than placebo) ``time_s`` s
    after a dose given by ``parameters`` (human model inputs and drug preset), with the SD of its log-normal
    error (``sigma_log`` = SE / mean)."""

    name: str
    parameters: Mapping[str, float]
    time_s: float
    improvement: float
    sigma_log: float
    use: str
    source: str


#: Observable of the clinical rows of ``models/calibration_data.tsv``.
MADRS_OBSERVABLE = "-madrs_change"


def madrs_points(use: str | None = "fit") -> tuple[ClinicalPoint, ...]:
    """The clinical rows of ``models/calibration_data.tsv`` (the one table of calibration data, also the PEtab
    problem's), ``use`` "fit" (default), "holdout" or None for both."""
    from analysis.calibration.petab_problem import read_data, row_inputs

    return tuple(
        ClinicalPoint(
            r["id"],
            row_inputs(r, "human"),
            float(r["time_s"]),
            float(r["value"]),
            float(r["sigma_log"]),
            r["use"],
            r["citation"],
        )
        for r in read_data()
        if r["species"] == "human"
        and r["observable"].replace(" ", "") == MADRS_OBSERVABLE
        and (use is None or r["use"] == use)
    )


def madrs_link(effect_rel: np.ndarray | float, emax: float, x50: float) -> np.ndarray:
    """MADRS change (points) of the saturating link for effect-compartment levels ``effect_rel`` (1 =
    drug-free): the same formula as ``madrs_change`` in ``models/clinical_human.ant``."""
    x = np.asarray(effect_rel, dtype=float) - 1.0
    return -emax * x / (x50 + np.abs(x))


def calibrate_madrs_link(
    model: CascadeModel | None = None,
    points: Sequence[ClinicalPoint] | None = None,
    k_madrs_effect: float | None = None,
) -> dict[str, float]:
    """Fit ``madrs_emax`` (points) and ``madrs_x50`` (dimensionless) of the MADRS link to ``points`` (default:
    the ``fit`` rows of :func:`madrs_points`) by least squares on the log scale, residual
    (log simulated - log measured) / sigma_log: the same log-normal likelihood as the PEtab problem.

    The link is algebraic in the effect compartment, so each protocol is simulated once (``madrs_effect_rel``
    at the point's time) and only the two link parameters are optimised.  ``k_madrs_effect`` (/s) defaults to
    the shipped value.  Returns the two values, the fitted MADRS changes by point name and the weighted sum
    of squares (``chi2``).
    """
    model = model or load_model("human")
    points = madrs_points("fit") if points is None else tuple(points)
    if len(points) < 2:
        raise ModelError("the MADRS link has two parameters: give at least two clinical points")
    levels = []
    for point in points:
        params = dict(point.parameters)
        if k_madrs_effect is not None:
            params["k_madrs_effect"] = k_madrs_effect
        times = np.array([0.0, point.time_s])
        curve = model.simulate(times, params, ("madrs_effect_rel",), equilibrate=False)
        levels.append(float(curve["madrs_effect_rel"].iloc[-1]))
    effect = np.array(levels)
    if not np.all(effect > 1.0):
        raise ModelError(f"no synaptic effect to link at the clinical points (madrs_effect_rel {effect})")
    data = np.log([p.improvement for p in points])
    sigma = np.array([p.sigma_log for p in points])

    def residuals(log_params: np.ndarray) -> np.ndarray:
        emax, x50 = np.exp(log_params)
        return (np.log(-madrs_link(effect, emax, x50)) - data) / sigma

    start = np.log([float(np.exp(data).max()), float(np.median(effect - 1.0))])
    fit = least_squares(residuals, start, method="lm", xtol=1e-12, ftol=1e-12)
    if not fit.success:
        raise ModelError(f"the MADRS link fit failed: {fit.message}")
    emax, x50 = (float(v) for v in np.exp(fit.x))
    fitted = madrs_link(effect, emax, x50)
    return {
        "madrs_emax": emax,
        "madrs_x50": x50,
        "chi2": float(np.sum(fit.fun**2)),
        **{f"fit: {p.name}": float(v) for p, v in zip(points, fitted, strict=True)},
    }
