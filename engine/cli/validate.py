"""``xsift validate``: the held-out validation, split by source, of either classifier, and the optional
temperature calibration of its probabilities.

Argument parsing only; the work is :func:`xsift.methods.validation.validate`.
"""
from __future__ import annotations

import pathlib
import time

from xsift.cli import add_format_option
from xsift.cli.cluster_then_label import (DISTANCES, add_calibrate_by_option, add_errors_option, add_missing_option,
                                       add_quiet_option, with_progress)

CLI_HELP = ("70/30 validation split by source (stratified by class): confusion matrices, precision/recall/F1, "
            "prior-corrected precision, reliability diagram and ECE; --calibrate fits a temperature")
METHODS = {"ctl": "csc", "nb": "nb_csc"}     # --method -> its default preset


def add_cli_arguments(parser) -> None:
    parser.add_argument("catalog", metavar="CATALOG", help="labelled catalogue (Parquet, CSV, FITS or VOTable)")
    parser.add_argument("--out", required=True, metavar="DIR", help="directory for the tables (CSV unless --format), figures, manifest")
    parser.add_argument("--method", choices=sorted(METHODS), default=None,
                        help="ctl: cluster-then-label (preset csc), nb: naive Bayes (preset nb_csc); default: the "
                             "method of --config's preset, else ctl")
    parser.add_argument("--calibrate", action="store_true",
                        help="fit a temperature to the held-out detections' probabilities; report the ECE before "
                             "and after, and save it with the model in OUT/model")
    add_calibrate_by_option(parser)
    parser.add_argument("--k", type=int, default=6, help="number of GMM clusters (ctl)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the GMM")
    parser.add_argument("--split-seed", type=int, default=0, help="random seed of the split by source")
    parser.add_argument("--test-fraction", type=float, default=0.3, help="share of each class's sources held out")
    parser.add_argument("--distance", choices=DISTANCES, default="squared",
                        help="squared Mahalanobis distance (published tables) or its square root")
    add_missing_option(parser)
    parser.set_defaults(missing=None)      # None: marginalise for cluster-then-label; naive Bayes has no modes
    add_errors_option(parser)
    parser.add_argument("--no-figures", action="store_true",
                        help="skip the PNG figures (confusion matrices, reliability diagram)")
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
    from xsift.config import load_preset
    from xsift.errors import XsiftError
    preset = load_preset(args.config or METHODS[args.method or "ctl"])
    wanted = {"ctl": "cluster_then_label", "nb": "naive_bayes"}.get(args.method)
    if wanted and preset.method != wanted:
        raise XsiftError(f"{args.config}: a {preset.method} preset; --method {args.method} needs a {wanted} preset")
    if preset.method == "naive_bayes" and (args.k != 6 or args.distance != "squared"):
        raise XsiftError("--k and --distance are options of the cluster-then-label method; naive Bayes has neither")
    if preset.method == "naive_bayes" and args.errors:
        raise XsiftError("--errors is an option of the cluster-then-label method; naive Bayes reads error weights "
                         "from its preset")
    if preset.method == "naive_bayes" and args.missing is not None:
        raise XsiftError("--missing is an option of the cluster-then-label method; naive Bayes classifies "
                         "detections with missing properties as they are")
    estimator = None
    if preset.method == "cluster_then_label":
        args.missing = args.missing or "marginalise"
        from xsift.methods.cluster_then_label import ClusterThenLabel
        estimator = ClusterThenLabel(preset=preset, n_components=args.k, distance=args.distance, seed=args.seed,
                                     precision=args.precision, missing=args.missing, errors=bool(args.errors))
    df = read_catalog(args.catalog)
    args.progress("validate")
    result = validate(df, preset, estimator=estimator, n_components=args.k, seed=args.seed, split_seed=args.split_seed,
                      test_fraction=args.test_fraction, distance=args.distance, precision=args.precision,
                      calibrate=args.calibrate, calibration_objective=args.calibrate_by, source=str(args.catalog))
    args.progress("write")
    from xsift.data.columns import provenance
    written = {"model": str(pathlib.Path(args.out) / "model")}
    result["model"].save(written["model"])
    written.update(write_validation(result, args.out, figures=not args.no_figures, fmt=args.format,
                                    provenance=provenance(method=result["method"], preset=preset.name,
                                                          model_hash=result["model_hash"],
                                                          inputs=[str(args.catalog)], command="xsift validate")))
    c = result["counts"]
    write_manifest(args.out, command="validate", inputs={"catalog": str(args.catalog)},
                   config={"k": args.k, "seed": args.seed, "split_seed": args.split_seed,
                           "test_fraction": args.test_fraction, "distance": args.distance,
                           "precision": args.precision, "method": result["method"], "preset": preset.name,
                           "missing": args.missing, "errors": bool(args.errors),
                           "calibrate": bool(args.calibrate),
                           **({"calibrate_by": args.calibrate_by} if args.calibrate else {})},
                   model_hash=result["model_hash"], counts=c, outputs=written,
                   elapsed_s=round(time.perf_counter() - t0, 3))
    agg = "" if c["accuracy_aggregated"] is None else f", aggregated {c['accuracy_aggregated']:.3f}"
    cal = "" if c["temperature"] is None else f" -> {c['ece_calibrated']:.3f} at temperature {c['temperature']:.3g}"
    print(f"validation: {c['test']:,} held-out detections of {c['test_sources']:,} sources ({c['test_scored']:,} "
          f"scored); accuracy {c['accuracy']:.3f}{agg}; ECE {c['ece']:.3f}{cal} -> {args.out}")
    return 0
