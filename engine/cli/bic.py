"""``xsift bic``: the BIC curve over the number of mixture components and the elbow choice of K
(the paper's Fig. 1).

Argument parsing and printing only; the work is :mod:`xsift.methods.model_selection` and
``xsift.kernels.gmm.bic_sweep``.
"""
from __future__ import annotations

import pathlib
import time

from xsift.errors import XsiftError

CLI_HELP = "BIC of full-covariance Gaussian mixtures against K (the paper's Fig. 1) and the elbow choice of K"


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
    import numpy as np
    from xsift.config import load_preset
    from xsift.data.io import write_table
    from xsift.kernels.gmm import CHOOSE_K_THRESHOLD, bic_sweep, choose_k
    from xsift.methods.model_selection import bic_table, catalog_features, check_free_parameters, parse_k_range
    from xsift.report import write_manifest

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
    check_free_parameters(len(X), X.shape[1], ks, source=str(args.catalog))
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
    write_manifest(out, command="bic", inputs=[str(args.catalog)], preset=preset.name,
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
