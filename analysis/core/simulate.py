"""Standard simulation scenarios and tidy time courses."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.core.model import OBSERVABLES, ModelError, load_model

#: Default scenarios of the main job: species -> inputs.
DEFAULT_SCENARIOS = {
    "human": {"dose": 0.5, "infusion_duration": 2400.0},
    "rat": {"dose": 10.0},
}
DAY = 86400.0


def time_grid(
    t_end: float = 7 * DAY, dense_until: float = 6 * 3600.0, dt_dense: float = 60.0, n_sparse: int = 400
) -> np.ndarray:
    """Output times (s): every ``dt_dense`` s up to ``dense_until``, then ``n_sparse`` points to ``t_end``."""
    if not (isinstance(t_end, (int, float)) and math.isfinite(t_end) and t_end > 0):
        raise ModelError(f"the simulated time must be a positive, finite number of seconds, got {t_end!r}")
    dense = np.arange(0.0, min(dense_until, t_end), dt_dense)
    sparse = np.linspace(min(dense_until, t_end), t_end, n_sparse)
    return np.unique(np.concatenate([dense, sparse]))


def simulate(
    species: str = "rat",
    parameters: Mapping[str, object] | None = None,
    t_end: float = 7 * DAY,
    times: Sequence[float] | None = None,
    observables: Sequence[str] = OBSERVABLES,
) -> pd.DataFrame:
    """Simulate one scenario of the shipped model of ``species``.

    ``parameters`` override the model's inputs and parameters (``dose`` in mg/kg,
    ``t_dose`` in s, ...); the default is the species' default scenario.  Times in s.
    Returns a DataFrame indexed by time (s) with one column per observable.
    """
    params = dict(DEFAULT_SCENARIOS.get(species, {}) if parameters is None else parameters)
    grid = time_grid(t_end) if times is None else np.asarray(times, dtype=float)
    return load_model(species).simulate(grid, params, observables)
