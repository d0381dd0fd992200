"""Figure of the drug comparison (:func:`analysis.analyses.drugs.compare_drugs`): one panel per cascade step."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from analysis.plots.cascade import STYLE, plt

#: (observable, axis label) of the panels, in cascade order.
PANELS = (
    ("ketamine_plasma", "parent drug in plasma (uM)"),
    ("nmda_block_int", "interneuron NMDA block"),
    ("glutamate_rel", "glutamate (rel.)"),
    ("mtorc1_rel", "mTORC1 activity (rel.)"),
    ("synaptic_proteins_rel", "synapse-bound scaffold (rel.)"),
    ("spine_density_rel", "spine density (rel.)"),
    ("madrs_change", "MADRS vs placebo (points)"),
)


def plot_drug_comparison(curves: Mapping[str, pd.DataFrame], title: str = "") -> plt.Figure:
    """Time courses (days) of each protocol through the cascade; the parent drug on a log axis."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(2, 4, figsize=(14, 6.2), constrained_layout=True)
        axes = axes.ravel()
        for ax, (obs, label) in zip(axes, PANELS, strict=False):
            for name, df in curves.items():
                d = df.index.values / 86400.0
                ax.plot(d, df[obs].values, label=name, lw=1.3)
            if obs == "ketamine_plasma":
                ax.set_yscale("log")
                ax.set_ylim(1e-3, None)
            if obs == "madrs_change":
                ax.axhline(0.0, color="0.6", lw=0.8)
            ax.set_xlabel("days after the first dose")
            ax.set_ylabel(label)
        handles, labels = axes[0].get_legend_handles_labels()
        axes[-1].axis("off")
        axes[-1].legend(handles, labels, loc="center", fontsize=8, frameon=False)
        if title:
            fig.suptitle(title)
        return fig


def plot_pk_timecourses(frame: pd.DataFrame, curves: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """Plasma time courses of each condition (:func:`analysis.analyses.pk_timecourse.timecourse_check`): data as
    markers, the model as lines; uM against h after the start of the infusion."""
    names = {"ketamine_plasma": "ketamine", "norketamine_plasma": "norketamine"}
    conditions = list(curves)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            1, len(conditions), figsize=(5.2 * len(conditions), 4.0), constrained_layout=True, squeeze=False
        )
        for ax, condition in zip(axes[0], conditions, strict=True):
            rows = frame[frame.condition == condition]
            for i, (obs, g) in enumerate(rows.groupby("observable", sort=True)):
                color = f"C{i}"
                ax.plot(
                    curves[condition].index,
                    curves[condition][obs],
                    color=color,
                    lw=1.4,
                    label=f"{names.get(obs, obs)}, model",
                )
                ax.plot(g.time_h, g.conc_uM, "o", color=color, ms=4, label=f"{names.get(obs, obs)}, data")
            study = rows.study.iloc[0] if len(rows) else ""
            ax.set_xlabel("hours after the start of the infusion")
            ax.set_ylabel("plasma concentration (uM)")
            ax.set_title(f"{study}: {condition}".replace("; ", "\n", 2), fontsize=8)
            ax.legend(fontsize=7, frameon=False)
        return fig
