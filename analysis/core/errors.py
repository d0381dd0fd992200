"""The package's error types, in one place (every module raises these, the CLI turns them into one line)."""

import re

_PARAMETERS = re.compile(r" with parameters \{[^}]*\}")


def without_parameters(message: str) -> str:
    """A simulation error's message without its ``with parameters {...}`` part: for a failure row or a summary
    that already names the set (a whole-box set has ~100 parameters)."""
    return _PARAMETERS.sub("", message)


class ModelError(ValueError):
    """Bad model file or bad input (unknown parameter, invalid value)."""


class SimulationError(RuntimeError):
    """The ODE solver failed; the message names the inputs of the failed run."""


class DrugFreeStateError(SimulationError):
    """A parameter set has no physiological, stable drug-free steady state; the message says which check failed."""


class SimulationTimeout(SimulationError):
    """One simulation exceeded its time limit (a pathological parameter set)."""


class StepBudgetError(SimulationTimeout):
    """Under a time limit, one output interval needed more CVODE steps than its budget even at the A-stable BDF
    order (a circuit that bursts or runs away under the drug): stops the run where the wall clock could not."""


class RunawayError(SimulationError):
    """A run ended on the runaway (seizure-like) branch of the circuit instead of a physiological state."""
