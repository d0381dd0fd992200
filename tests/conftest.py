import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

from analysis import load_model  # noqa: E402
from analysis.core.paths import SPECIES  # noqa: E402


@pytest.fixture(scope="session", params=SPECIES)
def species(request):
    return request.param


@pytest.fixture(scope="session")
def model(species):
    return load_model(species)
