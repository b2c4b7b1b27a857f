"""``xsift nb fit | tune | validate | classify | tracks``: the naive-Bayes classifier of Tranin et al. (2022)
from the command line.

A catalogue lacking some of the columns of a preset's (or model's) properties is fitted, validated and
classified with the properties it has (:func:`xsift.methods.nb_validation.preset_for_columns`); the
properties used and those left out are printed and written to the manifest. Columns are found under the
preset's names, in another letter case or under its ``[aliases]``. ``--model`` takes a model directory or
the name of a shipped model (``csc-mw``, :mod:`xsift.models`).

Argument parsing and calls of :mod:`xsift.methods.naive_bayes` (the estimator, weight tuning, metrics)
and :mod:`xsift.report` (figures, manifest). Nothing heavy (JAX, astropy, Dask, matplotlib) is imported
before a command runs, so ``xsift --help`` stays fast.
"""
from __future__ import annotations

import pathlib
import sys
import time
from functools import partial

CLI_HELP = "interpretable naive-Bayes classifier with KDE likelihoods: fit | tune | validate | classify | tracks"
CLI_COMMON = ()   # declared per sub-command below


def _read(path):
    """The catalogue at ``path``; XsiftError when it is absent, SchemaError when it has no rows (a
    header-only file), as the schema check of ``classify`` refuses an empty table."""
    from xsift.data.io import read_catalog
    from xsift.errors import SchemaError, XsiftError
    try:
        df = read_catalog(path)
    except FileNotFoundError:
        raise XsiftError(f"{path}: no such catalogue file") from None
    if len(df) == 0:
        raise SchemaError(f"{path}: the table is empty; expected at least one source")
    return df


def _matched(df, preset, source: str):
    """``df`` with the preset's property, error, source and label columns found in another letter case or
    under the preset's ``[aliases]`` renamed to the preset's names (:func:`xsift.data.schema.match_columns`)."""
    from xsift.data.schema import match_columns
    cols = preset.columns
    wanted = [*preset.feature_columns, *preset.error_columns,
              *(c for c in (cols.source, cols.label, cols.ra, cols.dec) if c)]
    df, renames = match_columns(df, wanted, preset.aliases, source=source)
    if renames:
        print("columns taken under other names: " + ", ".join(f"{w} <- {n}" for w, n in renames.items()))
    return df


def _with_columns_of(df, preset, source: str):
    """(the preset reduced to the properties ``df`` has, facts); prints what was left out."""
    from xsift.methods.nb_validation import describe_absent, preset_for_columns
    reduced, facts = preset_for_columns(preset, df.columns, source=source)
    lines = describe_absent(facts)
    if lines:
        print(f"{source}: using {len(facts['properties_used'])} of "
              f"{len(facts['properties_used']) + len(facts['properties_absent'])} properties: "
              + ", ".join(facts["properties_used"]))
        for line in lines:
            print("  " + line)
    return reduced, facts


def _weights_option(text: str | None, categories: list[str], option: str = "--weights", what: str = "category"):
    """``--weights a,b,c`` as T numbers in the preset's category order (None: the preset's weights); with
    ``option``/``what``, the same for another per-name list (``--priors``, one per class)."""
    from xsift.errors import XsiftError
    if not text:
        return None
    try:
        w = [float(v) for v in text.split(",")]
    except ValueError:
        raise XsiftError(f"{option} {text!r}: expected comma-separated numbers, one per {what} "
                         f"{categories}") from None
    if len(w) != len(categories) or min(w) < 0:
        raise XsiftError(f"{option}: expected {len(categories)} non-negative numbers, one per {what} of "
                         f"{categories}, got {w}")
    return w


def _run_fit(args, tune: bool) -> int:
    from xsift.cli.cluster_then_label import with_progress
    stages = ("read", "tune", "fit", "write") if tune else ("read", "fit", "write")
    return with_progress(f"nb {'tune' if tune else 'fit'}", stages)(_fit)(args, tune)


def _fit(args, tune: bool) -> int:
    from xsift.errors import SchemaError
    from xsift.methods.metrics import classification_metrics, format_metrics
    from xsift.methods.naive_bayes import NaiveBayesKDE, load_nb_preset, tune_weights
    from xsift.report import write_manifest
    t0 = time.perf_counter()
    from xsift.config import spec_from_preset
    spec = load_nb_preset(args.config)
    args.progress("read")
    df = _matched(_read(args.catalog), spec.preset, str(args.catalog))
    reduced, absent = _with_columns_of(df, spec.preset, str(args.catalog))
    spec = spec_from_preset(reduced)
    label = args.labels or spec.label_column
    if not label or label not in df.columns:
        raise SchemaError(f"{args.catalog}: label column {label!r} not found; pass --labels COLUMN "
                          f"(columns: {', '.join(map(str, df.columns[:30]))})")
    source = str(args.catalog)
    model = NaiveBayesKDE(spec, weights=_weights_option(args.weights, spec.category_names), n_grid=args.grid,
                          precision=args.precision, seed=args.seed,
                          **({"bandwidth": args.bandwidth} if args.bandwidth else {}))
    summary = None
    if tune:
        args.progress("tune")
        result = tune_weights(model, df, df[label], target=args.target, n_folds=args.folds, seed=args.seed,
                              popsize=args.popsize, maxiter=args.maxiter, tune_alpha=args.tune_alpha, source=source)
        model.set_params(**result.params)       # the weights, and missing_alpha when tuned
        summary = result.as_dict()
        pooled = f" = {' + '.join(summary['target_classes'])}" if "target_classes" in summary else ""
        print(f"tuned weights {summary['weights']}: cross-validated F1({result.target}{pooled}) "
              f"{result.f1_equal_weights:.3f} (equal) -> {result.f1_tuned:.3f}")
    args.progress("fit")
    model.fit(df, df[label], source=source)      # priors (if 'training') from the whole sample
    if summary is not None:
        summary["cross_validated_metrics"] = classification_metrics(
            result.y, result.cross_validated_predictions, spec.classes, model.priors_)
        print(format_metrics(summary["cross_validated_metrics"]))
    args.progress("write")
    model_hash = model.save(args.out)
    facts = {**model.fit_report_, "label_column": label, "properties": absent}
    write_manifest(args.out, command=f"nb {'tune' if tune else 'fit'}", inputs=[source],
                   config=spec.preset.name, precision=str(args.precision), model_hash=model_hash,
                   **facts, tuning=summary, seconds=round(time.perf_counter() - t0, 3))
    print(f"wrote naive-Bayes model ({len(spec.properties)} properties x {len(spec.classes)} classes, "
          f"{facts['training_rows']:,} training sources) to {args.out}")
    return 0


def _run_classify(args) -> int:
    from xsift.cli.cluster_then_label import with_progress
    return with_progress("nb classify", ("read", "classify", "write"))(_classify)(args)


def _classify(args) -> int:
    import numpy as np
    import pandas as pd
    from xsift.data.io import write_table
    from xsift.methods.naive_bayes import NaiveBayesKDE
    from xsift.report import write_manifest
    from xsift.report.figures import plot_outliers
    from xsift.report.outputs import FORMAT_SUFFIX
    from xsift.methods.nb_validation import restricted_model
    from xsift.models import resolve_model
    t0 = time.perf_counter()
    model = NaiveBayesKDE.load(resolve_model(args.model), precision=args.precision)
    args.progress("read")
    df = _matched(_read(args.catalog), model.spec_.preset, str(args.catalog))
    reduced, absent = _with_columns_of(df, model.spec_.preset, str(args.catalog))
    model = restricted_model(model, reduced)
    args.progress("classify")
    result = model.classify(df, source=str(args.catalog), keep_columns=_column_list(args.keep_columns))
    out, facts = result.detections, result.report["classify"]
    columns = _identity(model)
    aggregation = dict(model.spec_.preset.classes.aggregation)
    if aggregation:     # the preset's aggregated classes: summed posteriors of their members
        from xsift.data.columns import ColumnInfo
        from xsift.methods.nb_validation import aggregate_probabilities, aggregation_of
        names, index = aggregation_of(list(model.classes_), aggregation)
        summed = aggregate_probabilities(out[list(model.classes_)].to_numpy(dtype=np.float64), index, len(names))
        best = np.argmax(summed, axis=1)
        out["aggregated_class"] = pd.array(np.asarray(names, dtype=object)[best], dtype="str")
        out["aggregated_probability"] = summed[np.arange(len(out)), best]
        columns.update(aggregated_class=ColumnInfo(None, "most probable aggregated class (" + "; ".join(
                           f"{g} = {' + '.join(m)}" for g, m in aggregation.items()) + ")", "src.class"),
                       aggregated_probability=ColumnInfo("", "summed posterior of the aggregated class's members",
                                                         "stat.probability"))
    args.progress("write")
    outdir = pathlib.Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    table = write_table(out, outdir / f"nb_classification{FORMAT_SUFFIX[args.format]}", args.format,
                        classes=model.classes_, columns=columns,
                        provenance=_provenance(model, args.catalog, "nb classify"))
    classes = list(model.classes_)
    pred = np.asarray(pd.Categorical(out["predicted_class"], categories=classes).codes)
    plot_outliers(out["outlier_measure"].to_numpy(), pred, classes, outdir / "nb_outlier_measure.png")
    write_manifest(outdir, command="nb classify", inputs=[str(args.catalog)], model=str(args.model),
                   model_hash=facts["model_hash"], rows=int(len(df)), outputs=[table.name, "nb_outlier_measure.png"],
                   predicted_counts=facts["predicted_counts"],
                   log_of_non_positive_made_missing=facts["log_of_non_positive_made_missing"],
                   properties=absent, precision=str(args.precision), seconds=round(time.perf_counter() - t0, 3))
    print(f"classified {len(df):,} sources with {len(absent['properties_used'])} properties into {table}")
    from xsift.cli.explore import send_tables
    send_tables(args, [table])
    return 0


def _run_validate(args) -> int:
    from xsift.cli.cluster_then_label import with_progress
    return with_progress("nb validate", ("read", "folds", "write"))(_validate)(args)


def _validate(args) -> int:
    import numpy as np
    from xsift.methods.nb_validation import validate_naive_bayes, write_nb_validation
    from xsift.methods.naive_bayes import load_nb_preset
    from xsift.report import write_manifest
    t0 = time.perf_counter()
    spec = load_nb_preset(args.config)
    args.progress("read")
    df = _matched(_read(args.catalog), spec.preset, str(args.catalog))
    _with_columns_of(df, spec.preset, str(args.catalog))
    args.progress("folds")
    tune_options = {"popsize": args.popsize, "maxiter": args.maxiter, "tune_alpha": args.tune_alpha}
    result = validate_naive_bayes(df, spec.preset, n_folds=args.folds, tune=args.tune, seed=args.seed,
                                  label=args.labels, tune_options=tune_options if args.tune else None,
                                  priors=_weights_option(args.priors, spec.classes, "--priors", "class"),
                                  source=str(args.catalog))
    args.progress("write")
    outdir = pathlib.Path(args.out)
    from xsift.data.columns import provenance
    written = write_nb_validation(result, outdir, provenance=provenance(
        method="naive_bayes", preset=spec.preset.name, model_hash=None, inputs=[str(args.catalog)],
        command="xsift nb validate"))
    summary = result.as_dict()
    write_manifest(outdir, command="nb validate", inputs=[str(args.catalog)], config=spec.preset.name,
                   folds=args.folds, seed=args.seed, tune=args.tune, tune_options=tune_options if args.tune else None,
                   properties=result.properties, counts=result.counts, macro_f1=summary["macro_f1"],
                   ece=summary["ece"], outputs=sorted(pathlib.Path(p).name for p in written.values()),
                   seconds=round(time.perf_counter() - t0, 3))
    for title, per, macro in [("classes", summary["classes"], summary["macro_f1"])] + (
            [("aggregated classes", summary["aggregated"]["classes"], summary["aggregated"]["macro_f1"])]
            if "aggregated" in summary else []):
        w = max(len(c) for c in per) + 2
        print(f"{args.folds}-fold cross-validation by source, {title}:")
        print(f"  {'class':<{w}}{'precision':>10}{'prior-corr.':>12}{'recall':>8}{'F1':>7}{'support':>9}")
        for c, m in per.items():
            pc = m.get("precision_prior_corrected", np.nan)
            print(f"  {c:<{w}}{m['precision']:>10.3f}{pc:>12.3f}{m['recall']:>8.3f}{m['f1']:>7.3f}{m['support']:>9d}")
        print(f"  macro F1 {macro:.3f}")
    print(f"ECE (top class, {result.metrics['reliability']['n_bins']} bins) {summary['ece']:.3f}; wrote {outdir}")
    return 0


def _column_list(text: str | None) -> list[str]:
    """``--keep-columns A,B`` as column names (blank around commas ignored)."""
    return [c.strip() for c in (text or "").split(",") if c.strip()]


def _identity(model) -> dict:
    """Column metadata of the model's preset's identity columns under their own names."""
    from xsift.data.columns import identity_columns
    cols = model.spec_.preset.columns
    return identity_columns(source=cols.source, detection=cols.detection, ra=cols.ra or "ra", dec=cols.dec or "dec")


def _provenance(model, catalog, command: str) -> dict:
    from xsift.data.columns import provenance
    return provenance(method="naive_bayes", preset=model.spec_.preset.name, model_hash=model.model_hash,
                      inputs=[str(catalog)], command=f"xsift {command}")


def _run_tracks(args) -> int:
    import numpy as np
    import pandas as pd
    from xsift.data.io import write_table
    from xsift.errors import SchemaError, XsiftError
    from xsift.methods.naive_bayes import NaiveBayesKDE
    from xsift.report.figures import plot_tracks
    from xsift.report.outputs import FORMAT_SUFFIX
    from xsift.methods.nb_validation import restricted_model
    from xsift.models import resolve_model
    model = NaiveBayesKDE.load(resolve_model(args.model), precision=args.precision)
    df = _matched(_read(args.catalog), model.spec_.preset, str(args.catalog))
    model = restricted_model(model, _with_columns_of(df, model.spec_.preset, str(args.catalog))[0])
    col = args.name_column or model.spec_.source_column
    if not col or col not in df.columns:
        raise SchemaError(f"{args.catalog}: source-name column {col!r} not found; pass --name-column")
    rows = np.flatnonzero(df[col].astype("str").str.strip().to_numpy() == args.name.strip())
    if len(rows) == 0:
        raise XsiftError(f"{args.catalog}: no row with {col} = {args.name!r}")
    track = model.tracks(df.iloc[rows[:1]])
    outdir = pathlib.Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    safe = "".join(ch if ch.isalnum() or ch in "+-._" else "_" for ch in args.name.strip())
    from xsift.data.columns import ColumnInfo
    levels = {"level": ColumnInfo(None, "what the row's probabilities come from: property, category or posterior"),
              "name": ColumnInfo(None, "the property or category, or 'posterior'", "meta.id"),
              "category": ColumnInfo(None, "category of the property"),
              "value": ColumnInfo(None, "the property's value (its transformed axis); the outlier measure on "
                                        "the posterior row"),
              "weight": ColumnInfo("", "category weight alpha_t (Tranin et al. 2022, Eq. 1)")}
    path = write_table(track, outdir / f"tracks_{safe}{FORMAT_SUFFIX[args.format]}", args.format,
                       classes=model.classes_, columns=levels,
                       provenance=_provenance(model, args.catalog, "nb tracks"))
    plot_tracks(track, list(model.classes_), f"{args.name}  (outlier measure {track['value'].iloc[-1]:.2f})",
                outdir / f"tracks_{safe}.png")
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(track.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if len(rows) > 1:
        print(f"note: {len(rows)} rows have {col} = {args.name!r}; showed the first", file=sys.stderr)
    print(f"wrote {path} and {outdir}/tracks_{safe}.png")
    return 0


def add_cli_arguments(parser) -> None:
    """Declare ``nb fit | tune | classify | tracks`` and their options on ``parser``."""
    from xsift.cli import HelpFormatter, _common_options, add_format_option
    from xsift.cli.cluster_then_label import add_quiet_option
    sub = parser.add_subparsers(dest="nb_command", metavar="fit|tune|validate|classify|tracks", required=True,
                                help="fit KDE likelihoods, tune category weights, cross-validate, classify a "
                                     "catalogue, or draw probability tracks")

    def subparser(name, help_text, common=("device", "precision")):
        """fit/tune also read a preset (--config); classify/tracks use the saved model's preset."""
        return sub.add_parser(name, help=help_text, description=help_text, parents=[_common_options(common)],
                              formatter_class=HelpFormatter)

    for name, text in (("fit", "fit the per-(property, class) KDEs and priors on a labelled catalogue"),
                       ("tune", "tune the category weights by differential evolution on cross-validated "
                                "F1 of one class, then fit and save the model")):
        p = subparser(name, text, ("device", "precision", "config"))
        p.add_argument("catalog", help="labelled training catalogue (Parquet, CSV, FITS, VOTable)")
        p.add_argument("--labels", default=None,
                       help="column holding the class labels (default: the preset's [columns] label)")
        p.add_argument("--out", default="nb_model", help="model directory to write (model.npz + model.json)")
        p.add_argument("--weights", default=None,
                       help="comma-separated category weights in the preset's category order "
                            "(default: the preset's weights)")
        p.add_argument("--grid", type=int, default=2048, help="KDE grid nodes per (property, class) pair")
        p.add_argument("--bandwidth", choices=["scott", "claxboi", "cv"], default=None,
                       help="KDE bandwidth: Scott's rule, CLAXBOI's range / (5 n^(1/5)) or held-out likelihood "
                            "(default: the preset's [naive_bayes] bandwidth, else scott)")
        p.add_argument("--seed", type=int, default=0, help="random seed (folds, DE, cv bandwidth)")
        if name == "tune":
            p.add_argument("--target", "--tune", dest="target", default=None,
                           help="class, or aggregated class of the preset's [classes.aggregation] (XRB: F1 of "
                                "HMXB + LMXB pooled), whose F1 to maximise (default: preset's target)")
            p.add_argument("--folds", type=int, default=5, help="stratified cross-validation folds")
            p.add_argument("--popsize", type=int, default=15, help="DE population = popsize x categories")
            p.add_argument("--maxiter", type=int, default=100, help="maximum DE generations")
            p.add_argument("--tune-alpha", action="store_true",
                           help="also tune the missing-value exponent alpha (presets with missing_likelihood)")
        add_quiet_option(p)
        p.set_defaults(_nb=partial(_run_fit, tune=(name == "tune")))
    p = subparser("validate", "stratified k-fold cross-validation by source (weight tuning nested in each "
                              "training fold): per-class precision, recall, F1, prior-corrected precision, "
                              "confusion matrices, reliability and ECE", ("device", "precision", "config"))
    p.add_argument("catalog", help="labelled catalogue (Parquet, CSV, FITS, VOTable)")
    p.add_argument("--labels", default=None, help="column holding the class labels (default: the preset's label)")
    p.add_argument("--out", default="nb_validation", help="output directory")
    p.add_argument("--folds", type=int, default=5, help="folds (by source, stratified by class)")
    p.add_argument("--tune", default=None, metavar="CLASS",
                   help="tune the weights of each training fold for this class's F1, or an aggregated class's "
                        "(XRB: HMXB + LMXB pooled) (inner cross-validation)")
    p.add_argument("--popsize", type=int, default=10, help="DE population = popsize x tuned parameters")
    p.add_argument("--maxiter", type=int, default=60, help="maximum DE generations")
    p.add_argument("--tune-alpha", action="store_true",
                   help="also tune the missing-value exponent alpha (presets with missing_likelihood)")
    p.add_argument("--priors", default=None, metavar="P1,P2,...",
                   help="population class proportions for the prior-corrected precision, in the preset's class "
                        "order (default: the preset's priors)")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds and of the tuning")
    add_quiet_option(p)
    p.set_defaults(_nb=_run_validate)
    p = subparser("classify", "posterior class probabilities and outlier measure of every source")
    p.add_argument("catalog", help="catalogue to classify")
    p.add_argument("--model", default="nb_model",
                   help="model directory written by `xsift nb fit|tune`, or a shipped model's name (csc-mw)")
    p.add_argument("--out", default="nb_run", help="output directory")
    add_format_option(p, what="the output table")
    p.add_argument("--keep-columns", default=None, metavar="A,B",
                   help="catalogue columns to copy into the output besides its key columns (the preset's "
                        "source and detection columns, ra, dec), so it joins back to the catalogue")
    add_quiet_option(p)
    from xsift.cli.explore import add_samp_option
    add_samp_option(p)
    p.set_defaults(_nb=_run_classify)
    p = subparser("tracks", "probability tracks of one source (table + figure, the paper's Fig. 2)")
    p.add_argument("name", help="source name")
    p.add_argument("--catalog", required=True, help="catalogue holding the source")
    p.add_argument("--name-column", default=None, help="column of source names (default: preset's source)")
    p.add_argument("--model", default="nb_model", help="model directory or a shipped model's name (csc-mw)")
    p.add_argument("--out", default="nb_tracks", help="output directory")
    add_format_option(p, default="csv", what="the tracks table")
    p.set_defaults(_nb=_run_tracks)


def run_cli(args) -> int:
    """Run the chosen ``nb`` sub-command; returns the exit code."""
    return int(args._nb(args) or 0)
