"""Derive the simulator's calibration, ``engine/config/presets/simulator_calibration.json``, from real data.

Run from the repository root (needs ``../shared/data/umlcaxs/``)::

    python scripts/calibrate_simulator.py [--data ../shared/data/umlcaxs/uniquely_classified.csv]

What it writes (summary statistics only, never data rows) and where each number comes from:

* ``classes.<class>.proportion`` — the class's share of the 8,271 real sources of
  ``uniquely_classified.csv`` (by ``master_class``).
* ``classes.<class>.quantiles.<feature>`` — the class's quantiles of each of the 12 features,
  mapped to its unbounded space by ``xsift.simulate.to_unbounded`` (arctanh, logit, log or
  identity; ``xsift.simulate.FEATURE_SPACES``), at the probability levels whose normal scores
  are ``quantile_knots_z``. These are the marginals of the class's Gaussian copula.
* ``classes.<class>.correlation`` — the correlation matrix of the features' normal scores
  (mid-ranks of ties, so point masses such as ``var_newq_b = 1`` are handled), with
  eigenvalues floored at 1e-3 to keep it positive definite. The copula's dependence.
* ``classes.<class>.sky`` — a latitude model fitted to the real sources' galactic latitudes
  (astropy): galactic classes get a disk (weight from the |b| < 5° fraction, Laplace scale h
  grid-searched to match the |b| < 20° fraction) plus an isotropic rest; extragalactic
  classes, sparser than isotropic near the plane, get an isotropic population whose density
  at |b| < 10° is scaled by q (a zone of avoidance). Real fractions are kept for reference.
* ``detections_per_source`` — the paper's bins (Sec. 4.2.3: 6,802 = 77.7 % of sources with 1
  detection, 1,000 = 11.4 % with 2, 882 = 10.1 % with 3-10, 72 = 0.8 % with more than 10),
  the shape inside the 3-10 and >10 bins taken from the real ``detection_count`` histogram.
* ``main_type`` — shares from the paper's Table 3 (top-10 SIMBAD types of each of the 6
  clusters, 29,655 detections, of which 14,507 unlabelled = null or uninformative): null
  9,345 (all NaN rows are in the top 10 of every cluster, so this is exact) = 31.5 %;
  uninformative non-null 14,507 - 9,345 = 5,162 = 17.4 %, split in proportion to Star 1,764,
  X 2,822, PartofG 105 and 25 for each uninformative type absent from the top-10 lists
  (below every list's cut-off); labelled 15,148 = 51.1 %, of which the ten training types
  take 45 % of all detections (the issue asks for "about half"; Table 3's top-10 lists alone
  give at least 9,323 = 31 %, the unlisted tail 5,062 is unknown) and rare other types the
  remaining 6.1 %. Rare types are drawn by aggregated class: Table 3's counts where listed
  (Pulsar 73, GlCl 255, XB*_Candidate 238, YSO_Candidate 62, BYDra 62, Em* 26, SB* 47),
  25 for plausible types not listed. ``sibling_confusion`` = 5 % of training-labelled sources
  carry a sibling class of the same aggregated class (label noise, an assumption).
* ``missing`` — 1 - 29,655 / 37,878 = 21.7 % of detections miss at least one feature
  (paper Sec. 2.1 and Fig. 1); the band lost (soft/hard/broad light curve) is an assumption.
* ``rates`` — broad-band count rates, not in the real table: lognormal with median
  0.004 count/s (the example VOTable row has 0.0038), 1.2 e-folds between sources and 0.3
  between a source's detections; ``flux_significance_b`` = 5 + 10 sqrt(rate / median) x
  lognormal(0.3), above the paper's selection threshold of 5. Assumptions.
* ``within_source_variance_fraction`` = 0.25: the share of a feature's (normal-score)
  variance that is between a source's detections. An assumption: the real table has one
  detection's features per source.

Uses NumPy, pandas (to read the CSV) and astropy (galactic latitudes) only.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
from statistics import NormalDist

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xsift.config import load_preset  # noqa: E402
from xsift.data.io import read_catalog, write_json  # noqa: E402
from xsift.simulate import CALIBRATION_PATH, FEATURE_SPACES, to_unbounded  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "umlcaxs" / "uniquely_classified.csv"

# probability levels of the quantile knots
LEVELS = np.concatenate([[0.005, 0.01, 0.02, 0.035], np.arange(0.05, 0.9501, 0.025), [0.965, 0.98, 0.99, 0.995]])

# the paper's detections-per-source bins (Sec. 4.2.3)
PAPER_BINS = {"1": 0.777, "2": 0.114, "3-10": 0.101, ">10": 0.008}

# Table 3 of the paper, summed over its six clusters (see the module docstring)
TABLE3_NULL = 9345
TABLE3_UNLABELLED = 14507
TABLE3_TOTAL = 29655
TABLE3_UNINFORMATIVE = {"Star": 1764, "X": 2822, "PartofG": 105}
UNLISTED_COUNT = 25
TRAINING_SHARE = 0.45
RARE_BY_GROUP = {
    "AGN": {"Galaxy": UNLISTED_COUNT, "BLLac": UNLISTED_COUNT, "Blazar": UNLISTED_COUNT},
    "Seyfert": {"Galaxy": UNLISTED_COUNT, "LINER": UNLISTED_COUNT},
    "XB": {"Pulsar": 73, "GlCl": 255, "XB*_Candidate": 238},
    "YSO": {"YSO_Candidate": 62, "BYDra": 62, "Em*": 26, "SB*": 47},
}
SIBLING_CONFUSION = 0.05
MISSING_FRACTION = 1 - 29655 / 37878
MISSING_GROUPS = {
    "soft": {"share": 0.4, "columns": ["var_prob_s", "var_sigma_s", "var_mean_s", "hard_hs", "hard_ms"]},
    "hard": {"share": 0.4, "columns": ["var_prob_h", "var_sigma_h", "var_mean_h", "hard_hm", "hard_hs"]},
    "broad": {"share": 0.2, "columns": ["var_prob_b", "var_sigma_b", "var_min_b", "var_max_b"]},
}
RATES = {"median_b": 0.004, "sigma_ln_source": 1.2, "sigma_ln_detection": 0.3,
         "significance_min": 5.0, "significance_scale": 10.0}
WITHIN_SOURCE = 0.25
AVOID_DEG = 10.0      # half-width of the zone of avoidance of extragalactic classes


def normal_scores(x: np.ndarray) -> np.ndarray:
    """Normal scores of mid-ranks: Phi^-1((rank - 0.5) / n), ties sharing their mean rank."""
    n = len(x)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(n)
    ranks[order] = np.arange(1, n + 1)
    uniq, inv = np.unique(x, return_inverse=True)
    mean_rank = np.bincount(inv, weights=ranks) / np.bincount(inv)
    u = (mean_rank[inv] - 0.5) / n
    nd = NormalDist()
    return np.array([nd.inv_cdf(float(v)) for v in u])


def positive_definite_correlation(c: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    w, v = np.linalg.eigh((c + c.T) / 2)
    c = (v * np.maximum(w, floor)) @ v.T
    d = np.sqrt(np.diag(c))
    return c / np.outer(d, d)


def fit_latitudes(abs_b: np.ndarray) -> dict:
    """Latitude model matching the real |b| < 5 and |b| < 20 fractions.

    Classes denser than isotropic at |b| < 5°: a disk (Laplace scale h, grid-searched to match
    |b| < 20°) of weight w from the |b| < 5° fraction, plus an isotropic rest. Classes sparser
    than isotropic (extragalactic, behind the Milky Way's extinction): isotropic with the density
    at |b| < AVOID_DEG scaled by q (a zone of avoidance), q from the |b| < 5° fraction.
    """
    p5, p20 = float(np.mean(abs_b < 5)), float(np.mean(abs_b < 20))
    i5, i20, iz = (np.sin(np.radians(x)) for x in (5, 20, AVOID_DEG))
    if p5 < i5:
        q = float(np.clip(p5 * (1 - iz) / (i5 - p5 * iz), 0.0, 1.0))
        w, h = 0.0, 1.0
    else:
        q, best = 1.0, None
        for h in np.arange(0.5, 15.01, 0.05):
            d5, d20 = 1 - np.exp(-5 / h), 1 - np.exp(-20 / h)
            w = float(np.clip((p5 - i5) / (d5 - i5), 0.0, 1.0))
            err = (w * d5 + (1 - w) * i5 - p5) ** 2 + (w * d20 + (1 - w) * i20 - p20) ** 2
            if best is None or err < best[0]:
                best = (err, w, float(h))
        _, w, h = best
    return {"disk_weight": round(w, 6), "disk_scale_deg": round(h, 3),
            "isotropic_plane_density": round(q, 6), "avoidance_deg": AVOID_DEG,
            "real_fraction_abs_b_lt_5": round(p5, 6), "real_fraction_abs_b_lt_20": round(p20, 6)}


def detection_count_table(counts: np.ndarray) -> dict:
    values, n = np.unique(counts.astype(int), return_counts=True)
    probs = {}
    for lo, hi, key in ((1, 1, "1"), (2, 2, "2"), (3, 10, "3-10"), (11, 10**9, ">10")):
        sel = (values >= lo) & (values <= hi)
        shape = n[sel] / n[sel].sum()
        for v, s in zip(values[sel], shape):
            probs[int(v)] = PAPER_BINS[key] * float(s)
    keys = sorted(probs)
    return {"counts": keys, "probabilities": [round(probs[k], 8) for k in keys],
            "paper_bins": PAPER_BINS}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="uniquely_classified.csv of umlcaxs")
    parser.add_argument("--out", default=str(CALIBRATION_PATH), help="calibration JSON to write")
    args = parser.parse_args(argv)

    from astropy.coordinates import SkyCoord
    preset = load_preset("csc")
    classes = list(preset.classes.order)
    features = preset.feature_names
    assert set(features) == set(FEATURE_SPACES), "FEATURE_SPACES must cover the preset's features"
    df = read_catalog(args.data)
    abs_b = np.abs(SkyCoord(df["ra"].to_numpy(float), df["dec"].to_numpy(float), unit="deg").galactic.b.deg)
    nd = NormalDist()
    knots_z = [nd.inv_cdf(float(p)) for p in LEVELS]

    per_class = {}
    for c in classes:
        sel = (df["master_class"] == c).to_numpy()
        sub = df.loc[sel]
        Y = np.column_stack([to_unbounded(f, sub[f].to_numpy(float)) for f in features])
        Z = np.column_stack([normal_scores(Y[:, k]) for k in range(Y.shape[1])])
        corr = positive_definite_correlation(np.corrcoef(Z, rowvar=False))
        per_class[c] = {
            "n_sources": int(sel.sum()),
            "proportion": round(float(sel.mean()), 8),
            "quantiles": {f: [round(float(v), 8) for v in np.quantile(Y[:, k], LEVELS)]
                          for k, f in enumerate(features)},
            "correlation": [[round(float(v), 8) for v in row] for row in corr],
            "sky": fit_latitudes(abs_b[sel]),
        }

    uninformative = list(preset.classes.uninformative)
    weights = {t: TABLE3_UNINFORMATIVE.get(t, UNLISTED_COUNT) for t in uninformative}
    null_share = TABLE3_NULL / TABLE3_TOTAL
    uninf_share = (TABLE3_UNLABELLED - TABLE3_NULL) / TABLE3_TOTAL
    calibration = {
        "source": {"data": "umlcaxs/uniquely_classified.csv (Pérez-Díaz et al., tables A1)",
                   "paper": "seeds/000_6c806836d4d7a250.txt, Sec. 2.1, 4.2.3, Table 3",
                   "written_by": "scripts/calibrate_simulator.py (see its docstring for every number)"},
        "features": features,
        "feature_spaces": {f: FEATURE_SPACES[f][0] for f in features},
        "quantile_levels": [round(float(p), 6) for p in LEVELS],
        "quantile_knots_z": [round(z, 10) for z in knots_z],
        "within_source_variance_fraction": WITHIN_SOURCE,
        "classes": per_class,
        "detections_per_source": detection_count_table(df["detection_count"].to_numpy()),
        "main_type": {
            "training_share": TRAINING_SHARE,
            "null_share": round(null_share, 6),
            "uninformative_share": round(uninf_share, 6),
            "rare_share": round(1 - TRAINING_SHARE - null_share - uninf_share, 6),
            "uninformative": {t: round(w / sum(weights.values()), 6) for t, w in weights.items()},
            "rare_by_group": RARE_BY_GROUP,
            "sibling_confusion": SIBLING_CONFUSION,
        },
        "missing": {"fraction": round(MISSING_FRACTION, 6), "groups": MISSING_GROUPS},
        "rates": RATES,
    }
    write_json(calibration, args.out)
    print(f"wrote {args.out}: {len(classes)} classes from {len(df):,} real sources")
    for c in classes:
        s = per_class[c]["sky"]
        print(f"  {c:10s} n={per_class[c]['n_sources']:5d}  disk weight {s['disk_weight']:.3f}  "
              f"h={s['disk_scale_deg']:.2f} deg  q={s['isotropic_plane_density']:.3f}  real |b|<5: {s['real_fraction_abs_b_lt_5']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
