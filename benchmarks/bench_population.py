"""Equilibrated runs and virtual populations vs raw libroadrunner, whole processes included.

    .venv/bin/python benchmarks/bench_population.py [--n 2000] [--n-large 10000] [--skip-large]

Prints, side by side, the ratios issue 9 sets as targets (2-core machine):

1. equilibrated / plain cost of one 7-day rat run, median over physiological parameter sets   (<= 3)
2. ``ketamine-cascade population`` and ``ensemble`` on 2 local workers, as whole processes
   (start-up, sampling, cluster, equilibration, writing included), subjects/s relative to a raw
   one-core plain libroadrunner loop run as a whole process on the same output grid              (>= 0.8)
3. plain ensembles (dose varied) on 2 workers vs the raw loop, whole processes                  (>= 1.7)
4. 10^4 rat subjects through ``ketamine-cascade ensemble``: wall time, peak memory per worker and of
   the client, failures; and, at the same N, the raw loop and the plain engine, so that targets 2 and 3
   are also read where start-up no longer dominates.

Whole-process timings are medians of ``--repeats`` runs, each side run back to back, because this
machine's speed drifts by tens of percent from minute to minute.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

RAW_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np, roadrunner
    from analysis.core.simulate import time_grid, DAY
    from analysis.core.model import OBSERVABLES
    from analysis.core.paths import sbml_path
    n, days = int(sys.argv[1]), float(sys.argv[2])
    rr = roadrunner.RoadRunner(str(sbml_path("rat")))
    times = time_grid(days * DAY, n_sparse=200)
    rng = np.random.default_rng(0)
    for dose in rng.uniform(5, 15, n):
        rr["dose"] = dose
        rr.reset()
        rr.simulate(times=times, selections=list(OBSERVABLES))
    """
)

PLAIN_ENGINE_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np, pandas as pd
    from analysis.engine.ensemble import run_ensemble
    from analysis.core.simulate import time_grid, DAY
    n, days = int(sys.argv[1]), float(sys.argv[2])
    rng = np.random.default_rng(0)
    sets = pd.DataFrame({"dose": rng.uniform(5, 15, n)})
    res = run_ensemble(sets, "rat", time_grid(days * DAY, n_sparse=200), workers=2, progress=False)
    assert res.n_ok == n
    """
)


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def equilibrated_cost(n_sets: int = 30) -> dict:
    """Per-set cost of an equilibrated vs a plain 7-day run (same parameters, same model)."""
    from analysis.core.model import SimulationError, load_model
    from analysis.engine.population import sample_population

    model = load_model("rat")
    times = np.arange(0.0, 7 * 86400.0 + 1, 1800.0)
    samples = sample_population("rat", 4 * n_sets, seed=11, fixed={"dose": 10.0})
    ratios, eq_ms, plain_ms, used, plain_failures = [], [], [], 0, 0
    for _, row in samples.iterrows():
        params = row.to_dict()
        if not model.drug_free_state(params).ok:
            continue  # runaway subjects fail fast; compare like with like
        best = {}
        try:
            for mode in (True, False):
                runs = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        model.simulate_array(times, params, equilibrate=mode)
                    runs.append(time.perf_counter() - t0)
                best[mode] = min(runs)
        except SimulationError:
            # the plain run starts this physiology from the shipped state, not its own steady state; its transient
            # can exhaust CVODE's step limit (the equilibrated run of the same set succeeds): no ratio to take
            plain_failures += 1
            continue
        ratios.append(best[True] / best[False])
        eq_ms.append(best[True] * 1e3)
        plain_ms.append(best[False] * 1e3)
        used += 1
        if used == n_sets:
            break
    return {
        "sets": used,
        "skipped_plain_run_failed": plain_failures,
        "median_ratio": statistics.median(ratios),
        "max_ratio": max(ratios),
        "median_equilibrated_ms": statistics.median(eq_ms),
        "median_plain_ms": statistics.median(plain_ms),
    }


def whole_process(n: int, days: float, repeats: int) -> dict:
    """Subjects per second of whole processes: raw loop (1 core) vs CLI population/ensemble and plain engine."""
    out = {"raw": [], "population": [], "ensemble": [], "plain_engine": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            out["raw"].append(n / _timed([PY, "-c", RAW_SCRIPT, str(n), str(days)]))
            cli = [PY, "-m", "analysis.cli"]
            common = ["--species", "rat", "--samples", str(n), "--workers", "2", "--days", str(days)]
            out["population"].append(n / _timed([*cli, "population", *common, "--out", f"{tmp}/pop"]))
            out["ensemble"].append(n / _timed([*cli, "ensemble", *common, "--out", f"{tmp}/ens"]))
            out["plain_engine"].append(n / _timed([PY, "-c", PLAIN_ENGINE_SCRIPT, str(n), str(days)]))
        manifest = json.loads(Path(f"{tmp}/ens/manifest.json").read_text())
    med = {k: statistics.median(v) for k, v in out.items()}
    return {"rates": med, "failed_fraction": manifest["n_failed"] / manifest["n_samples"]}


def large_population(n: int) -> dict:
    """10^4 subjects through the CLI on 2 workers: wall time, peak RSS of the client and of each worker."""
    import psutil

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [PY, "-m", "analysis.cli", "ensemble", "--species", "rat", "--samples", str(n), "--workers", "2",
               "--out", f"{tmp}/ens"]  # fmt: skip
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        peak: dict[int, float] = {}
        client_peak = 0.0
        done = threading.Event()

        def poll() -> None:
            nonlocal client_peak
            parent = psutil.Process(proc.pid)
            while not done.is_set():
                try:
                    client_peak = max(client_peak, parent.memory_info().rss)
                    for child in parent.children(recursive=True):
                        # spawned workers run multiprocessing.spawn; forked ones are children of the fork server
                        # (whose own command line names the fork server, as theirs do); not the resource tracker
                        cmd = " ".join(child.cmdline())
                        forked = "forkserver" in cmd and child.ppid() != proc.pid
                        if forked or ("spawn" in cmd and "resource_tracker" not in cmd):
                            peak[child.pid] = max(peak.get(child.pid, 0.0), child.memory_info().rss)
                except psutil.Error:
                    pass
                time.sleep(0.2)

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        proc.wait()
        done.set()
        watcher.join()
        wall = time.perf_counter() - t0
        manifest = json.loads(Path(f"{tmp}/ens/manifest.json").read_text())
        size = sum(p.stat().st_size for p in Path(f"{tmp}/ens").rglob("*.parquet"))
    workers = sorted(peak.values(), reverse=True)[:2]
    raw = _timed([PY, "-c", RAW_SCRIPT, str(n), "7"])
    plain = _timed([PY, "-c", PLAIN_ENGINE_SCRIPT, str(n), "7"])
    return {
        "subjects": n,
        "raw_wall_s": raw,
        "plain_engine_wall_s": plain,
        "wall_s": wall,
        "subjects_per_s": n / wall,
        "failures": manifest["n_failed"],
        "ok": manifest["n_ok"],
        "peak_rss_worker_mb": [w / 2**20 for w in workers],
        "peak_rss_client_mb": client_peak / 2**20,
        "parquet_mb": size / 2**20,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="subjects per whole-process run")
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-large", type=int, default=10000)
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--json", help="also write the numbers to this JSON file")
    args = ap.parse_args(argv)

    import os

    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    eq = equilibrated_cost()
    print(
        f"1. equilibrated / plain 7-day run, median over {eq['sets']} physiological sets: {eq['median_ratio']:.2f} "
        f"(max {eq['max_ratio']:.2f}; {eq['median_equilibrated_ms']:.1f} vs {eq['median_plain_ms']:.1f} ms)"
        f"   target <= 3"
    )
    wp = whole_process(args.n, args.days, args.repeats)
    r = wp["rates"]
    print(f"   whole processes, {args.n} subjects, {args.days:g} days, median of {args.repeats} (subjects/s):")
    for k, v in r.items():
        print(f"     {k:14s} {v:8.1f}")
    print(f"2. population CLI (2 workers) / raw loop: {r['population'] / r['raw']:.2f}   target >= 0.8")
    print(f"   ensemble CLI (2 workers) / raw loop:   {r['ensemble'] / r['raw']:.2f}   target >= 0.8")
    print(f"   ({100 * wp['failed_fraction']:.0f} % of the sampled subjects have no physiological drug-free state)")
    print(f"3. plain engine (2 workers) / raw loop:   {r['plain_engine'] / r['raw']:.2f}   target >= 1.7")
    result = {"equilibrated": eq, "whole_process": wp}
    if not args.skip_large:
        big = large_population(args.n_large)
        print(
            f"4. {big['subjects']} rat subjects, ensemble CLI, 2 workers: {big['wall_s']:.1f} s "
            f"({big['subjects_per_s']:.0f} /s); {big['failures']} failures, {big['ok']} ok; peak RSS per worker "
            f"{', '.join(f'{m:.0f}' for m in big['peak_rss_worker_mb'])} MB, client {big['peak_rss_client_mb']:.0f} MB;"
            f" Parquet {big['parquet_mb']:.0f} MB"
        )
        print(
            f"   same N: raw loop {big['raw_wall_s']:.1f} s, plain engine {big['plain_engine_wall_s']:.1f} s; "
            f"ensemble CLI / raw {big['raw_wall_s'] / big['wall_s']:.2f} (target >= 0.8), "
            f"plain engine / raw {big['raw_wall_s'] / big['plain_engine_wall_s']:.2f} (target >= 1.7)"
        )
        result["large"] = big
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
