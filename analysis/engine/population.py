"""Virtual populations: parameter sets sampled from the table's plausible bounds.

Distributions (documented in README, "Virtual populations"):

* positive parameters: log-normal with median = the table value, truncated to the plausible
  bounds [lower, upper]; the log-space standard deviation is set so that the wider side of the
  bounds lies at 1.96 sigma (i.e. the bounds are ~95 % limits of the untruncated distribution);
* parameters whose bounds include zero or negative values (potentials, currents): normal on the
  linear scale, same rule, truncated to the bounds.

Sampling is seeded (numpy Generator) and reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from analysis.core.model import INPUTS, ModelError
from analysis.core.tables import Parameter, parameter_bounds, read_parameters
from analysis.engine.ensemble import EnsembleResult
from analysis.engine.store import completed_run, read_ensemble_cube

#: Never sampled: dosing inputs and interventions (the model's inputs except body weight, which is a
#: physiological covariate), and bookkeeping constants.
NOT_SAMPLED = (INPUTS - {"body_weight"}) | {"mw_ketamine", "pump_volume"}


def default_population_parameters(species: str) -> list[str]:
    """Parameters varied by default: the measured and derived ones (literature variability) with a
    non-degenerate plausible range, except dosing inputs, interventions and bookkeeping constants.

    The 'assumed' lumped circuit and signalling constants are left at their values: they were
    solved jointly for one designed drug-free operating point (models/derive_baseline_parameters.py)
    and varying them independently mostly breaks that balance (runaway or oscillating circuits)
    rather than describing between-subject variability.  Pass ``parameters=`` to vary any set.
    """
    return [
        pid
        for pid, p in read_parameters(species).items()
        if pid not in NOT_SAMPLED and p.lower < p.upper and p.evidence in ("measured", "derived")
    ]


def _truncated(p: Parameter, n: int, rng: np.random.Generator) -> np.ndarray:
    if p.lower > 0:
        centre, lo, hi = np.log(p.value), np.log(p.lower), np.log(p.upper)
        transform = np.exp
    else:
        centre, lo, hi = p.value, p.lower, p.upper
        transform = None
    sigma = max(hi - centre, centre - lo) / 1.96
    if sigma <= 0:
        return np.full(n, p.value)
    # Inverse-CDF draw of the truncated normal: the bounds lie within 1.96 sigma of the centre, far from
    # the tails where differences of ndtr lose precision. Same draws as scipy.stats.truncnorm.rvs with this
    # generator (to ~1e-15), without importing scipy.stats (~0.45 s for the ensemble and population commands).
    p_lo, p_hi = ndtr((lo - centre) / sigma), ndtr((hi - centre) / sigma)
    x = centre + sigma * ndtri(p_lo + rng.uniform(size=n) * (p_hi - p_lo))
    return transform(x) if transform else x


def sample_population(
    species: str,
    n: int,
    seed: int = 0,
    parameters: Sequence[str] | None = None,
    fixed: dict[str, float] | None = None,
) -> pd.DataFrame:
    """``n`` virtual subjects: one row each, one column per sampled parameter (table units).

    ``fixed`` adds constant columns (e.g. ``{"dose": 10}``).
    """
    if n < 1:
        raise ModelError(f"the number of samples must be >= 1, got {n}")
    table = read_parameters(species)
    names = list(parameters) if parameters is not None else default_population_parameters(species)
    parameter_bounds(species, names)  # raises for unknown ids and for bounds with lower >= upper
    rng = np.random.default_rng(seed)
    data = {p: _truncated(table[p], n, rng) for p in names}
    for key, val in (fixed or {}).items():
        data[key] = np.full(n, float(val))
    df = pd.DataFrame(data, index=pd.RangeIndex(n, name="sample"))
    return df


def percentile_bands(
    result: EnsembleResult | pd.DataFrame, percentiles: Sequence[float] = (5, 25, 50, 75, 95)
) -> pd.DataFrame:
    """Percentiles of every observable across samples at each time.

    Returns a DataFrame indexed by (time, percentile) with one column per observable.
    """
    pct = np.asarray(percentiles, dtype=float)
    if isinstance(result, EnsembleResult) and result.data is None:  # streamed to a folder
        return _bands_from_folder(result.path, pct)
    data = result.data if isinstance(result, EnsembleResult) else result
    if data is None or data.empty:
        raise ModelError("no successful simulations to summarise")
    data = data.sort_index()
    times = data.index.get_level_values("time").unique().sort_values()
    n_samples = data.index.get_level_values(0).nunique()
    if n_samples * len(times) != len(data):
        raise ModelError("every sample must have the same output times to compute percentile bands")
    cube = data.to_numpy(dtype=float).reshape(n_samples, len(times), data.shape[1])  # sample x time x observable
    q = np.percentile(cube, pct, axis=0)  # percentile x time x observable (linear interpolation, as pandas)
    return _band_frame(q, times.values, pct, data.columns)


def _bands_from_folder(path, pct: np.ndarray) -> pd.DataFrame:
    """Percentile bands of a run streamed to ``path``, one observable at a time straight from the Parquet parts: the
    client holds one observable's values (10^4 subjects x 560 times: 45 MB), not the whole ensemble."""
    observables = completed_run(path)[0]["observables"]
    per_observable = []
    for observable in observables:
        _, times, _, cube = read_ensemble_cube(path, [observable])
        per_observable.append(np.percentile(cube[:, :, 0], pct, axis=0))  # percentile x time
    return _band_frame(np.stack(per_observable, axis=2), times, pct, list(observables))


def _band_frame(q: np.ndarray, times: np.ndarray, pct: np.ndarray, columns) -> pd.DataFrame:
    """Percentiles ``q`` (percentile x time x observable) as a frame indexed by (time [s], percentile)."""
    index = pd.MultiIndex.from_product([times, pct], names=["time", "percentile"])
    return pd.DataFrame(q.transpose(1, 0, 2).reshape(-1, q.shape[2]), index=index, columns=columns)
