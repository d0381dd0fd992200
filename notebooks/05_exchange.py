# %% [markdown]
# # 05 Exchange: the shipped SBML in COPASI, tellurium and AMICI, and the SED-ML / COMBINE archive
#
# Everything here uses only the files in `sbml/` that other modellers download:
# `ketamine_cascade_{human,rat}.xml` (SBML L3V2), `ketamine_cascade.sedml` and `ketamine_cascade.omex`.
# The dosing recipe (README): set the inputs, reset, simulate.

# %%
import matplotlib

matplotlib.use("Agg")
import basico
import numpy as np
import pandas as pd
import tellurium as te

from analysis import simulate
from analysis.core.paths import SBML_DIR

rat_sbml = str(SBML_DIR / "ketamine_cascade_rat.xml")
obs = ["ketamine_plasma", "glutamate_rel", "mtorc1_rel", "spine_density_rel"]
times = np.linspace(0, 3 * 86400, 433)
ours = simulate("rat", {"dose": 30.0}, times=times, observables=obs)

# %% [markdown]
# ## tellurium (libroadrunner): set inputs -> reset -> simulate

# %%
r = te.loadSBMLModel(rat_sbml)
r["dose"] = 30.0  # mg/kg
r["t_dose"] = 0.0  # s
r.reset()  # a dose due at t = 0 is given here, with the inputs just set
tel = pd.DataFrame(np.asarray(r.simulate(times=times, selections=obs)), index=times, columns=obs)
print(
    "tellurium vs package, max relative difference:", float((abs(tel - ours.values) / abs(ours).clip(1e-9)).max().max())
)

# %% [markdown]
# ## COPASI (basico): parameters are addressed by name (names equal the SBML ids)

# %%
dm = basico.load_model(rat_sbml)
basico.set_parameters(name="dose", initial_value=30.0, model=dm)
tc = basico.run_time_course(start_time=0, duration=3 * 86400, intervals=432, model=dm, use_sbml_id=True)
basico.remove_datamodel(dm)
cop = tc[obs]
print(
    "COPASI vs libroadrunner, max relative difference:",
    float((abs(cop.values - ours.values) / np.maximum(abs(ours.values), 1e-3 * abs(ours.values).max(0))).max()),
)

# %% [markdown]
# ## AMICI (optional): the SBML compiled to C++
#
# `pip install -e '.[amici]'` (needs cmake and a C++ compiler). Parameters are set by id; assignment-rule
# observables are AMICI expressions (`rdata.w`), species are states (`rdata.x`). Skipped when AMICI is absent.

# %%
import importlib.util
import tempfile

if importlib.util.find_spec("amici") is None:
    print("AMICI is not installed here (pip install -e '.[amici]'); skipped")
else:
    import amici
    import amici.sim.sundials as amici_sim

    folder = tempfile.mkdtemp()
    amici.SbmlImporter(rat_sbml).sbml2amici("ketamine_rat", folder, verbose=False)  # ~30 s: SBML -> C++ -> module
    am = amici.import_model_module("ketamine_rat", folder).get_model()
    am.set_free_parameter_by_id("dose", 30.0)  # mg/kg; the t = 0 dose event fires at the start
    am.set_timepoints(times)
    solver = am.create_solver()
    solver.set_relative_tolerance(1e-8)
    solver.set_absolute_tolerance(1e-12)
    rdata = amici_sim.run_simulation(am, solver)
    values = {i: np.asarray(rdata.w)[:, k] for k, i in enumerate(am.get_expression_ids())}
    values |= {i: np.asarray(rdata.x)[:, k] for k, i in enumerate(am.get_state_ids())}
    ami = pd.DataFrame({o: values[o] for o in obs}, index=times)
    print(
        "AMICI vs libroadrunner, max relative difference:",
        float((abs(ami.values - ours.values) / np.maximum(abs(ours.values), 1e-3 * abs(ours.values).max(0))).max()),
    )

# %% [markdown]
# ## The COMBINE archive: tellurium executes its SED-ML (standard experiments)

# %%
from tellurium.sedml import tesedml

results = tesedml.executeCombineArchive(str(SBML_DIR / "ketamine_cascade.omex"), createOutputs=False, saveOutputs=False)
(result,) = results.values()
dg = result["dataGenerators"]
t = np.asarray(dg["dg_rat_ip_time"]).ravel()
spines = np.asarray(dg["dg_rat_ip_spine_density_rel"]).ravel()
ref = simulate("rat", {"dose": 10.0}, times=t, observables=["spine_density_rel"])["spine_density_rel"].values
print(
    f"SED-ML rat i.p. experiment: {len(t)} time points; spine density at 7 d {spines[-1]:.4f} (package: {ref[-1]:.4f})"
)
sorted(k for k in dg if k.endswith("_time"))
