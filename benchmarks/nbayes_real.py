"""Naive-Bayes-KDE on real labelled sources with X-ray and multiwavelength properties, 5-fold cross-validation
by source with identical folds for every method, side by side with scikit-learn's HistGradientBoostingClassifier
and RandomForestClassifier on the same properties, and MUWCLASS's published F1 as a reference.

Samples (``../shared/data``):

* ``muwclass/td_multiwavelength_2023.csv`` (3,126 CSC sources, Yang et al.), preset ``nb_csc_mw``: the eight
  MUWCLASS classes; XRB = HMXB + LMXB aggregated (summed posteriors). Rows:
  X-ray only (the preset's Location, Hardness and Variability properties), + multiwavelength (flux ratios,
  colours, astrometry), + missing-value likelihoods, + error weights, + tuning (category weights and alpha by
  differential evolution for the tuning target's F1, nested: an inner cross-validation of each training fold).
  Reference: the eight-class F1 of MUWCLASS's leave-one-out classification of its earlier training set
  (Yang et al. 2022, ApJ 941, 104), computed from its published table.
* ``xmm/4xmm_dr13_training_sample.csv`` (1,008 4XMM-DR13 sources, Lin et al. 2024), preset ``nb_xmm4``: four
  classes (AGN, Star, XRB, CV).

The scikit-learn classifiers take the preset's property matrix (all properties, NaN = missing; both handle
missing values natively), fixed seeds, default hyper-parameters. Folds:
:func:`xsift.methods.nb_validation.source_folds`.

    nice python benchmarks/nbayes_real.py [--seed 0] [--popsize 8] [--maxiter 40] [--only csc|xmm] [--target LMXB|XRB]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import time

import numpy as np

from xsift.data.io import read_catalog
from xsift.methods.nb_validation import (aggregate_probabilities, aggregation_of, preset_for_columns,
                                         validate_naive_bayes)

DATA = pathlib.Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
# Yang et al. 2022 (MUWCLASS), eight-class F1 of their leave-one-out classification (published table)
MUWCLASS_F1 = {"AGN": 0.95, "YSO": 0.93, "LM-STAR": 0.84, "HMXB": 0.72, "HM-STAR": 0.69, "NS": 0.58, "CV": 0.51,
               "LMXB": 0.22}
XRAY_CATEGORIES = ("Location", "Hardness", "Variability")

# the naive-Bayes variants, cumulative: row name -> NaiveBayesKDE parameters over the preset's [naive_bayes]
# options (nb_csc_mw's options are the "+ error weights" row, nb_xmm4's the row above; every row has its priors, its
# histograms for (property, class) pairs with fewer than 3 distinct values and its 1 % density floor)
VARIANTS = {
    "X-ray only": {"missing_likelihood": False, "error_weights": False},
    "+ multiwavelength": {"missing_likelihood": False, "error_weights": False},
    "+ missing-value likelihoods": {"error_weights": False},
    "+ error weights": {"error_weights": True},
}


def xray_only(preset):
    """The preset without its multiwavelength categories (those not in XRAY_CATEGORIES)."""
    from xsift.config import Preset, load_preset
    d = load_preset(preset).to_dict()
    d["categories"] = {k: v for k, v in d["categories"].items() if k in XRAY_CATEGORIES}
    keep = {f for c in d["categories"].values() for f in c["features"]}
    d["features"] = {k: v for k, v in d["features"].items() if k in keep}
    return Preset.from_dict(d, source=f"{d['name']} (X-ray properties)")


def f1_scores(y, pred, K):
    from xsift.methods.metrics import classification_metrics
    return np.asarray(classification_metrics(y, pred, [str(k) for k in range(K)])["f1"])


def run_sample(path, preset, *, target, seed, popsize, maxiter, folds=5, tune_variant=True):
    """{row name: (per-class F1 (K,), macro F1, aggregated per-class F1 or None, seconds)} and the classes."""
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from xsift.config import spec_from_preset
    from xsift.data.features import feature_values
    df = read_catalog(path)
    full, facts = preset_for_columns(preset, df.columns)
    spec = spec_from_preset(full)
    agg = dict(full.classes.aggregation)
    rows = {}

    def record(name, res_or_pred, y, seconds):
        K = len(spec.classes)
        if hasattr(res_or_pred, "proba"):
            proba = res_or_pred.proba
        else:
            proba = np.eye(K)[res_or_pred]
        pred = np.argmax(proba, axis=1)
        f1 = f1_scores(y, pred, K)
        agg_f1 = None
        if agg:
            names, index = aggregation_of(spec.classes, agg)
            pa = aggregate_probabilities(proba, index, len(names))
            agg_f1 = dict(zip(names, f1_scores(index[y], np.argmax(pa, axis=1), len(names))))
        rows[name] = (f1, float(np.mean(f1)), agg_f1, seconds)
        print(f"  {name:<32} macro F1 {np.mean(f1):.3f}  " + " ".join(
            f"{c} {v:.2f}" for c, v in zip(spec.classes, f1))
            + (f"  | XRB {agg_f1['XRB']:.2f}" if agg_f1 and "XRB" in agg_f1 else "") + f"  ({seconds:.0f} s)")

    variants = dict(VARIANTS)
    if not full.error_columns:          # no error column: the error-weight row would repeat the one above
        variants.pop("+ error weights")
    result = None
    for name, params in variants.items():
        t = time.perf_counter()
        pre = xray_only(full) if name == "X-ray only" else full
        result = validate_naive_bayes(df, pre, n_folds=folds, seed=seed, model_params=params, source=str(path))
        record(name, result, result.y, time.perf_counter() - t)
    if tune_variant:
        t = time.perf_counter()
        tuned = validate_naive_bayes(df, full, n_folds=folds, seed=seed, model_params=list(variants.values())[-1],
                                     tune=target, tune_options={"popsize": popsize, "maxiter": maxiter,
                                                                "tune_alpha": True}, source=str(path))
        record(f"+ tuning (weights, alpha; {target} F1)", tuned, tuned.y, time.perf_counter() - t)
    # scikit-learn on the same properties, rows and folds (validate_naive_bayes keeps the labelled rows in
    # table order; its folds are reused)
    from xsift.methods.naive_bayes import class_targets
    y_all, _ = class_targets(df[spec.label_column], spec)
    X = feature_values(df.loc[y_all >= 0].reset_index(drop=True), full)[0]
    y, fold = result.y, result.folds
    for name, make in (("HistGradientBoostingClassifier", lambda: HistGradientBoostingClassifier(random_state=seed)),
                       ("RandomForestClassifier", lambda: RandomForestClassifier(n_estimators=300, random_state=seed,
                                                                                 n_jobs=1))):
        t = time.perf_counter()
        pred = np.empty(len(y), dtype=np.int64)
        for k in range(folds):
            tr, te = fold != k, fold == k
            pred[te] = make().fit(X[tr], y[tr]).predict(X[te])
        record(name, pred, y, time.perf_counter() - t)
    return rows, list(spec.classes), facts


def table(rows, classes, reference=None, aggregated="XRB"):
    head = "| method | " + " | ".join(classes) + " | macro F1 |" + (f" {aggregated} |" if aggregated else "")
    lines = [head, "|---" + "|---:" * (len(classes) + 1 + (1 if aggregated else 0)) + "|"]
    for name, (f1, macro, agg, _) in rows.items():
        x = f" {agg[aggregated]:.2f} |" if aggregated and agg else (" — |" if aggregated else "")
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in f1) + f" | {macro:.2f} |" + x)
    if reference:
        lines.append("| MUWCLASS (Yang et al. 2022, published) | " + " | ".join(f"{reference[c]:.2f}" for c in classes)
                     + f" | {np.mean([reference[c] for c in classes]):.2f} |" + (" — |" if aggregated else ""))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0, help="seed of the folds, the forests and the tuning")
    ap.add_argument("--popsize", type=int, default=8, help="DE population per tuned parameter")
    ap.add_argument("--maxiter", type=int, default=40, help="DE generations per training fold")
    ap.add_argument("--only", choices=["csc", "xmm"], default=None, help="run one sample")
    ap.add_argument("--no-tuning", action="store_true", help="skip the (slow) nested tuning rows")
    ap.add_argument("--target", default="LMXB",
                    help="tuning target of the MUWCLASS sample: a class, or an aggregated class of nb_csc_mw "
                         "(XRB: F1 of HMXB + LMXB pooled)")
    args = ap.parse_args()
    import jax
    print(f"cpu_count={os.cpu_count()}  jax.devices()={jax.devices()}")
    out = []
    if args.only in (None, "csc"):
        path = DATA / "muwclass" / "td_multiwavelength_2023.csv"
        print(f"{path.name}, preset nb_csc_mw, 5-fold CV by source")
        rows, classes, _ = run_sample(path, "nb_csc_mw", target=args.target, seed=args.seed, popsize=args.popsize,
                                      maxiter=args.maxiter, tune_variant=not args.no_tuning)
        out.append(table(rows, classes, MUWCLASS_F1))
    if args.only in (None, "xmm"):
        path = DATA / "xmm" / "4xmm_dr13_training_sample.csv"
        print(f"{path.name}, preset nb_xmm4, 5-fold CV by source")
        rows, classes, _ = run_sample(path, "nb_xmm4", target="XRB", seed=args.seed, popsize=args.popsize,
                                      maxiter=args.maxiter, tune_variant=not args.no_tuning)
        out.append(table(rows, classes, aggregated=None))
    print("\n\n".join(out))


if __name__ == "__main__":
    main()
