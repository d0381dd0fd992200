"""In vivo spine density after ketamine, from the authors' deposited data (rows of `models/calibration_data.tsv`).

Phoumthipphavong V, Barthas F, Hassett S, Kwan AC (2016) Longitudinal effects of ketamine on dendritic architecture
in vivo in the mouse medial frontal cortex. eNeuro 3:ENEURO.0133-15.2016, DOI 10.1523/ENEURO.0133-15.2016.
Data: `spine_summary.m` of github.com/Kwan-Lab/phoumthipphavong2016 (commit 5261d77): per-dendrite spine density
(spines/um) at imaging days -3, -1, 1, 3, 5, 10, 15; saline or ketamine 10 mg/kg i.p. on day 0 (8 mice each).

What this computes, per group: each dendrite's density relative to its last session before the injection (day -1;
the 4 ketamine dendrites not imaged on day -1 are left out), averaged over the dendrites imaged that day (the
ketamine dendrites the authors flag as damaged in their first five sessions are left out, as in their script); the
ketamine effect is the ratio of the ketamine to the saline mean
(both groups lose density with repeated imaging: saline -5 % by day 1, -14 % by day 5), with the standard error of
its logarithm from the two standard errors (delta method).  Dendrites are treated as independent, which they are not
(several per mouse; saline has 2 mice after day 1), so the errors are lower bounds.  It also prints the mean
formation rate (new spines / total, % per imaging interval: 2 days, or 5 days from day 5 on; not pro-rated) of
each group and interval (report text only).

    python docs/calibration/data/phoumthipphavong2016_spines.py path/to/spine_summary.m
"""

from __future__ import annotations

import re
import sys

import numpy as np

DAYS = (-3, -1, 1, 3, 5, 10, 15)


def _parse(section: str) -> dict[str, dict[int, np.ndarray]]:
    out: dict[str, dict[int, np.ndarray]] = {}
    for m in re.finditer(r"(\w+)\{(\d+)\}\s*=\s*(zeros\(size\(density\{\d+\}\)\)|\[(.*?)\]);", section, re.S):
        name, k, body = m.group(1), int(m.group(2)), m.group(4)
        if body is None:
            out.setdefault(name, {})[k] = None
            continue
        rows = []
        for line in body.split(";"):
            line = re.sub(r"%.*", "", line).replace("...", "").strip()
            if line:
                rows.append([float("nan") if t == "NaN" else float(t) for t in line.split()])
        out.setdefault(name, {})[k] = np.atleast_2d(np.array(rows))
    return out


def _groups(path: str, field: str) -> dict[str, np.ndarray]:
    """Per group ('saline', 'ketamine'): dendrites x sessions (or intervals) of one field of the data file."""
    src = open(path).read()
    control = src.index("if jjj==1")
    ketamine = src.index("elseif jjj==2")
    end = src.index("for kk=1:numel(density)")
    groups = {}
    for name, section, exclude in (("saline", src[control:ketamine], False), ("ketamine", src[ketamine:end], True)):
        d = _parse(section)
        rows = []
        for k, values in d[field].items():
            damaged = d.get("damagedd", {}).get(k)
            damaged = np.zeros_like(d["density"][k]) if damaged is None else damaged
            keep = damaged[:, :5].sum(axis=1) == 0 if exclude else np.ones(len(values), bool)
            rows.append(values[keep])
        groups[name] = np.vstack(rows)
    return groups


def relative_density(path: str) -> dict[str, np.ndarray]:
    """Per group ('saline', 'ketamine'): dendrites x days, density relative to day -1."""
    return {g: dens / dens[:, [1]] for g, dens in _groups(path, "density").items()}


def formation_rates(path: str) -> list[dict[str, float]]:
    """Mean spine formation rate (new spines / total, % per imaging interval) per group and interval."""
    groups = _groups(path, "formation")
    out = []
    for i, (a, b) in enumerate(zip(DAYS[:-1], DAYS[1:], strict=True)):
        row = {"interval": f"day {a} to {b}"}
        for g, f in groups.items():
            x = f[:, i][~np.isnan(f[:, i])]
            row[g], row[f"n_{g}"] = float(x.mean()), len(x)
        out.append(row)
    return out


def effect(groups: dict[str, np.ndarray]) -> list[dict[str, float]]:
    rows = []
    for i, day in enumerate(DAYS):
        if day <= 0:
            continue
        stats = {}
        for g, rel in groups.items():
            x = rel[:, i][~np.isnan(rel[:, i])]
            stats[g] = (x.mean(), x.std(ddof=1) / np.sqrt(len(x)), len(x))
        (mk, sk, nk), (ms, ss, ns) = stats["ketamine"], stats["saline"]
        rows.append(
            {"day": day, "ratio": mk / ms, "se_log": float(np.hypot(sk / mk, ss / ms)),
             "ketamine": mk, "n_ketamine": nk, "saline": ms, "n_saline": ns}
        )  # fmt: skip
    return rows


if __name__ == "__main__":
    for r in formation_rates(sys.argv[1]):
        print(
            f"{r['interval']:>14}: formation ketamine {r['ketamine']:.1f} % (n {r['n_ketamine']}), saline "
            f"{r['saline']:.1f} % (n {r['n_saline']})"
        )
    for r in effect(relative_density(sys.argv[1])):
        print(
            f"day {r['day']:>2}: ketamine/saline {r['ratio']:.3f} (se_log {r['se_log']:.3f}); ketamine "
            f"{r['ketamine']:.3f} (n {r['n_ketamine']}), saline {r['saline']:.3f} (n {r['n_saline']})"
        )
