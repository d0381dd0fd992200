"""ketamine-cascade: build, simulate and validate the mechanistic ketamine cascade model.

Public API (see README): :func:`build_all`, :func:`load_model`, :func:`simulate`,
:func:`run_validation`.
"""

from analysis.build import build_all, build_sbml




__all__ = ["build_all", "build_sbml", "CascadeModel", "load_model", "simulate", "run_validation"]
__version__ = "0.1.0"
