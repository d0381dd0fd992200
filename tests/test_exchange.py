"""Exchange files: SED-ML, model reports and the COMBINE archive; tellurium and COPASI run the experiments."""

import shutil
import xml.etree.ElementTree as ET
import zipfile

import libsbml
import numpy as np
import pytest

from analysis import CascadeModel, load_model
from analysis.core.paths import SBML_DIR, SPECIES, sbml_path
from analysis.exchange import write_exchange_files
from analysis.exchange.omex import CITATIONS, CREATOR, LICENSE_URI, OMEX_NAME, archive_entries, write_omex
from analysis.exchange.report import report_markdown
from analysis.exchange.sedml import (
    SEDML_NAME,
    data_generator_id,
    equilibrated_start,
    experiment_observables,
    sbml_file_name,
    sedml_errors,
    standard_experiments,
)
from tests.test_recipe import assert_copasi_matches_roadrunner, relative_differences

SCENARIOS = [sc for exp in standard_experiments() for sc in exp.scenarios]
EXPERIMENT_OF = {sc.id: exp for exp in standard_experiments() for sc in exp.scenarios}
EXCHANGE_FILES = [SEDML_NAME, *(f"ketamine_cascade_{sp}.md" for sp in SPECIES), OMEX_NAME]
MANIFEST_NS = {"m": "http://identifiers.org/combine.specifications/omex-manifest"}


@pytest.fixture(scope="module")
def exchange_dir(tmp_path_factory):
    """Fresh exchange files next to copies of the shipped SBML files."""
    out = tmp_path_factory.mktemp("exchange")
    for sp in SPECIES:
        shutil.copy(sbml_path(sp), out / sbml_file_name(sp))
    written = write_exchange_files(out)
    assert [p.name for p in written] == EXCHANGE_FILES
    return out


def _sbml_value(species, pid):
    return libsbml.readSBMLFromFile(str(sbml_path(species))).getModel().getParameter(pid).getValue()


# -- SED-ML ------------------------------------------------------------------------------------------
def test_sedml_validates(exchange_dir):
    import libsedml

    text = (exchange_dir / SEDML_NAME).read_text()
    assert sedml_errors(text) == []
    doc = libsedml.readSedMLFromString(text)
    assert (doc.getLevel(), doc.getVersion()) == (1, 3)
    assert doc.getNumTasks() == doc.getNumModels() == len(SCENARIOS)
    exps = standard_experiments()
    assert doc.getNumOutputs() == sum(1 + len(experiment_observables(e.scenarios[0].species)) for e in exps)
    sims = {s.getId(): (s.getOutputEndTime(), s.getNumberOfSteps()) for s in doc.getListOfSimulations()}
    assert sims == {e.simulation_id: (e.t_end, e.n_steps) for e in exps}
    assert sims["sim_7d"] == (7 * 86400.0, 7 * 1440) and sims["sim_14d"] == (14 * 86400.0, 14 * 1440)
    for e in exps:  # each task runs its experiment's simulation; human reports include the MADRS readout
        for sc in e.scenarios:
            assert doc.getTask(f"task_{sc.id}").getSimulationReference() == e.simulation_id
            has_madrs = doc.getDataGenerator(data_generator_id(sc.id, "madrs_change")) is not None
            assert has_madrs == (sc.species == "human")


def test_sedml_validator_reports_problems(exchange_dir):
    text = (exchange_dir / SEDML_NAME).read_text()
    broken = text.replace('taskReference="task_rat_ip"', 'taskReference="task_missing"', 1)
    assert any("task_missing" in e for e in sedml_errors(broken))
    assert sedml_errors(text.replace("outputEndTime", "outputEnd", 1))


def test_sedml_changes_are_the_scenario_inputs_that_differ_from_the_sbml(exchange_dir):
    """Inputs only, except for a change of physiology (the Val66Met genotype), which also sets the drug-free state
    the package starts that run from."""
    import libsedml

    doc = libsedml.readSedMLFromFile(str(exchange_dir / SEDML_NAME))
    for sc in SCENARIOS:
        m = doc.getModel(f"model_{sc.id}")
        assert m.getSource() == sbml_file_name(sc.species)
        got = {c.getTarget().split("'")[1]: float(c.getNewValue()) for c in m.getListOfChanges()}
        want = {p: v for p, v in sc.changes.items() if _sbml_value(sc.species, p) != v}
        if sc.id == "rat_val66met":
            sbml = libsbml.readSBMLFromFile(str(sbml_path("rat"))).getModel()
            start = equilibrated_start(load_model("rat"), sc, sbml)
            assert {"syn_prot", "bdnf_vesicle", "spine_baseline", "syn_program"} <= set(start)
            want.update(start)
        assert got == want, sc.id
    assert {sc.id for sc in SCENARIOS} >= {"rat_dose_3", "rat_dose_200", "rat_rapamycin", "rat_val66met"}


# -- tellurium executes the archive's SED-ML -----------------------------------------------------------
@pytest.fixture(scope="module")
def tellurium_run(exchange_dir, tmp_path_factory):
    """Execute the archive with tellurium (reports and plots written with the Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tellurium.sedml import tesedml

    outdir = tmp_path_factory.mktemp("tellurium")
    try:
        with matplotlib.rc_context({"figure.max_open_warning": 0}):  # one figure per plot2D (48)
            results = tesedml.executeCombineArchive(
                str(exchange_dir / OMEX_NAME), createOutputs=True, saveOutputs=True, outputDir=str(outdir)
            )
    finally:
        plt.close("all")
    (result,) = results.values()
    return result["dataGenerators"], outdir


def _tellurium_vs_ours(data, sc, parameters=None):
    exp = EXPERIMENT_OF[sc.id]
    t = np.asarray(data[data_generator_id(sc.id, "time")], dtype=float).ravel()
    assert len(t) == exp.n_steps + 1 and t[-1] == exp.t_end
    ours = load_model(sc.species).simulate(
        t, dict(sc.changes) if parameters is None else parameters, experiment_observables(sc.species)
    )
    theirs = {obs: np.asarray(data[data_generator_id(sc.id, obs)], dtype=float).ravel() for obs in ours}
    return relative_differences(theirs, ours)


def test_tellurium_writes_every_report_and_plot(tellurium_run):
    _, outdir = tellurium_run
    names = {p.name for p in outdir.iterdir()}
    exps = standard_experiments()
    assert sum(n.endswith(".csv") for n in names) == len(exps)
    n_plots = sum(len(experiment_observables(e.scenarios[0].species)) for e in exps)
    assert sum(n.endswith(".pdf") for n in names) == n_plots


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda sc: sc.id)
def test_tellurium_reproduces_our_time_courses(tellurium_run, sc):
    """Every standard experiment, including the rat scenarios whose inputs differ from the SBML's.

    (tellurium's SED-ML runner re-applies t = 0 events after reloading the changed model; the rat
    i.p. event sets the depot rather than adding to it, so the dose is still given once.)
    """
    rel = _tellurium_vs_ours(tellurium_run[0], sc)
    assert max(rel.values()) < 1e-4, rel
    assert {"ketamine_plasma", "spine_density_rel"} <= set(rel)
    assert ("madrs_change" in rel) == (sc.species == "human")


# -- COPASI runs the standard experiments --------------------------------------------------------------
def _unique_scenarios():
    seen, out = set(), []
    for sc in SCENARIOS:
        key = (sc.species, tuple(sorted(sc.changes.items())))
        if key not in seen:
            seen.add(key)
            out.append(sc)
    return out


@pytest.fixture(scope="module")
def tight_models():
    """Uncached models whose relative CVODE tolerance equals COPASI's in the comparison (1e-9; absolute: the
    package's per-state tolerances, 1e-12 of each state's scale).

    At libroadrunner's default relative tolerance (1e-6) a state that inhibition drives to ~1e-4 of its
    baseline (mTORC1 under rapamycin) is off by ~1e-6 absolute, which is 1e-3 of the comparison floor.
    """
    models = {}
    for sp in SPECIES:
        m = CascadeModel(sbml_path(sp))
        m.rr.integrator.relative_tolerance = 1e-9
        # the package's per-state absolute tolerances (1e-12 of each state's drug-free magnitude) stay: a scalar 1e-12
        # makes CVODE's error test fail right after a dose given at t = 0 from a re-equilibrated state (v2.1, Val66Met)
        models[sp] = m
    return models


@pytest.mark.parametrize("t_dose", [0.0, 3600.0])
@pytest.mark.parametrize("sc", _unique_scenarios(), ids=lambda sc: sc.id)
def test_copasi_runs_standard_experiments(sc, t_dose, tight_models):
    """Each scenario as the SED-ML gives it: the inputs, and for a change of physiology (Val66Met) also the
    drug-free state the package starts from."""
    model = tight_models[sc.species]
    start = equilibrated_start(model, sc, libsbml.readSBMLFromFile(str(sbml_path(sc.species))).getModel())
    assert (sc.id == "rat_val66met") == bool(start)
    assert_copasi_matches_roadrunner(sc.species, {**sc.changes, "t_dose": t_dose}, model=model, state=start)


# -- COMBINE archive ------------------------------------------------------------------------------------
def test_omex_contents(exchange_dir):
    path = exchange_dir / OMEX_NAME
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        members = {n: zf.read(n) for n in names}
    expected = ["manifest.xml", "metadata.rdf", *(e.location for e in archive_entries())]
    assert names == expected
    for sp in SPECIES:
        assert members[sbml_file_name(sp)] == (exchange_dir / sbml_file_name(sp)).read_bytes()
    assert members[SEDML_NAME] == (exchange_dir / SEDML_NAME).read_bytes()
    manifest = ET.fromstring(members["manifest.xml"])
    content = {c.get("location"): c for c in manifest.findall("m:content", MANIFEST_NS)}
    assert set(content) == {".", *(f"./{n}" for n in names)}
    assert [loc for loc, c in content.items() if c.get("master") == "true"] == [f"./{SEDML_NAME}"]
    rdf = members["metadata.rdf"].decode()
    ET.fromstring(rdf)  # well-formed
    assert CREATOR in rdf and LICENSE_URI in rdf
    for uri in CITATIONS:
        assert f'rdf:about="{uri}"' in rdf
    for needle in ("pubmed:19371579", "10.1126/science.1190287", "10.1038/nature10130", "JNEUROSCI.17-08-02921.1997"):
        assert needle in rdf
    assert "ALN.0000000000003577" in rdf
    for taxon in ("taxonomy:10116", "taxonomy:9606"):  # each SBML file's taxon
        assert f'<bqbiol:hasTaxon rdf:resource="https://identifiers.org/{taxon}"/>' in rdf
    assert b"tellurium" in members["README.md"]


def test_libcombine_reads_the_archive(exchange_dir):
    import libcombine

    archive = libcombine.CombineArchive()
    try:
        assert archive.initializeFromArchive(str(exchange_dir / OMEX_NAME))
        assert archive.getMasterFile().getLocation() == f"./{SEDML_NAME}"
        sbml = [
            e.getLocation() for e in map(archive.getEntry, range(archive.getNumEntries())) if "sbml" in e.getFormat()
        ]
        assert sbml == [f"./{sbml_file_name(sp)}" for sp in SPECIES]
    finally:
        archive.cleanUp()


def test_omex_is_byte_identical_when_rebuilt(exchange_dir, tmp_path):
    first = (exchange_dir / OMEX_NAME).read_bytes()
    for name in [sbml_file_name(sp) for sp in SPECIES] + EXCHANGE_FILES[:-1]:
        shutil.copy(exchange_dir / name, tmp_path / name)  # new files, new modification times
    rebuilt = write_exchange_files(tmp_path)
    assert rebuilt[-1].read_bytes() == first
    for p in rebuilt[:-1]:
        assert p.read_bytes() == (exchange_dir / p.name).read_bytes()


def test_omex_missing_input_is_reported_and_nothing_written(tmp_path):
    with pytest.raises(FileNotFoundError, match="ketamine_cascade_human.xml"):
        write_omex(tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", EXCHANGE_FILES)
def test_committed_exchange_files_are_up_to_date(exchange_dir, name):
    assert (SBML_DIR / name).read_bytes() == (exchange_dir / name).read_bytes(), (
        f"sbml/{name} is stale: run `make build` and commit it"
    )


# -- model report ---------------------------------------------------------------------------------------
def test_report_mentions_every_element(species):
    text = report_markdown(sbml_path(species))
    model = libsbml.readSBMLFromFile(str(sbml_path(species))).getModel()
    ids = [r.getId() for r in model.getListOfReactions()] + [p.getId() for p in model.getListOfParameters()]
    ids += [s.getId() for s in model.getListOfSpecies()] + [e.getId() for e in model.getListOfEvents()]
    missing = [i for i in ids if f"`{i}`" not in text]
    assert missing == []
    for s in model.getListOfSpecies():
        assert f"d[{s.getId()}]/dt = " in text
    for r in model.getListOfRules():
        prefix = f"d{r.getVariable()}/dt = " if r.isRate() else f"{r.getVariable()} = "
        assert prefix in text
    assert "PMID 19371579" in text  # kon_ket's source, from the SBML notes
    assert "https://identifiers.org/CHEBI:6121" in text
    # every parameter row has a value: rule-set parameters show their drug-free value (the contract's *_rel are 1)
    section = text.split("## Parameters", 1)[1].split("\n## ", 1)[0]
    values = {row.split("|")[1].strip(" `"): row.split("|")[2].strip() for row in section.splitlines()[6:]}
    assert [pid for pid, v in values.items() if not v] == []
    assert float(values["glutamate_rel"]) == pytest.approx(1.0) and float(values["spine_density_rel"]) == 1.0


AMICI_MISSING = "AMICI is optional: pip install '.[amici]' (needs cmake, a C++ compiler)"


def _amici_model(species: str, name: str, folder, **import_options):
    """The model AMICI compiles from the shipped SBML (optional dependency; ~30-45 s to compile)."""
    amici = pytest.importorskip("amici", reason=AMICI_MISSING)
    amici.SbmlImporter(str(sbml_path(species))).sbml2amici(name, str(folder), verbose=False, **import_options)
    return amici.import_model_module(name, str(folder)).get_model()


def _amici_solver(model, rtol: float, atol: float):
    solver = model.create_solver()
    solver.set_relative_tolerance(rtol)
    solver.set_absolute_tolerance(atol)
    solver.set_max_steps(10**6)
    return solver


def test_amici_compiles_the_model_and_reproduces_roadrunner(species, tmp_path_factory):
    """AMICI (optional: ``pip install '.[amici]'``, needs cmake and a C++ compiler; ~30-45 s to compile) imports the
    shipped SBML, fires the dose event at t = 0 and gives the contract time courses of libroadrunner."""
    model = _amici_model(species, f"ketamine_{species}", tmp_path_factory.mktemp(f"amici_{species}"))
    import amici.sim.sundials as amici_sim
    import roadrunner

    from analysis.core.model import OBSERVABLES
    from analysis.core.simulate import DEFAULT_SCENARIOS

    scenario = DEFAULT_SCENARIOS[species]
    for pid, value in scenario.items():
        model.set_free_parameter_by_id(pid, value)
    times = np.concatenate([np.linspace(300.0, 6 * 3600.0, 72), np.linspace(7 * 3600.0, 7 * 86400.0, 160)])
    model.set_timepoints(times)
    rdata = amici_sim.run_simulation(model, _amici_solver(model, 1e-8, 1e-12))
    assert rdata.status == 0

    rr = roadrunner.RoadRunner(str(sbml_path(species)))
    rr.integrator.relative_tolerance, rr.integrator.absolute_tolerance = 1e-10, 1e-14
    for pid, value in scenario.items():
        rr[pid] = value
    rr.reset()
    expected = rr.simulate(times=np.concatenate([[0.0], times]), selections=list(OBSERVABLES))[1:]
    expressions, states = list(model.get_expression_ids()), list(model.get_state_ids())
    for j, obs in enumerate(OBSERVABLES):
        got = (
            np.asarray(rdata.w)[:, expressions.index(obs)]
            if obs in expressions
            else np.asarray(rdata.x)[:, states.index(obs)]
        )
        scale = max(np.ptp(expected[:, j]), 1e-9)
        assert np.max(np.abs(got - expected[:, j])) / scale < 1e-5, obs


def test_petab_problem_runs_on_amici_as_on_libroadrunner(tmp_path_factory):
    """pyPESTO's default PEtab route (AMICI; optional, ~30 s to compile) loads the human problem and gives the
    negative log-posterior of the package's libroadrunner objective at the nominal parameters.  Until the build wrote
    the ``*_baseline`` values as numbers, libpetab's parameter mapping stopped on their initial assignments."""
    pytest.importorskip("amici", reason=AMICI_MISSING)
    import pypesto.petab

    from analysis.calibration.fit import pypesto_problem
    from analysis.core.paths import MODELS

    importer = pypesto.petab.PetabImporter.from_yaml(
        str(MODELS / "petab" / "human" / "problem.yaml"),
        output_folder=str(tmp_path_factory.mktemp("amici_petab")),
        model_name="ketamine_human_petab",
    )
    x = np.asarray(importer.petab_problem.x_nominal_free_scaled, dtype=float)
    amici_value = importer.create_problem().objective(x)
    roadrunner_value = pypesto_problem("human")[0].objective(x)
    assert np.isfinite(amici_value)
    assert amici_value == pytest.approx(roadrunner_value, rel=1e-6)


def test_amici_forward_sensitivities_match_the_package_finite_differences(tmp_path_factory):
    """AMICI's forward sensitivities (exact through the assignment rules) against the package's finite differences
    on the rat file, 10 mg/kg, no pre-equilibration (optional: skipped without AMICI; ~30 s to compile)."""
    pytest.importorskip("amici", reason=AMICI_MISSING)
    import amici.sim.sundials as amici_sim
    from amici.importers.utils import MeasurementChannel

    from analysis.analyses.sensitivity import fd_timecourse_sensitivities

    observables = ["glutamate_rel", "mtorc1_rel", "synaptic_proteins_rel", "spine_density_rel"]
    parameters = ["kon_ket", "koff_ket", "k_sp_translation", "ka_ip"]
    times = np.array([1.0, 3.0, 6.0, 24.0, 72.0]) * 3600.0
    channels = [MeasurementChannel(id_=f"y_{o}", name=o, formula=o) for o in observables]
    model = _amici_model("rat", "ketamine_rat_sens", tmp_path_factory.mktemp("amici_sens"), observation_model=channels)
    model.set_free_parameter_by_id("dose", 10.0)
    model.set_timepoints(times)
    free = list(model.get_free_parameter_ids())
    model.set_parameter_list([free.index(p) for p in parameters])
    solver = _amici_solver(model, 1e-10, 1e-14)
    solver.set_sensitivity_order(amici_sim.SensitivityOrder.first)
    solver.set_sensitivity_method(amici_sim.SensitivityMethod.forward)
    rdata = amici_sim.run_simulation(model, solver)
    assert rdata.status == 0
    values = np.array([model.get_free_parameter_by_id(p) for p in parameters])
    exact = np.asarray(rdata.sy) * values[None, :, None] / np.asarray(rdata.y)[:, None, :]  # time x parameter x obs

    fd = fd_timecourse_sensitivities("rat", parameters, {"dose": 10.0}, observables, times, 1e-4, equilibrate=False)
    for j, obs in enumerate(observables):
        for k, par in enumerate(parameters):
            assert np.max(np.abs(fd[(obs, par)].values - exact[:, k, j])) < 5e-3, (obs, par)
    # synaptic-protein translation reaches glutamate only through the synapses that new spines add (model v2.1; v2
    # had no path): negligible at 1 h, growing over days as spines form
    via_spines = np.abs(exact[:, parameters.index("k_sp_translation"), 0])
    assert via_spines[0] < 1e-3 < via_spines[-1] and np.all(np.diff(via_spines) > 0)
