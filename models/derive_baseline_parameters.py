"""Derive the lumped ("assumed") parameters of models/parameters.tsv from a designed drug-free baseline.

Not part of the build.  Many circuit and signalling constants (conductances, f-I curve
midpoints, release and translation rate constants) have no direct measurement; instead
we choose the drug-free operating point (firing rates, membrane potentials, share of
each synaptic current, fractions of active signalling proteins, turnover half-lives)
from the literature and solve for the constants that make it a steady state.  This
script records that derivation.  It rewrites the affected rows of parameters.tsv
(value and source); run it after changing DESIGN or a measured parameter it uses,
then `make build`.

    python models/derive_baseline_parameters.py
"""

import csv
import json
import math
import sys
from pathlib import Path

P = Path(__file__).resolve().parent / "parameters.tsv"
#: The table is plain TSV: no field is quoted (source texts may contain quote characters).
NO_QUOTING = dict(quoting=csv.QUOTE_NONE, quotechar="\x1f")


def load():
    rows = list(csv.DictReader(open(P), delimiter="\t", **NO_QUOTING))
    return rows


def save(rows):
    with open(P, "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0].keys()), delimiter="\t", lineterminator="\n", **NO_QUOTING)
        w.writeheader()
        w.writerows(rows)


def get(rows, pid, model="both"):
    for r in rows:
        if r["id"] == pid and r["model"] in (model, "both"):
            return float(r["value"])
    raise KeyError(pid)


def put(rows, pid, val, model="both"):
    for r in rows:
        if r["id"] == pid and r["model"] == model:
            r["evidence"] = "assumed"
            r["source"] = SOURCE
            v = float(f"{val:.4g}")
            r["value"] = repr(v) if abs(v) < 1e-3 or abs(v) >= 1e5 else f"{v:g}"
            lo, hi = float(r["lower"]), float(r["upper"])
            if not lo <= v <= hi:
                r["lower"] = f"{v / 2:.3g}" if v > 0 else f"{2 * v:.3g}"
                r["upper"] = f"{v * 2:.3g}" if v > 0 else f"{v / 2:.3g}"
            return
    raise KeyError(pid)


def cite(rows, pid, text, model="both"):
    """Append the source of a design value to a derived row's source."""
    for r in rows:
        if r["id"] == pid and r["model"] == model:
            r["source"] = f"{SOURCE}; {text}"


GH_SOURCE = (
    "the resting Ih depolarises the cells by 6 mV, as its block by ZD7288 hyperpolarises CA1 pyramidal neurons "
    "by 5.9 mV (Gasparini & DiFrancesco 1997 Pflugers Arch 435:99, DOI 10.1007/s004240050488)"
)


BDNF_POOL_SOURCE = (
    "design: BDNF is stored in dense-core vesicles of the regulated secretory pathway (98 % of neurons, Brigadski et "
    "al. 2005 J Neurosci 25:7601) until released, intracellular half-life 24 h (assumed; no measurement found, and "
    "neurons may also degrade part of it in lysosomes, Evans et al. 2011 J Biol Chem 286:29556), so most BDNF made is "
    "released: a sustained rise of Ca2+ depletes the pool and release returns towards the synthesis rate, while a "
    "surge releases the stored pool (model v2.1; first built in the v3 candidate, docs/model_v3)"
)

BDNF_NEW_SOURCE = (
    "design: newly made BDNF turns over in tens of minutes (half-life 20 min, assumed) and is mostly degraded rather "
    "than sorted into vesicles (neuronal BDNF is synthesised in excess and its level set by sortilin-mediated "
    "trafficking and lysosomal degradation, Evans et al. 2011 J Biol Chem 286:29556, DOI 10.1074/jbc.M111.219675); it "
    "is 40 % of intracellular BDNF, so that a translation burst raises tissue BDNF within 30 min (Autry et al. 2011)"
)


def calibrate(D):
    rows = load()

    def g(pid):
        return get(rows, pid)

    glu0 = D["glu0"]
    occ = g("glycine") / (g("glycine") + g("kd_glycine"))

    def nmda_O(koff, kopen):
        a = g("k_nmda_glu_on") * glu0 * occ
        x = a / koff
        y = kopen / g("k_nmda_close")
        return x * y / (1 + x + x * y)

    O_pyr = nmda_O(g("k_nmda_glu_off_pyr"), g("k_nmda_open_pyr"))
    O_int = nmda_O(g("k_nmda_glu_off_int"), g("k_nmda_open_int"))
    b = g("k_ampa_on") * glu0
    AO = b / (g("k_ampa_off") + g("k_ampa_des"))
    AD = AO * g("k_ampa_des") / g("k_ampa_rec")
    ampa = AO / (1 + AO + AD)
    mg = g("mg_ext")
    d = g("mg_delta")

    def mf(v, k0):
        return 1 / (1 + mg / k0 * math.exp(-d * v))

    VE, VI = D["VE"], D["VI"]
    mfE, mfI = mf(VE, g("mg_k0_pyr")), mf(VI, g("mg_k0_int"))
    E = g("e_exc")
    Eg = g("e_gaba")
    put(rows, "g_ampa_pyr", D["IaE"] / (ampa * (E - VE)))
    put(rows, "g_nmda_pyr", D["InE"] / (O_pyr * mfE * (E - VE)))
    gact = D["rI"] / (D["rI"] + g("k_gaba_rate"))
    put(rows, "g_gaba_pyr", D["IgE"] / (gact * (VE - Eg)))
    put(rows, "i_ext_pyr", D["IxE"])
    IE = D["IaE"] + D["InE"] - D["IgE"] + D["IxE"]
    # v = v_rest + r_in * (I_syn + I_h - I_h(rest)); the resting Ih depolarises the cell by dVh mV
    # (so removing it all hyperpolarises by dVh), i.e. r_in * g_h * (e_h - v_rest) = dVh.
    a, c = VE - g("v_rest_pyr"), g("e_h") - g("v_rest_pyr")
    r_in = a * (1 + D["dVh"] / c) / IE
    put(rows, "r_in_pyr", r_in)
    put(rows, "g_h_pyr", D["dVh"] / (r_in * c))
    cite(rows, "g_h_pyr", GH_SOURCE)
    put(rows, "g_ampa_int", D["IaI"] / (ampa * (E - VI)))
    put(rows, "g_nmda_int", D["InI"] / (O_int * mfI * (E - VI)))
    put(rows, "i_ext_int", D["IxI"])
    II = D["IaI"] + D["InI"] + D["IxI"]
    put(rows, "r_in_int", (VI - g("v_rest_int")) / II)
    # firing follows the membrane potential: rate = rate_max / (1 + exp((v_half - v) / v_slope))
    put(rows, "v_half_pyr", VE + g("v_slope_pyr") * math.log(g("rate_max_pyr") / D["rE"] - 1))
    put(rows, "v_half_int", VI + g("v_slope_int") * math.log(g("rate_max_int") / D["rI"] - 1))
    # glutamate: uptake at glu0 balanced by depressing vesicular release (fraction frel; available
    # resources x0 = 1 / (1 + U tau rE) at the baseline rate) and the non-vesicular source
    up = g("vmax_eaat") * glu0 / (g("km_eaat") + glu0)
    x0 = 1 / (1 + g("u_release") * g("tau_release_recovery") * D["rE"])
    put(rows, "k_glu_release", D["frel"] * up / (g("u_release") * x0 * D["rE"]))
    put(rows, "k_glu_nonvesicular", (1 - D["frel"]) * up)
    # Ca2+: entry split L-type / NMDA / leak at ca0
    ca0 = D["ca0"]
    ent = g("k_ca_extrusion") * ca0
    vd = VE + g("r_dend_pyr") * D["IaE"]
    lt = 1 / (1 + math.exp((g("v_half_ltype") - vd) / g("k_slope_ltype")))
    put(rows, "k_ca_ltype", D["fL"] * ent / lt)
    put(rows, "k_ca_nmda", D["fN"] * ent / D["InE"])
    put(rows, "k_ca_leak", (1 - D["fL"] - D["fN"]) * ent)
    # signalling baselines
    trkb_tot, cplx = D["trkb_tot"], D["trkb_occ"] * D["trkb_tot"]
    ext0 = (g("k_trkb_off") + g("k_trkb_internalisation")) * cplx / (g("k_trkb_on") * (trkb_tot - cplx))
    release = g("k_bdnf_clearance") * ext0 + g("k_trkb_internalisation") * cplx
    h = (ca0 / g("k_ca_bdnf")) ** g("n_ca_bdnf")
    h = h / (1 + h)
    put(rows, "k_bdnf_release", release / (h * D["bdnf_ves0"]))
    akt_frac = D["akt_frac"]
    r_ph = g("k_akt_dephos") * akt_frac / (1 - akt_frac)
    put(rows, "k_akt_trkb", D["akt_trkb_share"] * r_ph / cplx)
    put(rows, "k_akt_basal", (1 - D["akt_trkb_share"]) * r_ph)
    aktp0 = akt_frac * D["akt_tot"]
    m_frac = D["mtor_frac"]
    r_m = g("k_mtorc1_inact") * m_frac / (1 - m_frac)
    put(rows, "k_mtorc1_akt", D["mtor_akt_share"] * r_m / aktp0)
    put(rows, "k_mtorc1_basal", (1 - D["mtor_akt_share"]) * r_m)
    mp0 = m_frac * D["mtor_tot"]
    e_frac = D["eef2p_frac"]
    act = 1 / (1 + mp0 / g("ki_mtorc1_eef2k"))
    put(rows, "k_eef2k", g("k_eef2_dephos") * e_frac / ((1 - e_frac) * act))
    eef2 = (1 - e_frac) * D["eef2_tot"]
    tl = g("translation_basal") + m_frac
    put(rows, "k_bdnf_degradation", math.log(2) / D["bdnf_thalf"])
    cite(rows, "k_bdnf_degradation", BDNF_POOL_SOURCE)
    # newly made BDNF: new0 = a share bdnf_new_share of intracellular BDNF; it is degraded with half-life
    # bdnf_new_thalf or sorted into vesicles, which must supply release and the vesicles' own slow loss
    sorted_flux = g("k_bdnf_degradation") * D["bdnf_ves0"] + release
    new0 = D["bdnf_new_share"] / (1 - D["bdnf_new_share"]) * D["bdnf_ves0"]
    put(rows, "k_bdnf_new_degradation", math.log(2) / D["bdnf_new_thalf"])
    cite(rows, "k_bdnf_new_degradation", BDNF_NEW_SOURCE)
    put(rows, "k_bdnf_sorting", sorted_flux / new0)
    made = (g("k_bdnf_new_degradation") + g("k_bdnf_sorting")) * new0
    put(rows, "k_bdnf_translation", made / (eef2 * (g("bdnf_translation_basal") + m_frac)))
    put(rows, "k_sp_degradation", math.log(2) / D["sp_thalf"])
    put(rows, "k_sp_translation", g("k_sp_degradation") * D["sp0"] / (eef2 * tl))
    n = g("n_sp_spine")
    put(rows, "k_sp_spine", ((1 - D["drive0"]) / D["drive0"]) ** (1 / n))
    # synaptogenic transcription: TrkB activation at the baseline complex level cplx gives
    # tx_frac0 of the induced programme's maximal activity (its foot); the programme sits at 1
    # drug-free, of which the share program_induced_share is induced and the rest constitutive
    n_tx = g("n_tx_trkb")
    put(rows, "k_tx_trkb", cplx * ((1 - D["tx_frac0"]) / D["tx_frac0"]) ** (1 / n_tx))
    put(rows, "k_program_induction", g("k_program_decay") / D["tx_frac0"])
    # spines, in vivo turnover: `spine_turnover` of the density forms (and is lost) per day;
    # a fraction `new_transient_frac` of the new spines is eliminated before it captures
    # PSD-95; captured ones (new persistent spines) are lost with k_spine_elim_new or
    # consolidate into persistent spines, which are lost with k_spine_elim_stable.
    day = 86400.0
    formed = D["spine_turnover"] / day  # new spines per um per s at density 1
    fT = D["new_transient_frac"]
    kT, kP, kS = g("k_spine_elim_transient"), g("k_spine_elim_new"), g("k_spine_elim_stable")
    T0 = fT * formed / kT
    captured = (1 - fT) * formed
    put(rows, "k_psd_capture", captured / (T0 * D["sp0"]))
    # steady state: P0 = captured / (kP + kC), kS * S0 = kC * P0 and T0 + P0 + S0 = 1; solved for kC
    a = 1 - T0
    kC = kS * (a * kP - captured) / (captured - kS * a)
    put(rows, "k_spine_consolidation", kC)
    N0 = formed / g("k_spine_maturation")
    put(rows, "k_spine_formation", N0 * (g("k_spine_maturation") + g("k_spine_retraction")) / D["drive0"])
    save(rows)
    return dict(O_pyr=O_pyr, O_int=O_int, ampa=ampa, mfE=mfE, mfI=mfI)


SOURCE = (
    "derived from the designed drug-free baseline (models/derive_baseline_parameters.py: rates 2/10 Hz, "
    "membrane potentials, current shares, active-protein fractions, turnover half-lives)"
)

# The designed drug-free operating point (units: uM, mV, Hz, pA, s).
# Model v2: mean pyramidal potential -62 mV (GABA-A keeps a driving force at every e_gaba of its range),
# interneurons driven mostly through NMDA receptors (InI 90 of 120 pA; GluN2C/2D, Homayoun & Moghaddam 2007),
# 90 % of glutamate vesicular (frel), 6 mV of the pyramidal rest carried by Ih (dVh; Gasparini & DiFrancesco 1997).
DESIGN = dict(
    glu0=1.0,
    VE=-62,
    VI=-52,
    rE=2.0,
    rI=10.0,
    IaE=40,
    InE=40,
    IgE=100,
    IxE=90,
    dVh=6.0,
    IaI=30,
    InI=90,
    IxI=0,
    frel=0.9,
    ca0=0.1,
    fL=0.7,
    fN=0.1,
    trkb_tot=0.01,
    trkb_occ=0.1,
    # BDNF in the releasable store (uM; model v2.1: the store of the regulated pathway, model v3 docs)
    bdnf_ves0=0.2,
    akt_tot=1.0,
    akt_frac=0.1,
    akt_trkb_share=0.5,
    mtor_tot=0.1,
    mtor_frac=0.1,
    mtor_akt_share=0.8,
    eef2_tot=1.0,
    eef2p_frac=0.3,
    bdnf_thalf=86400.0,
    bdnf_new_share=0.6,
    bdnf_new_thalf=1200.0,
    sp0=1.0,
    sp_thalf=7200.0,
    # drug-free spine-formation drive as a share of its maximum: the formation rate can rise at most 1/drive0-fold.
    # In vivo the rate doubles with monocular deprivation (Hofer et al. 2009 Nature 457:313) and triples after a
    # retinal lesion removes input (Keck et al. 2008 Nat Neurosci 11:1162, DOI 10.1038/nn.2181); ketamine raised it
    # ~1.3-1.7-fold (Phoumthipphavong et al. 2016, deposited data).  A 3-fold ceiling (v2: 20-fold, 0.05, not
    # sourced) bounds how fast new synapses can add drive (model v2.1: new spines carry excitatory drive, circuit.ant).
    drive0=1 / 3,
    # the induced programme's drug-free activity as a share of its maximum: far down its foot, so that the drug-free
    # programme hardly depends on TrkB signalling (a sustained change of it moves the programme by
    # program_induced_share x n_tx_trkb of its size), while the hour-long TrkB surge of a dose induces it strongly
    tx_frac0=0.0006,
    spine_turnover=0.05,
    new_transient_frac=0.7,
)
if __name__ == "__main__":
    D = dict(DESIGN)
    D.update(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})
    print(calibrate(D))
