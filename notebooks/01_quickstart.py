# %% [markdown]
# # 01 Quickstart: load, simulate, plot
#
# The model is shipped as SBML (`sbml/ketamine_cascade_rat.xml`, `..._human.xml`). `load_model` compiles it once
# (libroadrunner JIT) and caches it; `simulate` returns a tidy DataFrame indexed by time (s).

# %%
import numpy as np

from analysis import OBSERVABLES, load_model, simulate
from analysis.plots.cascade import plot_cascade

# %%
rat = simulate("rat", {"dose": 10.0}, t_end=7 * 86400)  # 10 mg/kg i.p., 7 days
rat[["ketamine_brain", "nmda_block_int", "glutamate_rel", "mtorc1_rel", "spine_density_rel"]].describe().T

# %%
fig = plot_cascade(rat, "Rat, 10 mg/kg i.p.")

# %%
human = load_model("human")  # compiled once; reuse it for many runs
times = np.linspace(0, 24 * 3600, 289)
for dose in (0.25, 0.5, 1.0):
    df = human.simulate(times, {"dose": dose, "infusion_duration": 2400})
    print(
        f"{dose} mg/kg: plasma Cmax {df.ketamine_plasma.max():.2f} uM, peak interneuron block "
        f"{df.nmda_block_int.max():.2f}, peak mTORC1 {df.mtorc1_rel.max():.2f}x"
    )
print("contract observables:", ", ".join(OBSERVABLES))
