"""Ensemble engine vs raw libroadrunner, a naive reload loop and COPASI - measured side by side.

    .venv/bin/python benchmarks/bench_ensemble.py [--n 400] [--species rat]

Same parameter sets (dose and kon_ket varied) and the same outputs (every contract observable
every 30 min for 7 days) for every method.  Prints simulations per second and the ratios that
issue 3 sets as targets:

    engine (2 workers) / raw one-core loop  >= 1.7
    engine (1 worker)  / raw one-core loop  >= 0.9
    engine             / naive reload loop  >= 50

Cluster start-up is excluded (a Dask cluster is started once and reused, as a user would);
each worker compiles the SBML once, in a warm-up run that is timed separately.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np
import pandas as pd


def parameter_sets(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"dose": rng.uniform(1.0, 30.0, n), "kon_ket": rng.uniform(0.25, 0.37, n)})
    df.index.name = "sample"
    return df


#: CVODE failures of the last raw loop, by whether it had the package's tolerance vector.
RAW_FAILURES: dict[bool, int] = {}


def raw_loop(
    path: str, sets: pd.DataFrame, times: np.ndarray, obs: list[str], tolerances: bool = False
) -> tuple[float, float]:
    """Raw libroadrunner loop; ``tolerances=True`` gives it the package's per-state tolerance vector."""
    import roadrunner

    t0 = time.perf_counter()
    rr = roadrunner.RoadRunner(path)
    load = time.perf_counter() - t0
    if tolerances:
        from analysis.core.steady_state import fix_tolerances

        fix_tolerances(rr)
    defaults = {c: rr[c] for c in sets.columns}
    failures = 0
    t0 = time.perf_counter()
    for row in sets.itertuples(index=False):
        for c, v in zip(sets.columns, row, strict=True):
            rr[c] = v
        rr.reset()
        try:
            rr.simulate(times=times, selections=obs)
        except RuntimeError:  # a CVODE failure: counted (and reported), as a user's loop would have to
            failures += 1
    elapsed = time.perf_counter() - t0
    for c, v in defaults.items():
        rr[c] = v
    RAW_FAILURES[tolerances] = failures
    return len(sets) / elapsed, load


def naive_loop(path: str, sets: pd.DataFrame, times: np.ndarray, obs: list[str]) -> float:
    import tellurium as te

    t0 = time.perf_counter()
    for row in sets.itertuples(index=False):
        r = te.loadSBMLModel(path)  # reload + recompile every simulation
        for c, v in zip(sets.columns, row, strict=True):
            r[c] = v
        r.reset()
        r.simulate(times=times, selections=obs)
    return len(sets) / (time.perf_counter() - t0)


def copasi_loop(path: str, sets: pd.DataFrame, times: np.ndarray, obs: list[str]) -> float:
    import basico

    dm = basico.load_model(path)
    t0 = time.perf_counter()
    for row in sets.itertuples(index=False):
        for c, v in zip(sets.columns, row, strict=True):
            basico.set_parameters(name=c, initial_value=float(v), model=dm)
        basico.run_time_course(
            start_time=0, duration=float(times[-1]), intervals=len(times) - 1, model=dm, use_sbml_id=True
        )
    rate = len(sets) / (time.perf_counter() - t0)
    basico.remove_datamodel(dm)
    return rate


def engine(species: str, sets: pd.DataFrame, times: np.ndarray, obs: list[str], workers: int) -> dict:
    from dask.distributed import Client, LocalCluster

    from analysis.engine.ensemble import run_ensemble

    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        t0 = time.perf_counter()
        run_ensemble(sets.iloc[: 2 * workers], species, times, obs, client=client, chunk_size=1, progress=False)
        warm = time.perf_counter() - t0  # includes one compile per worker
        t0 = time.perf_counter()
        res = run_ensemble(sets, species, times, obs, client=client, progress=False)
        elapsed = time.perf_counter() - t0
        rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # kB on Linux
    assert res.n_ok == len(sets), res.failures
    return {"rate": len(sets) / elapsed, "warmup_s": warm, "peak_rss_mb": max(rss.values()) / 1024}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400, help="parameter sets for the raw loop and the engine")
    ap.add_argument("--n-naive", type=int, default=15)
    ap.add_argument("--n-copasi", type=int, default=40)
    ap.add_argument("--species", default="rat")
    ap.add_argument("--json", help="also write the numbers to this JSON file")
    args = ap.parse_args(argv)

    from analysis.core.model import OBSERVABLES
    from analysis.core.paths import sbml_path

    path = str(sbml_path(args.species))
    times = np.arange(0.0, 7 * 86400.0 + 1, 1800.0)
    obs = list(OBSERVABLES)
    sets = parameter_sets(args.n)

    raw_rate, load_s = raw_loop(path, sets, times, obs)
    raw_tol_rate, _ = raw_loop(path, sets, times, obs, tolerances=True)
    e1 = engine(args.species, sets, times, obs, 1)
    e2 = engine(args.species, sets, times, obs, 2)
    naive_rate = naive_loop(path, sets.iloc[: args.n_naive], times, obs)
    copasi_rate = copasi_loop(path, sets.iloc[: args.n_copasi], times, obs)

    rows = [
        ("raw libroadrunner loop, 1 core", raw_rate),
        ("raw loop with the package's tolerance vector", raw_tol_rate),
        ("engine, 1 worker", e1["rate"]),
        ("engine, 2 workers", e2["rate"]),
        ("naive loop (tellurium reload per simulation)", naive_rate),
        ("COPASI (basico), 1 core", copasi_rate),
    ]
    print(f"{args.species}: {args.n} parameter sets, {len(times)} output times x {len(obs)} observables (7 days)")
    for name, rate in rows:
        print(f"  {name:48s} {rate:9.1f} simulations/s")
    print(
        f"  model load + JIT (libroadrunner): {load_s:.3f} s; engine warm-up incl. per-worker compile: "
        f"{e1['warmup_s']:.2f} s (1 worker), {e2['warmup_s']:.2f} s (2 workers)"
    )
    print(
        f"  CVODE failures in the raw loop: {RAW_FAILURES.get(False, 0)} of {len(sets)} at libroadrunner's default "
        f"tolerances, {RAW_FAILURES.get(True, 0)} with the package's tolerance vector"
    )
    print(f"  peak memory per worker: {e1['peak_rss_mb']:.0f} MB (1 worker), {e2['peak_rss_mb']:.0f} MB (2 workers)")
    ratios = {
        "engine2 / raw (target >= 1.7)": e2["rate"] / raw_rate,
        "engine1 / raw (target >= 0.9)": e1["rate"] / raw_rate,
        "engine2 / naive (target >= 50)": e2["rate"] / naive_rate,
        "engine1 / naive": e1["rate"] / naive_rate,
        "raw / COPASI": raw_rate / copasi_rate,
        "engine2 / raw with same tolerances": e2["rate"] / raw_tol_rate,
        "engine1 / raw with same tolerances": e1["rate"] / raw_tol_rate,
    }
    for name, ratio in ratios.items():
        print(f"  ratio {name:34s} {ratio:8.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"rates": dict(rows), "ratios": ratios, "load_s": load_s, "engine1": e1, "engine2": e2}, fh, indent=2
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
