"""Bad input gives a clear error naming the problem, and leaves no half-written file."""

import numpy as np
import pytest

from analysis.cli import commands as cli
from analysis.core.io import write_atomic
from analysis.core.model import CascadeModel, ModelError, SimulationError, load_model

T = np.linspace(0, 3600, 13)


def test_negative_dose(model):
    with pytest.raises(ModelError, match="'dose'.*-1"):
        model.simulate(T, {"dose": -1.0})


@pytest.mark.parametrize("bad", ["ten", None, [1.0], True, float("nan"), float("inf")])
def test_non_numeric_or_non_finite_dose(model, bad):
    with pytest.raises(ModelError, match="dose"):
        model.simulate(T, {"dose": bad})


def test_unknown_parameter(model):
    with pytest.raises(ModelError, match="unknown parameter 'dosee'"):
        model.simulate(T, {"dosee": 1.0})


def test_unknown_observable(model):
    with pytest.raises(ModelError, match="not_an_observable"):
        model.simulate(T, {}, ["not_an_observable"])


def test_fraction_out_of_range(model):
    with pytest.raises(ModelError, match="inhib_mtorc1"):
        model.simulate(T, {"inhib_mtorc1": 1.5})


def test_bad_time_grid(model):
    with pytest.raises(ModelError, match="times"):
        model.simulate([0.0, 10.0, 5.0], {})


def test_missing_sbml(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        CascadeModel(tmp_path / "nope.xml")


@pytest.mark.parametrize("text", ["<sbml><model", "not xml at all", ""])
def test_malformed_sbml(tmp_path, text):
    p = tmp_path / "bad.xml"
    p.write_text(text)
    with pytest.raises(ModelError, match="malformed SBML"):
        CascadeModel(p)


def test_solver_failure_names_the_inputs():
    m = load_model("rat")
    with pytest.raises(SimulationError, match="tau_rate"):
        m.simulate(T, {"tau_rate": 0.0, "dose": 10.0})
    # the model is still usable afterwards
    assert np.isfinite(m.simulate(T, {"dose": 10.0}).values).all()


def test_cli_bad_input_writes_nothing(tmp_path, capsys):
    out = tmp_path / "tc.csv"
    assert cli.main(["simulate", "--species", "rat", "--dose", "-3", "--out", str(out)]) == 2
    assert "dose" in capsys.readouterr().err
    assert not out.exists()
    assert cli.main(["simulate", "--species", "rat", "--set", "nonsense=1", "--out", str(out)]) == 2
    assert "nonsense" in capsys.readouterr().err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "result.csv"

    def half_then_fail(p):
        p.write_text("partial,")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(target, half_then_fail)
    assert list(tmp_path.iterdir()) == []
    target.write_text("old")
    with pytest.raises(RuntimeError):
        write_atomic(target, half_then_fail)
    assert target.read_text() == "old"
