"""Figures in one matplotlib style: cascade figures (:mod:`.cascade`) and analysis figures (:mod:`.analyses`)."""

from analysis.plots.analyses import *  # noqa: F403  (analyses defines __all__)
from analysis.plots.cascade import (  # noqa: F401
    CASCADE_PANELS,
    STYLE,
    plot_cascade,
    plot_population,
    plot_timecourses,
    plot_validation,
    plt,
    save_figure,
)
