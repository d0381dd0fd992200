"""Robustness of the drug-free operating point over the parameter table's plausible ranges.

Three analyses, all on the checks of :mod:`analysis.core.steady_state` (converged, Jacobian-stable,
physiological firing), and optionally a dosed run of every set that passes (``dose``: the set is
equilibrated drug-free, dosed, and simulated for :data:`DOSED_HORIZON`; a run that ends on the runaway branch
(:class:`~analysis.core.errors.RunawayError`) or makes the solver fail is a failure with its reason):

* :func:`range_ends` - every parameter alone at the lower and the upper end of its range;
* :func:`joint_box` - all chosen parameters drawn together, log-uniformly inside their ranges
  (uniformly where a range includes values <= 0);
* :func:`continuation` - natural-parameter continuation of the physiological (low-activity) branch: the
  parameter is stepped away from its table value and each steady state is found by integrating from the
  previous one, so the branch is followed until it ends (a saddle-node, where the state jumps to the
  runaway branch) or loses stability.

CLI: ``ketamine-cascade robustness --species rat --samples 1000 --out results/robustness``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import linalg
from tqdm import tqdm

from analysis.analyses.sensitivity import as_model
from analysis.core import steady_state
from analysis.core.errors import SimulationError, without_parameters
from analysis.core.model import INPUTS, CascadeModel
from analysis.core.simulate import time_grid
from analysis.core.tables import parameter_bounds, read_parameters

#: Parameters a continuation scan follows by default: the ones the model-v2 issue names as most sensitive (Mg2+, the
#: GABA reversal, the pyramidal rest and gains: AMPA and NMDA conductances and the steepness of the rate curve).
CONTINUATION_DEFAULT = ("mg_ext", "e_gaba", "v_rest_pyr", "g_ampa_pyr", "g_nmda_pyr", "v_slope_pyr")
COLUMNS = ["ok", "rate_pyr", "rate_int", "max_eigenvalue", "max_relative_rate", "reason"]
#: Simulated time (s) after the dose in the dosed check: a week covers the surge, the synaptic response
#: and its return.
DOSED_HORIZON = 7 * 86400.0
#: Output times of the dosed check (s after the dose): the default grid of a 7-day run (every minute for 6 h,
#: then 400 points), so the check runs exactly what a user's default simulation runs.
DOSED_TIMES = time_grid(DOSED_HORIZON)


def survey_parameters(species: str, evidence: Sequence[str] | None = ("measured", "derived")) -> list[str]:
    """Parameters with a non-degenerate plausible range and the given evidence (``None``: any, including the
    assumed ones), except inputs and the drug-only ones (which cannot move the drug-free state)."""
    from analysis.core.model import load_model

    model = load_model(species)
    skip = set(INPUTS) | model.drug_only_parameters
    return [
        pid
        for pid, p in read_parameters(species).items()
        if pid in model.defaults
        and pid not in skip
        and p.lower < p.upper
        and (evidence is None or p.evidence in evidence)
    ]


def _row(check: steady_state.StateCheck) -> dict:
    """The survey columns (:data:`COLUMNS`) of one drug-free state check."""
    return {c: getattr(check, c) for c in COLUMNS}


def dosed_check(m: CascadeModel, parameters: dict[str, float], dose: float) -> tuple[bool, str]:
    """Equilibrate ``parameters`` drug-free, give ``dose`` (mg/kg) and simulate :data:`DOSED_HORIZON` s.

    Returns (ok, reason): not ok when the run ends on the runaway branch, the solver fails, or the set has
    no physiological drug-free state.  The model's parameters are restored by its next ``apply``.
    """
    try:
        m.simulate(DOSED_TIMES, {**parameters, "dose": dose}, ["rate_pyr"], equilibrate=True)
    except SimulationError as exc:  # the message names the set; the table already holds it
        return False, f"{type(exc).__name__}: " + without_parameters(str(exc))
    return True, ""


def _with_dosed(m: CascadeModel, rows: dict, sets: dict, dose: float | None, progress: bool) -> None:
    """Add ``dosed_ok``/``dosed_reason`` to each row whose drug-free state passed (in place)."""
    if not dose:
        return
    for key in tqdm(rows, desc=f"dosed {dose:g} mg/kg", disable=not progress):
        row = rows[key]
        row["dosed_ok"], row["dosed_reason"] = (
            dosed_check(m, sets[key], dose) if row["ok"] else (False, "no physiological drug-free state")
        )


def range_ends(
    model: CascadeModel | str,
    parameters: Sequence[str] | None = None,
    progress: bool = True,
    dose: float | None = None,
) -> pd.DataFrame:
    """Each parameter alone at the lower and upper end of its plausible range (others at their values).

    Returns a DataFrame indexed by (parameter, end) with the parameter's value and the checks of the
    drug-free state (``ok``, rates in Hz, largest eigenvalue in 1/s, the reason when it failed); with a
    ``dose`` (mg/kg) also ``dosed_ok``/``dosed_reason`` of :func:`dosed_check`.
    """
    m = as_model(model)
    ids = survey_parameters(m.species) if parameters is None else list(parameters)
    bounds = parameter_bounds(m.species, ids)
    rows, sets = {}, {}
    for p in tqdm(ids, desc="range ends", unit="parameter", disable=not progress):
        for end in ("lower", "upper"):
            x = float(bounds.loc[p, end])
            sets[(p, end)] = {p: x}
            rows[(p, end)] = {"value": x, **_row(m.drug_free_state({p: x}))}
    _with_dosed(m, rows, sets, dose, progress)
    m.apply({})
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index = pd.MultiIndex.from_tuples(df.index, names=["parameter", "end"])
    return df


def sample_box(species: str, n: int, seed: int = 0, parameters: Sequence[str] | None = None) -> pd.DataFrame:
    """``n`` parameter sets drawn jointly and independently inside the plausible ranges: log-uniform for
    positive ranges, uniform where a range includes values <= 0.  Seeded."""
    ids = survey_parameters(species) if parameters is None else list(parameters)
    bounds = parameter_bounds(species, ids)
    rng = np.random.default_rng(seed)
    data = {}
    for p in ids:
        lo, hi = float(bounds.loc[p, "lower"]), float(bounds.loc[p, "upper"])
        u = rng.uniform(size=n)
        data[p] = np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo))) if lo > 0 else lo + u * (hi - lo)
    return pd.DataFrame(data, index=pd.RangeIndex(n, name="sample"))


def joint_box(
    model: CascadeModel | str,
    n: int = 1000,
    seed: int = 0,
    parameters: Sequence[str] | None = None,
    progress: bool = True,
    dose: float | None = None,
) -> pd.DataFrame:
    """The checks of the drug-free state for ``n`` jointly sampled parameter sets (:func:`sample_box`);
    with a ``dose`` (mg/kg) also the dosed run of each (:func:`dosed_check`).

    Returns the samples with the check columns appended (one row per set).
    """
    m = as_model(model)
    samples = sample_box(m.species, n, seed, parameters)
    sets = {i: row.to_dict() for i, row in samples.iterrows()}
    rows = {
        i: _row(m.drug_free_state(p)) for i, p in tqdm(sets.items(), total=n, desc="joint box", disable=not progress)
    }
    _with_dosed(m, rows, sets, dose, progress)
    m.apply({})
    return pd.concat([samples, pd.DataFrame.from_dict(rows, orient="index").reindex(samples.index)], axis=1)


def continuation(
    model: CascadeModel | str, parameter: str, n: int = 41, span: tuple[float, float] | None = None
) -> pd.DataFrame:
    """Follow the physiological drug-free branch as ``parameter`` moves from its table value to each end.

    ``span`` defaults to the plausible range widened by half its width on each side (so a branch that
    ends just outside the range is seen).  Each step starts from the previous steady state and integrates
    drug-free for :data:`analysis.core.steady_state.EQUILIBRATION_TIME`; a jump of the rates is where the branch
    ends.  Returns a DataFrame indexed by the parameter value with the check columns (``max_eigenvalue`` is the
    real part of the leading eigenvalue), ``leading_imag`` (its |imaginary part|, 1/s; :func:`branch_kind` reads
    the bifurcation from the two) and ``branch`` ('low' on the physiological branch, 'runaway' otherwise), sorted
    by value.
    """
    m = as_model(model)
    b = parameter_bounds(m.species, [parameter]).loc[parameter]
    x0 = m.defaults[parameter]
    if span is None:
        width = float(b["upper"] - b["lower"])
        lo, hi = float(b["lower"]) - width / 2, float(b["upper"]) + width / 2
        if b["lower"] > 0:
            lo = max(lo, float(b["lower"]) / 2)
    else:
        lo, hi = span
    rows = {}
    space = m.space
    for target in (lo, hi):
        m.apply({"t_dose": 1e30})  # from the shipped state, dose disarmed
        for x in np.linspace(x0, target, max(2, n // 2 + 1)):
            m.rr[parameter] = float(x)
            check = steady_state.equilibrate(m.rr, space)
            rows[float(x)] = {**_row(check), "leading_imag": check.leading_imag}
    m.rr[parameter] = x0
    m.apply({})
    df = pd.DataFrame.from_dict(rows, orient="index").sort_index().rename_axis(parameter)
    df["branch"] = np.where(df["rate_pyr"] <= steady_state.MAX_RATE["rate_pyr"], "low", "runaway")
    df.attrs.update(lower=float(b["lower"]), upper=float(b["upper"]), value=x0)
    return df


def branch_kind(scan: pd.DataFrame, side: str) -> str | None:
    """How the physiological branch of a :func:`continuation` scan ends on ``side`` ('below' or 'above' the table
    value), read at the first step off the branch: ``'fold'`` (saddle-node: the low-activity state disappears and
    the step lands on the runaway branch), ``'Hopf'`` (the state still exists, but a complex pair of eigenvalues
    has crossed into the right half-plane), ``'real instability'`` (a real eigenvalue crossed), ``'oscillation'``
    (no steady state is reached because the circuit oscillates: the limit cycle past a Hopf), ``'no state'``
    (otherwise, e.g. the solver broke down), or None if the branch spans the scan on that side."""
    if side not in ("below", "above"):
        raise ValueError(f"side must be 'below' or 'above', got {side!r}")
    lo, hi = branch_end(scan)
    end = lo if side == "below" else hi
    if end is None:
        return None
    row = scan.loc[end]
    if row["branch"] == "runaway":
        return "fold"
    lead = row["max_eigenvalue"]
    if "not at a steady state" not in row["reason"] and np.isfinite(lead) and lead > 0:
        return "Hopf" if row["leading_imag"] > ROUND_OFF_IMAG * abs(lead) else "real instability"
    return "oscillation" if "oscillating" in row["reason"] else "no state"


def branch_end(scan: pd.DataFrame) -> tuple[float | None, float | None]:
    """The parameter values (below and above the table value) where the physiological branch ends in a
    continuation scan, or None if it spans the scanned interval on that side."""
    x0 = scan.attrs.get("value")
    low = scan[scan.index <= x0]
    high = scan[scan.index >= x0]
    below = low.index[~low["ok"].values]
    above = high.index[~high["ok"].values]
    return (float(below.max()) if len(below) else None, float(above.min()) if len(above) else None)


def _at_drug_free_state(model: CascadeModel | str, parameters: dict[str, float] | None) -> CascadeModel:
    """The model, moved to the drug-free steady state of ``parameters`` (the shipped state, dose disarmed, if
    none); raises :class:`SimulationError` (model back at its shipped parameters) if that set has none."""
    m = as_model(model)
    if parameters:
        check = m.drug_free_state(parameters)
        if not check.ok:
            m.apply({})
            raise SimulationError(f"no drug-free state to analyse: {check.reason}")
    else:
        m.apply({"t_dose": 1e30})
    return m


#: Relative size of an eigenvalue's imaginary part below which it is round-off, not an oscillation.
ROUND_OFF_IMAG = 1e-6
#: Eigenvalues smaller than this (1/s; an e-folding time of 300,000 years) are the round-off of the Jacobian's
#: (near-)zero directions, whatever their imaginary part.
ROUND_OFF_EIGENVALUE = 1e-13


def oscillatory_modes(
    model: CascadeModel | str = "rat",
    parameters: dict[str, float] | None = None,
    slowest: float = 1e-3,
    top: int = 5,
) -> pd.DataFrame:
    """Damped oscillations of the drug-free state: the complex eigenvalue pairs of its Jacobian (on the
    invariant subspace) slower than ``slowest`` (1/s), one row per pair, slowest decay first.

    Columns: ``decay_per_s`` (-Re), ``period_days`` (2 pi / |Im|), ``damping_ratio`` (-Re / |lambda|; 1 and above
    would be no oscillation; an overshoot of exp(-pi z / sqrt(1 - z^2)) follows a step), ``overshoot`` and
    ``states``: the ``top`` states with the largest participation factors (share of the mode, in brackets).
    ``parameters`` first move the model to that set's drug-free state (:meth:`CascadeModel.drug_free_state`);
    the model is left at its shipped parameters.  This is how a ringing loop is found and designed out
    (model-v2 issue, item 3).
    """
    m = _at_drug_free_state(model, parameters)
    # modal analysis on the drug-free states (the drug states are 0 and decouple): right and left eigenvectors,
    # participation factor of state i in mode k = |w_ik v_ik| / sum_i |w_ik v_ik| (Perez-Arriaga et al. 1982)
    free = m.space.free if m.space.free.size else np.arange(len(m.space.ids))
    try:
        jac = steady_state.jacobian(m.rr, m.space, free)[0]
    finally:
        m.apply({})
    values, left, right = linalg.eig(jac[np.ix_(free, free)], left=True, right=True)
    rows = []
    # a pair whose imaginary part is round-off (near-degenerate real eigenvalues of the slow spine states: periods
    # of 1e10 days and more) is not an oscillation
    size = np.abs(values)
    for k in np.flatnonzero((values.imag > ROUND_OFF_IMAG * size) & (size < slowest) & (size > ROUND_OFF_EIGENVALUE)):
        lam = values[k]
        share = np.abs(left[:, k].conj() * right[:, k])
        share /= share.sum()
        z = float(-lam.real / abs(lam))
        order = np.argsort(-share)[:top]
        rows.append(
            {
                "decay_per_s": float(-lam.real),
                "period_days": float(2 * np.pi / lam.imag / 86400.0),
                "damping_ratio": z,
                "overshoot": float(np.exp(-np.pi * z / np.sqrt(1 - z * z))) if 0 <= z < 1 else 0.0,
                "states": ", ".join(f"{m.space.ids[free[i]]} ({share[i]:.2f})" for i in order),
            }
        )
    columns = ["decay_per_s", "period_days", "damping_ratio", "overshoot", "states"]
    return pd.DataFrame(rows, columns=columns).sort_values("decay_per_s", ignore_index=True)


#: The slow control states of the two firing-rate homeostats (models/homeostasis.ant).
HOMEOSTATS = ("homeo_scale", "homeo_scale_int")
#: The parameter that couples pyramidal activity into the interneuron homeostat (Narp, Chang et al. 2010).
NARP_WEIGHT = "homeo_narp_weight"


def _homeostat_directions(space: steady_state.StateSpace) -> tuple[np.ndarray, np.ndarray]:
    """The homeostat states as unit columns (``slow``) and an orthonormal basis of every other drug-free direction
    (``fast``: the drug-free invariant subspace with the homeostats projected out)."""
    slow = np.zeros((len(space.ids), len(HOMEOSTATS)))
    for k, sid in enumerate(HOMEOSTATS):
        slow[space.ids.index(sid), k] = 1.0
    basis = steady_state.drug_free_basis(space)
    return slow, linalg.orth(basis - slow @ (slow.T @ basis))


def _homeostat_matrix(m: CascadeModel) -> np.ndarray:
    """The 2x2 Jacobian (1/s) of the homeostat states with every other state at its quasi-steady state: the
    Schur complement of the drug-free Jacobian on the invariant subspace (conserved moieties and the drug
    states, 0 drug-free, projected out)."""
    jac = steady_state.jacobian(m.rr, m.space)[0]
    slow, fast = _homeostat_directions(m.space)
    j_ss, j_sf = slow.T @ jac @ slow, slow.T @ jac @ fast
    j_fs, j_ff = fast.T @ jac @ slow, fast.T @ jac @ fast
    return j_ss - j_sf @ linalg.solve(j_ff, j_fs)


def _damping(a: np.ndarray) -> float:
    """Damping ratio -tr / (2 sqrt(det)) of a stable 2x2 linear system (>= 1: no oscillation)."""
    det = float(np.linalg.det(a))
    return float(-np.trace(a) / (2 * np.sqrt(det))) if det > 0 else float("nan")


def homeostat_loop(model: CascadeModel | str = "rat", parameters: dict[str, float] | None = None) -> dict:
    """The design check of the two firing-rate homeostats at a drug-free steady state (model-v2 item 3).

    On the days scale the circuit, Ca2+ and signalling states are at their quasi-steady state, so the
    homeostats form a two-state linear system: its matrix (1/s) is the Schur complement of the drug-free
    Jacobian on ``homeo_scale`` and ``homeo_scale_int``.  Two integral controllers coupled through the E-I
    circuit (pyramidal excitability drives the interneurons, interneuron excitability inhibits the pyramidal
    cells) ring when the coupling beats the difference of their own gains; the Narp term (pyramidal activity
    sensed by the interneuron homeostat, ``homeo_narp_weight``) adds damping without moving the steady state,
    which does not depend on it (both errors are 0 there).  The steady state is the same for every Narp weight,
    so the matrix is affine in it and the weight where the loop stops oscillating is solved for exactly.

    Returns ``narp_weight``, ``eigenvalues`` (1/s, the two of the reduced system), ``damping_ratio``
    (-tr / (2 sqrt(det)); >= 1 means no oscillation), ``critical_narp_weight`` (the smallest weight >= 0 with a
    damping ratio of 1; NaN if there is none) and ``matrix``.  ``parameters`` first move the model to that set's
    drug-free state; the model is left at its shipped parameters.
    """
    m = _at_drug_free_state(model, parameters)
    c0 = float(m.rr[NARP_WEIGHT])
    try:
        a0 = _homeostat_matrix(m)
        m.rr[NARP_WEIGHT] = c0 + 1.0
        slope = _homeostat_matrix(m) - a0
    finally:
        m.rr[NARP_WEIGHT] = c0
        m.apply({})
    # discriminant tr(A)^2 - 4 det(A) of A(c0 + x) = a0 + x slope, a quadratic in x
    t0, t1 = np.trace(a0), np.trace(slope)
    d0 = np.linalg.det(a0)
    d2 = np.linalg.det(slope)
    d1 = a0[0, 0] * slope[1, 1] + a0[1, 1] * slope[0, 0] - a0[0, 1] * slope[1, 0] - a0[1, 0] * slope[0, 1]
    roots = np.roots([t1 * t1 - 4 * d2, 2 * t0 * t1 - 4 * d1, t0 * t0 - 4 * d0])
    weights = sorted(float(c0 + r.real) for r in roots if abs(r.imag) < 1e-12 and c0 + r.real >= 0)
    return {
        "narp_weight": c0,
        "eigenvalues": np.linalg.eigvals(a0),
        "damping_ratio": _damping(a0),
        "critical_narp_weight": weights[0] if weights else float("nan"),
        "matrix": a0,
    }


#: The pyramidal excitatory conductances (circuit.ant, ``i_ampa_pyr``, ``i_nmda_pyr``); spines carry a share of them.
EXCITATORY_PYR = ("g_ampa_pyr", "g_nmda_pyr")
#: The share of that drive carried by spine synapses (model v2.1, circuit.ant) and the time constant of the weight
#: normalisation that makes the extra drive of new synapses transient.
SYNAPSE_SHARE = "spine_synapse_share"
NORMALISATION = "tau_synaptic_normalisation"
#: The stages of the activity -> synapse loop, in cascade order, read by :func:`synapse_drive_loop`.
LOOP_STAGES = (
    "rate_pyr", "glutamate_rel", "ca_pyr", "bdnf_rel", "trkb_bdnf", "mtorc1_rel", "syn_program",
    "dendritic_proteins_rel", "synaptic_proteins_rel", "spine_density_rel", "spine_synapses",
)  # fmt: skip
#: Relative step of the excitatory conductances for the open-loop response (central differences).
LOOP_STEP = 1e-4


def _directional(
    m: CascadeModel, x0: np.ndarray, dx: np.ndarray, g0: dict[str, float], ids: Sequence[str]
) -> np.ndarray:
    """d(observable)/d(ln g) along the state direction ``dx`` (per unit ln g), by central differences: the state
    and the excitatory conductances move together.  The state and the conductances are restored."""
    out = []
    try:
        for sign in (1.0, -1.0):
            h = sign * LOOP_STEP
            steady_state.set_state(m.rr, m.space, x0 + h * dx)
            steady_state.set_parameters(m.rr, m.space, {p: v * np.exp(h) for p, v in g0.items()})
            out.append(np.array([m.rr[i] for i in ids], dtype=float))
    finally:
        steady_state.set_parameters(m.rr, m.space, g0)
        steady_state.set_state(m.rr, m.space, x0)
    return (out[0] - out[1]) / (2 * LOOP_STEP)


def synapse_drive_loop(
    model: CascadeModel | str = "rat",
    shares: Sequence[float] | np.ndarray | None = None,
    parameters: dict[str, float] | None = None,
) -> dict:
    """The activity -> synapse loop of model v2.1 (model-v2 item 3): new synapses carry excitatory drive.

    A share ``a`` (``spine_synapse_share``, 0.9) of the pyramidal AMPA and NMDA conductances scales with the spines
    that hold PSD-95 (``spine_synapses``) relative to their count of the last days (``spine_weight_ref``, time
    constant ``tau_synaptic_normalisation``).  Drug-free the count equals its reference, so the steady state is the
    same for every share, and the share only changes the Jacobian: the loop can be analysed exactly by setting it.

    Returns a dict:

    * ``elasticities`` - the steady-state response of each stage of :data:`LOOP_STAGES` to a sustained change of
      the excitatory conductances with the loop open (share 0; homeostats free, as in the animal): d ln y / d ln g;
    * ``open_loop_gain`` - that of ``spine_synapses``, K.  Without normalisation the loop's DC gain at share a is
      a K (model v2.1: K ~ 1.2, against ~24 in v2, 78 with the homeostats held: its three cooperative steps made
      the drug-free synaptic state hypersensitive to tonic activity); the normalisation removes the DC path, and
      with a K this small no normalisation time of the table's range (1-14 d) lets the loop outgrow the homeostats;
    * ``scan`` - DataFrame over ``shares`` (default 0 to 1): ``max_real`` (1/s), the largest real part of the
      eigenvalues of the drug-free Jacobian (on its invariant subspace) at that share, and ``period_days`` of that
      mode (inf if real), one row per distinct share, ascending;
    * ``critical_share`` - the smallest share at which the drug-free state loses stability (bisection between the
      scan's points; NaN if it is stable over the whole scan);
    * ``share`` - the model's own share.

    ``parameters`` (for example a normalisation time) first move the model to that set's drug-free state; the model
    is left at its shipped parameters.
    """
    grid = np.linspace(0.0, 1.0, 41) if shares is None else np.unique(np.asarray(shares, dtype=float))
    if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid < 0):
        raise ValueError("shares must be a non-empty sequence of values >= 0")
    m = _at_drug_free_state(model, parameters)
    if SYNAPSE_SHARE not in m.parameters:
        m.apply({})
        raise ValueError(f"{m.model_id} has no {SYNAPSE_SHARE}: new synapses carry no drive in this model")
    rr, space = m.rr, m.space
    basis = steady_state.drug_free_basis(space)
    own = float(rr[SYNAPSE_SHARE])
    try:
        # The share multiplies (count / reference - 1), which is 0 at the drug-free state, so the Jacobian there is
        # affine in the share: J(a) = J(0) + a (J(1) - J(0)).  Two Jacobians give every share of the scan.
        x0 = steady_state.get_state(rr, space)
        steady_state.set_parameters(rr, space, {SYNAPSE_SHARE: 1.0})
        jac1 = steady_state.jacobian(rr, space)[0]
        steady_state.set_parameters(rr, space, {SYNAPSE_SHARE: 0.0})
        jac0 = steady_state.jacobian(rr, space)[0]
        a0, da = basis.T @ jac0 @ basis, basis.T @ (jac1 - jac0) @ basis
        # open loop (share 0): the new steady state after a sustained change of the conductances, dx = -J^-1 u
        g0 = {p: float(rr[p]) for p in EXCITATORY_PYR}
        rates = []
        for sign in (1.0, -1.0):
            steady_state.set_parameters(rr, space, {p: v * np.exp(sign * LOOP_STEP) for p, v in g0.items()})
            rates.append(np.asarray(rr.getRatesOfChange(), dtype=float))
        steady_state.set_parameters(rr, space, g0)
        u = (rates[0] - rates[1]) / (2 * LOOP_STEP)
        dx = -basis @ linalg.solve(a0, basis.T @ u)
        base = np.array([rr[i] for i in LOOP_STAGES], dtype=float)
        elasticities = pd.Series(_directional(m, x0, dx, g0, LOOP_STAGES) / base, index=list(LOOP_STAGES))

        def leading(a: float) -> complex:
            values = linalg.eigvals(a0 + a * da)
            values = values[np.abs(values) > ROUND_OFF_EIGENVALUE]
            return complex(values[np.argmax(values.real)])

        lead = [leading(a) for a in grid]
        critical = float("nan")
        unstable = np.flatnonzero([z.real > 0 for z in lead])
        if unstable.size:
            k = int(unstable[0])
            lo, hi = (float(grid[k - 1]), float(grid[k])) if k else (0.0, float(grid[0]))
            for _ in range(40):
                mid = 0.5 * (lo + hi)
                lo, hi = (lo, mid) if leading(mid).real > 0 else (mid, hi)
            critical = hi
    finally:
        steady_state.set_parameters(rr, space, {SYNAPSE_SHARE: own})  # set directly, so apply() would not restore it
        m.apply({})
    oscillating = [abs(z.imag) > ROUND_OFF_IMAG * abs(z) for z in lead]
    periods = [2 * np.pi / abs(z.imag) / 86400.0 if o else np.inf for z, o in zip(lead, oscillating, strict=True)]
    scan = pd.DataFrame({"share": grid, "max_real": [z.real for z in lead], "period_days": periods})
    return {
        "elasticities": elasticities,
        "open_loop_gain": float(elasticities["spine_synapses"]),
        "scan": scan,
        "critical_share": critical,
        "share": own,
    }


__all__ = [
    "branch_end", "branch_kind", "continuation", "dosed_check", "homeostat_loop", "joint_box", "oscillatory_modes",
    "range_ends", "sample_box", "survey_parameters", "synapse_drive_loop",
]  # fmt: skip
