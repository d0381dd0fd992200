"""Notebooks: paired text (jupytext percent .py, the source) and output-free .ipynb; each runs top to bottom.

Edit the .py file, then `make notebooks` regenerates the .ipynb (no outputs stored).
"""

from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.py"))


@pytest.mark.parametrize("source", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_paired_without_outputs(source):
    ipynb = source.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} missing: run `make notebooks`"
    stored = nbformat.read(ipynb, as_version=4)
    assert all(not c.get("outputs") for c in stored.cells if c.cell_type == "code"), "outputs stored"
    expected = jupytext.read(source)
    assert [c.source for c in stored.cells] == [c.source for c in expected.cells], (
        f"{ipynb.name} out of sync with {source.name}: run `make notebooks`"
    )


@pytest.mark.parametrize("source", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(source, tmp_path):
    nb = jupytext.read(source)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
