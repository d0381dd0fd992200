"""Ensemble engine (Dask) and virtual populations."""

import functools
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from analysis.cli import commands as cli
from analysis.core.model import ModelError, load_model
from analysis.core.tables import read_parameters
from analysis.engine.ensemble import read_ensemble, run_ensemble
from analysis.engine.population import default_population_parameters, percentile_bands, sample_population

T = np.linspace(0, 2 * 86400, 49)
OBS = ["ketamine_brain", "nmda_block_int", "glutamate_rel", "mtorc1_rel", "spine_density_rel"]


@pytest.fixture(scope="module")
def sets():
    df = pd.DataFrame({"dose": np.linspace(2, 40, 8), "kon_ket": np.linspace(0.25, 0.37, 8)})
    df.index = pd.Index([f"s{i}" for i in range(8)], name="sample")
    return df


@pytest.fixture(scope="module")
def serial(sets):
    return run_ensemble(sets, "rat", T, OBS, workers=0, progress=False)


def test_serial_engine_equals_one_by_one(sets, serial):
    model = load_model("rat")
    for sid, row in sets.iterrows():
        one = model.simulate(T, row.to_dict(), OBS)
        assert np.array_equal(one.values, serial.data.loc[sid].values)
    assert serial.data.index.names == ["sample", "time"]
    assert serial.n_ok == len(sets) and serial.failures.empty


@pytest.fixture(scope="module")
def local_client():
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        yield client


def test_dask_local_cluster_equals_serial(sets, serial, local_client):
    res = run_ensemble(sets, "rat", T, OBS, client=local_client, chunk_size=3, progress=False)
    pd.testing.assert_frame_equal(res.data, serial.data, check_exact=True)


def test_own_local_cluster_forks_its_workers_from_the_preloaded_server(sets, serial, monkeypatch):
    """run_ensemble's own local cluster forks its workers from the fork server (package already imported there, so
    the workers skip ~1.5 s of imports each), and the results are those of the serial run, bit for bit."""
    import os

    from analysis.engine import ensemble, forkserver

    if not forkserver.available():
        pytest.skip("no fork server on this platform (workers are spawned)")
    seen = {}
    make_client = ensemble._client

    def client_and_parents(workers, scheduler):
        client, cluster = make_client(workers, scheduler)
        seen["parents"] = set(client.run(os.getppid).values())
        seen["preloaded"] = set(client.run(lambda: "analysis.engine.ensemble" in sys.modules).values())
        seen["hashes"] = set(client.run(lambda: hash("ketamine")).values())
        return client, cluster

    monkeypatch.setattr(ensemble, "_client", client_and_parents)
    res = run_ensemble(sets, "rat", T, OBS, workers=2, chunk_size=3, progress=False)
    pd.testing.assert_frame_equal(res.data, serial.data, check_exact=True)
    assert seen["preloaded"] == {True}
    assert os.getpid() not in seen["parents"] and len(seen["parents"]) == 1  # the fork server, not this process
    # the workers run with the environment Dask's nanny gives a spawned worker (here: its fixed hash seed), which a
    # forked worker can only inherit from the server
    seed = os.environ.get("PYTHONHASHSEED")
    seed = seed if seed not in (None, "0") else forkserver.WORKER_ENVIRON["PYTHONHASHSEED"]  # Dask's rule
    env = {**os.environ, "PYTHONHASHSEED": seed}
    code = "print(hash('ketamine'))"
    spawned = int(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout)
    assert seen["hashes"] == {spawned}


def test_streaming_to_parquet(sets, serial, local_client, tmp_path):
    res = run_ensemble(sets, "rat", T, OBS, client=local_client, chunk_size=2, out=tmp_path, progress=False)
    run = tmp_path / f"run-{res.run_id}"
    assert res.data is None and len(list(run.glob("part-*.parquet"))) == 4
    pd.testing.assert_frame_equal(read_ensemble(tmp_path), serial.data, check_exact=True)
    assert (run / "samples.parquet").exists() and (run / "failures.parquet").exists()
    assert (tmp_path / "manifest.json").exists()
    assert not list(tmp_path.rglob(".*.tmp")) and not list(tmp_path.rglob(".*.parquet"))


def test_failed_set_is_reported_and_the_rest_complete(sets, local_client):
    bad = sets.assign(tau_rate=0.02)
    bad.loc["s3", "tau_rate"] = 0.0  # division by zero in the rate equation: the solver fails
    res = run_ensemble(bad, "rat", T, OBS, client=local_client, chunk_size=3, progress=False)
    assert res.n_ok == len(sets) - 1
    assert list(res.failures["sample"]) == ["s3"]
    assert res.failures.loc[0, "tau_rate"] == 0.0 and res.failures.loc[0, "dose"] == sets.loc["s3", "dose"]
    assert "solver failed" in res.failures.loc[0, "error"]
    assert "s3" not in res.data.index.get_level_values("sample")


def test_reduce_on_the_workers_equals_reducing_the_time_courses(sets, serial, local_client, tmp_path):
    """``reduce`` runs on the workers: the client receives one row per set, the same as reducing the time courses."""
    reduce = functools.partial(np.max, axis=0)
    names = [f"max_{o}" for o in OBS]
    res = run_ensemble(sets, "rat", T, OBS, client=local_client, chunk_size=3, progress=False, reduce=reduce,
                       reduced_names=names)  # fmt: skip
    expected = serial.data.groupby(level="sample", sort=False).max()
    assert list(res.data.index) == list(sets.index) and res.data.index.name == "sample"
    assert list(res.data.columns) == names
    np.testing.assert_array_equal(res.data.to_numpy(), expected.loc[res.data.index].to_numpy())
    with pytest.raises(ModelError, match="reduce"):
        run_ensemble(sets, "rat", T, OBS, workers=0, reduce=reduce, reduced_names=names, out=tmp_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_scheduler_and_two_workers(sets, serial):
    from dask.distributed import Client

    dask_cli = str(Path(sys.executable).with_name("dask"))
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [
        subprocess.Popen(
            [dask_cli, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        time.sleep(1.0)
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [dask_cli, "worker", address, "--nthreads", "1", "--nworkers", "1", "--dashboard-address", ":0"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
            assert len(client.scheduler_info()["workers"]) == 2
        res = run_ensemble(sets, "rat", T, OBS, scheduler=address, chunk_size=2, progress=False)
        pd.testing.assert_frame_equal(res.data, serial.data, check_exact=True)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.mark.parametrize(
    "table,match",
    [
        (pd.DataFrame({"dosee": [1.0]}), "unknown parameter"),
        (pd.DataFrame({"dose": [1.0, np.nan]}), "NaN"),
        (pd.DataFrame({"dose": [1.0, -2.0]}), "dose"),
        (pd.DataFrame({"dose": ["a", "b"]}), "non-numeric"),
        (pd.DataFrame({"inhib_ampa": [0.5, 1.5]}), "inhib_ampa"),
        (pd.DataFrame(), "empty"),
    ],
)
def test_bad_input(table, match):
    with pytest.raises(ModelError, match=match):
        run_ensemble(table, "rat", T, OBS, workers=0, progress=False)


def test_population_sampling_is_seeded_and_within_bounds():
    a = sample_population("rat", 200, seed=3)
    b = sample_population("rat", 200, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(sample_population("rat", 200, seed=4))
    table = read_parameters("rat")
    for p in a.columns:
        assert (a[p] >= table[p].lower).all() and (a[p] <= table[p].upper).all(), p
        if table[p].lower < table[p].value < table[p].upper:  # (a value at its range end, e.g. full trapping f_trap 1)
            assert a[p].quantile(0.1) <= table[p].value <= a[p].quantile(0.9), p  # centred on the table value
    assert set(a.columns) == set(default_population_parameters("rat"))
    with pytest.raises(ModelError, match="lower >= upper"):
        sample_population("rat", 5, parameters=["mw_ketamine"])
    with pytest.raises(ModelError, match="unknown"):
        sample_population("rat", 5, parameters=["nope"])
    with pytest.raises(ModelError, match=">= 1"):
        sample_population("rat", 0)


def test_population_bands(serial):
    bands = percentile_bands(serial)
    assert list(bands.index.names) == ["time", "percentile"]
    b = bands.unstack("percentile")["glutamate_rel"]
    assert (b.diff(axis=1).iloc[:, 1:] >= -1e-12).all().all()  # percentiles ordered


def test_bands_from_a_streamed_run_equal_bands_from_the_tidy_frame(sets, serial, tmp_path):
    """percentile_bands of a run streamed to a folder reads the Parquet parts straight into a cube (no tidy frame):
    the same numbers as from the frame; a part that lost rows is refused, not summarised."""
    from analysis.engine.store import IncompleteEnsemble, completed_run, read_ensemble_cube

    res = run_ensemble(sets, "rat", T, OBS, workers=0, chunk_size=3, out=tmp_path, progress=False)
    pd.testing.assert_frame_equal(percentile_bands(res), percentile_bands(serial), check_exact=True)
    ids, times, observables, cube = read_ensemble_cube(tmp_path)
    assert list(ids) == list(sets.index) and np.array_equal(times, T) and observables == OBS
    assert np.array_equal(cube[2], serial.data.loc[sets.index[2]].to_numpy())
    one = read_ensemble_cube(tmp_path, ["mtorc1_rel"])  # one column only: what the bands read, observable by observable
    assert one[2] == ["mtorc1_rel"] and np.array_equal(one[3][..., 0], cube[..., OBS.index("mtorc1_rel")])
    with pytest.raises(ModelError, match="not recorded"):
        read_ensemble_cube(tmp_path, ["bdnf_rel"])
    part = sorted(completed_run(tmp_path)[1].glob("part-*.parquet"))[0]
    pd.read_parquet(part).iloc[:-1].to_parquet(part)  # one output time of the last sample lost
    with pytest.raises(IncompleteEnsemble, match="whole samples"):
        percentile_bands(res)


def test_population_cli(tmp_path):
    assert (
        cli.main(
            [
                "population",
                "--species",
                "rat",
                "--samples",
                "6",
                "--workers",
                "0",
                "--days",
                "1",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    bands = pd.read_csv(tmp_path / "population_bands.csv")
    assert len(bands) > 10
    img = imread(tmp_path / "population.png")
    assert len(np.unique(img.reshape(-1, img.shape[-1])[:, :3].round(2), axis=0)) > 50
