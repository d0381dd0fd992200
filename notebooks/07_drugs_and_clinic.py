# %% [markdown]
# # 07 Drugs and the clinic: enantiomers, norketamine, intranasal esketamine, memantine and MADRS
#
# Drug presets (`models/drugs.tsv`) are numbers only: channel kinetics, trapping, metabolite and PK. They are set
# before `reset()`, like a dose. `madrs_change` (human) is an empirical link from synaptic strength to the MADRS
# score (a saturating effect-compartment link fitted to three placebo-controlled trial results at 24 h); everything
# upstream is mechanism.

# %%
import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import roadrunner

from analysis.analyses.drugs import compare_drugs
from analysis.core.drugs import drug_parameters, read_drugs
from analysis.core.model import load_model
from analysis.core.paths import sbml_path
from analysis.plots.drugs import plot_drug_comparison

pd.set_option("display.width", 200)
print(pd.DataFrame(read_drugs())[["drug", "species", "parameter", "value", "unit", "note"]].to_string())

# %% [markdown]
# ## Every preset at its clinical dose, plus memantine at the peak block of racemic ketamine

# %%
curves, summary = compare_drugs(days=14.0)
print(summary.round(3).to_string())
fig = plot_drug_comparison(curves, "human, 14 days")

# %% [markdown]
# ## Why memantine fails: block at rest in Mg2+ against exposure
#
# Peak interneuron block over a range of constant memantine plasma levels (long infusions), against ketamine's
# block during its 40-min infusion.

# %%
model = load_model("human")
times = np.linspace(0.0, 14 * 86400.0, 300)
preset = drug_parameters("memantine", "human")
for mg_per_day in (10.0, 20.0, 40.0, 200.0):
    p = {**preset, "dose": mg_per_day * 14 / 70.0, "infusion_duration": 14 * 86400.0}
    df = model.simulate(times, p, ("ketamine_plasma", "nmda_block_int", "madrs_change"))
    print(
        f"{mg_per_day:6.0f} mg/day: plasma {df['ketamine_plasma'].iloc[-1]:.2f} uM, "
        f"interneuron block {df['nmda_block_int'].iloc[-1]:.3f}, MADRS {df['madrs_change'].min():+.1f}"
    )

# %% [markdown]
# ## Repeated intranasal esketamine: twice a week, 56 mg then 84 mg (moving t_dose, no reset)

# %%
rr = roadrunner.RoadRunner(str(sbml_path("human")))  # a separate instance: the cached model stays untouched
esk = drug_parameters("esketamine", "human")
for pid, value in esk.items():
    rr[pid] = value
rr["dose"], rr["dose_intranasal"], rr["t_dose"] = 0.0, 56.0, 0.0
rr.reset()
out = [rr.simulate(0, 3.5 * 86400, 200, selections=["time", "ketamine_plasma", "madrs_change"])]
rr["dose_intranasal"], rr["t_dose"] = 84.0, 3.5 * 86400 + 1.0
out.append(rr.simulate(3.5 * 86400, 14 * 86400, 600, selections=["time", "ketamine_plasma", "madrs_change"]))
series = np.vstack(out)
print(f"best MADRS change over two weeks: {series[:, 2].min():+.1f} points")
