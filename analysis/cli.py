"""Command line: ``ketamine-cascade {build,simulate,validate,run}``.

Thin layer over the package functions; every file is written atomically.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from analysis.build import BuildError, build_all
from analysis.io import write_atomic, write_text_atomic
from analysis.model import ModelError, SimulationError, load_model
from analysis.paths import RESULTS, SPECIES
from analysis.simulate import DAY, DEFAULT_SCENARIOS, simulate, time_grid
from analysis.tables import TableError
from analysis.validate import read_targets, run_validation


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


def cmd_simulate(args: argparse.Namespace) -> int:
    params = dict(DEFAULT_SCENARIOS[args.species])
    if args.dose is not None:
        params["dose"] = args.dose
    params.update(_parse_set(args.set))
    df = simulate(args.species, params, t_end=args.t_end_h * 3600.0)
    if args.out:
        print(f"wrote {write_csv(df, Path(args.out))}")
    else:
        print(df.iloc[:: max(1, len(df) // 20)].to_string())
    return 0


def run_and_report_validation(outdir: Path) -> pd.DataFrame:
    from analysis.plots import plot_validation, save_figure

    targets = read_targets()
    results = run_validation(list(tqdm(targets, desc="validation targets", unit="target", disable=None)))
    write_csv(results.set_index("id"), outdir / "validation.csv")
    write_text_atomic(outdir / "validation.md", validation_markdown(results))
    save_figure(plot_validation(results), outdir / "validation")
    return results


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


def cmd_run(args: argparse.Namespace) -> int:
    """Main job: build the SBML, simulate the default scenarios, validate, write tables and figures."""
    from analysis.plots import plot_cascade, save_figure

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
        save_figure(
            plot_cascade(df, f"Ketamine cascade, {sp}, {dose:g} mg/kg (default scenario)"), out / f"cascade_{sp}"
        )
    results = run_and_report_validation(out)
    from analysis.plots import plot_cascade as _pc  # same figure with the rat targets drawn in

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ketamine-cascade", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="generate sbml/*.xml from models/").set_defaults(func=cmd_build)
    p = sub.add_parser("simulate", help="simulate one scenario and write a CSV time course")
    p.add_argument("--species", choices=SPECIES, default="rat")
    p.add_argument("--dose", type=float, help="mg/kg (default: the species' default scenario)")
    p.add_argument("--t-end-h", type=float, default=168.0, help="simulated time after t = 0 (h)")
    p.add_argument("--set", action="append", default=[], metavar="ID=VALUE", help="override any parameter")
    p.add_argument("--out", help="CSV file (default: print)")
    p.set_defaults(func=cmd_simulate)
    p = sub.add_parser("validate", help="evaluate the literature targets of models/validation.tsv")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--strict", action="store_true", help="exit 1 if any target fails")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("run", help="main job: build, simulate defaults, validate, figures")
    p.add_argument("--out", default=str(RESULTS))
    p.set_defaults(func=cmd_run)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ModelError, SimulationError, BuildError, TableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
