# %% [markdown]
# # 03 Sensitivity: local (time course, tornado) and a Morris screen through the ensemble engine
#
# Local sensitivities are scaled, `d ln y / d ln p` (dimensionless), by central finite differences with every
# parameter set pre-equilibrated drug-free. The global Morris screen samples the plausible bounds of
# `models/parameters.tsv` and runs every parameter set through `analysis.engine.ensemble.run_ensemble`
# (`workers=0`: serially in this process; pass `workers=N` or `scheduler=...` for Dask).

# %%
import numpy as np

from analysis.analyses import global_sensitivity as G
from analysis.analyses import sensitivity as S
from analysis.plots.analyses import plot_convergence, plot_morris, plot_sensitivity_heatmap, plot_tornado

PARAMS = ["vmax_eaat", "k_glu_release", "i_ext_pyr", "g_nmda_int", "kon_ket", "k_mtorc1_akt", "k_spine_formation"]
# The global screen moves every parameter across its whole plausible range at once.  The lumped circuit
# constants (vmax_eaat, k_glu_release, i_ext_pyr, g_nmda_int) are designed, not measured, and far from the
# design the homeostats rescale them away (`ketamine-cascade robustness` maps the measured ones); a set without a
# physiological drug-free state is a failure and Morris drops its trajectory.  The screen therefore covers the
# drug and the signalling parameters downstream of the circuit.
GLOBAL_PARAMS = ["kon_ket", "koff_ket", "k_bdnf_release", "k_mtorc1_akt", "k_sp_translation", "k_spine_formation"]

# %% [markdown]
# ## Local time-course sensitivities (rat, 10 mg/kg), summarised as a heatmap

# %%
ts = S.timecourse_sensitivities("rat", PARAMS, times=np.linspace(0, 24 * 3600, 25), method="fd")
summary = S.summarise_timecourse(ts)
fig = plot_sensitivity_heatmap(summary, "Rat 10 mg/kg: max scaled sensitivity over 24 h")

# %% [markdown]
# ## Readout sensitivities and a tornado for spine gain at 24 h

# %%
rs = S.readout_sensitivities("rat", PARAMS, readouts=["glutamate_peak", "mtorc1_peak", "spine_gain_24h"])
fig = plot_tornado(S.tornado(rs, "spine_gain_24h"), "spine_gain_24h", "Rat: d ln(spine gain 24 h) / d ln p")
rs.round(3)

# %% [markdown]
# ## Morris screen over the plausible bounds (global, through the ensemble engine)
#
# Positive parameters whose bounds span a decade or more are sampled log-uniformly (`res.bounds['scale']`).
# mu* is in the readout's unit per normalised step of the range; a failed parameter set would remove the
# elementary effects of the steps it ends (`res.failures`, `res.dropped`, `n_used` per parameter).

# %%
res = G.morris_analysis(
    "rat", GLOBAL_PARAMS, ["glutamate_peak", "spine_gain_24h"], r=6, seed=1, workers=0, progress=False
)
print(f"{res.settings['runs']} runs, {len(res.failures)} failed, elementary effects lost: {res.dropped}")
res.indices.loc["spine_gain_24h"].sort_values("mu_star", ascending=False).round(4)

# %%
fig = plot_morris(res.indices.loc["spine_gain_24h"], "spine_gain_24h", "Rat: Morris screen, spine gain 24 h")

# %%
fig = plot_convergence(res.convergence, "spine_gain_24h", "Morris mu* vs number of trajectories")

# %% [markdown]
# ## Robustness of the drug-free operating point
#
# Before any global analysis, check where the drug-free state stays physiological (converged, Jacobian-stable,
# pyramidal rate <= 20 Hz and interneuron rate <= 80 Hz). Each parameter alone at its range ends, then the
# physiological branch followed along Mg2+ and the GABA reversal potential to where it ends, if it does (in v1
# a saddle-node inside the ranges sent the circuit to its ~50 Hz runaway branch; the v2 homeostats hold it).
# Same analyses as `ketamine-cascade robustness`.

# %%
from analysis.analyses import robustness as R
from analysis.plots import plot_continuation, plot_range_ends

ends = R.range_ends("rat", progress=False)
print(f"{int((~ends['ok']).sum())} of {len(ends)} range ends without a physiological drug-free state")
fig = plot_range_ends(ends)

# %%
scans = {p: R.continuation("rat", p, n=21) for p in ("mg_ext", "e_gaba")}
for p, scan in scans.items():
    print(p, "branch ends at (below, above):", R.branch_end(scan))
fig = plot_continuation(scans, {"mg_ext": "mM", "e_gaba": "mV"})

# %% [markdown]
# ## New synapses carry excitation (model v2.1)
#
# Li 2010 saw larger EPSCs 24 h after the dose: 90 % of the pyramidal AMPA/NMDA drive sits on spines, and in model
# v2.1 that share scales with the spines that hold PSD-95, relative to their count of the last days (weight
# normalisation). This closes the loop activity -> BDNF -> TrkB -> programme -> spines -> excitation.
# `synapse_drive_loop` gives each stage's steady-state response to a sustained change of the pyramidal excitatory
# conductances with the loop open (homeostats free) and the leading eigenvalue of the drug-free state at every share.
# v2's chain answered 1 % more tonic excitation with ~24 % more spines (homeostats free; 78 % with them held);
# v2.1's adapts (BDNF store, constitutive programme, formation adaptation), so the open-loop gain is ~1.2 and the
# state is stable at every share, for the normalisation times at both ends of their range.

# %%
from analysis.plots import plot_synapse_drive_loop

loops = {
    f"normalisation {tau / 86400:g} d": R.synapse_drive_loop("rat", parameters={R.NORMALISATION: tau})
    for tau in (86400.0, 259200.0, 1209600.0)
}
for name, loop in loops.items():
    print(f"{name}: open-loop gain {loop['open_loop_gain']:.3g}, critical share {loop['critical_share']:.3g}")
fig = plot_synapse_drive_loop(loops)
