"""Global sensitivity (Sobol, Morris): analytic known answers through the same index code, a small real run
through the ensemble engine, the CLI, the figures and bad input."""

import argparse

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from analysis.analyses import global_sensitivity as G
from analysis.cli.analyses import register
from analysis.core.model import ModelError
from analysis.plots.analyses import plot_convergence, plot_morris, plot_sobol, save_figure

PI = np.pi
A_ISH, B_ISH = 7.0, 0.1


def _ishigami(X: np.ndarray) -> np.ndarray:
    return np.sin(X[:, 0]) + A_ISH * np.sin(X[:, 1]) ** 2 + B_ISH * X[:, 2] ** 4 * np.sin(X[:, 0])


def _ishigami_indices() -> tuple[np.ndarray, np.ndarray]:
    a, b = A_ISH, B_ISH
    v1 = 0.5 * (1 + b * PI**4 / 5) ** 2
    v2 = a**2 / 8
    v13 = b**2 * PI**8 * (1 / 18 - 1 / 50)
    var = v1 + v2 + v13
    return np.array([v1, v2, 0.0]) / var, np.array([v1 + v13, v2, v13]) / var


ISHIGAMI = {"num_vars": 3, "names": ["x1", "x2", "x3"], "bounds": [[-PI, PI]] * 3}


def _image_has_content(png) -> None:
    img = imread(png)
    assert img.shape[0] > 200 and img.shape[1] > 300
    assert len(np.unique(img.reshape(-1, img.shape[-1])[:, :3].round(2), axis=0)) > 30


# -- known answers ----------------------------------------------------------------------------------------------
def test_sobol_ishigami_known_answer():
    X = G.sobol_sample(ISHIGAMI, 2048, seed=3)
    assert X.shape == (2048 * 5, 3)
    si = G.sobol_indices(ISHIGAMI, _ishigami(X), seed=3)
    s1, st = _ishigami_indices()  # S1 = 0.314, 0.442, 0; ST = 0.558, 0.442, 0.244
    for col, exact in (("S1", s1), ("ST", st)):
        err = np.abs(si[col].values - exact)
        assert np.all(err < np.maximum(2 * si[f"{col}_conf"].values, 0.02)), (col, si[col].values, exact)
        assert np.all(err < 0.05)


def test_sobol_linear_model_known_answer_and_convergence():
    """y = sum a_i x_i, x_i ~ U(0, 1): S1 = ST = a_i^2 / sum a_j^2."""
    a = np.array([1.0, 2.0, 4.0])
    prob = {"num_vars": 3, "names": ["a", "b", "c"], "bounds": [[0.0, 1.0]] * 3}
    X = G.sobol_sample(prob, 1024, seed=1)
    Y = X @ a
    exact = a**2 / np.sum(a**2)
    si = G.sobol_indices(prob, Y)
    np.testing.assert_allclose(si["S1"].values, exact, atol=0.02)
    np.testing.assert_allclose(si["ST"].values, exact, atol=0.02)
    conv = G.sobol_convergence(prob, Y)
    assert sorted(conv["n"].unique()) == [8, 16, 32, 64, 128, 256, 512, 1024]
    last = conv[(conv["n"] == 1024) & (conv["index"] == "S1")]["value"].values
    np.testing.assert_allclose(last, si["S1"].values)
    # nested: the first N' blocks of the N sample are the N' sample (convergence without new runs)
    np.testing.assert_array_equal(G.sobol_sample(prob, 64, seed=1), X[: 64 * 5])


def test_morris_linear_model_known_answer():
    """y = sum a_i x_i on [0, 1]: every elementary effect of x_i equals a_i (per unit range), sigma = 0."""
    a = np.array([1.0, -2.0, 4.0])
    prob = {"num_vars": 3, "names": ["a", "b", "c"], "bounds": [[0.0, 1.0]] * 3}
    X = G.morris_sample(prob, 10, levels=4, seed=2)
    si = G.morris_indices(prob, X, X @ a, levels=4)
    np.testing.assert_allclose(si["mu"].values, a, atol=1e-9)
    np.testing.assert_allclose(si["mu_star"].values, np.abs(a), atol=1e-9)
    np.testing.assert_allclose(si["sigma"].values, 0.0, atol=1e-9)


def test_morris_matches_salib_and_keeps_steps_around_a_failure():
    """Complete outputs: the per-step statistics are SALib's (same estimators and bootstrap stream).  A failed run
    removes only the steps it ends; a parameter left with one effect gets NaN, none left raises."""
    from SALib.analyze import morris

    prob = {"num_vars": 4, "names": list("abcd"), "bounds": [[0, 1], [0, 2], [-1, 1], [1, 3]]}
    X = G.morris_sample(prob, 12, levels=4, seed=3)
    Y = np.sin(X[:, 0]) * X[:, 1] ** 2 + X[:, 2] * X[:, 3]
    ref = morris.analyze(prob, X, Y, num_resamples=100, conf_level=0.95, num_levels=4, seed=0)
    si = G.morris_indices(prob, X, Y, levels=4)
    for c in ("mu", "mu_star", "sigma", "mu_star_conf"):
        np.testing.assert_allclose(si[c].values, np.asarray(ref[c]), rtol=1e-12, atol=1e-12)
    assert (si["n_used"] == 12).all()
    # one failed run per trajectory (the first): only the first step of each trajectory is lost
    Yf = Y.copy()
    Yf[::5] = np.nan
    which, _ = G.morris_effects(X, Yf, 4)
    assert len(which) == 12 * 3
    si = G.morris_indices(prob, X, Yf, levels=4)
    assert si["n_used"].sum() == 36 and np.isfinite(si["mu_star"]).all()
    # the linear case keeps its exact answer with holes
    a = np.array([1.0, -2.0, 4.0, 0.5])
    width = np.array([1.0, 2.0, 2.0, 2.0])
    Yl = X @ a
    Yl[3::7] = np.nan
    si = G.morris_indices(prob, X, Yl, levels=4)
    np.testing.assert_allclose(si["mu"].values, a * width, rtol=1e-9)
    # every run failed but one per trajectory: no effect left anywhere
    with pytest.raises(G.GlobalSensitivityError, match="elementary effects"):
        G.morris_indices(prob, X, np.where(np.arange(len(Y)) % 2 == 0, np.nan, Y))


def test_log_sampling_and_physical_values():
    problem, table = G.build_problem("rat", ["kd_glycine", "vmax_eaat"])
    assert list(table["scale"]) == ["log10", "linear"]  # 0.1..3 uM spans > 10x; 100..400 does not
    np.testing.assert_allclose(problem["bounds"][0], np.log10([0.1, 3.0]))
    phys = G.to_physical(G.sobol_sample(problem, 8, seed=0), table)
    assert phys["kd_glycine"].between(0.1, 3.0).all() and phys["vmax_eaat"].between(100, 400).all()


# -- the real model through the ensemble engine -----------------------------------------------------------------
def test_sobol_real_model_small():
    # parameters whose whole range keeps a physiological drug-free state, so no run fails
    params = ["koff_ket", "k_sp_translation"]
    res = G.sobol_analysis("rat", params, ["glutamate_peak", "spine_gain_24h"], n=8, seed=1, workers=0, progress=False)
    assert len(res.samples) == 8 * 4 and res.settings["runs"] == 32 and len(res.failures) == 0
    assert res.indices.shape == (4, 5) and np.isfinite(res.indices.values).all()
    assert (res.indices["n_used"] == 8).all()
    assert set(res.convergence["n"]) == {8}
    assert res.outputs.notna().all().all()


def test_morris_real_model_drops_failed_steps():
    """A failing set removes the two elementary effects it ends, not its trajectory (no imputation); Sobol drops
    the base row it belongs to for the one parameter whose index needs that run."""
    calls = {}

    def fake(samples: pd.DataFrame) -> pd.DataFrame:
        y = samples["vmax_eaat"].values / 100 + samples["k_glu_release"].values
        y[1] = np.nan  # one failed run in trajectory 0
        calls["n"] = len(samples)
        return pd.DataFrame({"glutamate_peak": y}, index=samples.index)

    res = G.morris_analysis("rat", ["vmax_eaat", "k_glu_release"], ["glutamate_peak"], r=4, evaluate=fake)
    assert calls["n"] == 12 and res.dropped == {"glutamate_peak": 2}
    # the middle run of trajectory 0 ends one step of each parameter: 3 of 4 effects left for each
    assert list(res.indices["n_used"]) == [3, 3]
    # y is linear, so each elementary effect (per unit of the scaled parameter) is slope x range width
    b = G.parameter_bounds("rat", ["vmax_eaat", "k_glu_release"])
    width = (b["upper"] - b["lower"]).values
    np.testing.assert_allclose(res.indices.loc["glutamate_peak", "mu"].values, width * [1 / 100, 1.0], rtol=1e-9)
    # Sobol uses the complete base rows: the failed run (an AB row of base row 0) removes row 0 from that
    # parameter's estimate only
    res = G.sobol_analysis("rat", ["vmax_eaat", "k_glu_release"], ["glutamate_peak"], n=16, evaluate=fake)
    assert list(res.indices["n_used"]) == [15, 16]


def test_sobol_with_failed_runs_uses_complete_rows_known_answer():
    """Failed runs (NaN) are not imputed: each parameter's indices come from the base rows whose A, B and AB_i
    runs all exist, and still converge to the exact answer of a linear model; too few rows raise."""
    a = np.array([1.0, 2.0, 4.0])
    prob = {"num_vars": 3, "names": ["a", "b", "c"], "bounds": [[0.0, 1.0]] * 3}
    X = G.sobol_sample(prob, 1024, seed=1)
    Y = X @ a
    Y[np.random.default_rng(0).random(len(Y)) < 0.05] = np.nan  # 5 % of the runs fail
    si = G.sobol_indices(prob, Y)
    exact = a**2 / np.sum(a**2)
    assert (si["n_used"] < 1024).all() and (si["n_used"] > 800).all()
    np.testing.assert_allclose(si["S1"].values, exact, atol=0.03)
    np.testing.assert_allclose(si["ST"].values, exact, atol=0.03)
    assert (si["S1_conf"] > 0).all()
    Y[: 1020 * 5] = np.nan  # 4 base rows left
    with pytest.raises(G.GlobalSensitivityError, match="base rows"):
        G.sobol_indices(prob, Y)


# -- CLI and figures --------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser


def test_cli_morris_writes_tables_and_figures(tmp_path):
    args = _parser().parse_args(
        ["sensitivity", "--method", "morris", "--parameters", "koff_ket,kon_ket,k_sp_translation", "--readouts",
         "glutamate_peak", "--samples", "2", "--seed", "1", "--workers", "0", "--no-progress", "--out", str(tmp_path)]
    )  # fmt: skip
    assert args.func(args) == 0
    for name in ("morris_indices.csv", "morris_convergence.csv", "morris_samples.csv", "morris_bounds.csv"):
        assert (tmp_path / name).stat().st_size > 0
    ind = pd.read_csv(tmp_path / "morris_indices.csv", index_col=[0, 1])
    assert ind.shape == (3, 5) and np.isfinite(ind.values).all()
    _image_has_content(tmp_path / "morris_glutamate_peak.png")
    assert (tmp_path / "morris_glutamate_peak.svg").read_text().count("<path") > 5


def test_sobol_and_convergence_figures_have_content(tmp_path):
    prob = {"num_vars": 3, "names": ["a", "b", "c"], "bounds": [[0.0, 1.0]] * 3}
    Y = G.sobol_sample(prob, 64, seed=0) @ np.array([1.0, 2.0, 4.0])
    png, svg = save_figure(plot_sobol(G.sobol_indices(prob, Y), "glutamate_peak"), tmp_path / "sobol")
    _image_has_content(png)
    conv = G.sobol_convergence(prob, Y).assign(readout="glutamate_peak")
    png, _ = save_figure(plot_convergence(conv, "glutamate_peak"), tmp_path / "conv")
    _image_has_content(png)
    X = G.morris_sample(prob, 4, seed=0)
    png, _ = save_figure(plot_morris(G.morris_indices(prob, X, X @ np.array([1.0, 2.0, 4.0])), "x"), tmp_path / "m")
    _image_has_content(png)


# -- bad input --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: G.build_problem("rat", ["no_such_parameter"]), "unknown parameter"),
        (lambda: G.build_problem("rat", ["vmax_eaat"], {"vmax_eaat": (400.0, 100.0)}), "lower 400.0 >= upper"),
        (lambda: G.sobol_analysis("rat", ["vmax_eaat"], ["no_such_readout"], n=8), "unknown readout"),
        (lambda: G.sobol_sample(ISHIGAMI, 12), "power of 2"),
        (lambda: G.sobol_sample(ISHIGAMI, 4), "power of 2 >= 8"),
        (lambda: G.morris_sample(ISHIGAMI, 1), "at least 2 trajectories"),
        (lambda: G.morris_sample(ISHIGAMI, 4, levels=3), "even integer"),
        (lambda: G.sobol_indices(ISHIGAMI, np.ones(7)), "Saltelli sample"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ModelError, match=match):
        call()


def test_failure_summary_counts_kinds_without_the_parameter_dicts():
    big = "{" + ", ".join(f"'p{i}': {i}.5" for i in range(100)) + "}"
    failures = pd.DataFrame(
        {
            "sample": [3, 7, 9, 12],
            "error": [
                f"DrugFreeStateError: ketamine_cascade_rat with parameters {big}: drug-free steady state is unstable: "
                "largest Jacobian eigenvalue 1.2e-06 /s > 1e-10",
                f"DrugFreeStateError: ketamine_cascade_rat with parameters {big}: drug-free steady state is unstable: "
                "largest Jacobian eigenvalue 3.4 /s > 1e-10",
                f"SimulationTimeout: ketamine_cascade_rat with parameters {big}: time limit exceeded",
                f"DrugFreeStateError: ketamine_cascade_rat with parameters {big}: drug-free steady state is unstable: "
                "largest Jacobian eigenvalue 2.2e-05 /s > 1e-10",
            ],
        }
    )
    text = G._failure_message(failures, 40)
    assert text.startswith("4 of 40 parameter sets failed to simulate: 3 x DrugFreeStateError")
    assert "1 x SimulationTimeout" in text and "e.g. sample 3" in text and "e.g. sample 9" in text
    assert "p99" not in text and len(text) < 600
