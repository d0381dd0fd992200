"""Command line `ketamine-cascade`: build, simulate, validate, ensemble, population and the analyses.

Thin layer over the package functions; every file is written atomically.
"""

from __future__ import annotations

import _thread
import argparse
import json
import math
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from analysis.analyses.validate import read_targets, run_validation
from analysis.calibration.fit import MIN_SAMPLES, N_SAMPLES
from analysis.core import stop
from analysis.core.drugs import with_drug
from analysis.core.io import write_atomic, write_text_atomic
from analysis.core.model import ModelError, SimulationError, load_model
from analysis.core.paths import RESULTS, ROOT, SPECIES
from analysis.core.simulate import DAY, DEFAULT_SCENARIOS, simulate, time_grid
from analysis.core.stop import Terminated
from analysis.core.tables import TableError
from analysis.exchange.build import BuildError, build_all


def _parse_set(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep:
            raise ModelError(f"--set expects name=value, got {item!r}")
        try:
            out[key] = float(val)
        except ValueError:
            raise ModelError(f"--set {key}: value {val!r} is not a number") from None
    return out


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    return write_atomic(path, lambda p: df.to_csv(p, float_format="%.10g"))


def validation_markdown(df: pd.DataFrame) -> str:
    lines = [
        f"# Literature validation ({int(df.passed.sum())}/{len(df)} targets within band)",
        "",
        "| target | species | dose (mg/kg) | readout | time (min) | band | simulated | pass | evidence | source |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in df.itertuples():
        lines.append(
            f"| {r.id} | {r.species} | {r.dose_mg_per_kg:g} | {r.readout} {r.observable} | {r.time_min:g} "
            f"| {r.lower:g} to {r.upper:g} {r.unit} | {r.simulated:.3g} | {'PASS' if r.passed else 'FAIL'} "
            f"| {r.evidence} | {r.citation} |"
        )
    return "\n".join(lines) + "\n"


def cmd_build(args: argparse.Namespace) -> int:
    for p in build_all():
        print(f"wrote {p}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from analysis.calibration.fit import calibrate, write_overview

    if args.starts < 1 or args.workers < 0:
        raise ModelError(f"--starts must be >= 1 and --workers >= 0, got {args.starts} and {args.workers}")
    out = Path(args.out) if args.out else RESULTS / "calibration" / args.species
    if args.samples < 0 or 0 < args.samples < MIN_SAMPLES:
        raise ModelError(f"--samples must be 0 (no sampling) or >= {MIN_SAMPLES}, got {args.samples}")
    summary = calibrate(
        args.species, args.starts, args.workers, out, profile=not args.no_profile, n_samples=args.samples
    )
    print(json.dumps(summary, indent=2, default=float))
    print(f"-> {out}/")
    if args.out is None or out.resolve().parent == (ROOT / "docs" / "calibration").resolve():  # species side by side
        write_overview(out.parent)
        print(f"-> {out.parent / 'summary.json'} (all species)")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    params = dict(DEFAULT_SCENARIOS[args.species])
    overrides = _parse_set(args.set)
    if args.dose is not None:
        if "dose" in overrides:
            raise ModelError("the dose is given twice (--dose and --set dose=...); give it once")
        params["dose"] = args.dose
    params.update(overrides)
    if args.drug:
        params = with_drug(args.drug, args.species, params)
    df = simulate(args.species, params, t_end=args.t_end_h * 3600.0)
    if args.out:
        print(f"wrote {write_csv(df, Path(args.out))}")
    else:
        print(df.iloc[:: max(1, len(df) // 20)].to_string())
    return 0


def cmd_compare_drugs(args: argparse.Namespace) -> int:
    from analysis.analyses.drugs import compare_drugs
    from analysis.plots.cascade import save_figure
    from analysis.plots.drugs import plot_drug_comparison

    curves, summary = compare_drugs(days=args.days)
    out = Path(args.out)
    write_csv(summary, out / "drug_comparison.csv")
    save_figure(plot_drug_comparison(curves, f"human, {args.days:g} days"), out / "drug_comparison")
    print(summary.round(3).to_string())
    print(f"-> {out}/drug_comparison.csv, drug_comparison.png")
    return 0


def run_and_report_validation(outdir: Path) -> pd.DataFrame:
    from analysis.plots.cascade import plot_validation, save_figure

    targets = read_targets()
    results = run_validation(list(tqdm(targets, desc="validation targets", unit="target", disable=None)))
    write_csv(results.set_index("id"), outdir / "validation.csv")
    pk, pk_summary, pk_figure = pk_timecourse_check()
    write_csv(pk, outdir / "pk_timecourses.csv")
    write_text_atomic(outdir / "validation.md", validation_markdown(results) + pk_timecourse_markdown(pk_summary))
    save_figure(plot_validation(results), outdir / "validation")
    save_figure(pk_figure, outdir / "pk_timecourses")
    return results


def pk_timecourse_check():
    """The held-out human plasma time courses (:mod:`analysis.analyses.pk_timecourse`): the point-by-point
    comparison, its summary and the figure."""
    from analysis.analyses.pk_timecourse import timecourse_check, timecourse_summary
    from analysis.plots.drugs import plot_pk_timecourses

    frame, curves = timecourse_check()
    return frame, timecourse_summary(frame), plot_pk_timecourses(frame, curves)


def pk_timecourse_markdown(summary: pd.DataFrame) -> str:
    lines = [
        "",
        "## Human plasma time courses (held out; `models/calibration_data.tsv`, figure `pk_timecourses.png`)",
        "",
        "Error = (model - data) / data.",
        "",
        "| condition | observable | points | median abs. rel. error | median rel. error |",
        "|---|---|---|---|---|",
    ]
    for r in summary.itertuples():
        lines.append(
            f"| {r.condition} | {r.observable} | {r.n} | {r.median_abs_rel_error:.1%} | {r.median_rel_error:+.1%} |"
        )
    return "\n".join(lines) + "\n"


def cmd_validate(args: argparse.Namespace) -> int:
    results = run_and_report_validation(Path(args.out))
    with pd.option_context("display.width", 200, "display.max_colwidth", 40):
        print(
            results[
                ["id", "species", "dose_mg_per_kg", "readout", "lower", "upper", "simulated", "unit", "passed"]
            ].to_string(index=False)
        )
    print(f"{int(results.passed.sum())} passed, {int((~results.passed).sum())} failed (see {args.out}/validation.md)")
    return 1 if args.strict and not results.passed.all() else 0


def calibration_bands(species: str, condition: str) -> pd.DataFrame | None:
    """The committed calibration report's prediction bands (``docs/calibration/<species>/bands.csv``) of one
    condition (e.g. 'dose 0.5'), or None if there are none."""
    path = ROOT / "docs" / "calibration" / species / "bands.csv"
    if not path.exists():
        return None
    bands = pd.read_csv(path)
    bands = bands[bands["condition"] == condition]
    return bands if len(bands) else None


def cmd_run(args: argparse.Namespace) -> int:
    """Main job: build the SBML, simulate the default scenarios, validate, write tables and figures."""
    from analysis.plots.cascade import plot_cascade, save_figure

    out = Path(args.out)
    for p in build_all():
        print(f"built {p}")
    timings = {}
    for sp in tqdm(SPECIES, desc="default scenarios", unit="species", disable=None):
        t0 = time.perf_counter()
        model = load_model(sp)
        t1 = time.perf_counter()
        df = model.simulate(time_grid(7 * DAY), DEFAULT_SCENARIOS[sp])
        t2 = time.perf_counter()
        timings[sp] = (t1 - t0, t2 - t1)
        write_csv(df, out / f"{sp}_default.csv")
        dose = DEFAULT_SCENARIOS[sp]["dose"]
        bands = calibration_bands(sp, f"dose {dose:g}")
        note = " with calibration bands (docs/calibration)" if bands is not None else ""
        save_figure(
            plot_cascade(df, f"Ketamine cascade, {sp}, {dose:g} mg/kg (default scenario){note}", bands=bands),
            out / f"cascade_{sp}",
        )
    results = run_and_report_validation(out)
    from analysis.plots.cascade import plot_cascade as _pc  # same figure with the rat targets drawn in

    rat = load_model("rat").simulate(time_grid(7 * DAY), {"dose": 10.0})
    drawn = results[(results.species == "rat") & (results.dose_mg_per_kg == 10.0) & (results.readout == "value")]
    save_figure(
        _pc(rat, "Rat 10 mg/kg i.p. with literature targets (bar = band, o pass, x fail)", drawn),
        out / "cascade_rat_targets",
    )
    for sp, (load_s, sim_s) in timings.items():
        print(f"{sp}: load+JIT {load_s:.3f} s, 7-day simulation {sim_s * 1000:.1f} ms")
    print(f"validation: {int(results.passed.sum())}/{len(results)} targets within band; outputs in {out}/")
    return 0


def _ensemble_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--species", choices=SPECIES, default="rat")
    p.add_argument("--samples", type=int, required=True, help="number of parameter sets (virtual subjects)")
    p.add_argument("--dose", type=float, help="mg/kg (default: the species' default scenario)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--days", type=float, default=7.0, help="simulated days after the dose")
    p.add_argument("--workers", type=int, help="local Dask worker processes (default: one per core; 0 = serial)")
    p.add_argument("--scheduler", help="address of an existing Dask scheduler, e.g. tcp://127.0.0.1:8786")
    p.add_argument("--chunk-size", type=int, help="parameter sets per task")
    p.add_argument("--time-limit", type=float, default=60.0, help="wall-clock limit per subject (s; default 60)")
    p.add_argument("--resume", action="store_true", help="finish an interrupted run in --out instead of starting anew")


def _run_population(args: argparse.Namespace, out: Path | None):
    from analysis.engine.ensemble import check_engine_options, run_ensemble
    from analysis.engine.population import sample_population

    check_engine_options(args.workers, args.scheduler, args.chunk_size)
    if not (math.isfinite(args.days) and args.days > 0):
        raise ModelError(f"--days must be a positive, finite number, got {args.days}")
    if not (math.isfinite(args.time_limit) and args.time_limit > 0):
        raise ModelError(f"--time-limit must be a positive number of seconds, got {args.time_limit}")
    dose = args.dose if args.dose is not None else DEFAULT_SCENARIOS[args.species]["dose"]
    samples = sample_population(
        args.species, args.samples, seed=args.seed, fixed={**DEFAULT_SCENARIOS[args.species], "dose": dose}
    )
    times = time_grid(args.days * DAY, n_sparse=200)
    return run_ensemble(
        samples,
        args.species,
        times,
        workers=args.workers,
        scheduler=args.scheduler,
        chunk_size=args.chunk_size,
        out=out,
        resume=args.resume,
        equilibrate=True,
        time_limit=args.time_limit,
    )


def _report_failures(result, out: Path) -> None:
    """Write ``failures.csv`` (always, so a clean rerun never leaves a stale one) and say how many failed."""
    write_csv(result.failures.set_index("sample"), out / "failures.csv")
    if len(result.failures):
        reasons = result.failures["error"].str.contains("runaway").sum()
        print(
            f"{len(result.failures)} parameter set(s) failed ({reasons} without a physiological drug-free state); "
            f"see {out / 'failures.csv'}"
        )


def cmd_ensemble(args: argparse.Namespace) -> int:
    """Sample parameter sets from the plausible bounds and simulate them all; results as Parquet parts."""
    out = Path(args.out)
    result = _run_population(args, out)
    _report_failures(result, out)
    print(
        f"{result.n_ok} simulations written to {out} (run {result.run_id}; read with "
        f"analysis.engine.ensemble.read_ensemble); {result.timing['simulate_s']:.2f} s"
    )
    return 0


def cmd_population(args: argparse.Namespace) -> int:
    """Virtual population: percentile bands of every observable, as CSV and a figure."""
    from analysis.engine.population import percentile_bands
    from analysis.plots.cascade import plot_population, save_figure

    out = Path(args.out)
    result = _run_population(args, out / "ensemble")
    bands = percentile_bands(result)
    write_csv(bands, out / "population_bands.csv")
    _report_failures(result, out)
    dose = args.dose if args.dose is not None else DEFAULT_SCENARIOS[args.species]["dose"]
    save_figure(
        plot_population(bands, f"Virtual population ({args.species}, n = {result.n_ok}, {dose:g} mg/kg)"),
        out / "population",
        tight=False,  # fixed margins (plot_population): no extra layout draw per format
    )
    print(
        f"{result.n_ok}/{args.samples} subjects simulated; bands in {out}/population_bands.csv, figure "
        f"{out}/population.png"
    )
    return 0


def _on_stop_signal(signum, frame):  # noqa: ARG001 - the signal-handler signature
    stop.request(signum)  # survives if the exception below is swallowed (analysis.core.stop)
    raise stop.exception()


class _StopResender:
    """Sends a stop signal again when Python had to swallow its exception.

    A signal handler runs wherever the main thread happens to be. If that is a garbage-collector callback or a
    finalizer (with a local cluster, `distributed`'s GC diagnostics register a callback in this process), Python
    prints "Exception ignored" and drops the :class:`Terminated` (or ``KeyboardInterrupt``), and the command would
    run on. :meth:`hook` (an ``sys.unraisablehook``) queues the signal; a helper thread, started in advance because
    starting a thread inside a GC callback can deadlock, sends it to the main thread 10 ms later, outside the
    callback (a real signal, so it also wakes a main thread that waits on a lock). :meth:`close` stops the helper
    before the handlers are restored, so nothing is sent after the command. Stops lost in other ways (an exception
    cleared inside C code, a library that catches ``BaseException``) are caught by the stop record instead
    (:mod:`analysis.core.stop`): the ensemble checks it after every chunk and the CLI when the command ends.
    """

    def __init__(self, previous_hook) -> None:
        self.previous_hook = previous_hook
        self.queue: queue.SimpleQueue[int | None] = queue.SimpleQueue()  # put() is safe inside finalizers
        self.thread = threading.Thread(target=self._run, name="stop-resender", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        main = threading.main_thread().ident
        while (signum := self.queue.get()) is not None:
            time.sleep(0.01)  # let the main thread leave the callback that swallowed the stop
            if hasattr(signal, "pthread_kill"):
                signal.pthread_kill(main, signum)
            else:  # Windows has no signal for one thread: trip it, handled at the main thread's next check
                _thread.interrupt_main(signum)

    def hook(self, unraisable) -> None:
        exc = unraisable.exc_value
        if isinstance(exc, KeyboardInterrupt):
            self.queue.put(signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
            return
        self.previous_hook(unraisable)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()


def _terminate_like_interrupt() -> Callable[[], None] | None:
    """While a command runs (main thread only): handle SIGTERM as :class:`Terminated` and Ctrl-C as
    ``KeyboardInterrupt``, both recorded as a stop request (:mod:`analysis.core.stop`), and send again a stop signal
    that landed where Python cannot raise (:class:`_StopResender`). Returns the function that restores what was
    replaced, or None if nothing was installed (not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    hook = sys.unraisablehook
    stop.clear()
    handlers = {sig: signal.signal(sig, _on_stop_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    resender = _StopResender(hook)
    sys.unraisablehook = resender.hook

    def restore() -> None:
        resender.close()
        sys.unraisablehook = hook
        for sig, handler in handlers.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        stop.clear()

    return restore


def _uses_local_cluster(args: argparse.Namespace) -> bool:
    """Whether the command will start a local Dask cluster (ensembles, populations, global sensitivity)."""
    if args.command == "sensitivity" and getattr(args, "method", "local") == "local":
        return False
    return (
        args.command in ("ensemble", "population", "sensitivity")
        and getattr(args, "workers", None) != 0
        and not getattr(args, "scheduler", None)
    )


class _HelpFormatter(argparse.HelpFormatter):
    """Shows an option's default where its help does not already name one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, [], argparse.SUPPRESS) or not action.option_strings or "default" in text:
            return text
        return text + " (default: %(default)s)"


def _describe_subcommands(sub: argparse._SubParsersAction) -> None:
    """Each subcommand's ``--help`` opens with its one-line summary (with its run time) and shows defaults."""
    generic = {"species": "model (SBML file of sbml/)", "out": "output folder", "seed": "random seed"}
    for choice in sub._choices_actions:
        parser = sub.choices[choice.dest]
        parser.description = parser.description or choice.help
        parser.formatter_class = _HelpFormatter
        for action in parser._actions:
            if action.help is None and action.dest in generic:
                action.help = generic[action.dest]


def _stopped(terminated: bool) -> int:
    """The one-line message and exit code of a stopped command: 143 after SIGTERM, 130 after Ctrl-C."""
    what = "terminated" if terminated else "interrupted"
    print(f"{what}; completed results are kept, nothing half-written (ensembles: --resume)", file=sys.stderr)
    return 143 if terminated else 130


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ketamine-cascade", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="generate sbml/*.xml from models/").set_defaults(func=cmd_build)
    p = sub.add_parser("simulate", help="simulate one scenario and write a CSV time course")
    p.add_argument("--species", choices=SPECIES, default="rat")
    p.add_argument("--dose", type=float, help="mg/kg (default: the species' default scenario)")
    p.add_argument("--t-end-h", type=float, default=168.0, help="simulated time after t = 0 (h)")
    p.add_argument("--set", action="append", default=[], metavar="ID=VALUE", help="override any parameter")
    p.add_argument("--drug", help="drug preset of models/drugs.tsv (default: the shipped racemic ketamine)")
    p.add_argument("--out", help="CSV file (default: print)")
    p.set_defaults(func=cmd_simulate)
    p = sub.add_parser(
        "compare-drugs",
        help="racemic ketamine, esketamine (intranasal), arketamine and memantine through the human cascade: "
        "table and figure (2 cores: ~10 s)",
    )
    p.add_argument("--days", type=float, default=14.0, help="simulated days (default 14)")
    p.add_argument("--out", default=str(RESULTS))
    p.set_defaults(func=cmd_compare_drugs)
    p = sub.add_parser("validate", help="evaluate the literature targets of models/validation.tsv")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--strict", action="store_true", help="exit 1 if any target fails")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser(
        "ensemble",
        help="simulate N sampled parameter sets on Dask; Parquet output "
        "(2 cores: ~3 s start-up + ~0.8 s per 100 subjects, 7 days)",
    )
    _ensemble_args(p)
    p.add_argument("--out", required=True, help="output folder (Parquet parts)")
    p.set_defaults(func=cmd_ensemble)
    p = sub.add_parser(
        "population", help="virtual population: percentile bands and figure (2 cores: ~6 s for 200 subjects)"
    )
    _ensemble_args(p)
    p.add_argument("--out", default=str(RESULTS / "population"))
    p.set_defaults(func=cmd_population)
    from analysis.cli import analyses as cli_analyses

    cli_analyses.register(sub)  # sensitivity, dose-response, interventions, scan
    p = sub.add_parser(
        "calibrate",
        help="fit a species' PEtab problem (models/petab/) with pyPESTO on libroadrunner: multistart, profiles, "
        "identifiability, posterior sample and prediction bands, errors on fitted and held-out data (human, 100 "
        "starts, 3 parameters, 20,000 samples: ~8 min with --workers 2, of which ~3.5 min sampling; rat: seconds)",
    )
    p.add_argument("--species", choices=SPECIES, default="human")
    p.add_argument("--starts", type=int, default=100, help="multistart local optimisations")
    p.add_argument(
        "--workers", type=int, default=0, help="processes for the starts and profiles (pyPESTO's engine; 0/1: one)"
    )
    p.add_argument("--no-profile", action="store_true", help="skip the profile likelihoods")
    p.add_argument(
        "--samples",
        type=int,
        default=N_SAMPLES,
        help="posterior samples (adaptive Metropolis from the best fit; the prediction bands are their 95 %% "
        "quantiles; 0: profile-envelope bands instead; human: ~3.5 min for the default)",
    )
    p.add_argument(
        "--out",
        help="report folder (default: results/calibration/<species>; committed reports: docs/calibration/<species>)",
    )
    p.set_defaults(func=cmd_calibrate)
    p = sub.add_parser("run", help="main job: build, simulate defaults, validate, figures (2 cores: ~15 s)")
    p.add_argument("--out", default=str(RESULTS))
    p.set_defaults(func=cmd_run)
    _describe_subcommands(sub)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    if _uses_local_cluster(args):  # the workers' imports run in the background while this process prepares the run
        from analysis.engine.forkserver import start_worker_server

        start_worker_server()
    restore = _terminate_like_interrupt()
    try:
        code = args.func(args)
        stop.check()  # a stop swallowed where Python could not raise it: the command ran on, but was stopped
    except KeyboardInterrupt as exc:  # Ctrl-C, or Terminated (SIGTERM)
        return _stopped(isinstance(exc, Terminated) or stop.requested() == signal.SIGTERM)
    except (ModelError, SimulationError, BuildError, TableError) as exc:
        if stop.requested():  # a stop swallowed in C code can surface as a solver or model error
            return _stopped(stop.requested() == signal.SIGTERM)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # output under a file, unwritable folder, full disk ...
        if stop.requested():
            return _stopped(stop.requested() == signal.SIGTERM)
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"error: cannot write output{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except Exception:
        if stop.requested():
            return _stopped(stop.requested() == signal.SIGTERM)
        raise
    finally:
        if restore is not None:
            restore()
    if args.command not in ("build",):
        print(f"wall time {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
