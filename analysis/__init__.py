"""ketamine-cascade: build, simulate and validate the mechanistic ketamine cascade model.

Layout (imports point down this list only)::

    analysis/core/       model (load once, simulate safely), steady_state, simulate, tables, paths, io, errors
    analysis/exchange/   build (Antimony -> SBML), sedml, omex, report
    analysis/engine/     ensemble (Dask), store (results folders), population
    analysis/analyses/   readouts, sensitivity, global_sensitivity, doseresponse, validate, robustness
    analysis/plots/      one matplotlib style: cascade and analysis figures
    analysis/cli/        argparse front ends only (``ketamine-cascade``)

Public API for notebooks::

    from analysis import load_model, simulate, run_validation
    df = simulate("rat", {"dose": 10})            # tidy time course, index = time (s)
"""

from analysis.core.model import OBSERVABLES, CascadeModel, ModelError, SimulationError, load_model
from analysis.core.simulate import simulate

__all__ = ["OBSERVABLES", "CascadeModel", "ModelError", "SimulationError", "load_model", "simulate", "run_validation"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """``run_validation`` is imported on first use: Dask workers import this package and never need it."""
    if name == "run_validation":
        from analysis.analyses.validate import run_validation

        return run_validation
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
