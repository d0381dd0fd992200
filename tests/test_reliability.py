"""Reliability: no silently wrong results, ensemble folders that survive faults, clear CLI errors.

Every case uses the real thing: real CLI processes, a real LocalCluster whose workers are killed by pid,
real files planted in the model cache, real runaway subjects.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pandas as pd
import pytest

from analysis.core import steady_state
from analysis.core.errors import DrugFreeStateError, ModelError, RunawayError
from analysis.core.model import NotAtSteadyStateWarning, load_model
from analysis.core.paths import ROOT, sbml_path
from analysis.engine import ensemble as E
from analysis.engine import store
from analysis.engine.population import percentile_bands, sample_population

T = np.linspace(0, 86400, 25)
OBS = ["ketamine_brain", "glutamate_rel", "spine_density_rel"]


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "analysis.cli", *args], capture_output=True, text=True, encoding="utf-8",
        errors="replace", timeout=timeout, cwd=ROOT,
    )  # fmt: skip


def _start_cli(*args: str) -> subprocess.Popen:
    """The CLI started in the background (text pipes), for tests that signal it while it runs."""
    return subprocess.Popen(
        [sys.executable, "-m", "analysis.cli", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
    )  # fmt: skip


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


# -- silently wrong results ----------------------------------------------------------------------
# The v2 circuit has no runaway subject inside the plausible box (its homeostats hold every set there), so these
# checks are exercised with subjects made to run away on purpose: a homeostatic set point of 40 Hz (the homeostat
# then drives the pyramidal cells onto the high branch).
RUNAWAY = {"rate_set_pyr": 40.0}


def test_runaway_subject_is_a_failure_not_no_effect():
    model = load_model("rat")
    check = model.drug_free_state(RUNAWAY)
    assert not check.ok and check.rate_pyr > 20 and "runaway" in check.reason
    with pytest.raises(DrugFreeStateError, match="runaway"):
        model.simulate(T, {**RUNAWAY, "dose": 10}, OBS)  # default: equilibrates because physiology changed
    steep = {**RUNAWAY, "tau_homeostasis": 600.0}  # a fast homeostat takes it onto the high branch within hours
    with warnings.catch_warnings(record=True) as caught:  # forced plain run: warned, never silently flat
        warnings.simplefilter("always")
        with pytest.raises(RunawayError, match="runaway branch"):  # and it ends in the runaway: refused
            model.simulate(T, {**steep, "dose": 10}, ["rate_pyr"], equilibrate=False)
    assert any(issubclass(w.category, NotAtSteadyStateWarning) for w in caught)


def test_run_that_ends_above_the_physiological_rates_is_refused(monkeypatch):
    """A run whose end state fires above the physiological bound (a bistable subject switched by the dose onto the
    runaway branch) is a failure, never a time course with a 'lasting effect'.  With the bound lowered below the
    surge, a run that ends during the surge must be refused the same way, and one that ends after it must not."""
    model = load_model("rat")
    monkeypatch.setitem(steady_state.MAX_RATE, "rate_pyr", 3.0)  # the 10 mg/kg surge peaks above 3 Hz
    with pytest.raises(RunawayError, match="stayed there"):
        model.simulate(np.linspace(0, 1800, 31), {"dose": 10.0}, ["rate_pyr"])
    assert model.simulate(np.linspace(0, 86400, 25), {"dose": 10.0}, ["rate_pyr"])["rate_pyr"].max() > 3.0


def test_drug_free_state_checks_pass_at_the_shipped_operating_point():
    for species in ("rat", "human"):
        check = load_model(species).drug_free_state({})
        assert check.ok, check.reason
        assert check.max_relative_rate < 1e-9 and check.max_eigenvalue <= 1e-10  # 0: neutral infusion reservoir
        assert 0 < check.rate_pyr < 20 and 0 < check.rate_int < 80


def test_oscillating_subject_is_a_reported_failure_and_the_model_stays_usable():
    """A circuit with a very steep pyramidal f-V curve (v_slope_pyr 0.5 mV) has no stable drug-free state: its
    branch ends on the way from the shipped state and the relaxation keeps oscillating.  The pre-run's step budget
    ends it with that reason (instead of integrating the cycle to 1e10 s), and the integrator settings, selections
    and the next subject's run are untouched."""
    model = load_model("rat")
    rr = model.rr
    expected = model.simulate(T, {"dose": 10.0}, OBS)
    selections = list(rr.timeCourseSelections)
    check = model.drug_free_state({"v_slope_pyr": 0.5})
    assert not check.ok and "still oscillating" in check.reason and "phase 2" in check.reason
    assert "unstable" in check.reason or "not at a steady state" in check.reason
    integrator = rr.getIntegrator()
    assert integrator.getValue("variable_step_size") is False
    assert list(rr.timeCourseSelections) == selections
    assert integrator.getValue("maximum_num_steps") == 20000
    with pytest.raises(DrugFreeStateError, match="oscillating"):
        model.simulate(T, {"v_slope_pyr": 0.5, "dose": 10.0}, OBS)
    # the next run is clean: no stale dose event, no stale state
    pd.testing.assert_frame_equal(expected, model.simulate(T, {"dose": 10.0}, OBS))


def test_pre_run_budget_exhausted_on_a_stable_subject_is_decided_by_the_newton_check(monkeypatch):
    """If the last pre-run phase runs out of steps on a subject that does have a stable state (here: the shipped
    parameters with a budget of 3 steps), the Newton solve and the check accept it at the same state."""
    model = load_model("rat")
    reference = model.drug_free_state({})
    x_ref = np.asarray(model.rr.model.getFloatingSpeciesAmounts())
    monkeypatch.setattr(steady_state, "PRE_RUN_MAX_STEPS", (400_000, 50_000, 3))
    check = model.drug_free_state({})
    assert reference.ok and check.ok, check.reason
    np.testing.assert_allclose(model.rr.model.getFloatingSpeciesAmounts(), x_ref, rtol=1e-5, atol=1e-12)


def test_subject_whose_relaxation_rings_for_months_is_found_by_continuation():
    """Joint-box sample 211 (seed 0) with the Narp term of the interneuron homeostat off (the earlier homeostat
    design, weight 0) has a stable drug-free state, but from the shipped state its two homeostats ring for months
    and the relaxation runs out of budget.  Continuation from the shipped steady state finds the state: set-point
    rates, every eigenvalue negative; and the model then gives the same dosed run twice.  (With the shipped
    weight the homeostats no longer ring and the same sample relaxes.)"""
    from analysis.analyses.robustness import NARP_WEIGHT, sample_box

    model = load_model("rat")
    subject = {**sample_box("rat", 1000, seed=0).iloc[211].to_dict(), NARP_WEIGHT: 0.0}
    rr = model.rr
    model.apply({**subject, "t_dose": 1e30})
    with pytest.raises(steady_state.OscillationError):  # what relaxation alone does
        steady_state.pre_run(rr)
    check = model.drug_free_state(subject)
    assert check.ok, check.reason
    assert check.rate_pyr == pytest.approx(2.0, rel=1e-6) and check.rate_int == pytest.approx(10.0, rel=1e-6)
    assert check.max_eigenvalue < 0 and check.max_relative_rate <= steady_state.MAX_RELATIVE_RATE
    assert all(float(rr[s]) == 0.0 for s in ("ket_depot", "ket_central", "ket_brain_tissue"))  # no stray dose
    first = model.simulate(T, {**subject, "dose": 10.0}, OBS)
    pd.testing.assert_frame_equal(first, model.simulate(T, {**subject, "dose": 10.0}, OBS))


def test_continuation_reports_when_the_branch_ends():
    """A subject with no stable drug-free state keeps the relaxation's diagnosis, with the continuation's outcome
    appended (here the steep f-V curve of the oscillating-subject test)."""
    check = load_model("rat").drug_free_state({"v_slope_pyr": 0.5})
    assert not check.ok and "continuation from the shipped state: the branch ends on the way" in check.reason


def test_unstable_state_on_the_branch_is_reported_without_relaxation(monkeypatch):
    """v_slope_pyr 0.8 mV: continuation reaches the subject's parameters, and the state there is converged and
    physiological but unstable (a pair of eigenvalues with positive real part).  It is reported as it is; the
    relaxation, which would only confirm the oscillation at ~0.7 s a subject, is not run."""
    model = load_model("rat")

    def no_relaxation(*args, **kwargs):
        raise AssertionError("the relaxation ran")

    monkeypatch.setattr(steady_state, "equilibrate", no_relaxation)
    check = model.drug_free_state({"v_slope_pyr": 0.8})
    assert not check.ok and steady_state.unstable_on_branch(check)
    assert check.max_eigenvalue > 0 and "unstable" in check.reason and "continued from the shipped one" in check.reason
    assert check.max_relative_rate <= steady_state.MAX_RELATIVE_RATE and check.rate_pyr < 20
    with pytest.raises(DrugFreeStateError, match="unstable"):
        model.simulate(T, {"v_slope_pyr": 0.8, "dose": 10.0}, OBS)


def test_runaway_subject_in_a_population_is_reported_and_left_out_of_the_bands():
    samples = sample_population("rat", 6, seed=2, parameters=["koff_ket"], fixed={"dose": 10.0})
    samples["rate_set_pyr"] = 2.0
    samples.loc[3, "rate_set_pyr"] = 40.0  # this subject runs away drug-free
    res = E.run_ensemble(samples, "rat", T, OBS, workers=0, progress=False)
    assert list(res.failures["sample"]) == [3] and "runaway" in res.failures.loc[0, "error"]
    assert 3 not in res.data.index.get_level_values("sample") and res.n_ok == 5
    bands = percentile_bands(res)
    assert bands["glutamate_rel"].max() > 1.05  # the others show the drug effect


@pytest.mark.parametrize("bad", [[0.0, np.nan, 2.0], [0.0, 1.0, np.inf], [np.nan, 1.0], [0.0, 2.0, 1.0]])
def test_non_finite_or_unordered_times_are_rejected(bad):
    model = load_model("rat")
    with pytest.raises(ModelError, match="times"):
        model.simulate(bad)
    with pytest.raises(ModelError, match="times"):
        E.run_ensemble(pd.DataFrame({"dose": [1.0]}), "rat", bad, OBS, workers=0, progress=False)


@pytest.mark.parametrize(
    "args,match",
    [
        (["simulate", "--t-end-h", "nan"], "positive, finite"),
        (["simulate", "--t-end-h", "0"], "positive, finite"),
        (["simulate", "--dose", "5", "--set", "dose=1e3"], "dose is given twice"),
        (["simulate", "--set", "nope=1"], "unknown parameter"),
        (["simulate", "--dose", "-1"], "dose"),
        (["ensemble", "--samples", "3", "--days", "nan", "--out", "OUT"], "--days"),
        (["ensemble", "--samples", "3", "--chunk-size", "-1", "--out", "OUT"], "chunk_size"),
        (["ensemble", "--samples", "3", "--workers", "-1", "--out", "OUT"], "workers must be >= 0"),
        (["ensemble", "--samples", "3", "--scheduler", "notanaddress", "--out", "OUT"], "scheduler must be"),
        (["dose-response", "--max-dose", "0", "--out", "OUT"], "positive"),
        (["simulate", "--out", "FILE/x.csv"], "cannot write output"),
    ],
)
def test_cli_errors_are_one_line_without_traceback(tmp_path, args, match):
    (tmp_path / "file").write_text("a file, not a folder")
    args = [a.replace("OUT", str(tmp_path / "out")).replace("FILE", str(tmp_path / "file")) for a in args]
    line = _one_line_error(_cli(*args))
    assert match in line
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.parquet"))


def test_unreachable_scheduler_is_a_clear_error_quickly(tmp_path):
    t0 = time.perf_counter()
    line = _one_line_error(
        _cli("ensemble", "--samples", "2", "--scheduler", "tcp://127.0.0.1:9", "--out", str(tmp_path / "e"))
    )
    assert "cannot reach the Dask scheduler" in line and time.perf_counter() - t0 < 40


# -- ensemble folders that survive faults ------------------------------------------------------------
def _population(n: int) -> pd.DataFrame:
    return sample_population("rat", n, seed=5, parameters=["koff_ket", "k_sp_translation"], fixed={"dose": 10.0})


def test_interrupted_run_is_refused_by_reader_and_finished_by_resume(tmp_path):
    samples = _population(10)
    full = E.run_ensemble(samples, "rat", T, OBS, workers=0, progress=False)
    # a run interrupted after 2 of 5 chunks: written by the store exactly as run_ensemble writes them
    text, digest = E._sbml_source("rat")
    table = E.check_samples(samples, load_model("rat"))
    spec = {"n_samples": 10, "chunk_size": 2, "n_chunks": 5, "model_sha256": digest, "observables": OBS,
            "equilibrate": None}  # fmt: skip
    spec["spec_sha256"] = store.spec_digest(table, T, OBS, digest, spec)
    writer = store.begin_run(tmp_path, spec, resume=False)
    for i in (0, 1):
        values, ok, failed = E.run_chunk(text, digest, table.iloc[2 * i : 2 * i + 2], T, OBS, None)
        writer.write_chunk(i, E._tidy(values, ok, T, OBS, "sample"), E._failure_frame(table, failed))
    with pytest.raises(store.IncompleteEnsemble, match="2 of 5 chunks"):
        E.read_ensemble(tmp_path)
    res = E.run_ensemble(samples, "rat", T, OBS, workers=0, chunk_size=2, out=tmp_path, resume=True, progress=False)
    assert res.run_id == writer.run_id  # the interrupted run was finished, not restarted
    pd.testing.assert_frame_equal(E.read_ensemble(tmp_path), full.data, check_exact=True)


def test_rerun_replaces_results_only_when_finished_and_removes_stale_parts(tmp_path):
    first = E.run_ensemble(_population(4), "rat", T, OBS, workers=0, out=tmp_path, progress=False)
    (tmp_path / "part-00000.parquet").write_bytes(b"stale part of the old flat layout")
    before = E.read_ensemble(tmp_path)
    with pytest.raises(E.EngineError):  # a run that cannot start destroys nothing
        E.run_ensemble(_population(6), "rat", T, OBS, scheduler="tcp://127.0.0.1:9", out=tmp_path, progress=False)
    pd.testing.assert_frame_equal(E.read_ensemble(tmp_path), before)
    second = E.run_ensemble(_population(6), "rat", T, OBS, workers=0, out=tmp_path, progress=False)
    assert E.read_ensemble(tmp_path).index.get_level_values(0).nunique() == 6
    assert not (tmp_path / f"run-{first.run_id}").exists() and (tmp_path / f"run-{second.run_id}").exists()
    assert not (tmp_path / "part-00000.parquet").exists()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["run_id"] == second.run_id and manifest["n_ok"] == 6 and manifest["complete"]


def test_planted_cache_file_is_not_trusted(tmp_path):
    text, digest = E._sbml_source("rat")
    E._WORKER_MODELS.pop(digest, None)
    planted = E.private_cache_dir() / f"{digest}.xml"
    planted.write_text(sbml_path("human").read_text())  # the human model under the rat model's hash
    values, ok, failed = E.run_chunk(text, digest, pd.DataFrame({"dose": [10.0]}), T, OBS, None)
    assert not failed and E._WORKER_MODELS[digest].model_id.endswith("rat")
    np.testing.assert_array_equal(values[0], load_model("rat").simulate_array(T, {"dose": 10.0}, OBS))
    assert hashlib.sha256(planted.read_bytes()).hexdigest() == digest  # replaced by the verified text


def test_cache_folder_that_is_not_private_is_not_used(monkeypatch, tmp_path):
    monkeypatch.setattr(E.tempfile, "gettempdir", lambda: str(tmp_path))
    E._PRIVATE_FALLBACK.clear()
    shared = tmp_path / f"ketamine-cascade-{os.getuid()}"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    folder = E.private_cache_dir()
    assert folder != shared and (os.stat(folder).st_mode & 0o077) == 0
    E._PRIVATE_FALLBACK.clear()


def test_corrupted_model_text_and_time_limit_become_failure_rows():
    text, digest = E._sbml_source("rat")
    E._WORKER_MODELS.pop(digest, None)
    _, ok, failed = E.run_chunk(text + " ", digest, pd.DataFrame({"dose": [1.0, 2.0]}), T, OBS, None)
    assert len(ok) == 0 and len(failed) == 2 and "SHA-256" in failed[0][1]
    res = E.run_ensemble(pd.DataFrame({"dose": [1.0, 2.0]}), "rat", T, OBS, workers=0, time_limit=1e-9,
                         progress=False)  # fmt: skip
    assert res.n_ok == 0 and res.failures["error"].str.contains("time limit").all()


def test_workers_killed_mid_run_lose_nothing(tmp_path):
    from dask.distributed import Client, LocalCluster

    samples = _population(240)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(2)
        out = tmp_path / "ens"
        result = {}
        runner = threading.Thread(
            target=lambda: result.update(
                res=E.run_ensemble(samples, "rat", T, OBS, client=client, chunk_size=4, out=out, progress=False)
            )
        )
        runner.start()
        deadline = time.time() + 120
        while not list(out.glob("run-*/fail-*.parquet")) and time.time() < deadline:
            time.sleep(0.02)
        pids = client.run(os.getpid)
        for pid in pids.values():  # both workers at once
            os.kill(pid, signal.SIGKILL)
        runner.join(timeout=300)
        assert not runner.is_alive()
    res = result["res"]
    assert res.n_ok + len(res.failures) == len(samples)
    data = E.read_ensemble(out)
    serial = E.run_ensemble(samples.iloc[::40], "rat", T, OBS, workers=0, progress=False).data
    for sid in serial.index.get_level_values(0).unique():
        if sid in data.index.get_level_values(0):
            np.testing.assert_array_equal(data.loc[sid].values, serial.loc[sid].values)
    assert res.n_ok >= len(samples) - 16  # at most the chunks that were on the killed workers may fail


def test_concurrent_cli_runs_and_sigint_keep_the_previous_results(tmp_path):
    out = tmp_path / "ens"
    ok = _cli("ensemble", "--samples", "4", "--workers", "0", "--days", "1", "--out", str(out))
    assert ok.returncode == 0, ok.stderr
    before = E.read_ensemble(out)
    big = _start_cli("ensemble", "--samples", "5000", "--workers", "0", "--out", str(out))
    try:
        deadline = time.time() + 120
        while len(list(out.glob("run-*"))) < 2 and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        second = _cli("ensemble", "--samples", "4", "--workers", "0", "--days", "1", "--out", str(out))
        assert "another ensemble run" in _one_line_error(second)
        big.send_signal(signal.SIGINT)
        _, err = big.communicate(timeout=60)
    finally:
        if big.poll() is None:
            big.kill()
    assert big.returncode == 130 and "Traceback" not in err and "interrupted" in err
    with pytest.warns(UserWarning, match="interrupted"):
        after = E.read_ensemble(out)
    pd.testing.assert_frame_equal(after, before)
    assert not list(out.rglob(".*.parquet"))  # nothing half-written


def test_a_stop_signal_that_lands_in_a_gc_callback_is_delivered_again():
    """A SIGTERM whose handler runs inside a garbage-collector callback (distributed registers one in the client of a
    local cluster) raises there, and Python swallows it ("Exception ignored"). Found when a SIGTERM during a chunk
    write let a 4000-subject ensemble run to the end. The CLI's hook raises it again outside the callback, so the
    command still stops; leaving the command restores the previous handler and hook."""
    import gc

    from analysis.cli import commands

    hook, handler = sys.unraisablehook, signal.getsignal(signal.SIGTERM)
    fired: list[str] = []

    def callback(phase, info):  # noqa: ARG001 - gc callback signature
        if phase == "start" and not fired:
            fired.append(phase)
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs, and raises, inside this callback
            sum(range(1000))

    restore = commands._terminate_like_interrupt()
    assert restore is not None, "pytest runs tests in the main thread"
    try:
        gc.callbacks.append(callback)
        with pytest.raises(commands.Terminated):
            gc.collect()
            time.sleep(5)  # the stop is sent again 10 ms later and interrupts this
        assert fired, "the callback did not run"
    finally:
        if callback in gc.callbacks:
            gc.callbacks.remove(callback)
        restore()
    assert sys.unraisablehook is hook and signal.getsignal(signal.SIGTERM) is handler


def test_a_swallowed_stop_still_ends_an_ensemble_at_its_next_chunk(tmp_path):
    """A SIGTERM whose exception Python dropped (C code that clears it, a library that catches BaseException) leaves
    the stop flag set: the ensemble stops after the chunk in hand, which is kept for --resume, and the run is not
    committed (seen once in CI: rc 0 after SIGTERM)."""
    from analysis.core import stop
    from analysis.engine.ensemble import run_ensemble

    table = pd.DataFrame({"dose": [5.0, 10.0, 20.0, 30.0]}, index=pd.RangeIndex(4, name="sample"))
    stop.request()
    try:
        with pytest.raises(stop.Terminated):
            run_ensemble(table, "rat", [0.0, 3600.0], ["glutamate_rel"], workers=0, chunk_size=1, out=tmp_path / "e")
    finally:
        stop.clear()
    assert not (tmp_path / "e" / "manifest.json").exists()  # the run is not committed
    assert not list((tmp_path / "e").rglob(".*.parquet"))  # nothing half-written
    assert len(list((tmp_path / "e").glob("run-*/fail-*.parquet"))) == 1  # the finished chunk is kept


@pytest.mark.parametrize("outcome", ["returns", "model error", "unexpected error"])
@pytest.mark.parametrize(
    ("signum", "code", "word"), [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")]
)
def test_a_command_that_ran_on_after_a_swallowed_stop_exits_as_stopped(
    monkeypatch, capsys, outcome, signum, code, word
):
    """The CLI checks the stop record when a command returns or fails: exit 143 after SIGTERM, 130 after Ctrl-C,
    with the one-line message, whatever the command did after the swallowed stop; the record is cleared when the
    command ends."""
    from analysis.cli import commands
    from analysis.core import stop

    def command(args):  # noqa: ARG001 - the command signature
        stop.request(signum)  # as the signal handler does, with its exception swallowed
        if outcome == "model error":
            raise ModelError("a stop cleared inside C code, seen as a failed run")
        if outcome == "unexpected error":
            raise RuntimeError("anything else")
        return 0

    monkeypatch.setattr(commands, "cmd_validate", command)
    assert commands.main(["validate"]) == code
    assert word in capsys.readouterr().err
    assert not stop.requested()


def test_a_sigterm_is_not_downgraded_by_a_later_ctrl_c():
    from analysis.core import stop

    try:
        stop.request(signal.SIGTERM)
        stop.request(signal.SIGINT)
        with pytest.raises(stop.Terminated):
            stop.check()
    finally:
        stop.clear()
    stop.request(signal.SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt) as info:
            stop.check()
        assert not isinstance(info.value, stop.Terminated)
    finally:
        stop.clear()


def test_a_stale_stop_request_does_not_stop_the_next_command(monkeypatch):
    """A request left from an earlier command in the same process is cleared when the CLI installs its handler."""
    from analysis.cli import commands
    from analysis.core import stop

    monkeypatch.setattr(commands, "cmd_validate", lambda args: 0)
    stop.request()
    try:
        assert commands.main(["validate"]) == 0
    finally:
        stop.clear()


def test_sigterm_shuts_the_local_cluster_down_with_its_workers(tmp_path):
    """SIGTERM (a scheduler's or `kill`'s stop) ends the command like Ctrl-C: the local Dask cluster closes and no
    worker process is left computing, orphaned; the exit code is 143 and there is no traceback."""
    import psutil

    out = tmp_path / "ens"
    big = _start_cli("ensemble", "--samples", "4000", "--workers", "2", "--out", str(out))
    workers: list[psutil.Process] = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list(out.glob("run-*/*.parquet")):  # a chunk is done: workers run
            time.sleep(0.1)
        workers = psutil.Process(big.pid).children(recursive=True)
        assert workers, "no worker processes found"
        big.send_signal(signal.SIGTERM)
        _, err = big.communicate(timeout=60)
    finally:
        if big.poll() is None:
            big.kill()
    assert big.returncode == 143 and "Traceback" not in err and "terminated" in err
    _, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive, f"worker processes left running after SIGTERM: {[p.pid for p in alive]}"
    assert not list(out.rglob(".*.parquet"))  # nothing half-written


def test_first_run_of_a_fresh_model_uses_the_given_parameters():
    """The drug-only probe that runs on first need must not clobber the parameters of the run that needed it."""
    from analysis.core.model import CascadeModel

    fresh = CascadeModel(sbml_path("rat"))
    params = {"dose": 10.0, "k_sp_translation": 0.0015}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotAtSteadyStateWarning)
        first = fresh.simulate_array(T, params, OBS, equilibrate=False)
        second = fresh.simulate_array(T, params, OBS, equilibrate=False)
    np.testing.assert_array_equal(first, second)
    assert float(fresh.rr["k_sp_translation"]) == 0.0015


def test_time_limited_run_does_not_leak_a_dose_into_the_next_run():
    """libroadrunner fires the dose event at the next reset after a run that started at t > 0; the segmented
    (time-limited) path must leave the model clean: the next run equals the same run on its own."""
    model = load_model("rat")
    times = np.arange(0, 8 * 3600 + 1, 600.0)
    params = {"dose": 10.0, "t_dose": 7200.0}
    alone = model.simulate_array(times, params, ["ketamine_plasma"])
    limited = model.simulate_array(times, {"dose": 10.0, "t_dose": 3600.0}, ["ketamine_plasma"], time_limit=60)
    after = model.simulate_array(times, params, ["ketamine_plasma"])
    np.testing.assert_array_equal(after, alone)
    assert np.abs(after[times < 7200]).max() < 1e-12 and np.abs(limited[times < 3600]).max() < 1e-12


def test_relaxation_that_breaks_the_solver_down_is_reported_without_native_noise(capfd):
    """Morris sample 165 of the rat box (r 10, 4 levels, seed 0; model v2.1): its relaxation breaks CVODE down.  The
    set fails with CVODE's message in its reason; nothing is printed to stderr by native code."""
    from analysis.analyses.global_sensitivity import build_problem, morris_sample, to_physical

    model = load_model("rat")
    problem, bounds = build_problem(model)
    subject = to_physical(morris_sample(problem, 10, 4, seed=0), bounds).iloc[165].to_dict()
    subject.pop("dose", None)
    capfd.readouterr()
    check = model.drug_free_state(subject)
    err = capfd.readouterr().err
    assert not check.ok and "CV_CONV_FAILURE" in check.reason, check.reason
    assert "CVODE" not in err and "cvHandleFailure" not in err


def test_piece_redone_at_bdf2_from_its_start_state(monkeypatch):
    """A piece of a segmented run that exceeds its step cap is redone from its own start state at BDF order 2 (the
    cure for the slow Sobol sets of the rat box).  Here the cap is so low that the dose's transient (at 1 h, inside
    the piece) exceeds it: the redo must start from the piece's start, not from where CVODE stopped (just after the
    dose; a redo from there would start with the drug already in the depot), agree with the uncapped piece, and
    give the integrator its settings back.  A whole equilibrated run with the low cap agrees too."""
    from analysis.core import model as M

    model = load_model("rat")
    times = np.arange(0, 3 * 3600 + 1, 300.0)
    params = {"dose": 10.0, "t_dose": 3600.0}
    selections = model._selections_for(tuple(OBS))
    integrator = model.rr.getIntegrator()
    before = {k: integrator.getValue(k) for k in ("maximum_num_steps", "maximum_bdf_order")}
    monkeypatch.setattr(M, "PIECE_MAX_STEPS", 20000)
    model.apply(params)
    reference, attempt = model._piece(times, selections)
    assert attempt == 0
    monkeypatch.setattr(M, "PIECE_MAX_STEPS", 20)
    monkeypatch.setattr(M, "PIECE_MAX_STEPS_PER_HOUR", 0)
    model.apply(params)
    capped, attempt = model._piece(times, selections)
    assert attempt == 1
    np.testing.assert_allclose(capped, reference, rtol=1e-4, atol=1e-9)
    assert {k: integrator.getValue(k) for k in before} == before

    whole = {"dose": 10.0, "k_akt_trkb": 1.2 * model.defaults["k_akt_trkb"]}
    t2 = np.arange(0, 2 * 86400 + 1, 300.0)
    low = model.simulate_array(t2, whole, OBS, equilibrate=True)
    monkeypatch.setattr(M, "PIECE_MAX_STEPS", 20000)
    # the drug's tail (1e-4 of its peak) moves by 1e-4 of itself: an absolute 1e-6 (uM, or relative units) covers it
    np.testing.assert_allclose(low, model.simulate_array(t2, whole, OBS, equilibrate=True), rtol=1e-4, atol=1e-6)


def test_ordinary_equilibrated_runs_do_not_fall_back(monkeypatch):
    """The step cap grows with the output interval: an ordinary equilibrated run on the sparse 7-day grid of a
    population (30-min intervals) and on the dense readout grid keeps CVODE's default orders in every piece."""
    from analysis.analyses.readouts import readout_times
    from analysis.core import model as M

    model = load_model("rat")
    attempts = []
    piece = M.CascadeModel._piece

    def spy(self, *args, **kwargs):
        out = piece(self, *args, **kwargs)
        attempts.append(out[1])
        return out

    monkeypatch.setattr(M.CascadeModel, "_piece", spy)
    params = {"dose": 10.0, "k_akt_trkb": 1.2 * model.defaults["k_akt_trkb"]}
    for times in (np.arange(0, 7 * 86400 + 1, 1800.0), readout_times(0, 2 * 86400)):
        model.simulate_array(times, params, OBS, equilibrate=True)
    assert attempts and set(attempts) == {0}, attempts


def test_bursting_circuit_fails_by_step_budget_under_a_time_limit():
    """The steepest pyramidal rate curve of the table's range (``v_slope_pyr`` 1.5 mV) bursts under the drug
    (population bursts of 20-50 Hz for about 3 h after 10 mg/kg).  Under a time limit it fails by the deterministic
    step budget, with the reason, long before the limit; the same set's drug-free state is fine (the failure is the
    dosed run's).  (Until model v2.1 this was Sobol sample 24130 of the rat box; the sample changes with the table.)"""
    from analysis.analyses.readouts import readout_times
    from analysis.core.errors import StepBudgetError

    model = load_model("rat")
    subject = {"v_slope_pyr": 1.5}
    assert model.drug_free_state(subject).ok
    with pytest.raises(StepBudgetError, match="bursts or runs away under the drug"):
        model.simulate_array(readout_times(0, 2 * 86400), subject, ["glutamate_rel"], equilibrate=True, time_limit=60)
