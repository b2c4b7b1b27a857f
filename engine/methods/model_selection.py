"""``xsift bic``: the BIC curve over the number of mixture components and the elbow choice of K.

The paper's Fig. 1 (Pérez-Díaz et al., Sec. 3.3): full-covariance Gaussian mixtures for
K = 2..20, each fitted several times from different k-means starts; the mean BIC and its
standard deviation per K, the gradient of the mean BIC, and the K after which the gradient
stops changing (:func:`xsift.kernels.gmm.choose_k`, rule and threshold documented there).

Data flow: read (``xsift.data.io``) -> the preset's features (``xsift.data.features``: derive,
complete rows only, the paper's log + min-max transform fitted on those rows) -> optional
seeded random subset -> ``xsift.kernels.gmm.bic_sweep`` -> ``bic.csv``, ``bic.png``,
``manifest.json`` in ``--out``.
"""
from __future__ import annotations

import pathlib
import re
import time

import numpy as np
import pandas as pd

from xsift.errors import XsiftError

CLI_HELP = "BIC of full-covariance Gaussian mixtures against K (the paper's Fig. 1) and the elbow choice of K"


def parse_k_range(text: str) -> list[int]:
    """'2..20' -> [2, ..., 20]; '2..20:2' -> every second; '3,6,9' -> those values."""
    text = text.strip()
    m = re.fullmatch(r"(\d+)\s*\.\.\s*(\d+)(?::(\d+))?", text)
    try:
        if m:
            lo, hi, step = int(m.group(1)), int(m.group(2)), int(m.group(3) or 1)
            ks = list(range(lo, hi + 1, step))
        else:
            ks = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        ks = []
    if len(ks) < 3 or min(ks) < 1:
        raise XsiftError(f"--k {text!r}: expected a range like 2..20 (or 2..20:2, or a list 2,4,6) "
                         "of at least 3 component counts >= 1")
    return ks


def bic_table(curve) -> pd.DataFrame:
    """k, bic_mean, bic_std, gradient (np.gradient of the mean BIC against K), bic_min (the best
    repeat's BIC), n_converged."""
    ks = np.asarray(curve.ks)
    return pd.DataFrame({
        "k": ks.astype(np.int64),
        "bic_mean": np.asarray(curve.bic_mean, np.float64),
        "bic_std": np.asarray(curve.bic_std, np.float64),
        "gradient": np.gradient(np.asarray(curve.bic_mean, np.float64), ks.astype(np.float64)),
        "bic_min": np.asarray(curve.bic, np.float64).min(axis=1),
        "n_converged": np.asarray(curve.converged).sum(axis=1).astype(np.int64),
    })


def catalog_features(path: str, preset: dict) -> tuple[np.ndarray, dict]:
    """Transformed features (n, d) of the complete rows of a catalogue, and row counts."""
    from xsift.data.features import FeatureTransform, complete_rows, derive_features, raw_feature_columns
    from xsift.data.io import read_catalog

    df = read_catalog(path, columns=raw_feature_columns(preset))
    feats = derive_features(df, preset)
    ok = complete_rows(feats)
    if not ok.any():
        raise XsiftError(f"{path}: no row has all {feats.shape[1]} features of preset "
                         f"{preset.get('name')!r}; cannot fit a mixture")
    transform = FeatureTransform.from_preset(preset).fit(feats[ok])
    X = transform.transform(feats[ok])
    ok_t = complete_rows(X)
    X = X[ok_t]
    counts = {"rows_read": int(len(df)), "rows_incomplete_dropped": int((~ok).sum()),
              "rows_untransformable_dropped": int((~ok_t).sum()), "rows_used": int(len(X))}
    return X, counts


def add_cli_arguments(parser) -> None:
    parser.add_argument("catalog", help="catalogue: Parquet file, directory of Parquet shards, glob, CSV, FITS or VOTable")
    parser.add_argument("--k", default="2..20", help="component counts: a range LO..HI[:STEP] or a list 2,4,6")
    parser.add_argument("--repeats", type=int, default=5, help="fits per K, each from its own seeded k-means start")
    parser.add_argument("--out", default="bic", help="output directory for bic.csv, bic.png and manifest.json")
    parser.add_argument("--sample", type=int, default=None,
                        help="fit a seeded random subset of this many complete rows (default: all rows)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for the subset and the k-means starts")
    parser.add_argument("--max-iter", type=int, default=100, help="EM iterations per fit at most")
    parser.add_argument("--tol", type=float, default=1e-3,
                        help="EM stops when the mean log-likelihood changes by less than this")
    parser.add_argument("--reg-covar", type=float, default=1e-6, help="added to covariance diagonals")
    parser.add_argument("--groups", type=int, default=None,
                        help="compiled programs: K values are split into this many runs, each padded to its "
                             "largest K (default: 2 below 200,000 rows, else 4; 1 = one program)")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="fits vmapped side by side inside a program (1 wastes no EM iterations)")


def run_cli(args) -> int:
    from xsift.data.features import load_preset
    from xsift.data.io import write_table
    from xsift.report import write_manifest
    from xsift.kernels.gmm import CHOOSE_K_THRESHOLD, bic_sweep, choose_k

    t0 = time.perf_counter()
    ks = parse_k_range(args.k)
    if args.repeats < 1:
        raise XsiftError(f"--repeats {args.repeats}: expected at least 1")
    preset = load_preset(args.config or "csc")
    X, counts = catalog_features(args.catalog, preset)
    print(f"xsift bic: {counts['rows_used']} complete rows of {counts['rows_read']} "
          f"({counts['rows_incomplete_dropped']} dropped for missing features)")
    rng = np.random.default_rng(args.seed)
    if args.sample is not None:
        if args.sample < 1:
            raise XsiftError(f"--sample {args.sample}: expected a positive row count")
        if args.sample < len(X):
            X = X[np.sort(rng.choice(len(X), args.sample, replace=False))]
            print(f"xsift bic: fitting a random subset of {len(X)} rows (seed {args.seed})")
    if len(X) < max(ks):
        raise XsiftError(f"{args.catalog}: {len(X)} usable rows but --k goes up to {max(ks)}; "
                         "need at least as many rows as components")
    dtype = getattr(args, "precision", None) or "float64"
    print(f"xsift bic: {len(ks)} values of K x {args.repeats} repeats on {X.shape[0]} x {X.shape[1]} ({dtype})",
          flush=True)
    try:
        curve = bic_sweep(X, ks=ks, repeats=args.repeats, seed=args.seed, max_iter=args.max_iter,
                          tol=args.tol, reg_covar=args.reg_covar, dtype=dtype, groups=args.groups,
                          batch_size=args.batch_size)
    except ValueError as exc:
        raise XsiftError(f"{args.catalog}: {exc}") from None
    chosen = choose_k(curve)
    table = bic_table(curve)
    out = pathlib.Path(args.out)
    write_table(table, out / "bic.csv")
    from xsift.report.figures import plot_bic
    plot_bic(table, chosen, out / "bic.png", title=f"{pathlib.Path(args.catalog).name}: {len(X)} rows, "
             f"{args.repeats} repeats per K")
    not_conv = int((~np.asarray(curve.converged)).sum())
    write_manifest(out, command="bic", inputs=[str(args.catalog)], preset=preset.get("name"),
                   ks=ks, repeats=args.repeats, sample=args.sample, seed=args.seed, precision=dtype,
                   max_iter=args.max_iter, tol=args.tol, reg_covar=args.reg_covar, chosen_k=chosen,
                   choose_k_threshold=CHOOSE_K_THRESHOLD, fits_not_converged=not_conv, **counts,
                   seconds=round(time.perf_counter() - t0, 2))
    if not_conv:
        print(f"xsift bic: warning: {not_conv} of {curve.bic.size} fits did not converge in {args.max_iter} "
              "iterations (see n_converged in bic.csv); raise --max-iter or --tol")
    print(f"xsift bic: wrote {out / 'bic.csv'} and {out / 'bic.png'}")
    print(f"chosen K = {chosen}")
    return 0
