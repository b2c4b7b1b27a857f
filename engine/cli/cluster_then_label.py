"""``xsift fit``, ``xsift classify``, ``xsift run``: the cluster-then-label method on one catalogue.

::

    xsift fit CATALOG --out model/ [--k 6]             # transform + GMM + per-cluster class statistics
    xsift classify CATALOG --model model/ --out run/   # detection-level, uniquely classified, ambiguous tables
    xsift run CATALOG --out run/                       # both, as the paper's whole run
    xsift run CATALOG --out run/ --calibrate           # fit on 70 % of the labelled sources, temperature on
                                                       # the held-out 30 %, classify with the calibrated model

Argument parsing and printing only: the work is :class:`xsift.ClusterThenLabel` and
:mod:`xsift.report.outputs`. Heavy modules are imported inside the ``run_*`` functions so that
``xsift --help`` stays fast.
"""
from __future__ import annotations

import functools
import pathlib
import time

from xsift.cli import TABLE_FORMATS as FORMATS, add_format_option
from xsift.errors import XsiftError

# the choices argparse offers; tests/cli checks them against xsift.methods.cluster_then_label.DISTANCES
# and FORMATS against xsift.report.outputs.FORMAT_SUFFIX (importing those here would load NumPy and
# pandas for --help)
DISTANCES = ("squared", "mahalanobis")
# and MISSING against xsift.methods.cluster_then_label.MISSING
MISSING = ("drop", "median", "marginalise")
MISSING_HELP = ("detections missing a feature: drop them (the paper's catalogue), fill the feature with the "
                "training median (the paper's notebook), or marginalise the Gaussians over it (observed "
                "features only); the fit uses complete detections in every mode")


def add_missing_option(parser, *, classify: bool = False) -> None:
    """``--missing drop|median|marginalise``: saved with a fitted model (default marginalise); when classifying
    with a saved model, default: the model's own mode."""
    if classify:
        parser.add_argument("--missing", choices=MISSING, default=None, type=_missing_mode,
                            help=MISSING_HELP + " (default: the mode saved with the model)")
    else:
        parser.add_argument("--missing", choices=MISSING, default="marginalise", type=_missing_mode,
                            help=MISSING_HELP + "; saved with the model (default: %(default)s)")


def _missing_mode(value: str) -> str:
    """The --missing value, with the American spelling accepted: marginalize -> marginalise."""
    return "marginalise" if value == "marginalize" else value

ERRORS_HELP = ("use each detection's measurement errors (the preset's error columns, CSC's _lolim/_hilim bounds): "
               "cluster with extreme deconvolution and measure class distances with the class covariance plus "
               "the detection's errors")


def add_errors_option(parser, *, classify: bool = False) -> None:
    """``--errors``: saved with a fitted model; when classifying with a saved model, turns errors on for this run,
    ``--no-errors`` off (default: the model's own setting)."""
    parser.add_argument("--errors", action="store_true", default=None if classify else False,
                        help=ERRORS_HELP + (" (default: as saved with the model)" if classify
                                            else "; saved with the model"))
    if classify:
        parser.add_argument("--no-errors", dest="errors", action="store_false",
                            help="classify without measurement errors although the model was fitted with them "
                                 "(a table without the error columns): its deconvolved class covariances alone")


fit_help = "fit the cluster-then-label model (feature transform, GMM, per-cluster class statistics)"
classify_help = "classify the unlabelled detections of a catalogue with a saved model; master classes per source"
classify_common = ("device", "precision")   # the preset is the saved model's
run_help = "fit the cluster-then-label model on a catalogue and classify it (the paper's whole run)"


def add_quiet_option(parser) -> None:
    """``--quiet``: no progress bar (:mod:`xsift.report.progress`) for this command."""
    parser.add_argument("--quiet", action="store_true",
                        help="draw no progress bar (one is drawn on standard error only when it is a terminal; "
                             "XSIFT_PROGRESS=0 switches it off for every command)")


def with_progress(title: str, stages=None):
    """Decorator of a command's run function ``run(args, ...)``: while it runs, ``args.progress`` is a
    :class:`xsift.report.progress.StageProgress` titled ``xsift TITLE`` over ``stages`` (default: the
    in-memory run's), drawn when :func:`xsift.report.progress.progress_wanted` says so (``--quiet``,
    ``XSIFT_PROGRESS``, a terminal on standard error), and closed when it returns or raises."""
    def wrap(run):
        @functools.wraps(run)
        def runner(args, *more, **options):
            from xsift.report.progress import STAGES, StageProgress, progress_wanted
            with StageProgress(f"xsift {title}", STAGES if stages is None else stages,
                               enabled=progress_wanted(getattr(args, "quiet", False))) as progress:
                args.progress = progress
                return run(args, *more, **options)
        return runner
    return wrap


def _add_input_arguments(parser) -> None:
    parser.add_argument("catalog", metavar="CATALOG",
                        help="catalogue: Parquet file or directory of shards, CSV, FITS or VOTable")
    parser.add_argument("--reference", metavar="REF", default=None,
                        help="take reference types from a crossmatch with this table (ra, dec, type column) "
                             "instead of the catalogue's type column")
    parser.add_argument("--radius", default="1arcsec",
                        help="crossmatch radius for --reference (e.g. 1arcsec, 0.5arcsec, 2e-4deg)")
    parser.add_argument("--type-column", default="main_type",
                        help="the reference table's type column for --reference")


def _add_fit_options(parser) -> None:
    parser.add_argument("--k", type=int, default=6, help="number of GMM clusters (see `xsift bic`)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the GMM initialisation")
    parser.add_argument("--distance", choices=DISTANCES, default="squared",
                        help="squared Mahalanobis distance (the published tables) or its square root (Eq. 6)")
    add_missing_option(parser)
    add_errors_option(parser)


def _add_output_options(parser) -> None:
    add_format_option(parser)
    parser.add_argument("--published-format", action="store_true",
                        help="write the master-class tables' probabilities as the paper's 'mean±std' text columns")
    parser.add_argument("--no-figures", action="store_true", help="skip the figures")
    from xsift.cli.explore import add_samp_option
    add_samp_option(parser)


def add_fit_arguments(parser) -> None:
    _add_input_arguments(parser)
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="model directory to write (model.npz, model.json, clusters table, manifest)")
    _add_fit_options(parser)
    add_format_option(parser, what="the clusters table")
    add_quiet_option(parser)


def add_classify_arguments(parser) -> None:
    parser.add_argument("catalog", metavar="CATALOG",
                        help="detections to classify: Parquet file or directory, CSV, FITS or VOTable "
                             "(a type column is optional; labelled detections are not classified)")
    parser.add_argument("--model", required=True, metavar="DIR", help="a model directory written by `xsift fit`")
    parser.add_argument("--out", required=True, metavar="DIR", help="directory for the tables and manifest")
    add_missing_option(parser, classify=True)
    add_errors_option(parser, classify=True)
    _add_output_options(parser)
    add_quiet_option(parser)


def add_calibrate_by_option(parser) -> None:
    """``--calibrate-by brier|nll``: the score the temperature of ``--calibrate`` minimises."""
    parser.add_argument("--calibrate-by", choices=("brier", "nll"), default="brier",
                        help="score the temperature minimises on the held-out detections: the Brier score "
                             "(default; bounded per detection, so the few true classes at vanishing probability "
                             "do not dominate it) or the negative log-likelihood (Guo et al. 2017)")


def add_calibration_arguments(parser) -> None:
    """``--calibrate``, ``--split-seed``, ``--test-fraction``: the held-out split by source of
    :func:`xsift.methods.validation.stratified_split` and the temperature fitted on it."""
    parser.add_argument("--calibrate", action="store_true",
                        help="hold out whole labelled sources (as `xsift validate`), fit the model on the rest, fit "
                             "a temperature to the held-out detections' probabilities, save it with the model and "
                             "classify with the calibrated probabilities; the manifest reports the held-out ECE "
                             "before and after")
    add_calibrate_by_option(parser)
    parser.add_argument("--split-seed", type=int, default=0, help="random seed of the split by source (--calibrate)")
    parser.add_argument("--test-fraction", type=float, default=0.3,
                        help="share of each class's sources held out (--calibrate; default: %(default)s)")


def add_run_arguments(parser) -> None:
    _add_input_arguments(parser)
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="directory for the model, tables, figures and manifest")
    _add_fit_options(parser)
    add_calibration_arguments(parser)
    _add_output_options(parser)
    add_quiet_option(parser)


def _load_inputs(args, preset):
    """(catalogue DataFrame, inputs record for the manifest); with --reference the reference types come
    from a crossmatch with that table."""
    from xsift.data.io import read_catalog
    df = read_catalog(args.catalog)
    inputs = {"catalog": str(args.catalog)}
    if getattr(args, "reference", None):
        from xsift.data.crossmatch import crossmatch, parse_radius
        from xsift.methods.cluster_then_label import preset_columns
        ref = read_catalog(args.reference)
        cols = preset_columns(preset)
        df, xm = crossmatch(df, ref, radius_arcsec=parse_radius(args.radius), type_column=args.type_column,
                            out_column=cols["type"], ra=cols["ra"], dec=cols["dec"], reference_name=args.reference)
        inputs.update({"reference": str(args.reference), "crossmatch": xm})
    return df, inputs


def _estimator(args, preset):
    from xsift.methods.cluster_then_label import ClusterThenLabel
    return ClusterThenLabel(preset=preset, n_components=args.k, seed=args.seed, distance=args.distance,
                            precision=getattr(args, "precision", "float64"), missing=args.missing,
                            errors=bool(getattr(args, "errors", False)))


def _provenance(command: str, preset, model_hash: str, inputs: dict) -> dict:
    """The tables' header record (:func:`xsift.data.columns.provenance`): method, preset name, model
    hash and the input files (catalogue, and reference table if any)."""
    from xsift.data.columns import provenance
    files = [inputs[k] for k in ("catalog", "reference") if inputs.get(k)]
    return provenance(method="cluster_then_label", preset=preset.name, model_hash=model_hash, inputs=files,
                      command=f"xsift {command}")


def _check_output_options(args) -> None:
    if args.published_format and args.format == "fits":
        raise XsiftError("--published-format writes 'mean±std' text, which FITS (ASCII-only strings) "
                         "cannot hold; use --format csv or parquet with it, or drop --published-format")


@with_progress("fit", ("read", "check", "features", "cluster", "write"))
def run_fit(args) -> int:
    from xsift.data.io import write_table
    from xsift.methods.cluster_then_label import resolve_preset
    from xsift.report.outputs import FORMAT_SUFFIX
    from xsift.report import write_manifest
    t0 = time.perf_counter()
    preset = resolve_preset(args.config or "csc")
    args.progress("read")
    df, inputs = _load_inputs(args, preset)
    model = _estimator(args, preset).fit(df, source=str(args.catalog), progress=args.progress)
    report = model.fit_report_
    out = pathlib.Path(args.out)
    clusters = model.cluster_table(df, source=str(args.catalog))
    args.progress("write")
    digest = model.save(out)
    path = write_table(clusters, out / f"clusters{FORMAT_SUFFIX[args.format]}", args.format,
                       provenance=_provenance("fit", preset, digest, inputs))
    write_manifest(out, command="fit", inputs=inputs, config={"k": args.k, "seed": args.seed,
                   "distance": args.distance, "missing": args.missing, "errors": bool(args.errors),
                   "precision": args.precision, "preset": preset.source},
                   model_hash=digest, fit=report, outputs={"model": str(out), "clusters": str(path)},
                   elapsed_s=round(time.perf_counter() - t0, 3))
    print(f"model {digest[:12]} -> {out} ({report['complete']:,} complete detections, "
          f"{report['references_complete']:,} references, {len(report['excluded'])} excluded "
          f"(cluster, class) pairs)")
    _note_negative_errors(report, args.catalog)
    return 0


def _note_negative_errors(report: dict, catalog) -> None:
    """One line when measurement errors were negative (bounds reversed) and so ignored."""
    bad = report.get("negative_errors_ignored")
    if bad:
        each = ", ".join(f"{feature} {n:,}" for feature, n in bad.items())
        print(f"  {catalog}: {sum(bad.values()):,} measurement error(s) negative (upper bound below the lower, e.g. "
              f"*_hilim < *_lolim), taken as no error: {each}")


@with_progress("classify")
def run_classify(args) -> int:
    from xsift.data.features import raw_feature_columns
    from xsift.data.io import read_catalog
    from xsift.methods.cluster_then_label import ClusterThenLabel
    from xsift.report.outputs import run_figures, write_tables
    from xsift.report import write_manifest
    _check_output_options(args)
    t0 = time.perf_counter()
    model = ClusterThenLabel.load(args.model).set_params(precision=args.precision)
    if args.missing is not None:
        model.set_params(missing=args.missing)
    if args.errors is not None:
        model.set_params(errors=bool(args.errors))
    args.progress("read")
    df = read_catalog(args.catalog)
    result = model.classify(df, source=str(args.catalog), progress=args.progress)
    report, summary = result.report["classify"], result.report["voting"]
    out = pathlib.Path(args.out)
    tables = result.tables()
    args.progress("write")
    written = write_tables(tables, out, args.format, model.classes_, args.published_format,
                           provenance=_provenance("classify", model.preset_, model.model_hash,
                                                  {"catalog": str(args.catalog)}))
    if not args.no_figures:
        written.update(run_figures(tables, model.n_clusters_, out))
    write_manifest(out, command="classify", inputs={"catalog": str(args.catalog), "model": str(args.model)},
                   config={"precision": args.precision, "missing": model.missing, "errors": bool(model.errors),
                           "format": args.format,
                           "published_format": args.published_format},
                   model_hash=model.model_hash, classify=report, voting=summary, outputs=written,
                   elapsed_s=round(time.perf_counter() - t0, 3))
    print(f"{report['classified']:,} detections classified ({report['no_usable_class']:,} without a usable "
          f"class); {summary['uniquely_classified']:,} sources uniquely classified, {summary['ambiguous']:,} "
          f"ambiguous (kappa {summary['cohen_kappa_hard_soft']:.3f}) -> {out}")
    from xsift.cli.explore import send_tables
    send_tables(args, [written[name] for name in tables])
    if report.get("classified_incomplete"):
        print(f"  {report['classified_incomplete']:,} of them with missing features (--missing {model.missing})")
    dropped = ("with a missing feature (dropped, as in the paper)" if model.missing == "drop"
               else "without any observed feature")
    not_classified = {
        dropped: report.get("dropped_incomplete", 0),
        "labelled with a training class (references, not classified)": report.get("labelled_not_classified", 0),
        "of another SIMBAD type (neither reference nor classified)": report.get("other_type_not_classified", 0)}
    for what, count in not_classified.items():
        if count:
            print(f"  {count:,} detection(s) {what}")
    _note_negative_errors(report, args.catalog)
    if report.get("schema", {}).get("duplicates_dropped"):
        print(f"  {report['schema']['duplicates_dropped']:,} duplicate row(s) dropped (the same detection with the same "
              "values in every column read; see manifest.json)")
    empty = report.get("schema", {}).get("all_null_features", [])
    empty = [c for c in empty if c not in report.get("features_missing", [])]
    if report.get("features_missing"):
        print(f"  {args.catalog}: feature column(s) {', '.join(report['features_missing'])} absent; classified on "
              f"{', '.join(report['features_found'])} (--missing {model.missing})")
    for file, lacking in report.get("schema", {}).get("features_missing_by_file", {}).items():
        print(f"  {file}: feature column(s) {', '.join(lacking)} absent; its rows classified on the other "
              f"features (--missing {model.missing})")
    if empty and model.missing != "drop":
        print(f"  {args.catalog}: feature column(s) {', '.join(empty)} are null in every row; classified on the "
              f"other features (--missing {model.missing})")
    elif empty:
        print(f"  {args.catalog}: feature column(s) {', '.join(empty)} are null in every row, so no row of it "
              "is complete; the model needs all of " + ", ".join(raw_feature_columns(model.preset_))
              + " (the naive-Bayes branch, `xsift nb classify`, classifies rows with missing properties)")
    return 0


@with_progress("run")
def run_run(args) -> int:
    from xsift.methods.cluster_then_label import resolve_preset
    from xsift.report.outputs import run_figures, write_tables
    from xsift.report import write_manifest
    _check_output_options(args)
    t0 = time.perf_counter()
    preset = resolve_preset(args.config or "csc")
    args.progress("read")
    df, inputs = _load_inputs(args, preset)
    model = _estimator(args, preset)
    calibration = validation = None
    if args.calibrate:
        validation, calibration = _fit_calibrated(args, df, preset, model)
        model = validation["model"]
        result = model.classify(df, source=str(args.catalog), progress=args.progress)
        report = {"fit": model.fit_report_, **result.report, "calibration": calibration}
    else:
        result = model.fit_classify(df, source=str(args.catalog), progress=args.progress)
        report = dict(result.report)
    args.progress("cluster")   # the clusters table: every complete detection's cluster and probabilities
    tables = {"clusters": model.cluster_table(df, source=str(args.catalog)), **result.tables()}
    out = pathlib.Path(args.out)
    args.progress("write")
    digest = model.save(out / "model")
    written = write_tables(tables, out, args.format, model.classes_, args.published_format,
                           provenance=_provenance("run", preset, digest, inputs))
    if not args.no_figures:
        written.update(run_figures(tables, model.n_clusters_, out))
    if validation is not None:     # the held-out validation the temperature was fitted on, as `xsift validate` writes it
        from xsift.report.outputs import write_validation
        written.update({f"validation/{k}": v for k, v in write_validation(
            validation, out / "validation", figures=not args.no_figures, fmt=args.format,
            provenance=_provenance("run", preset, digest, inputs)).items()})
    write_manifest(out, command="run", inputs=inputs,
                   config={"k": args.k, "seed": args.seed, "distance": args.distance, "missing": args.missing,
                           "errors": bool(args.errors),
                           "precision": args.precision, "preset": preset.source, "format": args.format,
                           "published_format": args.published_format, "calibrate": bool(args.calibrate),
                           **({"split_seed": args.split_seed, "test_fraction": args.test_fraction,
                               "calibrate_by": args.calibrate_by}
                              if args.calibrate else {})},
                   model_hash=digest, **report, outputs=written, elapsed_s=round(time.perf_counter() - t0, 3))
    v = report["voting"]
    print(f"{report['classify']['classified']:,} detections classified; {v['uniquely_classified']:,} sources "
          f"uniquely classified, {v['ambiguous']:,} ambiguous (kappa {v['cohen_kappa_hard_soft']:.3f}) -> {out}")
    from xsift.cli.explore import send_tables
    send_tables(args, [written[name] for name in tables])
    if calibration is not None:
        print(f"  calibrated on {calibration['held_out_detections']:,} held-out detections of "
              f"{calibration['split']['test_sources']:,} sources: ECE {calibration['ece_raw']:.3f} -> "
              f"{calibration['ece_calibrated']:.3f} at temperature {calibration['temperature']:.3g}")
    return 0


def _fit_calibrated(args, df, preset, estimator):
    """(fitted model carrying its temperature, the manifest's ``calibration`` record) for ``run
    --calibrate``: :func:`xsift.methods.validation.validate` with ``calibrate=True`` holds out whole
    labelled sources (``--split-seed``, ``--test-fraction``), fits a copy of ``estimator`` with their
    labels hidden, and fits the temperature on the held-out labelled detections, as ``xsift validate
    --calibrate`` does with the same options. The record holds the temperature fit, the held-out ECE
    before (``ece_raw``) and after (``ece_calibrated``) and the cross-fitted ECE, and the split.
    Raises XsiftError when the catalogue has too few labelled sources to hold any out."""
    from xsift.methods.validation import validate
    val = validate(df, preset, estimator=estimator, split_seed=args.split_seed, test_fraction=args.test_fraction,
                   calibrate=True, calibration_objective=args.calibrate_by, source=str(args.catalog))
    c = val["counts"]
    record = {**val["calibration"], "held_out_detections": c["test"], "held_out_scored": c["test_scored"],
              "accuracy_held_out": c["accuracy"], "split": val["split"]}
    return val, record
