"""Figures, in one matplotlib style.  Nothing here opens a window (Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.core.io import write_atomic  # noqa: E402

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "lines.linewidth": 1.6,
}
COLORS = {"interneuron": "#c0392b", "pyramidal": "#2471a3", "plasma": "#7d3c98", "brain": "#117a65"}

#: One panel per stage of the cascade: (title, y label, [(observable, label, colour)]).
CASCADE_PANELS = [
    (
        "1  Pharmacokinetics",
        "ketamine (uM)",
        [
            ("ketamine_plasma", "plasma (total)", COLORS["plasma"]),
            ("ketamine_brain", "brain (unbound)", COLORS["brain"]),
        ],
    ),
    (
        "2  NMDA receptor block",
        "fraction blocked (1)",
        [
            ("nmda_block_int", "interneuron", COLORS["interneuron"]),
            ("nmda_block_pyr", "pyramidal", COLORS["pyramidal"]),
        ],
    ),
    (
        "3  Disinhibition",
        "firing rate (Hz)",
        [("rate_int", "interneuron", COLORS["interneuron"]), ("rate_pyr", "pyramidal", COLORS["pyramidal"])],
    ),
    (
        "4-5  Glutamate and AMPA",
        "relative to baseline (1)",
        [("glutamate_rel", "glutamate", "#d68910"), ("ampa_rel", "AMPA activation", "#616a6b")],
    ),
    (
        "6  mTORC1 and BDNF",
        "relative to baseline (1)",
        [("mtorc1_rel", "active mTORC1", "#1e8449"), ("bdnf_rel", "BDNF protein", "#884ea0")],
    ),
    (
        "7  Synaptogenesis",
        "relative to baseline (1)",
        [("synaptic_proteins_rel", "synaptic proteins", "#ca6f1e"), ("spine_density_rel", "spine density", "#2e4053")],
    ),
]


def save_figure(
    fig: plt.Figure, path: str | Path, formats: tuple[str, ...] = ("png", "svg"), tight: bool = True
) -> list[Path]:
    """Save ``fig`` as ``path`` with each suffix in ``formats``, atomically; close it.

    ``tight`` crops to the drawn content (one extra draw per format); a figure with fixed margins passes False.
    """
    path = Path(path)
    bbox = "tight" if tight else None
    out = [
        write_atomic(path.with_suffix(f".{fmt}"), lambda p, fmt=fmt: fig.savefig(p, format=fmt, bbox_inches=bbox))
        for fmt in formats
    ]
    plt.close(fig)
    return out


def plot_cascade(
    timecourse: pd.DataFrame,
    title: str = "",
    targets: pd.DataFrame | None = None,
    dose_time_s: float = 0.0,
    bands: pd.DataFrame | None = None,
) -> plt.Figure:
    """The cascade, one panel per stage, time (h after the dose) on a log axis.

    ``timecourse`` is indexed by time (s) with the contract observables as columns.
    ``targets`` (from :func:`analysis.analyses.validate.run_validation`, already filtered to this
    scenario) are drawn as vertical bars (accepted band) with a marker at the simulated value.
    ``bands`` (rows of a calibration report's ``bands.csv`` for this scenario: ``observable``, ``time_s`` after the
    dose, ``lower``, ``upper``) are drawn as shaded prediction bands behind the curves of those observables.
    """
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(2, 3, figsize=(11, 6.2), constrained_layout=True)
        hours = (timecourse.index.values - dose_time_s) / 3600.0
        keep = hours > 0
        for ax, (panel, ylabel, series) in zip(axes.flat, CASCADE_PANELS, strict=True):
            for obs, label, color in series:
                band = bands[bands["observable"] == obs] if bands is not None else None
                if band is not None and len(band):
                    h = band["time_s"].to_numpy() / 3600.0
                    on = h > 0
                    ax.fill_between(h[on], band["lower"].to_numpy()[on], band["upper"].to_numpy()[on], color=color,
                                    alpha=0.2, lw=0, label=f"{label}: calibration band")  # fmt: skip
                if obs in timecourse:
                    ax.plot(hours[keep], timecourse[obs].values[keep], color=color, label=label)
            if targets is not None and len(targets):
                mine = targets[targets["observable"].str.removeprefix("rel:").isin([s[0] for s in series])]
                for row in mine.itertuples():
                    t_h = max(row.time_min / 60.0, 1 / 60)
                    ax.vlines(t_h, row.lower, row.upper, color="k", lw=3, alpha=0.25)
                    ax.plot(t_h, row.simulated, "o" if row.passed else "x", color="k", ms=4)
            ax.set_xscale("log")
            ax.set_xlim(1 / 60, max(hours.max(), 1.0))
            ax.set_title(panel, loc="left")
            ax.set_xlabel("time after dose (h)")
            ax.set_ylabel(ylabel)
            ax.legend(loc="best")
        if title:
            fig.suptitle(title)
        return fig


def plot_validation(results: pd.DataFrame) -> plt.Figure:
    """Every literature target: accepted band (grey) and simulated value (dot = pass, x = fail)."""
    with plt.rc_context(STYLE):
        n = len(results)
        fig, ax = plt.subplots(figsize=(7.5, 0.28 * n + 1.2), constrained_layout=True)
        y = np.arange(n)[::-1]
        for yi, row in zip(y, results.itertuples(), strict=True):
            lo, hi, v = row.lower, row.upper, row.simulated
            mid, half = (lo + hi) / 2, (hi - lo) / 2 or 1.0
            # position within the band: -1 = lower edge, +1 = upper edge
            ax.barh(yi, 2, left=-1, color="0.85", height=0.6)
            ax.plot(
                np.clip((v - mid) / half, -3, 3),
                yi,
                "o" if row.passed else "X",
                color="#1e8449" if row.passed else "#c0392b",
                ms=6,
            )
        ax.set_yticks(y, [f"{r.id} ({r.simulated:.3g} {r.unit})" for r in results.itertuples()])
        ax.set_xlim(-3.2, 3.2)
        ax.axvline(0, color="0.6", lw=0.8)
        ax.set_xlabel("simulated value within the literature band (-1 = lower edge, +1 = upper edge; clipped at +-3)")
        ax.set_title(f"Literature validation: {int(results.passed.sum())}/{n} targets within band")
        return fig


def plot_timecourses(curves: Mapping[str, pd.DataFrame], observable: str, ylabel: str) -> plt.Figure:
    """One observable for several scenarios (e.g. doses), time in h on a log axis."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5, 3.4), constrained_layout=True)
        for label, df in curves.items():
            h = df.index.values / 3600.0
            ax.plot(h[h > 0], df[observable].values[h > 0], label=label)
        ax.set_xscale("log")
        ax.set_xlabel("time after dose (h)")
        ax.set_ylabel(ylabel)
        ax.legend()
        return fig


def plot_population(bands: pd.DataFrame, title: str = "", dose_time_s: float = 0.0) -> plt.Figure:
    """Virtual-population percentile bands, one panel per stage (5-95 % light, 25-75 % dark, median line).

    ``bands`` comes from :func:`analysis.engine.population.percentile_bands` (index: time in s, percentile).
    """
    with plt.rc_context(STYLE):
        # fixed margins: constrained layout costs seconds on thousands of band vertices
        fig, axes = plt.subplots(2, 3, figsize=(11, 6.2))
        fig.subplots_adjust(left=0.06, right=0.99, bottom=0.08, top=0.9, wspace=0.28, hspace=0.38)
        pct = bands.index.get_level_values("percentile").unique()
        lo, q1, med, q3, hi = (min(pct), sorted(pct)[1], 50.0, sorted(pct)[-2], max(pct))

        def band(p: float) -> pd.DataFrame:
            return bands.xs(p, level="percentile")

        hours = (band(med).index.values - dose_time_s) / 3600.0
        keep = hours > 0
        for ax, (panel, ylabel, series) in zip(axes.flat, CASCADE_PANELS, strict=True):
            for obs, label, color in series:
                if obs not in bands:
                    continue
                ax.fill_between(
                    hours[keep], band(lo)[obs].values[keep], band(hi)[obs].values[keep], color=color, alpha=0.15, lw=0
                )
                ax.fill_between(
                    hours[keep], band(q1)[obs].values[keep], band(q3)[obs].values[keep], color=color, alpha=0.3, lw=0
                )
                ax.plot(hours[keep], band(med)[obs].values[keep], color=color, label=f"{label} (median)")
            ax.set_xscale("log")
            ax.set_title(panel, loc="left")
            ax.set_xlabel("time after dose (h)")
            ax.set_ylabel(ylabel)
            ax.legend(loc="best")
        fig.suptitle(title or f"Virtual population: median, {q1:g}-{q3:g} % and {lo:g}-{hi:g} % bands")
        return fig
