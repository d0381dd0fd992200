# %% [markdown]
# # 04 Dose-response, interventions and dosing regimens
#
# Rat 0.1-300 mg/kg i.p. and human 0.05-2 mg/kg (40-min infusion), log-spaced. At anaesthetic doses the
# pyramidal NMDARs are blocked too, so the disinhibition-driven glutamate surge falls again.

# %%
import numpy as np

from analysis import load_model
from analysis.analyses import doseresponse as D
from analysis.plots.analyses import plot_dose_response, plot_interventions, plot_regimens
from analysis.plots.cascade import plt

# %%
rat = D.dose_response("rat", n=15)
fig = plot_dose_response(rat, "Dose-response, rat (i.p.)")
rat[["glutamate_peak", "nmda_block_int_peak", "nmda_block_pyr_peak", "mtorc1_peak", "spine_gain_24h"]].round(3)

# %%
human = D.dose_response("human", n=10)
fig = plot_dose_response(human, "Dose-response, human (40-min infusion)")
human[["glutamate_peak", "mtorc1_peak", "spine_gain_24h"]].round(3)

# %% [markdown]
# ## Glutamate during the first hour: the surge rises with dose, then falls at anaesthetic doses

# %%
m = load_model("rat")
t = np.linspace(0, 3600, 241)
fig, ax = plt.subplots(figsize=(6, 3.6), constrained_layout=True)
for dose in (3, 10, 30, 100, 300):
    ax.plot(t / 60, m.simulate(t, {"dose": float(dose)})["glutamate_rel"], label=f"{dose} mg/kg")
ax.set_xlabel("time after dose (min)")
ax.set_ylabel("glutamate_rel (1)")
ax.legend(fontsize=7)
peak = rat["glutamate_peak"]
print(f"glutamate peak highest at {peak.idxmax():.3g} mg/kg ({peak.max():.2f}x); at 300 mg/kg {peak.iloc[-1]:.2f}x")

# %% [markdown]
# ## Interventions (given 1 h before 10 mg/kg) and dosing regimens

# %%
table, curves = D.interventions("rat", readouts=["glutamate_peak", "mtorc1_peak", "bdnf_peak", "spine_gain_24h"])
fig = plot_interventions(curves, table, "Rat 10 mg/kg: interventions")
table.xs("ratio_to_control", level="quantity").round(2)

# %%
reg, rc = D.regimens("rat", n_doses=(1, 3), readouts=["glutamate_peak", "spine_gain_24h"])
fig = plot_regimens(rc, "Rat 10 mg/kg: single vs repeated dosing")
reg.round(3)
