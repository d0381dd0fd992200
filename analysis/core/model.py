"""Load an exchanged SBML file once (JIT-compiled by libroadrunner) and simulate it safely.

The dosing recipe every SBML user must follow (see README, "Exchange contract")::

    set inputs (dose, t_dose, ...)  ->  reset()  ->  simulate(0, t_end)

libroadrunner evaluates event triggers when the model is reset, so an event whose
trigger already holds at t = 0 (``t_dose = 0``) fires during ``reset()`` with the
input values set *before* the reset.  :meth:`CascadeModel.simulate` applies that
recipe and restores every parameter it did not get to its shipped value, so runs
never leak into each other.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import libsbml
import numpy as np
import pandas as pd
import roadrunner

from analysis.core import steady_state
from analysis.core.errors import (
    DrugFreeStateError,
    ModelError,
    RunawayError,
    SimulationError,
    SimulationTimeout,
    StepBudgetError,
)
from analysis.core.paths import SPECIES, sbml_path
from analysis.core.steady_state import EQUILIBRATION_TIME, StateCheck  # noqa: F401  (re-exported)

__all__ = [
    "OBSERVABLES",
    "INPUTS",
    "EQUILIBRATION_TIME",
    "CascadeModel",
    "ModelSpec",
    "SPECIES_OBSERVABLES",
    "ModelError",
    "SimulationError",
    "DrugFreeStateError",
    "RunawayError",
    "NotAtSteadyStateWarning",
    "load_model",
    "model_spec",
]

#: Contract observables (global SBML ids), in the order of the README table.
OBSERVABLES = [
    "ketamine_plasma",
    "ketamine_brain",
    "nmda_block_int",
    "nmda_block_pyr",
    "rate_int",
    "rate_pyr",
    "glutamate_rel",
    "ampa_rel",
    "mtorc1_rel",
    "bdnf_rel",
    "synaptic_proteins_rel",
    "spine_density_rel",
]
#: Observables that only one species' model has (exchanged in its SED-ML experiments and checked across
#: simulators with the contract ones): the human clinical readout, MADRS points against placebo.
SPECIES_OBSERVABLES: dict[str, tuple[str, ...]] = {"human": ("madrs_change",), "rat": ()}
#: Inputs with their allowed range (inclusive); everything else must be >= 0 and finite.
INPUT_RANGES = {
    "dose": (0.0, math.inf),
    "dose_intranasal": (0.0, math.inf),
    "dose_step2": (0.0, math.inf),
    "dose_step3": (0.0, math.inf),
    "t_dose": (0.0, math.inf),
    "infusion_duration": (1e-9, math.inf),
    "body_weight": (1e-9, math.inf),
    "inhib_ampa": (0.0, 1.0),
    "inhib_mtorc1": (0.0, 1.0),
    "inhib_trkb": (0.0, 1.0),
    "inhib_ltype": (0.0, 1.0),
}
#: Inputs of the exchange contract: dosing, body weight and the interventions (inhibitors), applied at reset as in
#: the README recipe.  Dosing and body weight do not move the drug-free steady state; the interventions act from
#: the moment they are set (they are experiments, not physiology), so none of these triggers pre-equilibration.
#: Any other parameter changes physiology, including ``bdnf_secretion`` (the Val66Met genotype: lifelong, so a
#: run of it starts from its own drug-free state; model v2.1, where it sets the BDNF supply of a slow store).
INPUTS = frozenset(
    {
        "dose",
        "dose_intranasal",
        "dose_step2",
        "dose_step3",
        "t_dose",
        "infusion_duration",
        "inhib_ampa",
        "inhib_mtorc1",
        "inhib_trkb",
        "inhib_ltype",
        "body_weight",
    }
)
#: Fixed segments an equilibrated or time-limited run is cut into (CVODE restarts at each boundary; a run is also
#: cut where its output interval jumps, and under a time limit into pieces sized from its speed, see below).  History:
#: BDF orders 3-5 are not A-stable, and for some parameter sets a lightly damped mode of the circuit made CVODE's
#: order selection fail again and again after the dose (one uninterrupted 2-day run 5-7 s, 49 of 952 Sobol sets of
#: the rat box); 8 restarts cured most of them.  The step cap with its BDF2 redo (:data:`PIECE_MAX_STEPS`) now catches
#: that mode in any piece, and the restarts only cost: measured 2026-11-29 on 300 population subjects (7-day grid of
#: the population command, 60-s limit) 13.0-13.4 ms a set with 8 segments, 11.5 with 2, 10.8 with 1; on 1,200 sets of
#: the rat Sobol box (48-h readout grid, 2-s limit) 21.5 s of CPU with 8, 20.4 with 1, the same failures (5 step
#: budgets, 114 drug-free states) and outputs that agree to 4.5e-5 of each observable's range.  A plain run of the
#: shipped state stays one uninterrupted run, so that it reproduces the README recipe in any libroadrunner exactly.
TIME_LIMIT_SEGMENTS = 1
#: A time-limited run starts with a piece of this many output intervals; after it each piece is sized from the run's
#: own speed so far to take about :data:`TIME_LIMIT_CHECK_SHARE` of the limit, so that its clock is checked that
#: often.  A set whose circuit oscillates under the drug costs ~0.1 s of CPU per 30-s output interval: with 8 fixed
#: pieces of a 48-h readout grid (1261 times) the first piece alone ran 18 s past a 2-s limit, hence small pieces
#: for slow runs.  Fixed pieces of 40 intervals (32 restarts on that grid) made the ordinary sets ~30 % slower than 8
#: pieces (median 24 vs 18 ms, 480 Sobol sets of the rat box); sized pieces keep ordinary sets in one or two pieces.
TIME_LIMIT_PIECE_INTERVALS = 40
#: Share of the time limit one piece of a time-limited run may take, at the speed measured so far (see above).
TIME_LIMIT_CHECK_SHARE = 0.05
#: CVODE steps allowed per output interval in a piece of a segmented run before the piece is redone at
#: :data:`FALLBACK_BDF_ORDER`.  Restarts alone (8 fixed segments, the earlier design) did not cure every set: in the rat
#: Sobol box some base rows (and their ~120 one-coordinate neighbours) still took 0.2-7 s each at BDF orders up
#: to 5, hundreds of steps per 30-s output interval although nothing oscillates (the rates settle
#: monotonically), where an ordinary piece takes ~1 ms for 150 intervals.  Measured on the rat Sobol box
#: (N = 32; 34 slow and 200 ordinary sets, 2-s limit), CPU of the slow / ordinary sets: cap 500: 2.8 / 4.0 s
#: (sets at ~300 steps per interval stay slow); 200: 1.2 / 3.5 s; 100: 1.2 / 3.9 s; 60: 1.5 / 8.3 s (the dose's
#: own transient then sends most ordinary pieces to the fallback).  A false alarm costs one piece at BDF2 (ms).
PIECE_MAX_STEPS = 200
#: ... and at least this many per hour of output interval: CVODE's steps per interval grow with the interval, and on
#: the 30-min grid of a 7-day population run a flat 200 sent nearly every piece of ordinary sets to the fallback
#: (equilibrated / plain cost 3.8 instead of 1.4, `benchmarks/bench_population.py`).  Measured on 30 sets of that
#: benchmark: median ratio 1.40 at 2000 per hour, 1.37 at 4000, 1.36 uncapped; slow-mode sets need ~36,000 per hour.
PIECE_MAX_STEPS_PER_HOUR = 2000
#: BDF order of a piece redone after :data:`PIECE_MAX_STEPS`: BDF2 is A-stable, so the lightly damped mode cannot
#: make its step size collapse (the slow sets above: 0.03 s each).  Not used throughout because at the package's
#: tolerances BDF2 needs more steps than orders up to 5 (ordinary sets 1.6x slower); the two agree to ~1e-4,
#: relative, well inside the solver tolerance's global error.
FALLBACK_BDF_ORDER = 2
#: Under a time limit only: CVODE steps allowed per 30 s of output interval (at least this many per interval) in
#: the redone attempts of a piece (:meth:`CascadeModel._piece`); past it in both the set fails at once
#: (:class:`StepBudgetError`) instead of at the limit.  Why: a circuit that bursts under the drug (rat Sobol box:
#: population bursts between 3 and 25 Hz at ~0.3 Hz for hours, confirmed at relative tolerance 1e-10 and with a
#: 1-s maximum step) needs 1,000-3,000 steps per 30-s interval at any order, and a piece cannot be interrupted:
#: such sets ran 0.5-7 s past a 2-s limit, ~40 % of the CPU of a Sobol N = 256 run.  Measured on 1,500 sets of
#: that run (2-s limit): CPU 81 -> 42 s; the 12 sets that hit the limit and 12 that had finished in 0.5-1.9 s
#: (bursting for part of the run, so their readouts on a 30-s grid sample a random phase of the bursts) now fail
#: by the budget; no other set changes.  The budget is deterministic, unlike the wall clock.  Without a time limit
#: a run is never cut short.
FALLBACK_MAX_STEPS = 1000
#: Parameters that may legitimately be negative (potentials, currents).
SIGNED = ("e_", "v_", "i_")


class NotAtSteadyStateWarning(UserWarning):
    """A plain (not equilibrated) run started from a state that is not the drug-free steady state."""


def _read_sbml_file(path: Path) -> libsbml.SBMLDocument:
    """Parse ``path`` with libsbml; return the document (it has a model) or raise :class:`ModelError`."""
    if not path.exists():
        raise ModelError(f"SBML file not found: {path}")
    doc = libsbml.readSBMLFromFile(str(path))
    errors = [
        doc.getError(i) for i in range(doc.getNumErrors()) if doc.getError(i).getSeverity() >= libsbml.LIBSBML_SEV_ERROR
    ]
    if errors or doc.getModel() is None:
        first = errors[0].getMessage().strip().splitlines()[0] if errors else "no <model> element"
        raise ModelError(f"malformed SBML in {path}: {first}")
    return doc


class ModelSpec:
    """The ids of an exchanged SBML file and the checks of inputs against them, without compiling it.

    Everything :class:`CascadeModel` needs to validate parameters and observables before a run; read with
    libsbml (~0.1 s), where a compile costs ~1 s.  The ensemble client uses it, so that only the workers that
    simulate compile the model.

    Parameters
    ----------
    path:
        SBML file.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        doc = _read_sbml_file(self.path)  # the document owns the model: keep it while the model is read
        model = doc.getModel()
        self.model_id = model.getId()
        self.species = next((s for s in SPECIES if self.model_id.endswith(s)), "unknown")
        ruled = {r.getVariable() for r in model.getListOfRules()}
        #: global parameters that are not set by a rule (the settable ones), in document order
        self.parameters = [p.getId() for p in model.getListOfParameters() if p.getId() not in ruled]
        self.floating = [s.getId() for s in model.getListOfSpecies() if not s.getBoundaryCondition()]
        self._ids = (
            {p.getId() for p in model.getListOfParameters()}
            | {c.getId() for c in model.getListOfCompartments()}
            | {r.getId() for r in model.getListOfReactions()}
        )
        self._settable = frozenset(self.parameters)
        self._selections: dict[tuple[str, ...], list[str]] = {}

    def check_parameters(self, values: Mapping[str, object]) -> dict[str, float]:
        """Validate a parameter mapping; return it as floats or raise :class:`ModelError`."""
        out = {}
        for pid, raw in values.items():
            if pid not in self._settable:
                raise ModelError(f"unknown parameter {pid!r} for model {self.model_id}")
            if isinstance(raw, bool) or not isinstance(raw, (int, float, np.integer, np.floating)):
                raise ModelError(f"parameter {pid!r} must be a number, got {raw!r}")
            x = float(raw)
            if not math.isfinite(x):
                raise ModelError(f"parameter {pid!r} must be finite, got {x}")
            lo, hi = INPUT_RANGES.get(pid, (-math.inf if pid.startswith(SIGNED) else 0.0, math.inf))
            if not lo <= x <= hi:
                raise ModelError(f"parameter {pid!r} = {x} outside its allowed range [{lo}, {hi}]")
            out[pid] = x
        return out

    def selection(self, name: str) -> str:
        """roadrunner selection string for a model id (species as concentrations)."""
        if name in self.floating:
            return f"[{name}]"
        return name

    def _selections_for(self, observables: tuple[str, ...]) -> list[str]:
        """roadrunner selections for ``observables`` (checked once, then cached)."""
        if observables not in self._selections:
            unknown = [o for o in observables if o not in self.floating and o not in self._ids]
            if unknown:
                raise ModelError(f"unknown observable(s) {unknown} for model {self.model_id}")
            self._selections[observables] = [self.selection(o) for o in observables]
        return self._selections[observables]


class CascadeModel(ModelSpec):
    """One compiled model.  Load once, simulate many times.

    Parameters
    ----------
    path:
        SBML file (``sbml/ketamine_cascade_<species>.xml`` or any exchanged copy).
    """

    def __init__(self, path: str | Path):
        super().__init__(path)
        # CVODE's "t + h = t" notes after events at output times are benign; keep errors only
        roadrunner.Logger.setLevel(roadrunner.Logger.LOG_ERROR)
        # Compile every instance afresh: libroadrunner reuses the machine code of an SBML text it has compiled
        # before in this process, and that cached code gives results that differ from the first compile's at
        # the solver-tolerance level (measured 1.4e-7 in mtorc1_rel after 1.6 days).  Recompiling keeps a set's
        # result independent of which instance, process or worker runs it (~0.7 s per load, once per process).
        options = roadrunner.LoadSBMLOptions()
        options.modelGeneratorOpt = options.modelGeneratorOpt | roadrunner.LoadSBMLOptions.RECOMPILE
        try:
            self.rr = roadrunner.RoadRunner(str(self.path), options)
        except Exception as exc:  # libroadrunner raises RuntimeError with its own text
            raise ModelError(f"libroadrunner cannot load {self.path}: {exc}") from exc
        m = self.rr.model
        # the compiled model's ids and order (the same sets as the SBML's, see ModelSpec)
        self.floating = list(m.getFloatingSpeciesIds())
        self.rate_rules = set(m.getRateRuleSymbols())
        ruled = set(self.rr.getAssignmentRuleIds()) | self.rate_rules
        self.parameters = [p for p in m.getGlobalParameterIds() if p not in ruled]
        self.defaults = {p: float(self.rr[p]) for p in self.parameters}
        self._settable = frozenset(self.parameters)
        self._changed: set[str] = set()
        self._ids = set(m.getGlobalParameterIds()) | set(m.getCompartmentIds()) | set(m.getReactionIds())
        # state layout and tolerances once, at load, so that every simulation of this model starts alike
        self.space: steady_state.StateSpace = steady_state.state_space(self.rr)
        steady_state.fix_tolerances(self.rr)
        self._drug_only: frozenset[str] | None = None
        self._end_state: dict[str, float] | None = None  # final rates of a segmented run (Hz)

    # -- inputs ---------------------------------------------------------------
    def apply(self, values: Mapping[str, object]) -> None:
        """Set parameters (all others back to their shipped values), then reset the state."""
        values = self.check_parameters(values)
        # One call to the model for all of them (as rr[pid] = x for each global parameter, much cheaper).  Every
        # parameter not in ``values`` is restored, not only those this object changed: a value set directly on
        # ``self.rr`` (e.g. ``rr["t_dose"]`` in a re-dose recipe) must not leak into the next run (~15 us).
        restore = {pid: x for pid, x in self.defaults.items() if pid not in values}
        steady_state.set_parameters(self.rr, self.space, {**restore, **values})
        self._changed = {p for p, x in values.items() if x != self.defaults[p]}
        self.rr.reset()  # after setting inputs: events due at t = 0 fire with the new values

    # -- simulation -----------------------------------------------------------
    def simulate(
        self,
        times: Sequence[float] | np.ndarray,
        parameters: Mapping[str, object] | None = None,
        observables: Sequence[str] = OBSERVABLES,
        equilibrate: bool | None = None,
        time_limit: float | None = None,
    ) -> pd.DataFrame:
        """Simulate from the drug-free steady state.

        Parameters
        ----------
        times:
            Output times in seconds, increasing, starting at 0.
        parameters:
            Parameter overrides (e.g. ``{"dose": 10}`` in mg/kg); unknown ids raise.
        observables:
            Model ids to return (contract ids by default; species are concentrations in uM).
        equilibrate:
            The shipped initial values are the steady state of the shipped parameters.  When
            ``parameters`` change the drug-free physiology (anything but :data:`INPUTS`), the model
            must first reach its new drug-free steady state: with ``equilibrate=True`` it runs
            drug-free for ``EQUILIBRATION_TIME`` s, the state is cleaned and checked
            (:mod:`analysis.core.steady_state`: |dx/dt|, Jacobian stability, physiological rates), the
            clock restarts at 0 from that state, the dose is given at ``t_dose``, and every ``*_rel``
            observable is re-expressed relative to the new drug-free state (its value at t = 0).
            A set with no physiological, stable drug-free state raises :class:`DrugFreeStateError`.
            ``None`` (default) equilibrates exactly when the parameters change the drug-free physiology
            (:meth:`changes_physiology`: a parameter other than the inputs and the drug-only ones).
            ``False`` with changed physiology warns (:class:`NotAtSteadyStateWarning`) if the start is
            not steady.
        time_limit:
            Wall-clock limit (s).  The run is then integrated in pieces sized from its speed (at least
            :data:`TIME_LIMIT_SEGMENTS`) and the clock is checked between them; past the limit it raises
            :class:`SimulationTimeout`.
            ``None`` (default): one uninterrupted integration.

        Returns
        -------
        DataFrame indexed by ``time`` (s) with one column per observable.
        """
        times = check_times(times)
        data = self.simulate_array(times, parameters, observables, equilibrate, time_limit)
        return pd.DataFrame(data, index=pd.Index(times, name="time"), columns=list(observables))

    def simulate_array(
        self,
        times: np.ndarray,
        parameters: Mapping[str, object] | None = None,
        observables: Sequence[str] = OBSERVABLES,
        equilibrate: bool | None = None,
        time_limit: float | None = None,
    ) -> np.ndarray:
        """As :meth:`simulate`, but return the bare array (len(times) x len(observables)).

        The ensemble engine uses this to avoid building a DataFrame per simulation.
        """
        times = check_times(times)
        selections = self._selections_for(tuple(observables))
        params = dict(parameters or {})
        deadline = None if time_limit is None else time.perf_counter() + float(time_limit)
        if equilibrate is None:
            equilibrate = self.changes_physiology(params)
        try:
            if equilibrate:
                data = self._simulate_equilibrated(times, params, selections, deadline)
            else:
                changed = self.changes_physiology(params)  # before apply: may probe the model once
                self.apply(params)
                if changed:
                    self._warn_if_not_steady(params)
                data = self._integrate(times, selections, deadline, params)
        except (ModelError, SimulationError):
            raise
        except Exception as exc:
            raise SimulationError(f"solver failed for {self.model_id} with parameters {params}: {exc}") from exc
        if equilibrate:
            rel = [i for i, o in enumerate(observables) if o.endswith("_rel")]
            data[:, rel] /= data[0, rel]
        if not np.all(np.isfinite(data)):
            raise SimulationError(f"non-finite values in the simulation of {self.model_id} with parameters {params}")
        self._check_end_state(params)
        return data

    def _check_end_state(self, params: Mapping[str, object]) -> None:
        """Refuse a run that ends on the runaway branch (seizure-like firing) instead of a physiological state.

        A subject can have a physiological drug-free state and still be bistable: the disinhibition of a
        dose can switch its circuit onto the runaway branch, where it stays after the drug has gone.
        Only the final state is read (cheap); rates are in Hz.
        """
        end, self._end_state = self._end_state or {}, None
        for name, limit in steady_state.MAX_RATE.items():
            if name in self._ids:
                value = end.get(name, float(self.rr[name]))
                if value > limit:
                    raise RunawayError(
                        f"{self.model_id} with parameters {dict(params)}: the run ends with {name} = {value:.3g} Hz "
                        f"(> {limit:g} Hz): the circuit switched to the runaway branch and stayed there"
                    )

    def changes_physiology(self, parameters: Mapping[str, object]) -> bool:
        """True if a parameter that enters the drug-free dynamics differs from its shipped value (the shipped
        state is then not its steady state).  Inputs (:data:`INPUTS`) and drug-only parameters
        (:attr:`drug_only_parameters`: ketamine kinetics and PK) never change the drug-free physiology."""
        changed = [
            p for p, v in parameters.items() if p not in INPUTS and p in self.defaults and float(v) != self.defaults[p]
        ]
        return bool(changed) and not set(changed) <= self.drug_only_parameters

    @property
    def drug_only_parameters(self) -> frozenset[str]:
        """Parameters that do not enter the drug-free dynamics (found once per model by perturbation, ~50 ms)."""
        if self._drug_only is None:
            candidates = [p for p in self.parameters if p not in INPUTS]
            self._drug_only = steady_state.drug_only_parameters(self.rr, self.space, candidates, self.defaults)
        return self._drug_only

    def _warn_if_not_steady(self, params: Mapping[str, object]) -> None:
        worst = float(np.max(steady_state.relative_rates(self.rr, self.space)))
        if worst > steady_state.MAX_RELATIVE_RATE:
            changed = sorted(set(params) - INPUTS)
            warnings.warn(
                f"{self.model_id}: parameters {changed} change the drug-free physiology, but this run starts "
                f"from the shipped state, which is not their steady state (|dx/dt|/x = {worst:.2g} /s); the "
                "time course mixes drift with the drug effect.  Use equilibrate=True (or the default None).",
                NotAtSteadyStateWarning,
                stacklevel=4,
            )

    def drug_free_state(self, parameters: Mapping[str, object] | None = None) -> StateCheck:
        """Bring ``parameters`` to their drug-free steady state and return the checks of that state (no exception).

        Two routes, each ending in the full check of :func:`steady_state.check_state`:

        1. natural-parameter continuation from the shipped steady state (:func:`steady_state.continue_parameters`,
           a few ms): the state the subject's physiology tracks as its parameters move away from the shipped
           ones;
        2. if the branch ends on the way, or its state fails the check for any reason but instability, relaxation:
           a budgeted drug-free integration from the shipped state with the new parameters
           (:func:`steady_state.equilibrate`).  A converged, physiological but unstable state on the branch
           (:func:`steady_state.unstable_on_branch`) is reported as it is, without relaxation.

        Rates in Hz, eigenvalue and relative rate of change in 1/s; ``ok`` is False with a ``reason`` for a
        runaway, oscillating or unstable drug-free state (the relaxation's diagnosis, with the continuation's
        outcome appended).
        """
        values = {**dict(parameters or {}), "t_dose": 1e30}
        self.apply(values)
        em = self.rr.model
        target = {p: float(em.getValue(p)) for p in self._changed if p not in INPUTS}
        tracked = self._continued_state(target) if target else None
        if tracked is not None and tracked.ok:
            return tracked
        if tracked is not None and steady_state.unstable_on_branch(tracked):
            # An unstable state at the subject's own parameters is the state its physiology tracks, and it cannot
            # hold: the circuit oscillates around it or leaves it.  The relaxation would only confirm that, at ~0.7 s
            # a subject (of 3,600 rat Sobol sets, 267 ended so and none relaxed to another stable state).
            reason = "the state continued from the shipped one to these parameters; the circuit oscillates around it"
            return replace(tracked, reason=f"{tracked.reason} ({reason} or leaves it)")
        if target:
            self.apply(values)  # relax from the shipped state, as after the jump to the new parameters
        try:
            check = steady_state.equilibrate(self.rr, self.space)
        except Exception as exc:  # the solver itself failed on the way: no drug-free state
            nan = float("nan")
            check = StateCheck(False, f"solver failed while equilibrating: {exc}", nan, nan, nan, "", nan, nan)
        if check.ok or tracked is None:
            return check
        return replace(check, reason=f"{check.reason}; continuation from the shipped state: {tracked.reason}")

    def _continued_state(self, target: dict[str, float]) -> StateCheck:
        """Continue the shipped steady state (the model's current state after :meth:`apply`) to the ``target``
        parameters and check the state found; ``ok`` False with the reason if the branch ends on the way."""
        # the shipped state is the steady state of the shipped parameters
        start = {p: self.defaults[p] for p in target}
        steady_state.set_parameters(self.rr, self.space, start)
        nan = float("nan")
        try:
            followed = steady_state.continue_parameters(self.rr, self.space, start, target)
            if not followed:
                return StateCheck(False, "the branch ends on the way", nan, nan, nan, "", nan, nan)
            steady_state.snap_structural_zeros(self.rr, self.space, steady_state.ABS_TOLERANCE)
            return steady_state.check_state(self.rr, self.space)
        except Exception as exc:  # noqa: BLE001 - any solver failure sends the subject to the relaxation route
            steady_state.set_parameters(self.rr, self.space, target)
            return StateCheck(False, f"failed: {exc}", nan, nan, nan, "", nan, nan)

    def _integrate(
        self, times: np.ndarray, selections: list[str], deadline: float | None, params: dict, pieces: bool = False
    ) -> np.ndarray:
        """One run over ``times`` from the current state: uninterrupted, or with ``pieces`` or a ``deadline`` in
        :data:`TIME_LIMIT_SEGMENTS` segments (CVODE restarts at each boundary, see there).  With a ``deadline`` a
        segment is further cut into pieces sized from the run's speed so far (:data:`TIME_LIMIT_PIECE_INTERVALS`,
        :data:`TIME_LIMIT_CHECK_SHARE`), and the clock is checked between them."""
        if deadline is None and not pieces:
            return np.asarray(self.rr.simulate(times=times, selections=selections))
        n = len(times) - 1
        # also cut where the output interval jumps by more than 2x (a dense grid turning sparse): a piece's step cap
        # and budget are sized from its widest interval, which must not give 30-s intervals a 10-min interval's
        # budget (a smoothly stretched grid, e.g. log-spaced, is not cut at every point)
        steps = np.diff(times)
        ratio = steps[1:] / np.maximum(steps[:-1], 1e-300)
        changes = np.flatnonzero((ratio > 2.0) | (ratio < 0.5)) + 1
        segments = np.unique(np.concatenate([np.linspace(0, n, TIME_LIMIT_SEGMENTS + 1).astype(int), changes]))
        segments = segments[segments > 0]
        start = time.perf_counter()
        budget = None if deadline is None else max(deadline - start, 0.0)
        out: list[np.ndarray] = []
        a = first = 0
        for end in segments:
            while a < end:
                b = end
                if deadline is not None:
                    self._check_deadline(deadline, params)
                    if a == 0:
                        size = TIME_LIMIT_PIECE_INTERVALS
                    else:
                        per_interval = max((time.perf_counter() - start) / a, 1e-12)  # s of wall time per interval
                        size = max(1, int(TIME_LIMIT_CHECK_SHARE * budget / per_interval))
                    b = min(end, a + size)
                piece, attempt = self._piece(times[a : b + 1], selections, first, deadline, params)
                # a run that needed a fallback starts its next pieces at the attempt that worked (a slow mode does
                # not go away between pieces: 4 pieces of 0.2 s each otherwise, measured)
                first = attempt
                out.append(piece if not out else piece[1:])
                a = b
        self._check_deadline(deadline, params)
        self._end_state = {name: float(self.rr[name]) for name in steady_state.MAX_RATE if name in self._ids}
        steady_state.clear_dose_event_quirk(self.rr)
        return np.vstack(out)

    def _piece(
        self,
        times: np.ndarray,
        selections: list[str],
        first: int = 0,
        deadline: float | None = None,
        params: dict | None = None,
    ) -> tuple[np.ndarray, int]:
        """One piece of a segmented run over ``times`` (s) from the current state.

        Attempts, from ``first`` on: (0) CVODE's default BDF orders with at most :data:`PIECE_MAX_STEPS` steps per
        output interval; (1) past that, redone from its start state at :data:`FALLBACK_BDF_ORDER`; (2) if that
        also runs out of steps (a fast transient near runaway, where the higher orders do better), once more at
        the default orders without the cap, as before the fallback existed.  Under a time limit (``deadline``; the
        clock is checked before each redo) attempts 1 and 2 have the step budget :data:`FALLBACK_MAX_STEPS`, and
        past it in both the set fails with :class:`StepBudgetError`.  Other solver failures raise as they are.
        Returns the piece's output and the attempt that succeeded."""
        integrator = self.rr.getIntegrator()
        start = steady_state.get_state(self.rr, self.space)
        saved = {k: integrator.getValue(k) for k in ("maximum_num_steps", "maximum_bdf_order")}
        interval = float(np.max(np.diff(times))) if len(times) > 1 else 0.0
        cap = int(max(PIECE_MAX_STEPS, PIECE_MAX_STEPS_PER_HOUR * interval / 3600.0))
        attempts: tuple[dict, ...] = (
            {"maximum_num_steps": cap},
            {"maximum_bdf_order": FALLBACK_BDF_ORDER},
            {},
        )
        limited = deadline is not None
        budget = 0
        if limited:
            budget = int(FALLBACK_MAX_STEPS * max(1.0, interval / 30.0))
            attempts = (attempts[0], {**attempts[1], "maximum_num_steps": budget}, {"maximum_num_steps": budget})
        try:
            for k, settings in enumerate(attempts):
                if k < first:
                    continue
                if k > first:
                    self._check_deadline(deadline, params or {})
                    steady_state.set_state(self.rr, self.space, start)
                for name, value in {**saved, **settings}.items():
                    integrator.setValue(name, value)
                try:
                    with steady_state.quiet_native_stderr():
                        return np.asarray(self.rr.simulate(times=times, selections=selections)), k
                except RuntimeError as exc:
                    if "CV_TOO_MUCH_WORK" not in str(exc):
                        raise
                    if k < len(attempts) - 1:
                        continue
                    if not limited:
                        raise
                    raise StepBudgetError(
                        f"{self.model_id} with parameters {params}: the circuit bursts or runs away under the "
                        f"drug: more than {budget} CVODE steps in one output interval between t = {times[0]:g} and "
                        f"{times[-1]:g} s, even at BDF order {FALLBACK_BDF_ORDER} (a step budget that stands in for "
                        "the time limit)"
                    ) from exc
        finally:
            for name, value in saved.items():
                integrator.setValue(name, value)
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_deadline(self, deadline: float | None, params: dict) -> None:
        if deadline is not None and time.perf_counter() > deadline:
            raise SimulationTimeout(f"{self.model_id} with parameters {params}: time limit exceeded")

    def _simulate_equilibrated(
        self, times: np.ndarray, params: dict, selections: list[str], deadline: float | None = None
    ) -> np.ndarray:
        """Run drug-free to the steady state of ``params``, check it, then simulate the dose from there.

        The pre-run keeps the dose event disarmed (t_dose far away); the state is kept and the
        clock restarts at 0.  A trigger that is already true when a run starts does not fire, so a
        dose due at t = 0 is given at t = 1 ns instead (no observable difference).
        """
        t_dose = float(self.check_parameters(params).get("t_dose", self.defaults["t_dose"]))
        check = self.drug_free_state(params)
        if not check.ok:
            raise DrugFreeStateError(f"{self.model_id} with parameters {params}: {check.reason}")
        self.rr["t_dose"] = max(t_dose, 1e-9)
        return self._integrate(times, selections, deadline, params, pieces=True)


def check_times(times: Sequence[float] | np.ndarray) -> np.ndarray:
    """Output times (s) as a float array: 1-D, finite, strictly increasing from 0, at least 2 points."""
    try:
        arr = np.asarray(times, dtype=float)
    except (TypeError, ValueError):
        raise ModelError(f"times must be numbers (s), got {times!r}") from None
    if arr.ndim != 1 or len(arr) < 2:
        raise ModelError("times must be a 1-D array of at least 2 output times (s)")
    if not np.all(np.isfinite(arr)):
        raise ModelError("times must be finite (s); got NaN or infinity")
    if arr[0] != 0 or np.any(np.diff(arr) <= 0):
        raise ModelError("times must start at 0 and increase strictly (s)")
    return arr


@lru_cache(maxsize=8)
def _cached(path: str) -> CascadeModel:
    return CascadeModel(path)


@lru_cache(maxsize=8)
def _cached_spec(path: str) -> ModelSpec:
    return ModelSpec(path)


def _resolved(species_or_path: str | Path) -> str:
    """Absolute path (text) of the shipped SBML of 'human' or 'rat', or of the given SBML path."""
    if isinstance(species_or_path, str) and species_or_path in SPECIES:
        return str(sbml_path(species_or_path).resolve())
    return str(Path(species_or_path).resolve())


def model_spec(species_or_path: str | Path = "rat") -> ModelSpec:
    """The (cached) ids and input checks of 'human', 'rat' or an SBML path, without compiling it."""
    return _cached_spec(_resolved(species_or_path))


def load_model(species_or_path: str | Path = "rat") -> CascadeModel:
    """Return the (cached, compiled-once) model for 'human', 'rat' or an SBML path."""
    return _cached(_resolved(species_or_path))
