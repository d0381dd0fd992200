"""Pinned time courses of the default scenarios (tests/reference/*.csv).

Regenerate deliberately, after a reviewed model change, with `make reference`
(python tests/make_reference.py) and commit the new files with the change.
"""

import numpy as np
import pandas as pd
import pytest

from tests.make_reference import REFERENCE_DIR, reference_timecourse


@pytest.mark.parametrize("species", ["human", "rat"])
def test_default_scenario_matches_reference(species):
    ref = pd.read_csv(REFERENCE_DIR / f"{species}_default.csv", index_col="time")
    now = reference_timecourse(species)
    assert list(now.columns) == list(ref.columns)
    assert np.allclose(now.index.values, ref.index.values)
    for col in ref:
        np.testing.assert_allclose(now[col].values, ref[col].values, rtol=1e-5, atol=1e-9, err_msg=col)
