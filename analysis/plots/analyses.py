"""Figures of the analyses (sensitivity, dose-response, interventions, regimens, scans).

Same style as :mod:`analysis.plots.cascade` (``STYLE``, ``save_figure``: PNG + SVG, atomic, Agg backend;
nothing opens a window).  Every function takes tables and returns a matplotlib Figure.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from analysis.analyses.readouts import READOUTS
from analysis.plots.cascade import STYLE, plt, save_figure

__all__ = [
    "plot_continuation",
    "plot_convergence",
    "plot_dose_response",
    "plot_morris",
    "plot_interventions",
    "plot_range_ends",
    "plot_regimens",
    "plot_scan_1d",
    "plot_scan_2d",
    "plot_sensitivity_heatmap",
    "plot_sobol",
    "plot_tornado",
    "plot_synapse_drive_loop",
    "save_figure",
]

OBS_UNITS = {
    "ketamine_plasma": "uM",
    "ketamine_brain": "uM",
    "nmda_block_int": "1",
    "nmda_block_pyr": "1",
    "rate_int": "Hz",
    "rate_pyr": "Hz",
}


def _label(readout: str) -> str:
    r = READOUTS.get(readout)
    return f"{readout} ({r.unit})" if r else readout


def _obs_label(obs: str) -> str:
    return f"{obs} ({OBS_UNITS.get(obs, '1')})"


def plot_sensitivity_heatmap(table: pd.DataFrame, title: str = "", vmax: float | None = None) -> plt.Figure:
    """Heatmap of scaled sensitivities, parameters (rows) x observables or readouts (columns).

    ``table``: from :func:`analysis.analyses.sensitivity.summarise_timecourse` or
    :func:`analysis.analyses.sensitivity.readout_sensitivities` (d ln y / d ln p, dimensionless).
    """
    data = table.astype(float)
    with plt.rc_context(STYLE):
        h = max(3.0, 0.16 * len(data) + 1.8)
        w = max(5.0, 0.42 * data.shape[1] + 3.0)
        fig, ax = plt.subplots(figsize=(w, h), constrained_layout=True)
        lim = vmax or float(np.nanpercentile(np.abs(data.values), 98) if np.isfinite(data.values).any() else 1.0)
        lim = lim if lim > 0 else 1.0
        im = ax.imshow(
            np.ma.masked_invalid(data.values), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto", interpolation="none"
        )
        ax.set_yticks(range(len(data)), data.index, fontsize=6)
        ax.set_xticks(range(data.shape[1]), data.columns, rotation=60, ha="right", fontsize=7)
        ax.set_xlabel("observable / readout")
        ax.set_ylabel("parameter")
        cb = fig.colorbar(im, ax=ax, shrink=0.6)
        cb.set_label("scaled sensitivity d ln y / d ln p (1)")
        ax.set_title(title or "Local scaled sensitivities")
        return fig


def plot_tornado(data: pd.Series | pd.DataFrame, readout: str, title: str = "") -> plt.Figure:
    """Ranked tornado plot for one readout.

    ``data``: a Series parameter -> d ln R / d ln p (from :func:`analysis.analyses.sensitivity.tornado`), or a
    DataFrame with ``low``/``high`` columns (readout at the lower/upper bound, from
    :func:`analysis.analyses.sensitivity.bounds_tornado`; ``attrs['baseline']`` = readout at the shipped values).
    """
    with plt.rc_context(STYLE):
        n = len(data)
        fig, ax = plt.subplots(figsize=(6.2, 0.28 * n + 1.3), constrained_layout=True)
        y = np.arange(n)[::-1]
        if isinstance(data, pd.DataFrame):
            base = float(data.attrs.get("baseline", np.nan))
            for yi, (_, row) in zip(y, data.iterrows(), strict=True):
                ax.barh(yi, row["low"] - base, left=base, color="#2471a3", height=0.6, label="lower bound")
                ax.barh(yi, row["high"] - base, left=base, color="#c0392b", height=0.6, label="upper bound")
            ax.axvline(base, color="k", lw=0.8)
            ax.set_xlabel(f"{_label(readout)} with the parameter at its bound")
            h, lab = ax.get_legend_handles_labels()
            ax.legend(h[:2], lab[:2], loc="lower right")
        else:
            vals = data.values.astype(float)
            ax.barh(y, vals, color=np.where(vals >= 0, "#c0392b", "#2471a3"), height=0.6)
            ax.axvline(0, color="k", lw=0.8)
            ax.set_xlabel(f"scaled sensitivity d ln({readout}) / d ln p (1)")
        ax.set_yticks(y, list(data.index))
        ax.set_ylabel("parameter")
        ax.set_title(title or f"Tornado: {readout}")
        return fig


def plot_dose_response(table: pd.DataFrame, title: str = "") -> plt.Figure:
    """Readouts vs dose, one panel per cascade stage (dose log axis, units on every axis)."""
    stages: dict[str, list[str]] = {}
    for r in table.columns:
        if r in READOUTS and READOUTS[r].unit not in ("h",):
            stages.setdefault(READOUTS[r].stage, []).append(r)
    with plt.rc_context(STYLE):
        n = max(1, len(stages))
        ncol = min(3, n)
        nrow = int(np.ceil(n / ncol))
        fig, axes = plt.subplots(nrow, ncol, figsize=(3.8 * ncol, 3.0 * nrow), constrained_layout=True, squeeze=False)
        dose = table.index.values.astype(float)
        for ax, (stage, names) in zip(axes.flat, stages.items(), strict=False):
            units = sorted({READOUTS[r].unit for r in names})
            for r in names:
                ax.plot(dose, table[r].values, marker="o", ms=2.5, label=r)
            if stage.startswith("4-5") or stage.startswith("6") or stage.startswith("7"):
                ax.axhline(1.0 if any(table[r].min() > 0.5 for r in names) else 0.0, color="0.7", lw=0.7, ls=":")
            ax.set_xscale("log")
            ax.set_xlabel("dose (mg/kg)")
            ax.set_ylabel(f"readout ({', '.join(units)})")
            ax.set_title(stage, loc="left")
            ax.legend(fontsize=6)
        for ax in list(axes.flat)[len(stages) :]:
            ax.set_visible(False)
        fig.suptitle(title or "Dose-response")
        return fig


def plot_interventions(
    curves: Mapping[str, pd.DataFrame], table: pd.DataFrame | None = None, title: str = ""
) -> plt.Figure:
    """Time courses of the cascade stages for each intervention arm (dose at 0 h, intervention from -1 h).

    ``curves``: arm -> time course indexed by s after the dose (from
    :func:`analysis.analyses.doseresponse.interventions`); ``table`` (optional) adds a bar panel of
    spine_gain_24h effect relative to control.
    """
    panels = [
        ("3  Disinhibition", "rate_pyr", "Hz"),
        ("4  Glutamate", "glutamate_rel", "1"),
        ("6  mTORC1", "mtorc1_rel", "1"),
        ("6  BDNF", "bdnf_rel", "1"),
        ("7  Spines", "spine_density_rel", "1"),
    ]
    colors = plt.get_cmap("tab10")
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(2, 3, figsize=(11.5, 6.4), constrained_layout=True)
        flat = list(axes.flat)
        for ax, (panel, obs, unit) in zip(flat, panels, strict=False):
            for i, (arm, df) in enumerate(curves.items()):
                if obs in df:
                    ax.plot(df.index.values / 3600.0, df[obs].values, color=colors(i), label=arm, lw=1.2)
            ax.axvline(0, color="0.6", lw=0.7, ls=":")
            ax.set_xscale("symlog", linthresh=1.0)
            ax.set_xlabel("time after dose (h)")
            ax.set_ylabel(f"{obs} ({unit})")
            ax.set_title(panel, loc="left")
        flat[0].legend(fontsize=7)
        ax = flat[5]
        if table is not None and ("control", "ratio_to_control") in table.index:
            cols = [c for c in ("glutamate_peak", "mtorc1_peak", "bdnf_peak", "spine_gain_24h") if c in table.columns]
            arms = list(dict.fromkeys(table.index.get_level_values(0)))
            width = 0.8 / max(1, len(cols))
            for j, c in enumerate(cols):
                vals = [float(table.loc[(a, "ratio_to_control"), c]) for a in arms]
                ax.bar(np.arange(len(arms)) + j * width, vals, width, label=c)
            ax.set_xticks(np.arange(len(arms)) + 0.4 - width / 2, arms, rotation=30, ha="right")
            ax.axhline(1, color="0.6", lw=0.7)
            ax.set_ylabel("drug effect / control drug effect (1)")
            ax.set_xlabel("arm")
            ax.legend(fontsize=6)
            ax.set_title("Drug effect relative to control", loc="left")
        else:
            ax.set_visible(False)
        fig.suptitle(title or "Interventions (given 1 h before the dose)")
        return fig


def plot_regimens(curves: Mapping[str, pd.DataFrame], title: str = "") -> plt.Figure:
    """Brain ketamine, glutamate, mTORC1 and spine density for each regimen (time in days, linear)."""
    obs = [("ketamine_brain", "ketamine_brain (uM)"), ("glutamate_rel", "glutamate_rel (1)"),
           ("mtorc1_rel", "mtorc1_rel (1)"), ("spine_density_rel", "spine_density_rel (1)")]  # fmt: skip
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(2, 2, figsize=(10, 6), constrained_layout=True)
        for ax, (o, ylabel) in zip(axes.flat, obs, strict=True):
            for label, df in curves.items():
                if o in df:
                    ax.plot(df.index.values / 86400.0, df[o].values, label=label, lw=1.1)
            ax.set_xlabel("time since the first dose (d)")
            ax.set_ylabel(ylabel)
        axes.flat[0].legend(fontsize=7)
        fig.suptitle(title or "Dosing regimens")
        return fig


def plot_scan_1d(table: pd.DataFrame, parameter: str, unit: str = "", title: str = "") -> plt.Figure:
    """Readouts vs one parameter (one small panel per readout; failed values, NaN, are gaps)."""
    cols = [c for c in table.columns if c != "error"]
    with plt.rc_context(STYLE):
        ncol = min(4, len(cols))
        nrow = int(np.ceil(len(cols) / ncol))
        fig, axes = plt.subplots(nrow, ncol, figsize=(3.0 * ncol, 2.5 * nrow), constrained_layout=True, squeeze=False)
        x = table.index.values.astype(float)
        logx = x.min() > 0 and x.max() / x.min() >= 10
        for ax, c in zip(axes.flat, cols, strict=False):
            ax.plot(x, table[c].values, marker="o", ms=2.5)
            if logx:
                ax.set_xscale("log")
            ax.set_xlabel(f"{parameter} ({unit or 'model unit'})")
            ax.set_ylabel(_label(c), fontsize=7)
        for ax in list(axes.flat)[len(cols) :]:
            ax.set_visible(False)
        fig.suptitle(title or f"Scan of {parameter}")
        return fig


def plot_scan_2d(table: pd.DataFrame, readout: str, units: tuple[str, str] = ("", ""), title: str = "") -> plt.Figure:
    """Heatmap of one readout over a 2-D parameter grid (long table from :func:`scan_2d`)."""
    p1, p2 = [c for c in table.columns if c not in READOUTS and c != "error"][:2]
    grid = table.pivot(index=p2, columns=p1, values=readout)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.2, 4.2), constrained_layout=True)
        im = ax.pcolormesh(np.arange(grid.shape[1] + 1), np.arange(grid.shape[0] + 1), grid.values, cmap="viridis")
        ax.set_xticks(np.arange(grid.shape[1]) + 0.5, [f"{v:.3g}" for v in grid.columns], rotation=45, ha="right")
        ax.set_yticks(np.arange(grid.shape[0]) + 0.5, [f"{v:.3g}" for v in grid.index])
        ax.set_xlabel(f"{p1} ({units[0] or 'model unit'})")
        ax.set_ylabel(f"{p2} ({units[1] or 'model unit'})")
        cb = fig.colorbar(im, ax=ax)
        cb.set_label(_label(readout))
        ax.set_title(title or f"{readout} over {p1} x {p2}")
        return fig


def _unit(readout: str) -> str:
    r = READOUTS.get(readout)
    return r.unit if r else "output unit"


def plot_sobol(indices: pd.DataFrame, readout: str, title: str = "", top: int | None = 20) -> plt.Figure:
    """Horizontal bars of first-order (S1) and total-order (ST) Sobol indices with confidence intervals.

    ``indices``: parameter-indexed table with ``S1, S1_conf, ST, ST_conf`` (one readout, from
    :func:`analysis.analyses.global_sensitivity.sobol_indices` or ``result.indices.loc[readout]``); sorted by ST.
    """
    data = indices.sort_values("ST", ascending=False)
    data = data if top is None else data.iloc[:top]
    with plt.rc_context(STYLE):
        n = len(data)
        fig, ax = plt.subplots(figsize=(6.4, 0.36 * n + 1.5), constrained_layout=True)
        y = np.arange(n)[::-1]
        ax.barh(y + 0.18, data["S1"].values, 0.36, xerr=data["S1_conf"].values, color="#2471a3",
                ecolor="0.25", capsize=2, label="first order S1")  # fmt: skip
        ax.barh(y - 0.18, data["ST"].values, 0.36, xerr=data["ST_conf"].values, color="#c0392b",
                ecolor="0.25", capsize=2, label="total order ST")  # fmt: skip
        ax.axvline(0, color="k", lw=0.7)
        vals = np.r_[data["S1"].values, data["ST"].values].astype(float)
        vals = vals[np.isfinite(vals)]
        hi = min(1.5, max(1.05, float(vals.max()) + 0.05 if len(vals) else 1.05))
        lo = max(-0.5, min(-0.05, float(vals.min()) - 0.05 if len(vals) else -0.05))
        ax.set_xlim(lo, hi)  # small-N bootstrap CIs can be huge: keep the indices readable
        ax.set_yticks(y, list(data.index))
        ax.set_ylabel("parameter")
        ax.set_xlabel(f"Sobol index of {readout} (1, fraction of variance; bars: CI)")
        ax.legend(loc="lower right")
        ax.set_title(title or f"Sobol indices: {readout}")
        return fig


def plot_morris(indices: pd.DataFrame, readout: str, title: str = "", label_top: int = 8) -> plt.Figure:
    """Morris screening: sigma vs mu* (both in the readout's unit per normalised step), CI of mu* as error bars.

    ``indices``: parameter-indexed table with ``mu_star, mu_star_conf, sigma`` for one readout.
    """
    unit = _unit(readout)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6.2, 4.8), constrained_layout=True)
        x, s = indices["mu_star"].values.astype(float), indices["sigma"].values.astype(float)
        ax.errorbar(x, s, xerr=indices["mu_star_conf"].values.astype(float), fmt="o", ms=4, color="#2471a3",
                    ecolor="0.6", elinewidth=0.8, capsize=2)  # fmt: skip
        lim = float(np.nanmax(np.r_[x, s, 1e-300]))
        ax.plot([0, lim], [0, lim], color="0.6", lw=0.8, ls="--", label="sigma = mu*")
        for p in indices["mu_star"].sort_values(ascending=False).index[:label_top]:
            ax.annotate(p, (indices.at[p, "mu_star"], indices.at[p, "sigma"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")  # fmt: skip
        ax.set_xlabel(f"mu* (mean |elementary effect|) of {readout} ({unit})")
        ax.set_ylabel(f"sigma (SD of elementary effects) ({unit})")
        ax.legend(loc="upper left")
        ax.set_title(title or f"Morris screening: {readout}")
        return fig


def plot_convergence(convergence: pd.DataFrame, readout: str, title: str = "", top: int = 6) -> plt.Figure:
    """Indices vs sample size for one readout: one panel per index, the ``top`` parameters (largest final
    value), shaded confidence intervals where available.

    ``convergence``: long table (readout, parameter, n, index, value, conf) from
    :mod:`analysis.analyses.global_sensitivity`; ``n`` = base samples N (Sobol) or trajectories r (Morris).
    """
    conv = convergence[convergence["readout"] == readout] if "readout" in convergence else convergence
    kinds = list(dict.fromkeys(conv["index"]))
    sobol = any(k in ("S1", "ST") for k in kinds)
    unit = "1" if sobol else _unit(readout)
    colors = plt.get_cmap("tab10")
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, max(1, len(kinds)), figsize=(4.6 * max(1, len(kinds)), 3.6),
                                 constrained_layout=True, squeeze=False)  # fmt: skip
        for ax, k in zip(axes.flat, kinds, strict=False):
            block = conv[conv["index"] == k]
            last = block[block["n"] == block["n"].max()].set_index("parameter")["value"]
            for i, p in enumerate(last.sort_values(ascending=False).index[:top]):
                b = block[block["parameter"] == p].sort_values("n")
                n, v, c = b["n"].values.astype(float), b["value"].values.astype(float), b["conf"].values.astype(float)
                ax.plot(n, v, marker="o", ms=3, color=colors(i), label=p)
                if np.isfinite(c).any():
                    ax.fill_between(n, v - c, v + c, color=colors(i), alpha=0.15, lw=0)
            ax.set_xscale("log", base=2)
            if sobol:
                ax.set_ylim(-0.25, 1.25)  # indices are fractions of variance; huge small-N CIs are clipped
            ax.set_xlabel("base samples N" if sobol else "Morris trajectories r")
            ax.set_ylabel(f"{k} of {readout} ({unit})")
            ax.set_title(k, loc="left")
            ax.legend(fontsize=6)
        fig.suptitle(title or f"Convergence: {readout}")
        return fig


def plot_continuation(scans: Mapping[str, pd.DataFrame], units: Mapping[str, str] | None = None) -> plt.Figure:
    """Drug-free pyramidal rate along continuation scans (one panel per parameter): the physiological branch
    (filled) and where it is lost (open, red); the plausible range shaded, the table value dashed."""
    units = units or {}
    with plt.rc_context(STYLE):
        n = len(scans)
        ncol = min(2, n)
        nrow = int(np.ceil(n / ncol))
        fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.0 * nrow), constrained_layout=True, squeeze=False)
        for ax, (p, scan) in zip(axes.flat, scans.items(), strict=False):
            ok = scan["ok"].values.astype(bool)
            x = scan.index.values.astype(float)
            ax.axvspan(scan.attrs["lower"], scan.attrs["upper"], color="0.9", label="plausible range")
            ax.axvline(scan.attrs["value"], color="k", ls="--", lw=0.8, label="table value")
            ax.plot(x[ok], scan["rate_pyr"].values[ok], "o", ms=3, color="#2471a3", label="physiological state")
            ax.plot(
                x[~ok], scan["rate_pyr"].values[~ok], "o", ms=3, mfc="none", color="#c0392b", label="runaway / unstable"
            )
            ax.set_yscale("log")
            ax.set_xlabel(f"{p} ({units.get(p, 'model unit')})")
            ax.set_ylabel("drug-free rate_pyr (Hz)")
        for ax in list(axes.flat)[n:]:
            ax.set_visible(False)
        axes.flat[0].legend(fontsize=6, loc="lower left")
        fig.suptitle("Continuation of the drug-free operating point")
        return fig


def plot_range_ends(table: pd.DataFrame, title: str = "") -> plt.Figure:
    """Drug-free pyramidal rate with each parameter alone at its range ends (red: no physiological state)."""
    with plt.rc_context(STYLE):
        params = list(dict.fromkeys(table.index.get_level_values(0)))
        fig, ax = plt.subplots(figsize=(6.5, 0.16 * len(params) + 1.4), constrained_layout=True)
        y = np.arange(len(params))[::-1]
        for yi, p in zip(y, params, strict=True):
            for end, marker in (("lower", "<"), ("upper", ">")):
                row = table.loc[(p, end)]
                ax.plot(row["rate_pyr"], yi, marker, ms=4, color="#2471a3" if row["ok"] else "#c0392b")
        ax.set_yticks(y, params, fontsize=5)
        ax.set_xscale("log")
        ax.set_xlabel("drug-free rate_pyr (Hz); < lower end, > upper end; red = no physiological state")
        ax.set_title(title or "Each parameter alone at its range ends")
        return fig


def plot_synapse_drive_loop(loops: Mapping[str, dict], title: str = "") -> plt.Figure:
    """The activity -> synapse loop (:func:`analysis.analyses.robustness.synapse_drive_loop`): left, the open-loop
    elasticity of each cascade stage to a sustained change of the pyramidal excitatory conductances (loop open,
    homeostats free; log scale; of the first loop given); right, the largest real part of the drug-free eigenvalues
    (1/day) against the share of the excitation that the spine synapses carry, one line per loop (for example per
    normalisation time), the model's own share and any critical share marked."""
    with plt.rc_context(STYLE):
        fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.4), constrained_layout=True)
        first = next(iter(loops.values()))
        e = first["elasticities"]
        left.barh(range(len(e)), e.abs().values, color=np.where(e.values >= 0, "#2471a3", "#c0392b"))
        left.set_yticks(range(len(e)), list(e.index))
        left.invert_yaxis()
        left.set_xscale("log")
        left.axvline(1.0, color="k", lw=0.8, ls="--")
        left.set_xlabel("|d ln y / d ln g_exc| at steady state (loop open)")
        for name, loop in loops.items():
            scan = loop["scan"]
            (line,) = right.plot(scan["share"], scan["max_real"] * 86400.0, label=name)
            if np.isfinite(loop["critical_share"]):
                right.axvline(loop["critical_share"], color=line.get_color(), ls=":", lw=0.8)
        right.axvline(first["share"], color="0.5", lw=0.8, ls="--", label="model's share")
        right.axhline(0.0, color="k", lw=0.8)
        right.set_xlabel("share of the excitation carried by spine synapses")
        right.set_ylabel("largest Re(eigenvalue) (1/day)")
        right.legend(fontsize=7)
        fig.suptitle(title or "New synapses carry excitatory drive: drug-free stability of the loop")
        return fig
