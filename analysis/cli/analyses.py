"""CLI subcommands of the analyses: ``sensitivity``, ``dose-response``, ``interventions``, ``scan``.

Wire into :mod:`analysis.cli.commands` with ``register(sub)`` where ``sub = parser.add_subparsers(...)``;
each subcommand sets ``func`` (returns an exit code) and writes CSV tables and PNG/SVG figures
under ``--out`` atomically.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.core.io import write_atomic
from analysis.core.model import OBSERVABLES, ModelError
from analysis.core.paths import RESULTS, SPECIES
from analysis.core.simulate import DAY, DEFAULT_SCENARIOS

GLOBAL_METHODS = ("morris", "sobol")
#: Default wall-clock limit per parameter set of the global methods (s): a regular 2-day rat run with its drug-free
#: solve takes ~0.05 s; the few sets whose circuit oscillates for hours after the dose take seconds each.
GLOBAL_TIME_LIMIT = 2.0


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """Write ``df`` as CSV atomically (same format as analysis.cli.commands.write_csv)."""
    return write_atomic(path, lambda p: df.to_csv(p, float_format="%.10g"))


def _names(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _floats(text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ModelError(f"expected comma-separated numbers, got {text!r}") from None


def cmd_sensitivity(args: argparse.Namespace) -> int:
    """Local sensitivities: time-course heatmap, readout table, tornado figures."""
    from analysis.analyses import sensitivity as S
    from analysis.plots.analyses import plot_sensitivity_heatmap, plot_tornado, save_figure

    if args.method in GLOBAL_METHODS:
        return _global_sensitivity(args)
    out = Path(args.out)
    params = _names(args.parameters)
    readouts = _names(args.readouts)
    with warnings.catch_warnings(record=True) as caught:  # a fallback is a note for the user, not a traceback
        warnings.simplefilter("always", UserWarning)
        ts = S.timecourse_sensitivities(
            args.species, params, observables=OBSERVABLES, times=np.linspace(0, args.hours * 3600.0, args.n_times)
        )
    for w in caught:
        print(f"note: {w.message}", file=sys.stderr)
    long = ts.stack(level=[0, 1], future_stack=True).rename("scaled_sensitivity").reset_index()
    write_csv(long.set_index("time_after_dose_s"), out / "sensitivity_timecourse.csv")
    summary = S.summarise_timecourse(ts)
    write_csv(summary, out / "sensitivity_observables.csv")
    save_figure(
        plot_sensitivity_heatmap(summary, f"{args.species}: max scaled sensitivity over {args.hours:g} h"),
        out / "sensitivity_heatmap",
    )
    rs = S.readout_sensitivities(args.species, params, readouts=readouts, rel_step=args.rel_step)
    write_csv(rs, out / "sensitivity_readouts.csv")
    save_figure(plot_sensitivity_heatmap(rs, f"{args.species}: readout sensitivities"), out / "sensitivity_readouts")
    for r in rs.columns if args.tornado == "all" else (_names(args.tornado) or []):
        save_figure(plot_tornado(S.tornado(rs, r, args.top), r, f"{args.species}: {r}"), out / f"tornado_{r}")
    print(f"sensitivity ({ts.attrs.get('method')}): {len(rs)} parameters x {rs.shape[1]} readouts -> {out}/")
    return 0


def _global_sensitivity(args: argparse.Namespace) -> int:
    """Morris or Sobol through the ensemble engine: indices, convergence, samples, failures; figures."""
    from analysis.analyses import global_sensitivity as G
    from analysis.plots.analyses import plot_convergence, plot_morris, plot_sobol, save_figure

    out = Path(args.out)
    readouts = _names(args.readouts) or list(G.DEFAULT_READOUTS)
    if not (args.time_limit is None or (math.isfinite(args.time_limit) and args.time_limit > 0)):
        raise ModelError(f"--time-limit must be a positive number of seconds, got {args.time_limit}")
    common = dict(
        seed=args.seed, workers=args.workers, scheduler=args.scheduler, progress=not args.no_progress,
        scenario=None, time_limit=args.time_limit,
    )  # fmt: skip
    if args.method == "sobol":
        n = args.samples if args.samples is not None else 64
        res = G.sobol_analysis(args.species, _names(args.parameters), readouts, n, **common)
    else:
        n = args.samples if args.samples is not None else 10
        res = G.morris_analysis(args.species, _names(args.parameters), readouts, n, levels=args.levels, **common)
    m = args.method
    write_csv(res.indices, out / f"{m}_indices.csv")
    write_csv(res.convergence.set_index("readout"), out / f"{m}_convergence.csv")
    write_csv(res.samples.join(res.outputs), out / f"{m}_samples.csv")
    write_csv(res.failures.set_index("sample") if len(res.failures) else res.failures, out / f"{m}_failures.csv")
    write_csv(res.bounds, out / f"{m}_bounds.csv")
    plot = plot_sobol if m == "sobol" else plot_morris
    for r in readouts:
        save_figure(plot(res.indices.loc[r], r, f"{args.species}: {m}, {r}"), out / f"{m}_{r}")
        if len(res.convergence):
            save_figure(plot_convergence(res.convergence, r, f"{args.species}: {m} convergence, {r}"),
                        out / f"{m}_convergence_{r}")  # fmt: skip
    dropped = ""
    if m == "morris" and any(res.dropped.values()):
        fewest = int(res.indices["n_used"].min())
        r_all = res.settings["r"]
        dropped = f", elementary effects lost to them {res.dropped} (fewest per parameter {fewest} of {r_all})"
    if m == "sobol" and len(res.failures):
        fewest = int(res.indices["n_used"].min())
        dropped = f", indices on the complete base rows only (fewest {fewest} of {res.settings['n']})"
    print(
        f"sensitivity ({m}): {len(res.bounds)} parameters x {len(readouts)} readouts, {len(res.samples)} runs, "
        f"{len(res.failures)} failed{dropped} -> {out}/"
    )
    return 0


def cmd_dose_response(args: argparse.Namespace) -> int:
    """Every readout vs dose (log-spaced)."""
    from analysis.analyses import doseresponse as D
    from analysis.plots.analyses import plot_dose_response, save_figure

    lo, hi = D.DOSE_RANGES[args.species]
    doses = D.log_doses(
        args.min_dose if args.min_dose is not None else lo, args.max_dose if args.max_dose is not None else hi, args.n
    )
    table = D.dose_response(args.species, doses, readouts=_names(args.readouts))
    out = Path(args.out)
    write_csv(table, out / f"dose_response_{args.species}.csv")
    save_figure(plot_dose_response(table, f"Dose-response, {args.species}"), out / f"dose_response_{args.species}")
    print(f"dose-response: {len(table)} doses x {table.shape[1]} readouts -> {out}/")
    return 0


def cmd_interventions(args: argparse.Namespace) -> int:
    """Interventions vs control and dosing regimens."""
    from analysis.analyses import doseresponse as D
    from analysis.plots.analyses import plot_interventions, plot_regimens, save_figure

    out = Path(args.out)
    readouts = _names(args.readouts)
    table, curves = D.interventions(args.species, args.dose, readouts=readouts, horizon_s=args.days * 86400.0)
    write_csv(table, out / f"interventions_{args.species}.csv")
    save_figure(
        plot_interventions(curves, table, f"Interventions, {args.species}"), out / f"interventions_{args.species}"
    )
    reg, rc = D.regimens(
        args.species, n_doses=(1, args.repeat), interval_s=args.interval_h * 3600.0, dose=args.dose,
        readouts=readouts, horizon_s=args.days * 86400.0,
    )  # fmt: skip
    write_csv(reg, out / f"regimens_{args.species}.csv")
    save_figure(plot_regimens(rc, f"Dosing regimens, {args.species}"), out / f"regimens_{args.species}")
    print(f"interventions: {len(curves)} arms, regimens: {len(reg)} -> {out}/")
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    """1-D scan (one parameter) or 2-D scan (two parameters)."""
    from analysis.analyses import doseresponse as D
    from analysis.core.tables import read_parameters
    from analysis.plots.analyses import plot_scan_1d, plot_scan_2d, save_figure

    out = Path(args.out)
    params = _names(args.parameter) or []
    readouts = _names(args.readouts)
    units = {k: p.unit for k, p in read_parameters(args.species).items()}
    if len(params) == 1:
        table = D.scan_1d(args.species, params[0], _floats(args.values), args.n, readouts=readouts)
        write_csv(table, out / f"scan_{params[0]}.csv")
        save_figure(plot_scan_1d(table, params[0], units.get(params[0], "")), out / f"scan_{params[0]}")
    elif len(params) == 2:
        table = D.scan_2d(args.species, (params[0], params[1]), n=args.n, readouts=readouts)
        stem = f"scan_{params[0]}_{params[1]}"
        write_csv(table.set_index([params[0], params[1]]), out / f"{stem}.csv")
        for r in [c for c in table.columns if c not in params and c != "error"]:
            save_figure(
                plot_scan_2d(table, r, (units.get(params[0], ""), units.get(params[1], ""))), out / f"{stem}_{r}"
            )
    else:
        raise ModelError(f"--parameter takes one or two comma-separated ids, got {args.parameter!r}")
    failed = int((table["error"] != "").sum())
    note = f" ({failed} without a physiological drug-free state: NaN, reason in the 'error' column)" if failed else ""
    print(f"scan of {', '.join(params)}: {len(table)} points{note} -> {out}/")
    return 0


def cmd_robustness(args: argparse.Namespace) -> int:
    """Drug-free operating point over the plausible ranges: range ends, joint box, continuation scans."""
    from analysis.analyses import robustness as R
    from analysis.core.tables import read_parameters
    from analysis.plots.analyses import plot_continuation, plot_range_ends, plot_synapse_drive_loop, save_figure

    if args.samples < 1:
        raise ModelError(f"--samples must be >= 1, got {args.samples}")
    out = Path(args.out)
    dose = args.dose if args.dose is not None else DEFAULT_SCENARIOS[args.species]["dose"]
    if dose < 0:
        raise ModelError(f"--dose must be >= 0 mg/kg, got {dose}")
    ends = R.range_ends(args.species, dose=dose)
    write_csv(ends, out / "range_ends.csv")
    save_figure(plot_range_ends(ends, f"{args.species}: each parameter alone at its range ends"), out / "range_ends")
    box = R.joint_box(args.species, args.samples, seed=args.seed, dose=dose)
    write_csv(box, out / "joint_box.csv")
    units = {k: p.unit for k, p in read_parameters(args.species).items()}
    scans = {p: R.continuation(args.species, p) for p in (_names(args.continuation) or R.CONTINUATION_DEFAULT)}
    for p, scan in scans.items():
        write_csv(scan, out / f"continuation_{p}.csv")
    save_figure(plot_continuation(scans, units), out / "continuation")
    bad_ends = ends[~ends["ok"]]
    print(
        f"range ends: {len(bad_ends)} of {len(ends)} without a physiological drug-free state "
        f"({', '.join(f'{p} {e}' for p, e in bad_ends.index) or 'none'})"
    )
    print(
        f"joint box ({args.samples} sets, log-uniform): {int((~box['ok']).sum())} without a physiological state "
        f"({100 * (~box['ok']).mean():.1f} %); largest eigenvalue among the others "
        f"{box.loc[box['ok'], 'max_eigenvalue'].max():.3g} /s"
    )
    if dose:
        print(
            f"after {dose:g} mg/kg: {int((~ends['dosed_ok']).sum())} of {len(ends)} range ends and "
            f"{int((~box['dosed_ok']).sum())} of {len(box)} joint sets fail (runaway, solver failure or no "
            "drug-free state)"
        )
    for p, scan in scans.items():
        ends_at = []
        for side, end in zip(("below", "above"), R.branch_end(scan), strict=True):
            kind = R.branch_kind(scan, side)
            where = "holds over the whole scan" if end is None else f"ends at {end:.4g}"
            ends_at.append(f"{side}: {where}" + (f" ({kind})" if kind else ""))
        print(f"continuation {p} (range {scan.attrs['lower']:g} to {scan.attrs['upper']:g}): physiological branch "
              f"{'; '.join(ends_at)}")  # fmt: skip
    modes = R.oscillatory_modes(args.species)
    write_csv(modes, out / "oscillatory_modes.csv")
    for _, mode in modes.iterrows():
        print(
            f"damped oscillation of the drug-free state: period {mode['period_days']:.3g} d, damping ratio "
            f"{mode['damping_ratio']:.2f} (overshoot {100 * mode['overshoot']:.0f} %); {mode['states']}"
        )
    if modes.empty:
        print("no oscillatory mode slower than 1e-3 /s at the drug-free state")
    loop = R.homeostat_loop(args.species)
    print(
        f"homeostat loop: damping ratio {loop['damping_ratio']:.2f} (>= 1: no oscillation) at Narp weight "
        f"{loop['narp_weight']:g}; the loop rings below {loop['critical_narp_weight']:.3f}"
    )
    norm = read_parameters(args.species)[R.NORMALISATION]
    loops = {
        f"normalisation {tau / DAY:g} d": R.synapse_drive_loop(args.species, parameters={R.NORMALISATION: tau})
        for tau in (norm.lower, norm.value, norm.upper)
    }
    shipped = loops[f"normalisation {norm.value / DAY:g} d"]
    for name, loop in loops.items():
        write_csv(loop["scan"], out / f"synapse_drive_{name.replace(' ', '_')}.csv")
    write_csv(shipped["elasticities"].rename("elasticity").to_frame(), out / "loop_elasticities.csv")
    save_figure(plot_synapse_drive_loop(loops), out / "synapse_drive_loop")
    chain = ", ".join(f"{s} {e:.3g}" for s, e in shipped["elasticities"].items())
    print(f"activity -> synapse loop, open-loop elasticities to the pyramidal excitatory conductances: {chain}")
    for name, loop in loops.items():
        where = (
            f"loses stability above a share of {loop['critical_share']:.3g}"
            if np.isfinite(loop["critical_share"])
            else "is stable at every share from 0 to 1"
        )
        print(
            f"new synapses carry {loop['share']:g} of the excitation; with the weight {name}, the drug-free state "
            f"{where} (open-loop gain {loop['open_loop_gain']:.3g})"
        )
    print(f"-> {out}/")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the analysis subcommands to ``subparsers`` (of the ``ketamine-cascade`` parser)."""
    p = subparsers.add_parser(
        "sensitivity",
        help="local or global (Morris, Sobol) sensitivity analysis; defaults on 2 cores (model v2): local ~15 s; "
        "morris over every table parameter ~1.1 min (1190 runs; ~40 %% fail at range ends, and each failure removes "
        "only the elementary effects of its own steps); sobol --samples 256 over every "
        "parameter (30,720 runs) ~7 min: pass --parameters to screen fewer, or --scheduler",
    )
    p.add_argument("--species", choices=SPECIES, default="rat")
    p.add_argument("--method", choices=("local",) + GLOBAL_METHODS, default="local")
    p.add_argument("--parameters", help="comma-separated ids (default: every varied parameter of the table)")
    p.add_argument(
        "--readouts",
        help="comma-separated readout names (default: all; morris/sobol: glutamate_peak,mtorc1_peak,spine_gain_24h)",
    )
    p.add_argument("--hours", type=float, default=48.0, help="time-course sensitivities up to this time after the dose")
    p.add_argument("--n-times", type=int, default=97, help="output times of the time-course sensitivities")
    p.add_argument("--rel-step", type=float, default=0.01, help="relative finite-difference step of the readouts")
    p.add_argument("--tornado", default="spine_gain_24h,glutamate_peak,mtorc1_peak", help="readouts or 'all'")
    p.add_argument("--top", type=int, default=15, help="parameters per tornado")
    p.add_argument("--seed", type=int, default=0, help="random seed (global methods; local is deterministic)")
    p.add_argument(
        "--samples",
        type=int,
        help="sobol: base samples N, a power of 2 >= 8 (default 64; N (D + 2) runs); "
        "morris: trajectories r >= 2 (default 10; r (D + 1) runs)",
    )
    p.add_argument("--levels", type=int, default=4, help="morris grid levels (even)")
    p.add_argument(
        "--time-limit",
        type=float,
        default=GLOBAL_TIME_LIMIT,
        help=f"global: wall-clock limit per parameter set (s, default {GLOBAL_TIME_LIMIT:g}); a set past it is a "
        "failure (sets whose circuit oscillates after the dose take seconds each)",
    )
    p.add_argument("--workers", type=int, help="global: Dask worker processes (0 = serial; default one per core)")
    p.add_argument("--scheduler", help="global: address of an existing Dask scheduler (tcp://host:8786)")
    p.add_argument("--no-progress", action="store_true", help="global: no progress bar")
    p.add_argument("--out", default=str(RESULTS / "sensitivity"))
    p.set_defaults(func=cmd_sensitivity)

    p = subparsers.add_parser("dose-response", help="every readout vs log-spaced dose")
    p.add_argument("--species", choices=SPECIES, default="rat")
    p.add_argument("--n", type=int, default=25, help="number of doses")
    p.add_argument("--min-dose", type=float, help="mg/kg (default rat 0.1, human 0.05)")
    p.add_argument("--max-dose", type=float, help="mg/kg (default rat 300, human 2)")
    p.add_argument("--readouts", help="comma-separated readout names (default: all)")
    p.add_argument("--out", default=str(RESULTS / "dose_response"))
    p.set_defaults(func=cmd_dose_response)

    p = subparsers.add_parser(
        "interventions", help="rapamycin, NBQX, anti-BDNF, L-type blocker, Val66Met vs control; regimens"
    )
    p.add_argument("--species", choices=SPECIES, default="rat")
    p.add_argument("--dose", type=float, help="mg/kg (default: the species' default scenario)")
    p.add_argument("--days", type=float, default=7.0, help="simulated days after the (last) dose")
    p.add_argument("--repeat", type=int, default=3, help="number of doses of the repeated regimen")
    p.add_argument("--interval-h", type=float, default=48.0, help="hours between repeated doses")
    p.add_argument("--readouts", help="comma-separated readout names (default: all)")
    p.add_argument("--out", default=str(RESULTS / "interventions"))
    p.set_defaults(func=cmd_interventions)

    p = subparsers.add_parser(
        "robustness",
        help="drug-free operating point over the plausible ranges (range ends, joint box, continuation), and a "
        "dosed run of each set; ~30 s on 2 cores",
    )
    p.add_argument("--species", choices=SPECIES, default="rat")
    p.add_argument("--samples", type=int, default=1000, help="jointly sampled parameter sets (log-uniform)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--dose",
        type=float,
        help="mg/kg given to every set after the drug-free check, simulated for 7 days (default: the species' "
        "default dose; 0 = skip)",
    )
    p.add_argument(
        "--continuation",
        help="comma-separated parameters to follow (default: mg_ext, e_gaba, v_rest_pyr, g_ampa_pyr, g_nmda_pyr, "
        "v_slope_pyr)",
    )
    p.add_argument("--out", default=str(RESULTS / "robustness"))
    p.set_defaults(func=cmd_robustness)

    p = subparsers.add_parser("scan", help="1-D or 2-D parameter scan over the plausible bounds")
    p.add_argument("--species", choices=SPECIES, default="rat")
    p.add_argument("--parameter", required=True, help="one id (1-D) or two comma-separated ids (2-D)")
    p.add_argument("--values", help="comma-separated values for a 1-D scan (default: n values over the bounds)")
    p.add_argument("--n", type=int, default=11, help="values per parameter")
    p.add_argument("--readouts", help="comma-separated readout names (default: all)")
    p.add_argument("--out", default=str(RESULTS / "scan"))
    p.set_defaults(func=cmd_scan)
