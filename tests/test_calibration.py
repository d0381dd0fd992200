"""The PEtab problems (models/petab/) and their estimation with pyPESTO on libroadrunner (issue 10)."""

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

from analysis.calibration import petab_problem as P
from analysis.calibration.fit import (
    calibrate,
    likelihood_objective,
    pypesto_problem,
    simulate_rows,
    write_overview,
)
from analysis.core.paths import ROOT, SPECIES
from analysis.core.tables import read_parameters


@pytest.mark.parametrize("species", SPECIES)
def test_committed_problem_is_what_the_build_generates_and_passes_petablint(species):
    import petab.v1 as petab

    for name, text in P.problem_tables(species).items():
        assert (P.PETAB_DIR / species / name).read_text() == text, f"{species}/{name} is stale: run make build"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        problem = petab.Problem.from_yaml(str(P.problem_yaml(species)))
        assert not petab.lint_problem(problem), f"petablint finds errors in models/petab/{species}"


@pytest.mark.parametrize("use", ["fit", "holdout"])
@pytest.mark.parametrize("species", SPECIES)
def test_nominal_parameters_reproduce_the_shipped_sbml_simulation(species, use):
    """pyPESTO's libroadrunner objective, run on the PEtab problem at the nominal parameters, gives the same values
    as the package's engine on the shipped SBML, for every measurement of every condition, fitted and held out."""
    from pypesto.objective.roadrunner import simulation_to_measurement_df

    problem, petab_problem = pypesto_problem(species, holdout=use == "holdout")
    x = np.asarray(petab_problem.x_nominal_free_scaled, dtype=float)
    sim = likelihood_objective(problem)(x, return_dict=True)
    table = simulation_to_measurement_df(sim["simulation_results"], petab_problem.measurement_df)
    rows = {r["id"]: r for r in P.read_data() if r["species"] == species and r["use"] == use}
    assert len(table) == len(rows) > 0
    engine = simulate_rows(species, [rows[i] for i in table["datasetId"]])
    np.testing.assert_allclose(table["simulation"].to_numpy(dtype=float), engine, rtol=1e-5)


def test_tiny_fit_end_to_end(tmp_path):
    summary = calibrate("human", n_starts=3, workers=2, out=tmp_path)
    estimated = ["v1_per_kg", "madrs_emax", "madrs_x50"]
    assert summary["n_starts"] == 3 and 1 <= summary["n_converged"] <= 3 and summary["n_profiled"] == 3
    assert np.isfinite(summary["best_objective"])
    table = read_parameters("human")
    for name in estimated:
        assert table[name].lower <= summary["estimated"][name] <= table[name].upper
    fits = pd.read_csv(tmp_path / "fits.csv").set_index("id")
    # the PK datum (0.78 uM at 40 min) alone would put the central volume at ~1.51 L/kg; the measured value's prior
    # (1.75 L/kg, range 1.0-2.5 as its 95 % interval) pulls the estimate between the two, so the datum is matched
    # closely but not exactly
    assert 1.5 < summary["estimated"]["v1_per_kg"] < table["v1_per_kg"].value
    assert 1e-3 < abs(fits.loc["pk_human_plasma_40min", "rel_error"]) < 0.1
    # three clinical points, two link parameters: close, not exact
    clinical = fits[fits["observable"] == "-madrs_change"]
    assert (clinical["use"] == "fit").sum() == 3 and (clinical["use"] == "holdout").sum() == 4
    assert clinical.loc[clinical["use"] == "fit", "rel_error"].abs().max() < 0.1
    files = ("summary.json", "fits.csv", "identifiability.csv", "waterfall.png", "profiles.png", "report.md")
    for name in (*files, "bands.csv", "bands.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert json.loads((tmp_path / "summary.json").read_text())["n_starts"] == 3
    # prediction bands: the best fit lies inside the envelope of the profile sets, which has a width
    bands = pd.read_csv(tmp_path / "bands.csv")
    assert summary["n_band_sets"] > 1
    assert (bands["lower"] <= bands["best"] + 1e-12).all() and (bands["best"] <= bands["upper"] + 1e-12).all()
    madrs = bands[(bands["observable"] == "-madrs_change") & (bands["time_s"] == 86400.0)]
    assert len(madrs) == 4 and (madrs["upper"] > madrs["lower"]).all()
    ident = pd.read_csv(tmp_path / "identifiability.csv")
    assert sorted(ident["parameter"]) == sorted(estimated)
    assert set(ident["class"]) <= {"identifiable", "practically non-identifiable", "structurally non-identifiable"}


def test_posterior_sample_gives_quantile_bands(tmp_path):
    summary = calibrate("human", n_starts=2, out=tmp_path, profile=False, n_samples=400)
    smp = summary["sampling"]
    assert smp["n_samples"] == 400 and 0 <= smp["burn_in"] < 400
    assert 0.05 < smp["acceptance_rate"] < 0.8  # the adaptive sampler targets 0.234
    table = read_parameters("human")
    for name, (lo, hi) in smp["posterior_95"].items():
        assert table[name].lower <= lo < smp["posterior_median"][name] < hi <= table[name].upper
    assert smp["geweke_converged"] and smp["effective_sample_size"] > 0
    assert summary["band_kind"] == "posterior quantiles" and summary["n_band_sets"] > 10
    bands = pd.read_csv(tmp_path / "bands.csv")
    assert (bands["lower"] <= bands["upper"] + 1e-12).all()
    madrs = bands[(bands["observable"] == "-madrs_change") & (bands["time_s"] == 86400.0)]
    assert (madrs["upper"] > madrs["lower"]).all()
    assert "## Posterior sample" in (tmp_path / "report.md").read_text()
    for too_few in (1, 5):  # pyPESTO's Geweke test needs at least 20 samples
        with pytest.raises(ValueError, match="n_samples"):
            calibrate("human", n_starts=1, n_samples=too_few)


def test_overview_summary_is_the_committed_species_reports_pooled(tmp_path):
    committed = ROOT / "docs" / "calibration"
    for sp in ("human", "rat"):
        (tmp_path / sp).mkdir()
        for name in ("summary.json", "fits.csv"):
            shutil.copy(committed / sp / name, tmp_path / sp / name)
    overview = write_overview(tmp_path)
    # the committed overview is what the committed species reports give (no drift)
    assert json.loads((committed / "summary.json").read_text()) == json.loads((tmp_path / "summary.json").read_text())
    human = json.loads((committed / "human" / "summary.json").read_text())
    assert overview["n_starts"] == human["n_starts"] and overview["n_profiled"] == human["n_profiled"]
    pooled = pd.concat([pd.read_csv(committed / sp / "fits.csv") for sp in ("human", "rat")])
    held = pooled.loc[pooled["use"] == "holdout", "rel_error"].abs()
    assert overview["holdout_median_abs_rel_error"] == pytest.approx(held.median())
    assert overview["n_holdout_rows"] == len(held) > 0
    for key in ("n_converged", "best_objective", "calibration_median_abs_rel_error"):
        assert key in overview
    with pytest.raises(FileNotFoundError, match="summary.json"):
        write_overview(tmp_path / "human")


def test_species_without_estimated_parameters_is_evaluated_with_holdout_errors(tmp_path):
    summary = calibrate("rat", n_starts=2, out=tmp_path)
    assert summary["n_starts"] == 0 and summary["best_objective"] is None
    assert summary["calibration_median_abs_rel_error"] > 0 and summary["holdout_median_abs_rel_error"] > 0
    # no band without estimated parameters, but the data are drawn against the model's time courses
    assert not (tmp_path / "bands.csv").exists() and (tmp_path / "fits.png").stat().st_size > 0
    assert "![fits](fits.png)" in (tmp_path / "report.md").read_text()


def test_bad_data_rows_are_named(tmp_path):
    good = P.DATA.read_text()
    bad = tmp_path / "data.tsv"
    bad.write_text(good.replace("\t0.78\t", "\t-0.78\t"))
    with pytest.raises(P.CalibrationDataError, match="pk_human_plasma_40min.*value"):
        P.read_data(bad)
    bad.write_text(good.replace("\tfit\treported\t", "\tmaybe\treported\t", 1))
    with pytest.raises(P.CalibrationDataError, match="use must be fit or holdout"):
        P.read_data(bad)
    with pytest.raises(ValueError, match="n_starts"):
        calibrate("human", n_starts=0)


def test_problem_loads_after_libsedml_was_imported():
    """Importing libsedml first (tellurium, the SED-ML tools) makes libsbml hand out math as libsedml proxies;
    the importer must still work (regression: AttributeError 'ASTNode' object has no attribute 'getMath')."""
    import subprocess
    import sys

    from analysis.core.paths import ROOT

    code = (
        "import libsedml\nfrom analysis.calibration.fit import pypesto_problem\nprint(pypesto_problem('human')[0].dim)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == str(len(P.ESTIMATED["human"]))


@pytest.mark.parametrize("species", SPECIES)
def test_petab_problem_in_the_combine_archive_lints_where_it_is_unpacked(species, tmp_path):
    import zipfile

    import petab.v1 as petab

    from analysis.core.paths import SBML_DIR
    from analysis.exchange.omex import OMEX_NAME

    with zipfile.ZipFile(SBML_DIR / OMEX_NAME) as zf:
        zf.extractall(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        problem = petab.Problem.from_yaml(str(tmp_path / "petab" / species / "problem.yaml"))
        assert not petab.lint_problem(problem)
    assert problem.sbml_model.getId() == f"ketamine_cascade_{species}"


def test_deposited_spine_data_script_computes_the_ratio_and_its_error():
    """The script behind the `computed` spine rows (docs/calibration/data/): ketamine over saline, each relative to the
    last session before the injection, with the delta-method error of the log ratio."""
    import importlib.util

    path = ROOT / "docs" / "calibration" / "data" / "phoumthipphavong2016_spines.py"
    spec = importlib.util.spec_from_file_location("phoum", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    nan = np.nan
    # columns: days -3, -1, 1, 3, 5, 10, 15 (relative to day -1)
    ket = np.array([[1.0, 1.0, 1.1, 1.2, nan, nan, nan], [1.0, 1.0, 1.3, 1.2, nan, nan, nan]])
    sal = np.array([[1.0, 1.0, 0.9, 1.0, nan, nan, nan], [1.0, 1.0, 1.1, 1.0, nan, nan, nan]])
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rows = {r["day"]: r for r in mod.effect({"ketamine": ket, "saline": sal}) if r["n_ketamine"] > 0}
    assert rows[1]["ratio"] == pytest.approx(1.2 / 1.0)
    se_k, se_s = np.std([1.1, 1.3], ddof=1) / np.sqrt(2), np.std([0.9, 1.1], ddof=1) / np.sqrt(2)
    assert rows[1]["se_log"] == pytest.approx(np.hypot(se_k / 1.2, se_s / 1.0))
    assert rows[3]["ratio"] == pytest.approx(1.2) and rows[3]["se_log"] == pytest.approx(0.0)
    computed = [r for r in P.read_data() if r["evidence"] == "computed"]
    assert computed and all("phoumthipphavong2016_spines.py" in r["obtained"] for r in computed)
