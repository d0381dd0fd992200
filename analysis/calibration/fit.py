"""Estimation of a species' PEtab problem (:mod:`.petab_problem`) with pyPESTO on libroadrunner.

:func:`calibrate` runs a multistart local optimisation (pyPESTO's libroadrunner objective, scipy Nelder-Mead),
profiles every estimated parameter, classifies its identifiability from the profile, compares the best fit with
the fitted and the held-out data, and writes a report folder:

* ``summary.json``: ``n_starts``, ``n_converged``, ``best_objective``, ``n_profiled``, ``estimated`` (best values,
  in the table's units), ``calibration_median_abs_rel_error``, ``holdout_median_abs_rel_error``;
* ``fits.csv``: every data row (fit and held-out) with the simulated value and relative error;
* ``identifiability.csv``, ``waterfall.png``, ``profiles.png`` and ``report.md``.

Held-out rows are simulated with the package's engine at the best-fit parameters (equilibrated when the
parameters change the drug-free physiology), i.e. on the SBML that is shipped.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.calibration.petab_problem import (
    ESTIMATED,
    condition_label,
    problem_yaml,
    read_data,
    row_inputs,
    table_id,
)
from analysis.core.io import write_atomic, write_text_atomic
from analysis.core.model import load_model

#: Rise of the negative log-likelihood that bounds a 95 % profile-likelihood confidence interval (chi2(1)/2).
PROFILE_THRESHOLD = 0.5 * 3.841
#: A profile that rises less than this over the whole range is flat: structurally non-identifiable.
FLAT_PROFILE = 1e-6
#: Local optimiser of every start and profile step: scipy's Nelder-Mead.  libroadrunner's objective has no
#: gradient here, and its integration noise (~1e-7 relative) makes scipy's finite-difference L-BFGS-B stop early
#: ("ABNORMAL" line search: measured 1.48 and 1.60 for a datum that needs 1.515); the simplex converges.
OPTIMIZER_METHOD = "Nelder-Mead"
#: Tolerances: 1e-4 in log10 parameter units (0.02 %) and 1e-6 in the objective, far below what matters for
#: convergence (:data:`CONVERGED_WITHIN`) or a profile (:data:`PROFILE_THRESHOLD`); tighter ones (1e-8, 1e-12) made a
#: start along a flat direction (a practically non-identifiable parameter) run 9340 evaluations instead of ~300.
OPTIMIZER_OPTIONS = {"xatol": 1e-4, "fatol": 1e-6, "maxfev": 1500}
#: A start has converged if its objective is within this of the best one.
CONVERGED_WITHIN = 1e-3


def _quiet():
    warnings.filterwarnings("ignore", message="Visualization table not available")


def _tolerate_foreign_ast_nodes() -> None:
    """Make petab's ``sympify_sbml`` accept math nodes that SWIG hands out as another module's proxy type.

    Once libsedml (tellurium, the SED-ML tools) is imported, libsbml returns ``getMath()`` results as
    ``libsedml.ASTNode`` proxies; petab's ``isinstance(..., libsbml.ASTNode)`` then fails and it calls ``getMath``
    on the node itself (AttributeError).  Such a node is converted through its formula string instead, which is
    enough where petab uses it (is an initial assignment a number?).  Idempotent.
    """
    import libsbml
    import sympy
    from petab.v1.models import sbml_model

    original = sbml_model.sympify_sbml
    if getattr(original, "_tolerant", False):
        return

    def sympify_sbml(sbml_obj):
        if isinstance(sbml_obj, libsbml.ASTNode) or hasattr(sbml_obj, "getMath"):
            return original(sbml_obj)
        module = __import__(type(sbml_obj).__module__.split(".")[0])
        return sympy.sympify(module.formulaToL3String(sbml_obj))

    sympify_sbml._tolerant = True
    sbml_model.sympify_sbml = sympify_sbml


def pypesto_problem(species: str, holdout: bool = False):
    """(pyPESTO problem, PEtab problem) of ``species``, objective on libroadrunner.  ``holdout=True``: the same
    problem with the held-out measurements (``measurements_holdout.tsv``) in place of the fitted ones, for
    simulating the held-out conditions.  Its noise parameters are set to 1: pyPESTO's importer does not support
    the timepoint-specific noise of held-out rows that share a condition and time (two trials of one dose), so
    its likelihood is not the held-out score (that is :func:`calibrate`'s median relative error)."""
    import petab.v1 as petab
    from pypesto.objective.roadrunner import PetabImporterRR

    _quiet()
    _tolerate_foreign_ast_nodes()
    petab_problem = petab.Problem.from_yaml(str(problem_yaml(species)))
    if holdout:
        held = problem_yaml(species).parent / "measurements_holdout.tsv"
        table = petab.get_measurement_df(str(held))
        if "noiseParameters" in table:
            table["noiseParameters"] = 1.0
        petab_problem.measurement_df = table
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        importer = PetabImporterRR(petab_problem)
        objective = importer.create_objective()
        problem = importer.create_problem(objective)
    return problem, petab_problem


def likelihood_objective(problem):
    """The libroadrunner likelihood part of a :func:`pypesto_problem`'s objective (its simulations are in
    ``objective(x, return_dict=True)['simulation_results']``).  With priors (measured parameters, PEtab
    ``objectivePriorType``) the problem's objective is the sum of this and the negative log-prior."""
    from pypesto.objective.roadrunner import RoadRunnerObjective

    # pyPESTO's AggregatedObjective keeps its parts in _objectives (no public accessor in this version)
    parts = getattr(problem.objective, "_objectives", None) or [problem.objective]
    for part in parts:
        if isinstance(part, RoadRunnerObjective):
            return part
    raise TypeError(f"no libroadrunner objective in {type(problem.objective).__name__}")


def _ids(expressions: list[str]) -> list[str]:
    """The SBML ids an observable expression (or several) uses, sorted."""
    return sorted({i for e in expressions for i in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", e)})


def _evaluate(expression: str, values: dict):
    """An observable expression of SBML ids on ``values`` (floats or arrays)."""
    return eval(expression, {"__builtins__": {}}, values)  # noqa: S307 - ids of the SBML only


def simulate_rows(species: str, rows: list[dict[str, str]], parameters: dict[str, float] | None = None) -> np.ndarray:
    """Simulated value of each data row (its observable expression at its time), with the engine on the shipped
    SBML; ``parameters`` (table units) override the model's."""
    model = load_model(species)
    out = []
    for r in rows:
        ids = _ids([r["observable"]])
        df = model.simulate(np.array([0.0, float(r["time_s"])]), row_inputs(r, species, parameters), ids)
        out.append(float(_evaluate(r["observable"], {k: float(df[k].iloc[-1]) for k in ids})))
    return np.asarray(out)


def _profile_class(profile_fvals: np.ndarray, best: float, x: np.ndarray, x_best: float) -> str:
    rise = profile_fvals - best
    below, above = rise[x < x_best], rise[x > x_best]
    if np.nanmax(rise) < FLAT_PROFILE:
        return "structurally non-identifiable"
    closed = [bool(side.size) and np.nanmax(side) > PROFILE_THRESHOLD for side in (below, above)]
    return "identifiable" if all(closed) else "practically non-identifiable"


def calibrate(
    species: str,
    n_starts: int = 100,
    workers: int = 0,
    out: str | Path | None = None,
    profile: bool = True,
    seed: int = 0,
) -> dict:
    """Fit ``species``' PEtab problem: ``n_starts`` multistarts (``workers`` > 1: pyPESTO's multi-process engine),
    profiles, identifiability, errors on fitted and held-out data.  Writes the report folder ``out`` if given.
    Returns the summary (see the module docstring)."""
    import pypesto
    import pypesto.optimize as optimize
    import pypesto.profile as profile_mod

    if n_starts < 1:
        raise ValueError(f"n_starts must be >= 1, got {n_starts}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    data = [r for r in read_data() if r["species"] == species]
    fit_rows = [r for r in data if r["use"] == "fit"]
    hold_rows = [r for r in data if r["use"] == "holdout"]
    estimated = list(ESTIMATED[species])
    best_params: dict[str, float] = {}
    summary: dict = {"species": species, "n_starts": 0, "n_converged": 0, "best_objective": None, "n_profiled": 0}
    identifiability = []
    band_sets: list[dict[str, float]] = []
    fvals = np.array([])
    profiles = {}
    if estimated:
        problem, _ = pypesto_problem(species)
        engine = pypesto.engine.MultiProcessEngine(n_procs=workers) if workers > 1 else None
        np.random.seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimizer = optimize.ScipyOptimizer(method=OPTIMIZER_METHOD, options=OPTIMIZER_OPTIONS)
            result = optimize.minimize(
                problem, optimizer=optimizer, n_starts=n_starts, engine=engine, progress_bar=False
            )
        fvals = np.asarray([r.fval for r in result.optimize_result.list], dtype=float)
        finite = fvals[np.isfinite(fvals)]
        if not finite.size:
            raise RuntimeError(f"calibration of {species}: no start gave a finite objective")
        best = float(finite.min())
        x_best = np.asarray(result.optimize_result.list[0].x, dtype=float)
        best_params = {
            table_id(p): float(10 ** x_best[i]) for i, p in enumerate(problem.x_names) if table_id(p) in estimated
        }
        summary.update(
            n_starts=int(len(fvals)),
            n_converged=int(np.sum(np.abs(finite - best) <= CONVERGED_WITHIN)),
            best_objective=best,
            estimated=best_params,
        )
        if profile:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = profile_mod.parameter_profile(
                    problem=problem, result=result,
                    optimizer=optimize.ScipyOptimizer(method=OPTIMIZER_METHOD, options=OPTIMIZER_OPTIONS),
                    engine=engine,
                    progress_bar=False,
                )  # fmt: skip
            for i, pname in enumerate(problem.x_names):
                name = table_id(pname)
                prof = result.profile_result.list[0][i]
                if prof is None:
                    continue
                xs = 10 ** np.asarray(prof.x_path[i], dtype=float)
                fv = np.asarray(prof.fval_path, dtype=float)
                profiles[name] = (xs, fv)
                inside = np.asarray(fv) - best <= PROFILE_THRESHOLD
                path = 10 ** np.asarray(prof.x_path, dtype=float)  # (n_parameters, n_points)
                band_sets += [
                    {table_id(p): float(path[j, k]) for j, p in enumerate(problem.x_names) if table_id(p) in estimated}
                    for k in np.flatnonzero(inside)
                ]
                identifiability.append(
                    {"parameter": name, "best": best_params[name], "profile_min": float(xs.min()),
                     "profile_max": float(xs.max()), "class": _profile_class(fv, best, xs, best_params[name])}
                )  # fmt: skip
            summary["n_profiled"] = len(profiles)
    sim_fit = simulate_rows(species, fit_rows, best_params)
    sim_hold = simulate_rows(species, hold_rows, best_params)

    def mare(rows, sim):
        if not rows:
            return None
        obs = np.array([float(r["value"]) for r in rows])
        return float(np.median(np.abs(sim - obs) / obs))

    summary["calibration_median_abs_rel_error"] = mare(fit_rows, sim_fit)
    summary["holdout_median_abs_rel_error"] = mare(hold_rows, sim_hold)
    fits = pd.DataFrame(
        [
            {"id": r["id"], "use": r["use"], "evidence": r["evidence"], "observable": r["observable"],
             "time_s": float(r["time_s"]), "measured": float(r["value"]), "simulated": s,
             "rel_error": (s - float(r["value"])) / float(r["value"])}
            for r, s in zip(fit_rows + hold_rows, np.concatenate([sim_fit, sim_hold]), strict=True)
        ]
    )  # fmt: skip
    bands = pd.DataFrame()
    if band_sets:
        bands = prediction_bands(species, fit_rows + hold_rows, [best_params, *band_sets])
        summary["n_band_sets"] = 1 + len(band_sets)
    if out is not None:
        _write_report(Path(out), summary, fits, pd.DataFrame(identifiability), fvals, profiles, bands, data)
    return summary


#: Horizon of the prediction bands (s): two weeks, the clinical follow-up of a single dose.
BAND_HORIZON = 14 * 86400.0


def prediction_bands(
    species: str,
    rows: list[dict[str, str]],
    parameter_sets: list[dict[str, float]],
    t_end: float = BAND_HORIZON,
) -> pd.DataFrame:
    """Profile-likelihood prediction bands: every condition and observable of the data ``rows``, simulated with
    each of ``parameter_sets`` (the best fit first, then the profile points inside the 95 % threshold), over
    :func:`~analysis.core.simulate.time_grid` to ``t_end`` s plus the data times.  Returns a tidy DataFrame (condition,
    observable, time_s, best, lower, upper): the envelope of the sets, an approximation to the 95 % band of the
    prediction that each parameter's uncertainty alone allows (no sampling of the joint region)."""
    from analysis.core.simulate import time_grid

    if not parameter_sets:
        raise ValueError("prediction bands need at least one parameter set")
    model = load_model(species)
    times = np.unique(np.concatenate([time_grid(t_end), [float(r["time_s"]) for r in rows]]))  # the data times too
    groups: dict[str, tuple[dict[str, str], list[str]]] = {}  # condition -> (a row of it, its observables)
    for r in rows:
        _, expressions = groups.setdefault(condition_label(r), (r, []))
        if r["observable"] not in expressions:
            expressions.append(r["observable"])
    frames = []
    for condition, (row, expressions) in groups.items():
        ids = _ids(expressions)
        runs = []
        for params in parameter_sets:
            df = model.simulate(times, row_inputs(row, species, params), ids)
            env = {k: df[k].to_numpy() for k in ids}
            runs.append([_evaluate(e, env) for e in expressions])
        values = np.asarray(runs, dtype=float)  # (sets, expressions, times)
        for j, e in enumerate(expressions):
            frames.append(
                pd.DataFrame(
                    {
                        "condition": condition,
                        "observable": e,
                        "time_s": times,
                        "best": values[0, j],
                        "lower": values[:, j].min(axis=0),
                        "upper": values[:, j].max(axis=0),
                    }
                )  # fmt: skip
            )
    return pd.concat(frames, ignore_index=True)


def _markdown(df: pd.DataFrame) -> str:
    """A pipe table of ``df`` (numbers to 4 significant digits)."""

    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    return "\n".join(
        [head, rule] + ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    )


def _plot_bands(bands: pd.DataFrame, data: list[dict[str, str]]):
    """One panel per (condition, observable): band, best fit and the data with their log-normal 95 % error."""
    import matplotlib.pyplot as plt

    keys = list(dict.fromkeys(zip(bands["condition"], bands["observable"], strict=True)))
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.2), squeeze=False)
    for ax, (cond, obs) in zip(axes[0], keys, strict=True):
        b = bands[(bands["condition"] == cond) & (bands["observable"] == obs)]
        points = [r for r in data if condition_label(r) == cond and r["observable"] == obs]
        # a datum within the first 6 h (PK) is shown on an hour scale up to 4x its time, the rest in days
        t_data = max((float(r["time_s"]) for r in points), default=b["time_s"].max())
        scale, label = (3600.0, "h") if t_data < 6 * 3600 else (86400.0, "days")
        t_end = 4 * t_data if t_data < 6 * 3600 else float(b["time_s"].max())
        b = b[b["time_s"] <= t_end]
        t = b["time_s"].to_numpy() / scale
        ax.fill_between(t, b["lower"], b["upper"], color="C0", alpha=0.25, lw=0, label="95 % profile band")
        ax.plot(t, b["best"], color="C0", lw=1.2, label="best fit")
        for r in points:
            v, sd = float(r["value"]), float(r["sigma_log"])
            err = [[v * (1 - np.exp(-1.96 * sd))], [v * (np.exp(1.96 * sd) - 1)]]
            style = "ko" if r["use"] == "fit" else "rs"
            ax.errorbar([float(r["time_s"]) / scale], [v], yerr=err, fmt=style, ms=4, label=r["use"])
        ax.set(xlabel=f"time ({label})", ylabel=obs, title=cond, xlim=(0, t_end / scale))
        ax.title.set_fontsize(7)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def _write_report(out: Path, summary, fits, ident, fvals, profiles, bands=None, data=None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, default=float) + "\n")
    write_atomic(out / "fits.csv", lambda p: fits.to_csv(p, index=False))
    write_atomic(out / "identifiability.csv", lambda p: ident.to_csv(p, index=False))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    if fvals.size:
        ax.plot(np.arange(1, fvals.size + 1), np.sort(fvals), "o-", ms=3)
    ax.set(xlabel="start (sorted)", ylabel="negative log-likelihood", title=f"waterfall, {summary['species']}")
    fig.tight_layout()
    write_atomic(out / "waterfall.png", lambda p: fig.savefig(p, dpi=120))
    plt.close(fig)
    fig, axes = plt.subplots(1, max(1, len(profiles)), figsize=(4 * max(1, len(profiles)), 3.2), squeeze=False)
    for ax, (name, (xs, fv)) in zip(axes[0], profiles.items(), strict=False):
        ax.plot(xs, fv - np.nanmin(fv), "-")
        ax.axhline(PROFILE_THRESHOLD, color="grey", ls="--", lw=0.8)
        ax.set(xscale="log", xlabel=name, ylabel="rise of -log L")
    fig.tight_layout()
    write_atomic(out / "profiles.png", lambda p: fig.savefig(p, dpi=120))
    plt.close(fig)
    has_bands = bands is not None and not bands.empty
    if has_bands:
        write_atomic(out / "bands.csv", lambda p: bands.to_csv(p, index=False))
        fig = _plot_bands(bands, data or [])
        write_atomic(out / "bands.png", lambda p: fig.savefig(p, dpi=120))
        plt.close(fig)
    lines = [
        f"# Calibration report: {summary['species']}",
        "",
        "Generated by `ketamine-cascade calibrate`; data: `models/calibration_data.tsv`; PEtab problem: "
        f"`models/petab/{summary['species']}/`.",
        "",
        f"- starts: {summary['n_starts']}, converged (within {CONVERGED_WITHIN} of the best): "
        f"{summary['n_converged']}, best objective (negative log-likelihood plus the negative log-prior of the "
        f"measured parameters): {summary['best_objective']}",
        f"- median |relative error|: fitted data {summary['calibration_median_abs_rel_error']}, held-out data "
        f"{summary['holdout_median_abs_rel_error']}",
        "",
        "## Estimated parameters and identifiability",
        "",
        _markdown(ident) if not ident.empty else "(none estimated)",
        "",
        "## Data against the best fit",
        "",
        _markdown(fits),
        "",
        "![waterfall](waterfall.png) ![profiles](profiles.png)",
        "",
    ]
    if has_bands:
        lines += [
            "## Prediction bands",
            "",
            f"Envelope of {summary.get('n_band_sets')} parameter sets (the best fit and every profile point inside the "
            "95 % threshold), simulated for each data condition over two weeks (`bands.csv`); data with their "
            "95 % log-normal error, held-out data in red.",
            "",
            "![bands](bands.png)",
            "",
        ]
    write_text_atomic(out / "report.md", "\n".join(lines))


__all__ = [
    "PROFILE_THRESHOLD",
    "calibrate",
    "likelihood_objective",
    "prediction_bands",
    "pypesto_problem",
    "simulate_rows",
]
