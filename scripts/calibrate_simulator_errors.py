"""Derive the simulator's measurement-error calibration, ``engine/config/presets/simulator_error_calibration.json``,
from real CSC per-observation rows.

Run from the repository root (needs ``../shared/data/csc_raw/``)::

    python scripts/calibrate_simulator_errors.py [--data ../shared/data/csc_raw/observation_source_lmxb.csv]

The table is read with xsift's reader (``xsift.data.io.read_catalog``; its ``      NaN`` text cells are
missing values). What it writes (summary statistics only, never data rows):

* ``counts.quantiles`` — quantiles of ``log10(src_cnts_aper_b + 1)`` (broad-band aperture counts of the
  detection) at the probability levels ``counts.levels``, over the rows with both spectral fits
  (``powlaw_gamma`` and ``bb_kt``: the paper's selection, and the simulator reports both for every row):
  the simulator maps each detection's broad-band count rate, through its normal score, onto this
  distribution (brighter detection, more counts).
* ``features.<feature>`` for the five features CSC gives ``_lolim``/``_hilim`` bounds for (``hard_hm``,
  ``hard_hs``, ``hard_ms``, ``powlaw_gamma``, ``bb_kt``): the 1-sigma width ``sigma = (hilim - lolim) / 2``
  regressed on counts, ``log10(sigma) = intercept + slope * log10(counts + 1) + N(0, scatter)`` (least
  squares over the rows with a finite, positive width and counts; ``bb_kt`` as the relative width
  ``sigma / bb_kt``, since its widths scale with the temperature), with ``rows`` (rows used) and the
  5 / 50 / 95 % quantiles of the widths for reference. Widths are clipped to ``[min, max]`` = the 1st and
  99th percentiles of the real ones (relative ones for ``bb_kt``).

The variability features have no bounds in CSC: the simulator keeps them exact, as the preset does.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "engine" / "config" / "presets" / "simulator_error_calibration.json"
DATA = ROOT.parent / "shared" / "data" / "csc_raw" / "observation_source_lmxb.csv"
FEATURES = ("hard_hm", "hard_hs", "hard_ms", "powlaw_gamma", "bb_kt")
RELATIVE = ("bb_kt",)
LEVELS = [0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999]


def calibrate(path: pathlib.Path) -> dict:
    from xsift.data.io import read_catalog
    df = read_catalog(str(path))

    def col(name):
        return df[name].to_numpy(dtype=np.float64, na_value=np.nan)

    counts = col("src_cnts_aper_b")
    ok_c = np.isfinite(counts) & (counts >= 0)
    lc = np.log10(counts + 1.0)
    fitted = ok_c & np.isfinite(col("powlaw_gamma")) & np.isfinite(col("bb_kt"))
    out = {"source": f"{path.name}: {len(df)} CSC per-observation rows; read by xsift.data.io.read_catalog",
           "counts": {"column": "src_cnts_aper_b", "transform": "log10(counts + 1)",
                      "rows": "with finite powlaw_gamma and bb_kt", "n_rows": int(fitted.sum()),
                      "levels": LEVELS, "quantiles": np.quantile(lc[fitted], LEVELS).round(6).tolist()},
           "features": {}}
    for f in FEATURES:
        value, lo, hi = col(f), col(f"{f}_lolim"), col(f"{f}_hilim")
        sigma = (hi - lo) / 2.0
        width = sigma / value if f in RELATIVE else sigma
        ok = ok_c & np.isfinite(width) & (width > 0) & np.isfinite(value)
        y, x = np.log10(width[ok]), lc[ok]
        A = np.column_stack([np.ones_like(x), x])
        coef, *_ = np.linalg.lstsq(A, y, rcond=None)
        resid = y - A @ coef
        out["features"][f] = {
            "relative": f in RELATIVE, "rows": int(ok.sum()),
            "intercept": round(float(coef[0]), 6), "slope": round(float(coef[1]), 6),
            "scatter": round(float(resid.std(ddof=2)), 6),
            "min": float(np.quantile(width[ok], 0.01)), "max": float(np.quantile(width[ok], 0.99)),
            "width_quantiles_5_50_95": np.quantile(width[ok], [0.05, 0.5, 0.95]).round(6).tolist()}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA), help="CSC per-observation CSV with _lolim/_hilim columns")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    cal = calibrate(pathlib.Path(args.data))
    pathlib.Path(args.out).write_text(json.dumps(cal, indent=1) + "\n")
    for f, c in cal["features"].items():
        print(f"{f:13s} rows {c['rows']:4d}  log10 width = {c['intercept']:+.3f} {c['slope']:+.3f} log10(counts+1)"
              f"  scatter {c['scatter']:.3f}")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
