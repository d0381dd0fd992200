"""Model-v3 prototype: can new spines carry excitatory drive?  (issue 8, item 3; not part of the shipped model)

Builds rat variants of the model from a temporary copy of ``models/`` and ``analysis/`` and reports, for each:

* the critical extra share of the pyramidal AMPA + NMDA conductances that may scale with spine density before the
  drug-free state loses stability (``analysis.analyses.robustness.synapse_drive_loop``; for a variant that already
  has a share w built in, the limit on the total share is w plus this extra);
* the spine density after single i.p. doses (1-200 mg/kg), peak and at 7 d and 6 weeks.

Variant edits (text substitutions in the copy):

* ``actuator="scaling"``: the pyramidal homeostat acts only by synaptic scaling, in both directions
  (``homeo_syn_pyr = homeo_scale``, no threshold shift); shipped: threshold shift both ways + down-scaling;
* ``induced_share=s, n_tx=n, tx_frac0=f``: synaptogenic programme = constitutive share 1 - s + an induced share s,
  switched on by TrkB-BDNF with Hill n from a foot at f of its maximum (shipped: s = 1, n = 2, f = 0.05);
* ``spine_share=w``: a share w of the pyramidal AMPA and NMDA conductances scales with spine density.

Run from the repository root (about 2 s a variant):  ``.venv/bin/python docs/model_v3/synapse_loop_variants.py``
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _design() -> tuple[float, float]:
    """trkb_bdnf at the drug-free state (uM, from the designed baseline) and the programme's relaxation rate (1/s,
    from the parameter table), read from the sources rather than copied."""
    from analysis.core.tables import read_parameters

    spec = importlib.util.spec_from_file_location("derive", ROOT / "models" / "derive_baseline_parameters.py")
    derive = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(derive)
    trkb_bdnf0 = derive.DESIGN["trkb_occ"] * derive.DESIGN["trkb_tot"]
    return trkb_bdnf0, read_parameters("rat")["k_program_decay"].value


VARIANTS = {
    "shipped": {},
    "scaling actuator": {"actuator": "scaling"},
    "scaling actuator, tau 1 d": {"actuator": "scaling", "tau_homeostasis": 86400},
    "constitutive programme (s 0.1, n 3)": {"induced_share": 0.1, "n_tx": 3, "tx_frac0": 1 / 150},
    "scaling + constitutive": {"actuator": "scaling", "induced_share": 0.1, "n_tx": 3, "tx_frac0": 1 / 150},
    "scaling, spines carry w 0.3": {"actuator": "scaling", "spine_share": 0.3},
    "scaling + constitutive, w 0.5": {
        "actuator": "scaling", "induced_share": 0.1, "n_tx": 3, "tx_frac0": 1 / 150, "spine_share": 0.5,
    },
    "scaling + constitutive, w 0.9": {
        "actuator": "scaling", "induced_share": 0.1, "n_tx": 3, "tx_frac0": 1 / 150, "spine_share": 0.9,
    },
}  # fmt: skip

REPORT = textwrap.dedent(
    """
    import numpy as np
    from analysis.analyses.robustness import synapse_drive_loop
    from analysis.core.model import CascadeModel
    from analysis.exchange.build import build_sbml

    open("rat.xml", "w").write(build_sbml("rat"))
    m = CascadeModel("rat.xml")
    crit = [synapse_drive_loop(m, c, weights=np.linspace(0, 2, 41))["critical_weight"]
            for c in ("spine_density_rel", "synaptic_proteins_rel")]
    print(f"  critical extra share: spines {crit[0]:.3f}, bound scaffold {crit[1]:.3f}")
    day = 86400.0
    tt = np.linspace(0, 42 * day, 4201)
    for dose in (1, 3, 10, 20, 50, 200):
        try:
            s = m.simulate(tt, {"dose": dose}, observables=["spine_density_rel"])["spine_density_rel"].to_numpy()
            print(f"  {dose:5g} mg/kg: spines peak {s.max():.3f} (day {tt[s.argmax()] / day:.1f}), "
                  f"7 d {s[700]:.3f}, 6 wk {s[-1]:.3f}")
        except Exception as exc:
            print(f"  {dose:5g} mg/kg: solver failed ({str(exc)[-90:]})")
    """
)


def _sub(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if old not in text:
        raise RuntimeError(f"{path.name}: {old!r} not found (the model sources changed; update the variant edits)")
    path.write_text(text.replace(old, new, 1))


def _set_rows(table: Path, values: dict[str, tuple[float, str]]) -> None:
    """Set (or append) parameter rows; appended rows are marked as prototype values."""
    lines = table.read_text().rstrip("\n").split("\n")
    seen = set()
    for i, line in enumerate(lines[1:], 1):
        f = line.split("\t")
        if f[0] in values:
            v = values[f[0]][0]
            f[2], f[5], f[6] = f"{v:.6g}", f"{min(float(f[5]), v):.6g}", f"{max(float(f[6]), v):.6g}"
            lines[i] = "\t".join(f)
            seen.add(f[0])
    for pid, (v, unit) in values.items():
        if pid not in seen:
            lines.append("\t".join([pid, "both", f"{v:.6g}", unit, "SBO:0000002", f"{v:.6g}", f"{v:.6g}",
                                    "assumed", "model-v3 prototype", pid]))  # fmt: skip
    table.write_text("\n".join(lines) + "\n")


def apply_variant(
    models: Path,
    actuator: str = "shipped",
    induced_share: float = 1.0,
    n_tx: float = 2,
    tx_frac0: float = 0.05,
    spine_share: float = 0.0,
    tau_homeostasis: float | None = None,
) -> None:
    """Edit the copied model sources in ``models`` into one variant (see the module docstring)."""
    rows: dict[str, tuple[float, str]] = {}
    if actuator == "scaling":
        h = models / "homeostasis.ant"
        text = h.read_text().split("\n")
        text = [("homeo_syn_pyr := homeo_scale" if ln.startswith("homeo_syn_pyr :=") else ln) for ln in text]
        text = [("homeo_shift_pyr := 0 * v_slope_pyr" if ln.startswith("homeo_shift_pyr :=") else ln) for ln in text]
        h.write_text("\n".join(text))
    if induced_share != 1.0 or n_tx != 2 or tx_frac0 != 0.05:
        _sub(models / "synaptogenesis.ant",
             "syn_program' = k_program_induction * tx_act",
             "syn_program' = k_program_decay * (1 - program_induced_share) + k_program_induction * tx_act")  # fmt: skip
        rows["program_induced_share"] = (induced_share, "dimensionless")
        rows["n_tx_trkb"] = (n_tx, "dimensionless")
        trkb_bdnf0, k_program_decay = _design()
        rows["k_tx_trkb"] = (float(f"{trkb_bdnf0 * ((1 - tx_frac0) / tx_frac0) ** (1 / n_tx):.5g}"), "uM")
        rows["k_program_induction"] = (float(f"{induced_share * k_program_decay / tx_frac0:.5g}"), "per_second")
    if spine_share:
        c = models / "circuit.ant"
        for cur in ("ampa", "nmda"):
            _sub(c, f"i_{cur}_pyr := g_{cur}_pyr * homeo_syn_pyr *",
                 f"i_{cur}_pyr := g_{cur}_pyr * homeo_syn_pyr * spine_synapse_factor *")  # fmt: skip
        c.write_text(c.read_text() + "\nspine_synapse_factor := 1 - spine_synapse_share + spine_synapse_share * "
                     "spine_density / spine_density_ref\n")  # fmt: skip
        with open(models / "annotations.tsv", "a") as f:
            f.write("spine_synapse_factor\tvariable\tdimensionless\tSBO:0000002\tisVersionOf GO:0060076\t"
                    "pyramidal excitatory drive relative to the drug-free spine count\n")  # fmt: skip
        rows["spine_synapse_share"] = (spine_share, "dimensionless")
        rows["spine_density_ref"] = (1.0, "per_um")
    if tau_homeostasis is not None:
        rows["tau_homeostasis"] = (tau_homeostasis, "second")
    if rows:
        _set_rows(models / "parameters.tsv", rows)


def main() -> int:
    for name, variant in VARIANTS.items():
        print(name, variant or "", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            shutil.copytree(ROOT / "models", tmp / "models")
            shutil.copytree(ROOT / "analysis", tmp / "analysis")
            apply_variant(tmp / "models", **variant)
            env = dict(os.environ, PYTHONPATH=str(tmp))
            subprocess.run([sys.executable, "-c", REPORT], cwd=tmp, env=env, check=False,
                           stderr=subprocess.DEVNULL)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
