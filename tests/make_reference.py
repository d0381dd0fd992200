"""Write the reference time courses pinned by test_regression.py.

python tests/make_reference.py      (or: make reference)
"""

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.core.simulate import DAY, DEFAULT_SCENARIOS, simulate

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
TIMES = np.unique(np.concatenate([np.arange(0, 6 * 3600, 300.0), np.linspace(6 * 3600, 7 * DAY, 145)]))


def reference_timecourse(species: str) -> pd.DataFrame:
    return simulate(species, DEFAULT_SCENARIOS[species], times=TIMES)


def main() -> None:
    from analysis.cli.commands import write_csv

    for sp in DEFAULT_SCENARIOS:
        print(f"wrote {write_csv(reference_timecourse(sp), REFERENCE_DIR / f'{sp}_default.csv')}")


if __name__ == "__main__":
    main()
