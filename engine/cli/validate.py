"""``xsift validate``: the 70/30 stratified validation of the cluster-then-label classifier.

Argument parsing only; the work is :func:`xsift.methods.validation.validate`.
"""
from __future__ import annotations

import time

from xsift.cli import add_format_option
from xsift.cli.cluster_then_label import DISTANCES, add_quiet_option, with_progress

CLI_HELP = "70/30 stratified validation of the cluster-then-label classifier: confusion matrices, precision/recall/F1"


def add_cli_arguments(parser) -> None:
    parser.add_argument("catalog", metavar="CATALOG", help="labelled catalogue (Parquet, CSV, FITS or VOTable)")
    parser.add_argument("--out", required=True, metavar="DIR", help="directory for the tables (CSV unless --format), figures, manifest")
    parser.add_argument("--k", type=int, default=6, help="number of GMM clusters")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the GMM")
    parser.add_argument("--split-seed", type=int, default=0, help="random seed of the stratified split")
    parser.add_argument("--test-fraction", type=float, default=0.3, help="share of each class held out")
    parser.add_argument("--distance", choices=DISTANCES, default="squared",
                        help="squared Mahalanobis distance (published tables) or its square root")
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG confusion matrices")
    add_format_option(parser, default="csv", what="the tables")
    add_quiet_option(parser)


@with_progress("validate", ("read", "validate", "write"))
def run_cli(args) -> int:
    from xsift.data.io import read_catalog
    from xsift.methods.validation import validate
    from xsift.report.outputs import write_validation
    from xsift.report import write_manifest
    t0 = time.perf_counter()
    args.progress("read")
    df = read_catalog(args.catalog)
    args.progress("validate")
    result = validate(df, args.config or "csc", n_components=args.k, seed=args.seed, split_seed=args.split_seed,
                      test_fraction=args.test_fraction, distance=args.distance, precision=args.precision,
                      source=str(args.catalog))
    args.progress("write")
    from xsift.config import load_preset
    from xsift.data.columns import provenance
    written = write_validation(result, args.out, figures=not args.no_figures, fmt=args.format,
                               provenance=provenance(method="cluster_then_label",
                                                     preset=load_preset(args.config or "csc").name,
                                                     model_hash=result["model_hash"], inputs=[str(args.catalog)],
                                                     command="xsift validate"))
    c = result["counts"]
    write_manifest(args.out, command="validate", inputs={"catalog": str(args.catalog)},
                   config={"k": args.k, "seed": args.seed, "split_seed": args.split_seed,
                           "test_fraction": args.test_fraction, "distance": args.distance,
                           "precision": args.precision},
                   model_hash=result["model_hash"], counts=c, outputs=written,
                   elapsed_s=round(time.perf_counter() - t0, 3))
    print(f"validation: {c['test']:,} held-out detections ({c['test_scored']:,} scored); accuracy "
          f"{c['accuracy']:.3f}, aggregated {c['accuracy_aggregated']:.3f} -> {args.out}")
    return 0
