"""One source of truth: sbml/ is exactly what the build makes from models/, deterministically."""

import pytest

from analysis.core.paths import SBML_DIR, SPECIES
from analysis.core.tables import TableError, read_parameters
from analysis.exchange.build import BuildError, build_all, check_parameter_table


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    out = tmp_path_factory.mktemp("sbml")
    build_all(out)
    return out


def test_build_writes_every_exchange_file(fresh):
    names = {p.name for p in fresh.iterdir()}
    expected = {f"ketamine_cascade_{sp}.{ext}" for sp in SPECIES for ext in ("xml", "md")}
    assert names == expected | {"ketamine_cascade.sedml", "ketamine_cascade.omex"}


@pytest.mark.parametrize(
    "name",
    sorted(f"ketamine_cascade{x}" for x in ("_human.xml", "_rat.xml", "_human.md", "_rat.md", ".sedml", ".omex")),
)
def test_committed_sbml_is_up_to_date(fresh, name):
    assert (fresh / name).read_bytes() == (SBML_DIR / name).read_bytes(), (
        f"sbml/{name} is stale: run `make build` and commit it"
    )


def test_build_is_deterministic(fresh, tmp_path):
    build_all(tmp_path)
    for p in fresh.iterdir():
        assert (tmp_path / p.name).read_bytes() == p.read_bytes()


def test_table_and_model_must_match(species):
    import libsbml

    from analysis.core.paths import sbml_path

    m = libsbml.readSBMLFromFile(str(sbml_path(species))).getModel()
    params = read_parameters(species)
    check_parameter_table(m, params)  # consistent as shipped
    extra = dict(params)
    extra["not_in_model"] = next(iter(params.values()))
    with pytest.raises(BuildError, match="not_in_model"):
        check_parameter_table(m, extra)
    fewer = dict(params)
    fewer.pop("kon_ket")
    with pytest.raises(BuildError, match="kon_ket"):
        check_parameter_table(m, fewer)


def test_malformed_parameter_table_is_rejected(tmp_path):
    src = (SBML_DIR.parent / "models" / "parameters.tsv").read_text()
    bad = src.replace("\nkon_ket\tboth\t0.31\t", "\nkon_ket\tboth\tfast\t")
    assert bad != src
    p = tmp_path / "parameters.tsv"
    p.write_text(bad)
    with pytest.raises(TableError, match="kon_ket"):
        read_parameters("rat", p)
