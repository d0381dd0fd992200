"""The command line on small inputs, and the figures it draws."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from analysis.cli import commands as cli
from analysis.core.simulate import simulate
from analysis.plots.cascade import plot_cascade, save_figure


def test_simulate_writes_csv(tmp_path):
    out = tmp_path / "rat.csv"
    assert cli.main(["simulate", "--species", "rat", "--dose", "10", "--t-end-h", "6", "--out", str(out)]) == 0
    df = pd.read_csv(out, index_col="time")
    assert df.index[-1] == 6 * 3600 and df["glutamate_rel"].max() > 1.1


def test_validate_writes_report(tmp_path, capsys):
    assert cli.main(["validate", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "passed" in text
    for name in ("validation.csv", "validation.md", "validation.png", "validation.svg", "pk_timecourses.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "## Human plasma time courses" in (tmp_path / "validation.md").read_text(encoding="utf-8")
    data = pd.read_csv(cli.ROOT / "models/calibration_data.tsv", sep="\t")
    assert len(pd.read_csv(tmp_path / "pk_timecourses.csv")) == data.id.str.startswith("kamp2020").sum() > 0


def test_cascade_figure_has_content(tmp_path):
    df = simulate("rat", {"dose": 10.0}, t_end=86400)
    png, svg = save_figure(plot_cascade(df, "test"), tmp_path / "cascade")
    img = imread(png)
    assert img.shape[0] > 300 and img.shape[1] > 500
    # not blank: many distinct colours (curves of several colours on white)
    assert len(np.unique(img.reshape(-1, img.shape[-1])[:, :3].round(2), axis=0)) > 50
    assert svg.read_text(encoding="utf-8").count("<path") > 20


def test_cascade_figure_draws_the_calibration_bands():
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    from analysis.cli.commands import calibration_bands
    from analysis.core.model import load_model

    bands = calibration_bands("human", "dose 0.5")
    assert bands is not None and "ketamine_plasma" in set(bands["observable"])
    assert calibration_bands("human", "dose 99") is None
    df = load_model("human").simulate(np.linspace(0, 86400, 200), {"dose": 0.5})
    fig = plot_cascade(df, "test", bands=bands)
    pk = fig.axes[0]
    assert any(isinstance(c, PolyCollection) for c in pk.collections)
    assert any("calibration band" in t.get_text() for t in pk.get_legend().get_texts())
    plt.close(fig)


def test_help_of_the_command_and_every_subcommand_prints(capsys):
    """argparse formats help strings with %: a bare '%' in one help text crashed `ketamine-cascade --help`."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out
    commands = usage.split("{", 1)[1].split("}", 1)[0].split(",")
    assert "sensitivity" in commands and "run" in commands
    for command in commands:
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--help"])
        assert exit_info.value.code == 0, command
        assert capsys.readouterr().out.startswith("usage:"), command
