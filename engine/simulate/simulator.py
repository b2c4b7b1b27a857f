"""A CSC-like survey simulator with ground truth: ``xsift simulate`` and its Python API.

It writes a per-detection catalogue shaped like the Chandra Source Catalog
per-observation table the CSC paper (Pérez-Díaz et al., seed 000) works on, with
the hidden true class of every detection, at any size: 10 million detections are
streamed to Parquet shards block by block and never held in memory at once.

Python API::

    simulate_catalog(n_detections, *, seed=0) -> pandas.DataFrame        # in memory
    write_simulated_catalog(out_dir, n_detections, *, n_shards=1, seed=0) -> [Path, ...]

Columns, in this order: ``name`` (``2CXO Jhhmmss.s±ddmmss``, one per source),
``obsid`` (int64, unique within a source), ``ra``, ``dec`` (degrees, ICRS),
``hard_hm, hard_hs, hard_ms`` (in [-1, 1]), ``powlaw_gamma``, ``bb_kt`` (keV, > 0),
``var_prob_b, var_prob_h, var_prob_s`` (in [0, 1]), ``var_sigma_b/h/s``,
``var_mean_b/h/s``, ``var_min_b``, ``var_max_b`` (count/s, >= 0),
``flux_significance_b`` (all float64, NaN where missing), ``main_type`` (SIMBAD-like
type or null) and ``true_class`` (one of the preset's ten training classes).

How the numbers are made (all calibration numbers are in
``engine/config/presets/simulator_calibration.json``, written by
``scripts/calibrate_simulator.py``, which documents each one):

* **Class-conditional features** — a Gaussian copula per class, fitted on the 8,271
  classified real CSC sources of ``../shared/data/umlcaxs/uniquely_classified.csv``
  (12 features of each source's first detection, grouped by ``master_class``).
  Each feature is mapped to an unbounded space (``FEATURE_SPACES``: arctanh for
  hardness ratios, logit for probabilities, log for ratios, ``bb_kt`` and
  ``var_newq_b``, identity for ``powlaw_gamma``); the calibration stores, per class,
  the quantiles of each mapped feature at fixed levels (the marginal) and the
  correlation matrix of the features' normal scores (the dependence). A simulated
  point is a correlated standard-normal vector pushed through the per-feature
  quantile functions (linear between the knots, linear extrapolation beyond the
  outer knots with the outer segment's slope, then clipped to the physical range).
  This reproduces each class's marginals, including the real point masses
  (``var_prob_* = 1``, ``var_newq_b = 1``), and its rank correlations.
* **Raw columns** — the 12 features include the derived ``var_ratio_x =
  var_sigma_x / var_mean_x`` and ``var_newq_b = ((var_max_b + var_min_b)/2) /
  var_mean_b``. The simulator draws a broad-band count rate ``var_mean_b``
  (lognormal, not calibrated: the real table has no rates), splits it into soft and
  hard rates consistently with the simulated hardness ratios, and then sets
  ``var_sigma_x = var_ratio_x * var_mean_x`` and ``var_min_b, var_max_b`` around the
  midrange ``var_newq_b * var_mean_b`` with a half-range of at least twice
  ``var_sigma_b`` (so that min <= mean <= max and min >= 0 always hold; this needs
  ``var_newq_b >= 0.5``, true of every real row). Deriving the features back gives
  the simulated values up to floating-point rounding.
* **Sources and detections** — detections per source follow the paper (77.7 % of
  sources with 1, 11.4 % with 2, 10.1 % with 3-10, 0.8 % with more than 10; the
  shape inside the last two bins is that of the real ``detection_count``). A
  source's detections are contiguous rows, share its class, its ``main_type`` and
  its position (each detection within 0.3" of it), and scatter in features around
  the source's own point: in normal-score space a detection is
  ``sqrt(1 - w) z_source + sqrt(w) e`` with ``e`` drawn from the class's copula, so
  detections keep the class's marginals (``w`` is in the calibration file).
* **Sky** — per class, a mixture of a galactic disk population (latitude Laplace
  with scale ``h``, uniform longitude) and an isotropic one whose density at
  ``|b| < 10°`` is scaled by ``q`` (a zone of avoidance for extragalactic classes),
  fitted to the real sources' fractions at ``|b| < 5°`` and ``|b| < 20°``.
  Young stars and X-ray binaries come out on the plane, AGN away from it.
  Positions are drawn in galactic coordinates and converted with astropy per block.
* **Names unique by construction** — a name has 0.1 s of RA and 1" of Dec, about
  5.6e11 cells on the sky, so millions of random positions would collide (a few
  dozen pairs at 6 million sources, more on the crowded plane). Instead the sky is
  cut into tiles of ``a x b`` name cells (``a`` divides the 864,000 RA cells, ``b``
  the 648,000 Dec cells, ``a*b`` at least the number of source slots of the whole
  catalogue). A source's drawn position picks its tile; its cell inside the tile is
  ``(k * 1000003) mod (a*b)`` of its global source slot ``k = block * block_rows +
  index in block`` — a bijection — and its position is a random point well inside
  that cell. Two sources therefore never share a cell, hence never a name. The
  position moves by at most one tile (about 10' at 200k detections, 1° at 10M),
  which keeps the latitude distributions.
* **main_type** — per source: one of the training classes (its true class, or with
  a small probability a sibling of the same aggregated class, a documented label
  noise), null, an uninformative SIMBAD type, or a rare other type chosen by the
  source's aggregated class, in shares derived from the paper's Table 3.
* **Missing values** — 21.7 % of detections (the paper: 37,878 detections, 29,655
  complete) lose one band: the soft band (``var_prob_s, var_sigma_s, var_mean_s,
  hard_hs, hard_ms``), the hard band (``var_prob_h, var_sigma_h, var_mean_h,
  hard_hm, hard_hs``) or the broad light curve (``var_prob_b, var_sigma_b,
  var_min_b, var_max_b``). ``powlaw_gamma`` and ``bb_kt`` are never missing (the
  paper selected rows with both).
* **Measurement errors** (``errors=True``, ``xsift simulate --errors``; off by default, so catalogues
  and the tests that pin them are unchanged) — the five features CSC gives confidence bounds for
  (``hard_hm, hard_hs, hard_ms, powlaw_gamma, bb_kt``) get ``<feature>_lolim``/``_hilim`` columns
  (``ERROR_COLUMNS``, after ``flux_significance_b``) and are reported as their true value scattered by a
  Gaussian of that 1-sigma width, clipped to the physical range. Widths follow counts as the real ones
  do: a detection's broad-band counts are its count rate's normal score mapped onto the real
  ``log10(src_cnts_aper_b + 1)`` quantiles, and ``log10(sigma) = intercept + slope log10(counts + 1) +
  N(0, scatter)`` per feature (relative to the value for ``bb_kt``), clipped to the real 1-99 % range
  — all fitted on ``../shared/data/csc_raw/observation_source_lmxb.csv`` by
  ``scripts/calibrate_simulator_errors.py`` into ``simulator_error_calibration.json`` (slopes ~ -0.5: the
  Poisson scaling). The bounds are symmetric around the reported value (``lolim = value - sigma``).
  Their draws come from a separate stream (``default_rng([seed, block, 1])``), so the rest of the
  catalogue is the same with or without errors; ``true_class`` keeps the truth; the variability
  features stay exact (CSC gives them no bounds). A missing feature has missing bounds.
* **Determinism** — rows are generated in fixed-size blocks, block ``i`` from
  ``numpy.random.default_rng([seed, i])``, each block holding whole sources
  (the last source of a block is cut to fit). Shards are contiguous row ranges of
  that one sequence, so the catalogue is the same whatever the shard count, and a
  source may straddle two shards.
"""
from __future__ import annotations

import functools
import json
import os
import pathlib

import numpy as np

from xsift.errors import XsiftError


CALIBRATION_PATH = pathlib.Path(__file__).resolve().parents[1] / "config" / "presets" / "simulator_calibration.json"
ERROR_CALIBRATION_PATH = CALIBRATION_PATH.with_name("simulator_error_calibration.json")

#: rows per generation block (one Parquet row group per block and shard)
DEFAULT_BLOCK_ROWS = 131_072

COLUMNS = ["name", "obsid", "ra", "dec", "hard_hm", "hard_hs", "hard_ms", "powlaw_gamma", "bb_kt",
           "var_prob_b", "var_prob_h", "var_prob_s", "var_sigma_b", "var_sigma_h", "var_sigma_s",
           "var_mean_b", "var_mean_h", "var_mean_s", "var_min_b", "var_max_b", "flux_significance_b",
           "main_type", "true_class"]
#: the features that get measurement errors with ``errors=True``, and their bound columns
ERROR_FEATURES = ("hard_hm", "hard_hs", "hard_ms", "powlaw_gamma", "bb_kt")
ERROR_COLUMNS = [f"{f}_{b}" for f in ERROR_FEATURES for b in ("lolim", "hilim")]


def columns(errors: bool = False) -> list[str]:
    """The simulated catalogue's columns, in order (with the error bounds after ``flux_significance_b``)."""
    if not errors:
        return list(COLUMNS)
    at = COLUMNS.index("flux_significance_b") + 1
    return COLUMNS[:at] + ERROR_COLUMNS + COLUMNS[at:]

# How each calibrated feature is mapped to an unbounded space: (kind, lower, upper).
# lower/upper are the physical range the simulated values are clipped to.
FEATURE_SPACES: dict[str, tuple[str, float, float]] = {
    "hard_hm": ("arctanh", -1.0, 1.0),
    "hard_hs": ("arctanh", -1.0, 1.0),
    "hard_ms": ("arctanh", -1.0, 1.0),
    "powlaw_gamma": ("identity", -10.0, 10.0),   # the CSC fit range of the photon index
    "bb_kt": ("log", 1e-3, 200.0),
    "var_prob_b": ("logit", 0.0, 1.0),
    "var_ratio_b": ("log", 0.0, 1e3),
    "var_prob_h": ("logit", 0.0, 1.0),
    "var_ratio_h": ("log", 0.0, 1e3),
    "var_prob_s": ("logit", 0.0, 1.0),
    "var_ratio_s": ("log", 0.0, 1e3),
    "var_newq_b": ("log", 0.5, 1e3),             # >= 0.5 so that min <= mean <= max is possible
}
_ARCTANH_EDGE = 1e-9      # hardness ratios are clipped to +-(1 - edge) before arctanh
_LOGIT_EDGE = 1e-12       # probabilities are clipped to [edge, 1 - edge]; the top edge means exactly 1
_LOG_FLOOR = 1e-12        # zero ratios are mapped to log(floor) and back to exactly 0

# name cells: RA in tenths of a second of time, Dec in arcseconds
_RA_CELLS = 24 * 3600 * 10          # 864,000
_DEC_CELLS = 180 * 3600             # 648,000
_CELL_MIXER = 1_000_003             # prime > 5: coprime with every tile size (2^x 3^y 5^z)
_NAME_WIDTH = 21                    # "2CXO Jhhmmss.s+ddmmss"


# ----------------------------------------------------------------------------- feature spaces

def to_unbounded(name: str, x: np.ndarray) -> np.ndarray:
    """Map raw values of calibrated feature ``name`` to its unbounded space (see FEATURE_SPACES)."""
    kind, lo, hi = FEATURE_SPACES[name]
    x = np.asarray(x, dtype=np.float64)
    if kind == "arctanh":
        return np.arctanh(np.clip(x, -1.0 + _ARCTANH_EDGE, 1.0 - _ARCTANH_EDGE))
    if kind == "logit":
        p = np.clip(x, _LOGIT_EDGE, 1.0 - _LOGIT_EDGE)
        return np.log(p) - np.log1p(-p)
    if kind == "log":
        return np.log(np.maximum(x, max(lo, _LOG_FLOOR)))
    return x.copy()


def from_unbounded(name: str, y: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_unbounded`, clipped to the feature's physical range; the edges of the
    unbounded space come back as the exact point masses (probability 1, ratio 0)."""
    kind, lo, hi = FEATURE_SPACES[name]
    if kind == "arctanh":
        return np.clip(np.tanh(y), lo, hi)
    if kind == "logit":
        top = np.log(1.0 - _LOGIT_EDGE) - np.log(_LOGIT_EDGE)
        x = 1.0 / (1.0 + np.exp(-y))
        return np.where(y >= top - 1e-6, 1.0, np.clip(x, lo, hi))
    if kind == "log":
        floor = max(lo, _LOG_FLOOR)
        x = np.clip(np.exp(y), floor, hi)
        return np.where((lo == 0.0) & (y <= np.log(floor) + 1e-6), 0.0, x)
    return np.clip(y, lo, hi)


# ----------------------------------------------------------------------------- calibration

@functools.lru_cache(maxsize=4)
def load_calibration(path: str | None = None) -> dict:
    """The simulator's calibration as NumPy arrays, in the class order of the ``csc`` preset."""
    from xsift.config import load_preset
    path = pathlib.Path(path) if path else CALIBRATION_PATH
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise XsiftError(f"{path}: cannot read the simulator calibration ({exc}); "
                         "regenerate it with scripts/calibrate_simulator.py") from None
    preset = load_preset("csc")
    classes = list(preset.classes.order)
    uninformative = list(preset.classes.uninformative)
    aggregation = preset.classes.aggregated_class_of
    missing = sorted(set(classes) - set(raw["classes"]))
    if missing:
        raise XsiftError(f"{path}: no calibration for the preset's classes {missing}; "
                         "rerun scripts/calibrate_simulator.py")
    features = list(raw["features"])
    per = [raw["classes"][c] for c in classes]
    corr = np.array([p["correlation"] for p in per], dtype=np.float64)
    chol = np.linalg.cholesky(corr)
    mt = raw["main_type"]
    rare_groups = mt["rare_by_group"]
    rare_types = sorted({t for g in rare_groups.values() for t in g})
    dictionary = classes + uninformative + [t for t in rare_types if t not in classes + uninformative]
    rare_tables = []
    for c in classes:
        table = rare_groups[aggregation[c]]
        names = sorted(table)
        w = np.array([table[t] for t in names], dtype=np.float64)
        rare_tables.append((np.array([dictionary.index(t) for t in names]), w / w.sum()))
    un_w = np.array([mt["uninformative"].get(t, 0.0) for t in uninformative], dtype=np.float64)
    siblings = [np.array([classes.index(s) for s in classes
                          if aggregation[s] == aggregation[c] and s != c], dtype=np.int64) for c in classes]
    dps = raw["detections_per_source"]
    return {
        "path": str(path),
        "classes": classes,
        "features": features,
        "class_p": np.array([p["proportion"] for p in per]) / sum(p["proportion"] for p in per),
        "knots_z": np.array(raw["quantile_knots_z"], dtype=np.float64),
        "knots_y": np.array([[p["quantiles"][f] for f in features] for p in per], dtype=np.float64),
        "chol": chol,
        "within": float(raw["within_source_variance_fraction"]),
        "disk_weight": np.array([p["sky"]["disk_weight"] for p in per]),
        "disk_scale_deg": np.array([p["sky"]["disk_scale_deg"] for p in per]),
        "iso_plane_density": np.array([p["sky"]["isotropic_plane_density"] for p in per]),
        "avoidance_deg": np.array([p["sky"]["avoidance_deg"] for p in per]),
        "counts": np.array(dps["counts"], dtype=np.int64),
        "counts_p": np.array(dps["probabilities"]) / np.sum(dps["probabilities"]),
        "shares": np.array([mt["training_share"], mt["null_share"], mt["uninformative_share"],
                            mt["rare_share"]], dtype=np.float64),
        "sibling_confusion": float(mt["sibling_confusion"]),
        "siblings": siblings,
        "dictionary": dictionary,
        "uninformative_codes": np.array([dictionary.index(t) for t in uninformative]),
        "uninformative_p": un_w / un_w.sum(),
        "rare_tables": rare_tables,
        "missing_fraction": float(raw["missing"]["fraction"]),
        "missing_groups": raw["missing"]["groups"],
        "rate": raw["rates"],
    }


@functools.lru_cache(maxsize=4)
def load_error_calibration(path: str | None = None) -> dict:
    """The measurement-error calibration (``simulator_error_calibration.json``) as read."""
    path = pathlib.Path(path) if path else ERROR_CALIBRATION_PATH
    try:
        raw = json.loads(path.read_text())
        missing = [f for f in ERROR_FEATURES if f not in raw["features"]]
        raw["counts"]["levels"], raw["counts"]["quantiles"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise XsiftError(f"{path}: cannot read the simulator's error calibration ({exc}); "
                         "regenerate it with scripts/calibrate_simulator_errors.py") from None
    if missing:
        raise XsiftError(f"{path}: no error calibration for {missing}; rerun scripts/calibrate_simulator_errors.py")
    return raw


def _measurement_errors(rng, ecal, rate_score: np.ndarray, true: dict) -> dict:
    """Reported values and bounds of the ERROR_FEATURES: (feature -> reported, column -> bound)."""
    from scipy.special import ndtr
    c = ecal["counts"]
    log_counts = np.interp(ndtr(rate_score), c["levels"], c["quantiles"])
    out = {}
    for f in ERROR_FEATURES:
        e = ecal["features"][f]
        width = 10.0 ** (e["intercept"] + e["slope"] * log_counts + rng.normal(0.0, e["scatter"], len(log_counts)))
        width = np.clip(width, e["min"], e["max"])
        value = true[f]
        sigma = width * value if e["relative"] else width
        _, lo, hi = FEATURE_SPACES[f]
        if f.startswith("hard_"):
            lo, hi = -1.0, 1.0
        reported = np.clip(value + sigma * rng.standard_normal(len(value)), max(lo, 1e-3) if f == "bb_kt" else lo, hi)
        out[f] = reported
        out[f"{f}_lolim"] = reported - sigma
        out[f"{f}_hilim"] = reported + sigma
    return out


# ----------------------------------------------------------------------------- names

@functools.lru_cache(maxsize=64)
def name_tile(n_slots: int) -> tuple[int, int]:
    """Tile size ``(a, b)`` in name cells (RA tenths of seconds, Dec arcseconds) holding at least
    ``n_slots`` cells, ``a`` dividing 864,000 and ``b`` dividing 648,000, as small on the sky as
    possible (an RA cell is 1.5" at the equator, a Dec cell 1")."""
    def divisors(n):
        return [d for d in range(1, int(n ** 0.5) + 1) if n % d == 0] + \
               [n // d for d in range(1, int(n ** 0.5) + 1) if n % d == 0]
    if n_slots > _RA_CELLS * _DEC_CELLS:
        raise XsiftError(f"{n_slots} sources do not fit in the {_RA_CELLS * _DEC_CELLS} distinct CSC names")
    best = None
    for b in sorted(set(divisors(_DEC_CELLS))):
        fits = [a for a in set(divisors(_RA_CELLS)) if a * b >= n_slots]
        if not fits:
            continue
        a = min(fits)
        key = (max(1.5 * a, b), a * b)
        if best is None or key < best[0]:
            best = (key, (a, b))
    return best[1]


def _name_bytes(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """(n, 21) uint8 ASCII of ``2CXO Jhhmmss.s±ddmmss`` for RA cell ``i`` and Dec cell ``j``
    (``j = floor(dec / 1")``, so a negative cell ``j`` is the truncated ``-(|j| - 1)"``)."""
    n = len(i)
    out = np.empty((n, _NAME_WIDTH), dtype=np.uint8)
    out[:, :6] = np.frombuffer(b"2CXO J", dtype=np.uint8)

    def put(col, values, width):
        for w in range(width):
            out[:, col + width - 1 - w] = 48 + (values // 10 ** w) % 10

    put(6, i // 36000, 2)
    put(8, (i // 600) % 60, 2)
    put(10, (i // 10) % 60, 2)
    out[:, 12] = ord(".")
    put(13, i % 10, 1)
    neg = j < 0
    out[:, 14] = np.where(neg, ord("-"), ord("+"))
    a = np.where(neg, -j - 1, j)
    put(15, a // 3600, 2)
    put(17, (a // 60) % 60, 2)
    put(19, a % 60, 2)
    return out


# ----------------------------------------------------------------------------- one block

def _quantile_map(z: np.ndarray, cls: np.ndarray, knots_z: np.ndarray, knots_y: np.ndarray) -> np.ndarray:
    """Per-class, per-feature piecewise-linear quantile functions in normal-score space.

    ``z``: (n, d) normal scores of rows of classes ``cls`` (n,); ``knots_z``: (K,) increasing knots
    shared by all; ``knots_y``: (C, d, K) values. Linear between knots and, with the outer
    segments' slopes, beyond them (the segment index is clipped, the interpolation weight is not).
    The segment is found with a lookup table on a uniform grid finer than the knot spacing
    (at most one knot per grid cell, so one comparison corrects it) instead of a binary search.
    """
    n, d = z.shape
    K = len(knots_z)
    step = 0.5 * float(np.min(np.diff(knots_z)))
    n_cells = int(np.ceil((knots_z[-1] - knots_z[0]) / step)) + 2
    table = np.clip(np.searchsorted(knots_z, knots_z[0] + step * np.arange(n_cells), side="right"), 1, K - 1)
    hi = table[np.clip(((z - knots_z[0]) * (1.0 / step)).astype(np.int64), 0, n_cells - 1)]
    hi += (z >= knots_z[hi]) & (hi < K - 1)
    lo = hi - 1
    z_lo = knots_z[lo]
    t = (z - z_lo) / (knots_z[hi] - z_lo)
    idx = (cls[:, None] * d + np.arange(d)[None, :]) * K + lo
    flat = knots_y.reshape(-1)
    y_lo = flat[idx]
    return y_lo + t * (flat[idx + 1] - y_lo)


def _detections_per_source(rng, cal, n_rows: int) -> np.ndarray:
    mean = float(cal["counts"] @ cal["counts_p"])
    draws = []
    total = 0
    while total < n_rows:
        c = rng.choice(cal["counts"], size=int(n_rows / mean * 1.05) + 32, p=cal["counts_p"])
        draws.append(c)
        total += int(c.sum())
    counts = np.concatenate(draws)
    cs = np.cumsum(counts)
    n_src = int(np.searchsorted(cs, n_rows)) + 1
    counts = counts[:n_src].copy()
    counts[-1] -= int(cs[n_src - 1]) - n_rows          # the block's last source is cut to fit
    return counts


def _sky(rng, cal, cls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ICRS (ra, dec) in degrees of sources of classes ``cls``."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    n = len(cls)
    disk = rng.random(n) < cal["disk_weight"][cls]
    b_disk = rng.exponential(1.0, n) * cal["disk_scale_deg"][cls] * np.where(rng.random(n) < 0.5, -1, 1)
    # isotropic, with density scaled by q at |b| < Z: |sin b| piecewise uniform on [0, sin Z], [sin Z, 1]
    q = cal["iso_plane_density"][cls]
    sz = np.sin(np.radians(cal["avoidance_deg"][cls]))
    norm = q * sz + (1.0 - sz)
    v = rng.random(n)
    low = v * norm < q * sz
    s_abs = np.where(low, v * norm / np.maximum(q, 1e-300), sz + (v * norm - q * sz))
    b_iso = np.degrees(np.arcsin(np.clip(s_abs, 0.0, 1.0))) * np.where(rng.random(n) < 0.5, -1, 1)
    b = np.clip(np.where(disk, b_disk, b_iso), -89.999, 89.999)
    l = 360.0 * rng.random(n)
    icrs = SkyCoord(l=l * u.deg, b=b * u.deg, frame="galactic").icrs
    return icrs.ra.deg, icrs.dec.deg


def simulate_block(n_rows: int, block_index: int, *, seed: int, n_blocks: int,
                   block_rows: int = DEFAULT_BLOCK_ROWS, calibration: str | None = None, errors: bool = False):
    """Block ``block_index`` (``n_rows`` rows) of the catalogue of ``n_blocks`` blocks, as a
    ``pyarrow.Table``. Deterministic in ``(seed, block_index, n_rows, n_blocks, block_rows, errors)``;
    ``errors``: add measurement errors (module docstring)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cal = load_calibration(calibration)
    rng = np.random.default_rng([seed, block_index])
    n_cls = len(cal["classes"])

    # sources and their detections
    counts = _detections_per_source(rng, cal, n_rows)
    n_src = len(counts)
    src_of_det = np.repeat(np.arange(n_src), counts)
    first_row = np.cumsum(counts) - counts
    cls = rng.choice(n_cls, size=n_src, p=cal["class_p"])

    # positions and names, unique by construction (module docstring)
    ra0, dec0 = _sky(rng, cal, cls)
    a, b = name_tile(n_blocks * block_rows)
    i0 = np.clip(np.floor(ra0 / 360.0 * _RA_CELLS).astype(np.int64), 0, _RA_CELLS - 1)
    j0 = np.clip(np.floor(dec0 * 3600.0).astype(np.int64), -_DEC_CELLS // 2, _DEC_CELLS // 2 - 1)
    k = block_index * block_rows + np.arange(n_src, dtype=np.int64)
    m = (k % (a * b)) * _CELL_MIXER % (a * b)
    i = (i0 // a) * a + m % a
    j = ((j0 + _DEC_CELLS // 2) // b) * b + m // a - _DEC_CELLS // 2
    ra_src = (i + rng.uniform(0.1, 0.9, n_src)) * (360.0 / _RA_CELLS)
    dec_src = (j + rng.uniform(0.1, 0.9, n_src)) / 3600.0
    names = _name_bytes(i, j)[src_of_det]

    # main_type per source
    share = rng.choice(4, size=n_src, p=cal["shares"])       # training, null, uninformative, rare
    code = np.full(n_src, -1, dtype=np.int64)
    labelled = cls.copy()
    confuse = rng.random(n_src) < cal["sibling_confusion"]
    pick = rng.random(n_src)
    for c in range(n_cls):
        sib = cal["siblings"][c]
        if len(sib):
            sel = (cls == c) & confuse
            labelled[sel] = sib[np.minimum((pick[sel] * len(sib)).astype(np.int64), len(sib) - 1)]
    code = np.where(share == 0, labelled, code)
    un = rng.choice(cal["uninformative_codes"], size=n_src, p=cal["uninformative_p"])
    code = np.where(share == 2, un, code)
    rare_u = rng.random(n_src)
    for c in range(n_cls):
        codes, p = cal["rare_tables"][c]
        sel = (share == 3) & (cls == c)
        code[sel] = codes[np.minimum(np.searchsorted(np.cumsum(p), rare_u[sel], side="right"), len(p) - 1)]

    # obsids: increasing within a source, hence unique within it
    base = rng.integers(1, 30_000, n_src)
    steps = rng.integers(1, 2_000, n_rows)
    cs = np.cumsum(steps)
    obsid = base[src_of_det] + cs - cs[first_row][src_of_det]

    # features: Gaussian copula per class, detections scattered around their source
    n_feat = len(cal["features"])
    det_cls = cls[src_of_det]
    z_src = rng.standard_normal((n_src, n_feat))
    eps = rng.standard_normal((n_rows, n_feat))
    w = cal["within"]
    z = np.empty((n_rows, n_feat))
    for c in range(n_cls):
        rows = np.flatnonzero(det_cls == c)
        if len(rows):
            L = cal["chol"][c]
            z[rows] = (np.sqrt(1.0 - w) * z_src[src_of_det[rows]] + np.sqrt(w) * eps[rows]) @ L.T
    del eps, z_src                                # keep the block's peak memory down
    feats = _quantile_map(z, det_cls, cal["knots_z"], cal["knots_y"])
    del z
    F = {name: from_unbounded(name, feats[:, f]) for f, name in enumerate(cal["features"])}
    del feats

    # raw count-rate columns consistent with the features
    rate = cal["rate"]
    ln_src = rng.normal(np.log(rate["median_b"]), rate["sigma_ln_source"], n_src)
    mean_b = np.exp(ln_src[src_of_det] + rng.normal(0.0, rate["sigma_ln_detection"], n_rows))
    hs = np.clip(F["hard_hs"], -0.999, 0.999)
    ms = np.clip(F["hard_ms"], -0.999, 0.999)
    h_over_s = (1 + hs) / (1 - hs)
    m_over_s = (1 + ms) / (1 - ms)
    mean_s = mean_b / (1.0 + m_over_s + h_over_s)
    mean_h = mean_s * h_over_s
    sigma_b = F["var_ratio_b"] * mean_b
    mid = F["var_newq_b"] * mean_b
    half = np.minimum(np.maximum(np.abs(mid - mean_b), 2.0 * sigma_b), mid)
    sig = rate["significance_min"] + rate["significance_scale"] * np.sqrt(mean_b / rate["median_b"]) \
        * np.exp(rng.normal(0.0, 0.3, n_rows))

    # detection positions within 0.3" of the source
    off = np.clip(rng.normal(0.0, 0.15, (n_rows, 2)), -0.2, 0.2) / 3600.0
    dec_d = dec_src[src_of_det]
    ra = np.mod(ra_src[src_of_det] + off[:, 0] / np.maximum(np.cos(np.radians(dec_d)), 1e-6), 360.0)
    dec = np.clip(dec_d + off[:, 1], -90.0, 90.0)

    cols = {
        "hard_hm": F["hard_hm"], "hard_hs": F["hard_hs"], "hard_ms": F["hard_ms"],
        "powlaw_gamma": F["powlaw_gamma"], "bb_kt": F["bb_kt"],
        "var_prob_b": F["var_prob_b"], "var_prob_h": F["var_prob_h"], "var_prob_s": F["var_prob_s"],
        "var_sigma_b": sigma_b, "var_sigma_h": F["var_ratio_h"] * mean_h,
        "var_sigma_s": F["var_ratio_s"] * mean_s,
        "var_mean_b": mean_b, "var_mean_h": mean_h, "var_mean_s": mean_s,
        "var_min_b": mid - half, "var_max_b": mid + half, "flux_significance_b": sig,
    }
    if errors:
        score = (np.log(mean_b) - np.log(rate["median_b"])) / np.hypot(rate["sigma_ln_source"],
                                                                        rate["sigma_ln_detection"])
        cols.update(_measurement_errors(np.random.default_rng([seed, block_index, 1]), load_error_calibration(),
                                        score, cols))

    # missing values: one band per affected detection
    groups = list(cal["missing_groups"])
    gp = np.array([cal["missing_groups"][g]["share"] for g in groups])
    hit = rng.random(n_rows) < cal["missing_fraction"]
    which = rng.choice(len(groups), size=n_rows, p=gp / gp.sum())
    for g, gname in enumerate(groups):
        sel = hit & (which == g)
        for col in cal["missing_groups"][gname]["columns"]:
            for c_ in [col] + ([f"{col}_lolim", f"{col}_hilim"] if errors and col in ERROR_FEATURES else []):
                cols[c_] = np.where(sel, np.nan, cols[c_])

    name_arr = pa.StringArray.from_buffers(
        n_rows, pa.py_buffer(np.arange(0, (n_rows + 1) * _NAME_WIDTH, _NAME_WIDTH, dtype=np.int32)),
        pa.py_buffer(np.ascontiguousarray(names)))
    dictionary = pa.array(cal["dictionary"], type=pa.string())
    det_code = code[src_of_det]
    main_type = pc.take(dictionary, pa.array(det_code, mask=det_code < 0, type=pa.int32()))
    true_class = pc.take(pa.array(cal["classes"], type=pa.string()), pa.array(det_cls, type=pa.int32()))
    arrays = {"name": name_arr, "obsid": pa.array(obsid.astype(np.int64)), "ra": pa.array(ra),
              "dec": pa.array(dec)}
    arrays.update({k_: pa.array(np.asarray(v, dtype=np.float64)) for k_, v in cols.items()})
    arrays["main_type"] = main_type
    arrays["true_class"] = true_class
    return pa.table({c: arrays[c] for c in columns(errors)})


# ----------------------------------------------------------------------------- public API

def _check_sizes(n_detections: int, n_shards: int, block_rows: int) -> None:
    if int(n_detections) < 1:
        raise XsiftError(f"--detections {n_detections}: expected a positive number of detections")
    if int(n_shards) < 1 or int(n_shards) > int(n_detections):
        raise XsiftError(f"--shards {n_shards}: expected between 1 and the number of detections "
                         f"({n_detections})")
    if int(block_rows) < 1:
        raise XsiftError(f"block_rows {block_rows}: expected a positive number of rows")


def _blocks(n_detections: int, block_rows: int):
    n_blocks = -(-n_detections // block_rows)
    for bi in range(n_blocks):
        yield bi, min(block_rows, n_detections - bi * block_rows), n_blocks


def simulate_catalog(n_detections: int, *, seed: int = 0, block_rows: int = DEFAULT_BLOCK_ROWS,
                     calibration: str | None = None, errors: bool = False):
    """The whole simulated catalogue of ``n_detections`` rows in memory, as a pandas DataFrame
    (``errors``: with measurement errors and their ``_lolim``/``_hilim`` columns, module docstring).

    Equal to the concatenation of the shards ``write_simulated_catalog`` writes with the same
    ``n_detections``, ``seed`` and ``block_rows``, whatever their number.
    """
    import pyarrow as pa
    _check_sizes(n_detections, 1, block_rows)
    tables = [simulate_block(n, bi, seed=seed, n_blocks=nb, block_rows=block_rows, calibration=calibration,
                             errors=errors)
              for bi, n, nb in _blocks(int(n_detections), int(block_rows))]
    return pa.concat_tables(tables).to_pandas()


def shard_path(out_dir: str | os.PathLike, index: int) -> pathlib.Path:
    return pathlib.Path(out_dir) / f"part-{index:05d}.parquet"


def write_simulated_catalog(out_dir: str | os.PathLike, n_detections: int, *, n_shards: int = 1,
                            seed: int = 0, block_rows: int = DEFAULT_BLOCK_ROWS,
                            calibration: str | None = None, progress=None, errors: bool = False) -> list[pathlib.Path]:
    """Stream the simulated catalogue to ``out_dir/part-00000.parquet`` ... (``n_shards`` files).

    Shard ``s`` holds rows ``[n*s//S, n*(s+1)//S)`` of the one row sequence (so a source's
    detections may straddle two shards), one row group per generation block it touches. Each
    shard is written to a hidden temporary file and renamed into place once complete; on any
    error the temporary files are removed. At most two blocks are in memory at a time (one
    being generated while the previous one is written by a writer thread). Stale
    ``part-*.parquet`` files of an earlier, larger run in ``out_dir`` are removed at the end.
    ``progress(rows_done, n_detections)`` is called after each block if given. ``errors``: with
    measurement errors (module docstring).
    """
    import concurrent.futures
    import pyarrow.parquet as pq
    n, S, B = int(n_detections), int(n_shards), int(block_rows)
    _check_sizes(n, S, B)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bounds = [n * s // S for s in range(S + 1)]
    paths = [shard_path(out, s) for s in range(S)]
    temps = [out / f".{p.name}.tmp-{os.getpid()}" for p in paths]
    writers: dict[int, pq.ParquetWriter] = {}
    state = {"shard": 0}

    def write_block(table, start: int) -> None:
        """Append rows ``start ...`` of the catalogue to the shards they belong to, in order."""
        rows, pos = table.num_rows, 0
        while pos < rows:
            shard = state["shard"]
            end = min(rows, bounds[shard + 1] - start)
            if shard not in writers:
                # dictionary-encode only the two type columns: trying it on random floats
                # costs most of the write time and makes larger files
                writers[shard] = pq.ParquetWriter(temps[shard], table.schema, compression="snappy",
                                                  use_dictionary=["main_type", "true_class"])
            writers[shard].write_table(table.slice(pos, end - pos), row_group_size=B)
            pos = end
            if start + pos >= bounds[shard + 1]:
                writers.pop(shard).close()
                os.replace(temps[shard], paths[shard])
                state["shard"] = shard + 1
        if progress is not None:
            progress(start + rows, n)

    # block i+1 is generated while block i is written (Parquet encoding releases the GIL);
    # writes run one at a time, in order, in the one writer thread: at most two blocks in memory
    pending = None
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        try:
            for bi, rows, nb in _blocks(n, B):
                table = simulate_block(rows, bi, seed=seed, n_blocks=nb, block_rows=B,
                                       calibration=calibration, errors=errors)
                if pending is not None:
                    pending.result()
                pending = pool.submit(write_block, table, bi * B)
                del table
            pending.result()
        except BaseException:
            if pending is not None:
                concurrent.futures.wait([pending])
            for w in writers.values():
                try:
                    w.close()
                except Exception:
                    pass
            for t in temps:
                t.unlink(missing_ok=True)
            raise
    for stale in out.glob("part-*.parquet"):
        if stale not in paths:
            stale.unlink()
    return paths
