"""Estimation of a species' PEtab problem (:mod:`.petab_problem`) with pyPESTO on libroadrunner.

:func:`calibrate` runs a multistart local optimisation (pyPESTO's libroadrunner objective, scipy Nelder-Mead),
profiles every estimated parameter, classifies its identifiability from the profile, optionally samples the
posterior (:func:`posterior_sample`), compares the best fit with the fitted and the held-out data, and writes a
report folder:

* ``summary.json``: ``n_starts``, ``n_converged``, ``best_objective``, ``n_profiled``, ``estimated`` (best values,
  in the table's units), ``calibration_median_abs_rel_error``, ``holdout_median_abs_rel_error``, and with sampling
  ``sampling`` (diagnostics, posterior medians and 95 % intervals), ``n_band_sets`` and ``band_kind``;
* ``fits.csv``: every data row (fit and held-out) with the simulated value and relative error;
* ``identifiability.csv``, ``waterfall.png``, ``profiles.png`` and ``report.md``; ``bands.csv`` and ``bands.png``
  (prediction bands) when parameters are estimated, ``fits.png`` (data against the model) when none is.

:func:`write_overview` pools the species' folders into one ``summary.json``.

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
#: Posterior samples drawn by default (``ketamine-cascade calibrate --samples``): pyPESTO's adaptive Metropolis
#: sampler, one chain started at the best fit.  At ~7.5-9 ms per human sample, 20,000 take ~2.5-3 min (effective
#: sample size ~6 % of the chain: 33 of 500 in a short run).
N_SAMPLES = 20000
#: Shortest chain :func:`posterior_sample` accepts: pyPESTO's Geweke test splits the chain into 20 fragments.
MIN_SAMPLES = 20
#: Parameter sets of the thinned posterior sample that the prediction bands simulate (each a two-week run of every
#: data condition).
N_BAND_SAMPLES = 200
#: Central probability of a sampled prediction band: the 2.5th to the 97.5th percentile of the sampled predictions.
BAND_QUANTILES = (0.025, 0.975)


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
    n_samples: int = 0,
) -> dict:
    """Fit ``species``' PEtab problem: ``n_starts`` multistarts (``workers`` > 1: pyPESTO's multi-process engine),
    profiles, identifiability, errors on fitted and held-out data.  With ``n_samples`` > 0 the posterior is sampled
    (:func:`posterior_sample`) and the prediction bands are its 95 % quantile bands (:data:`N_BAND_SAMPLES` sets of the
    thinned chain); otherwise they are the envelope of the profile points inside the 95 % threshold.  Writes the
    report folder ``out`` if given.  Returns the summary (see the module docstring)."""
    import pypesto
    import pypesto.optimize as optimize
    import pypesto.profile as profile_mod

    if n_starts < 1:
        raise ValueError(f"n_starts must be >= 1, got {n_starts}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if n_samples < 0 or 0 < n_samples < MIN_SAMPLES:
        raise ValueError(f"n_samples must be 0 (no sampling) or >= {MIN_SAMPLES}, got {n_samples}")
    data = [r for r in read_data() if r["species"] == species]
    fit_rows = [r for r in data if r["use"] == "fit"]
    hold_rows = [r for r in data if r["use"] == "holdout"]
    estimated = list(ESTIMATED[species])
    best_params: dict[str, float] = {}
    summary: dict = {"species": species, "n_starts": 0, "n_converged": 0, "best_objective": None, "n_profiled": 0}
    identifiability = []
    band_sets: list[dict[str, float]] = []
    sampled_sets: list[dict[str, float]] = []
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
        if n_samples:
            samples, diagnostics = posterior_sample(problem, result, n_samples, seed)
            names = [table_id(p) for p in problem.get_reduced_vector(np.asarray(problem.x_names))]
            summary["sampling"] = {
                **diagnostics,
                "posterior_median": {n: float(np.median(samples[:, j])) for j, n in enumerate(names)},
                "posterior_95": {
                    n: [float(np.quantile(samples[:, j], q)) for q in BAND_QUANTILES] for j, n in enumerate(names)
                },
            }
            sampled_sets = [
                {n: float(row[j]) for j, n in enumerate(names) if n in estimated}
                for row in thin(samples, N_BAND_SAMPLES)
            ]
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
    if sampled_sets:
        bands = prediction_bands(species, fit_rows + hold_rows, [best_params, *sampled_sets], quantiles=BAND_QUANTILES)
        summary["n_band_sets"] = 1 + len(sampled_sets)
        summary["band_kind"] = "posterior quantiles"
    elif band_sets:
        bands = prediction_bands(species, fit_rows + hold_rows, [best_params, *band_sets])
        summary["n_band_sets"] = 1 + len(band_sets)
        summary["band_kind"] = "profile envelope"
    if out is not None:
        # without estimated parameters there is no band: the report still shows the data against the model's time
        # courses (the nominal parameters)
        curves = prediction_bands(species, fit_rows + hold_rows, [best_params]) if bands.empty else None
        _write_report(Path(out), summary, fits, pd.DataFrame(identifiability), fvals, profiles, bands, data, curves)
    return summary


def posterior_sample(problem, result, n_samples: int = N_SAMPLES, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Sample the posterior of a fitted :func:`pypesto_problem` with pyPESTO's adaptive Metropolis sampler (one
    chain from the best fit in ``result``).  The posterior is the likelihood times the priors of the PEtab problem
    (normal on log10 for measured parameters, :func:`~analysis.calibration.petab_problem.prior`) and, for the
    others, a uniform prior on the log10 scale between their bounds (proposals outside the bounds are rejected).

    Returns (samples after the burn-in, in table units and the order of ``problem.x_names``, shape (n, n_par);
    diagnostics: ``n_samples``, ``burn_in`` (Geweke test, z = 2), ``geweke_converged`` (False: the test found no
    stationary part, and the whole chain is returned with a warning), ``effective_sample_size`` (None if not
    converged), ``acceptance_rate``, ``seconds``)."""
    import time

    import pypesto.sample as sample

    if n_samples < MIN_SAMPLES:
        raise ValueError(f"n_samples must be >= {MIN_SAMPLES}, got {n_samples}")
    scales = {str(s) for s in np.asarray(problem.x_scales)[problem.x_free_indices]}
    if scales != {"log10"}:
        raise ValueError(f"posterior_sample expects every estimated parameter on log10, got scales {sorted(scales)}")
    np.random.seed(seed)
    sampler = sample.AdaptiveMetropolisSampler(options={"show_progress": False})
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x0 = problem.get_reduced_vector(np.asarray(result.optimize_result.list[0].x, dtype=float))
        result = sample.sample(problem, n_samples=n_samples, sampler=sampler, result=result, x0=x0)
        burn_in = int(sample.geweke_test(result))
        ess = sample.effective_sample_size(result)
    seconds = time.perf_counter() - start
    trace = np.asarray(result.sample_result.trace_x[0], dtype=float)  # (n_samples + 1, n_par), log10 scale
    moved = np.any(np.diff(trace, axis=0) != 0, axis=1)
    converged = burn_in < len(trace)
    if not converged:
        warnings.warn(
            f"posterior sample of {n_samples}: the Geweke test found no stationary part of the chain; the whole "
            "chain is used (sample more)",
            stacklevel=2,
        )
    kept = trace[burn_in:] if converged else trace
    diagnostics = {
        "n_samples": int(n_samples),
        "burn_in": burn_in if converged else len(trace),
        "geweke_converged": converged,
        "effective_sample_size": None if ess is None else float(ess),
        "acceptance_rate": float(np.mean(moved)),
        "seconds": round(seconds, 1),
    }
    return 10**kept, diagnostics


def thin(samples: np.ndarray, n: int) -> np.ndarray:
    """``n`` rows of ``samples`` evenly spaced along the chain (all of them if there are fewer)."""
    if len(samples) <= n:
        return samples
    return samples[np.linspace(0, len(samples) - 1, n).round().astype(int)]


#: Horizon of the prediction bands (s): two weeks, the clinical follow-up of a single dose.
BAND_HORIZON = 14 * 86400.0


def prediction_bands(
    species: str,
    rows: list[dict[str, str]],
    parameter_sets: list[dict[str, float]],
    t_end: float = BAND_HORIZON,
    quantiles: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """Prediction bands: every condition and observable of the data ``rows``, simulated with each of
    ``parameter_sets`` (the best fit first), over :func:`~analysis.core.simulate.time_grid` to ``t_end`` s plus the
    data times.  Returns a tidy DataFrame (condition, observable, time_s, best, lower, upper).  Without
    ``quantiles``, lower and upper are the envelope of the sets (for the profile points inside the 95 % threshold:
    an approximation to the band that each parameter's uncertainty alone allows); with ``quantiles`` (for
    posterior samples, e.g. (0.025, 0.975)) they are those quantiles over the sets after the first."""
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
        if quantiles is None:
            lo, hi = values.min(axis=0), values.max(axis=0)
        else:
            lo, hi = np.quantile(values[1:] if len(values) > 1 else values, quantiles, axis=0)
        for j, e in enumerate(expressions):
            frames.append(
                pd.DataFrame(
                    {
                        "condition": condition,
                        "observable": e,
                        "time_s": times,
                        "best": values[0, j],
                        "lower": lo[j],
                        "upper": hi[j],
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


def _plot_bands(bands: pd.DataFrame, data: list[dict[str, str]], band_label: str | None = "95 % profile band"):
    """One panel per (condition, observable): band (none if ``band_label`` is None), best fit and the data with
    their log-normal 95 % error."""
    import textwrap

    import matplotlib.pyplot as plt

    keys = list(dict.fromkeys(zip(bands["condition"], bands["observable"], strict=True)))
    ncol = min(4, len(keys))
    nrow = -(-len(keys) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.2 * nrow), squeeze=False)
    for ax in axes.flat[len(keys) :]:
        ax.axis("off")
    for ax, (cond, obs) in zip(axes.flat, keys, strict=False):
        b = bands[(bands["condition"] == cond) & (bands["observable"] == obs)]
        points = [r for r in data if condition_label(r) == cond and r["observable"] == obs]
        # data within the first 6 h (PK) are shown on an hour scale up to 4x the last one's time (at most 6 h more),
        # the rest in days
        t_data = max((float(r["time_s"]) for r in points), default=b["time_s"].max())
        scale, label = (3600.0, "h") if t_data < 6 * 3600 else (86400.0, "days")
        t_end = min(4 * t_data, t_data + 6 * 3600) if t_data < 6 * 3600 else float(b["time_s"].max())
        b = b[b["time_s"] <= t_end]
        t = b["time_s"].to_numpy() / scale
        if band_label is not None:
            ax.fill_between(t, b["lower"], b["upper"], color="C0", alpha=0.25, lw=0, label=band_label)
        ax.plot(t, b["best"], color="C0", lw=1.2, label="best fit" if band_label is not None else "model")
        for r in points:
            v, sd = float(r["value"]), float(r["sigma_log"])
            err = [[v * (1 - np.exp(-1.96 * sd))], [v * (np.exp(1.96 * sd) - 1)]]
            style = "ko" if r["use"] == "fit" else "rs"
            shown = r["use"] in ax.get_legend_handles_labels()[1]
            ax.errorbar([float(r["time_s"]) / scale], [v], yerr=err, fmt=style, ms=4, label=None if shown else r["use"])
        ax.set(xlabel=f"time ({label})", ylabel=obs, title="\n".join(textwrap.wrap(cond, 48)), xlim=(0, t_end / scale))
        ax.title.set_fontsize(7)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def _write_report(out: Path, summary, fits, ident, fvals, profiles, bands=None, data=None, curves=None) -> None:
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
        sampled = summary.get("band_kind") == "posterior quantiles"
        fig = _plot_bands(bands, data or [], "95 % posterior band" if sampled else "95 % profile band")
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
            (
                f"2.5th-97.5th percentiles of {summary['n_band_sets'] - 1} parameter sets drawn evenly from the "
                "posterior sample (below), "
                if sampled
                else f"Envelope of {summary.get('n_band_sets')} parameter sets (the best fit and every profile point "
                "inside the 95 % threshold), "
            )
            + "simulated for each data condition over two weeks (`bands.csv`); data with their 95 % log-normal "
            "error, held-out data in red.",
            "",
            "![bands](bands.png)",
            "",
        ]
    if curves is not None and not curves.empty:
        fig = _plot_bands(curves, data or [], band_label=None)
        write_atomic(out / "fits.png", lambda p: fig.savefig(p, dpi=120))
        plt.close(fig)
        lines += [
            "## Data against the model's time courses",
            "",
            (
                "No parameter is estimated, so there is no band: each data condition simulated with the nominal "
                "parameters"
                if not summary.get("estimated")
                else "No band was computed (no profiles, no posterior sample): each data condition simulated with the "
                "best fit"
            )
            + ", with the data and their 95 % log-normal error (held-out data in red).",
            "",
            "![fits](fits.png)",
            "",
        ]
    if "sampling" in summary:
        smp = summary["sampling"]
        rows = pd.DataFrame(
            [
                {"parameter": n, "posterior median": smp["posterior_median"][n], "2.5 %": lo, "97.5 %": hi}
                for n, (lo, hi) in smp["posterior_95"].items()
            ]
        )
        lines += [
            "## Posterior sample",
            "",
            f"pyPESTO's adaptive Metropolis sampler, one chain of {smp['n_samples']} samples from the best fit "
            f"({smp['seconds']} s); burn-in {smp['burn_in']} (Geweke test), acceptance rate "
            f"{smp['acceptance_rate']:.2f}, effective sample size "
            + (f"{smp['effective_sample_size']:.0f}" if smp["effective_sample_size"] is not None else "n/a")
            + ("" if smp.get("geweke_converged", True) else " (the Geweke test found no stationary part)")
            + ".  Priors: the "
            "PEtab problem's (normal on log10 for measured parameters), uniform on log10 within the bounds otherwise.",
            "",
            _markdown(rows),
            "",
        ]
    write_text_atomic(out / "report.md", "\n".join(lines))


def write_overview(root: str | Path) -> dict:
    """The summary of all species' report folders under ``root`` (``<root>/<species>/summary.json`` and
    ``fits.csv``), written to ``<root>/summary.json`` and returned.  The species' problems are independent, so the
    joint problem's counts are sums over the species, its best objective is the sum of the estimated species'
    best objectives, and its errors are medians over the pooled rows of every species' ``fits.csv``."""
    root = Path(root)
    species = {}
    fits = []
    for folder in sorted(p for p in root.iterdir() if (p / "summary.json").is_file()):
        species[folder.name] = json.loads((folder / "summary.json").read_text())
        if (folder / "fits.csv").is_file():
            fits.append(pd.read_csv(folder / "fits.csv").assign(species=folder.name))
    if not species:
        raise FileNotFoundError(f"no <species>/summary.json under {root}")
    pooled = pd.concat(fits, ignore_index=True) if fits else pd.DataFrame(columns=["use", "rel_error"])

    def pooled_median(use: str) -> float | None:
        err = pooled.loc[pooled["use"] == use, "rel_error"].abs()
        return float(err.median()) if len(err) else None

    objectives = [v["best_objective"] for v in species.values() if v.get("best_objective") is not None]
    overview = {
        "n_starts": sum(int(v.get("n_starts", 0)) for v in species.values()),
        "n_converged": sum(int(v.get("n_converged", 0)) for v in species.values()),
        "best_objective": float(sum(objectives)) if objectives else None,
        "n_profiled": sum(int(v.get("n_profiled", 0)) for v in species.values()),
        "calibration_median_abs_rel_error": pooled_median("fit"),
        "holdout_median_abs_rel_error": pooled_median("holdout"),
        "n_calibration_rows": int((pooled["use"] == "fit").sum()),
        "n_holdout_rows": int((pooled["use"] == "holdout").sum()),
        "note": "one PEtab problem per species; counts and the best objective are sums over the species (the rat "
        "problem estimates nothing), the errors are medians over the pooled rows of all species",
        "species": species,
    }
    write_text_atomic(root / "summary.json", json.dumps(overview, indent=2, default=float) + "\n")
    return overview


__all__ = [
    "PROFILE_THRESHOLD",
    "calibrate",
    "likelihood_objective",
    "posterior_sample",
    "prediction_bands",
    "pypesto_problem",
    "simulate_rows",
    "write_overview",
]
