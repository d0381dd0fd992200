"""ketamine-cascade: build, simulate and validate the mechanistic ketamine cascade model.

Public API for notebooks::

    from analysis import load_model, simulate, run_validation
    df = simulate("rat", {"dose": 10})            # tidy time course, index = time (s)
"""

from analysis.model import OBSERVABLES, CascadeModel, ModelError, SimulationError, load_model
from analysis.simulate import simulate
from analysis.validate import run_validation

__all__ = ["OBSERVABLES", "CascadeModel", "ModelError", "SimulationError", "load_model", "simulate", "run_validation"]
__version__ = "0.1.0"
