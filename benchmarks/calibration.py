"""Calibration of the class probabilities on a simulated catalogue: expected calibration error (ECE,
15 equal-width bins of the top-class probability) of the held-out detections of
:func:`xsift.methods.validation.validate` (70/30 split by source), before and after temperature
scaling (``--calibrate``), for both methods.

Columns: ECE of the raw probabilities; the temperature fitted on the held-out detections by minimum Brier
score (the default, ``--calibrate-by brier``), the ECE it gives on the same held-out detections and
cross-fitted (held-out sources cut in two halves by source, each half scaled by the temperature fitted on
the other); the temperature by minimum NLL (``--calibrate-by nll``, Guo et al.'s choice) and its ECE;
and, as a diagnostic only (it is fitted to the metric it reports), the lowest ECE any single temperature
on a grid reaches and that temperature.

Cluster-then-label runs twice: with the squared Mahalanobis distance in the softmin (the published
tables, the default) and with the distance itself (Eq. 6, ``--distance mahalanobis``).

    python benchmarks/calibration.py [--detections 200000] [--seed 0] [--methods ctl nb]
"""
from __future__ import annotations

import argparse

import numpy as np

from machine import describe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detections", type=int, default=200_000, help="simulated detections")
    ap.add_argument("--seed", type=int, default=0, help="simulator seed (the split seed is 0)")
    ap.add_argument("--methods", nargs="+", default=["ctl", "nb"], choices=["ctl", "nb"])
    args = ap.parse_args()
    from xsift.methods.calibration import apply_temperature, fit_temperature
    from xsift.methods.metrics import top_class_reliability
    from xsift.methods.validation import validate
    from xsift.simulate import simulate_catalog

    df = simulate_catalog(args.detections, seed=args.seed)
    print(describe())
    print(f"{args.detections:,} simulated detections (seed {args.seed}), 70/30 split by source, 15 bins\n")
    print("| method | held-out detections (sources) | accuracy | ECE raw | T (Brier) | ECE calibrated "
          "| ECE cross-fitted | T (NLL) | ECE calibrated by NLL | lowest ECE on a T grid (T) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    runs = [(m, d) for m in args.methods for d in (("squared", "mahalanobis") if m == "ctl" else (None,))]
    for method, distance in runs:
        preset = {"ctl": "csc", "nb": "nb_csc"}[method]
        r = validate(df, preset, calibrate=True, calibration_objective="brier",
                     **({"distance": distance} if distance else {}))
        c, cal = r["counts"], r["calibration"]
        pred = r["predictions"]
        classes = r["classes"]
        truth = pred["true_class"].map({k: i for i, k in enumerate(classes)}).to_numpy()
        raw = pred[classes].to_numpy()
        grid = np.exp(np.linspace(np.log(0.25), np.log(20), 121))
        eces = [top_class_reliability(apply_temperature(raw, T), truth)["ece"] for T in grid]
        best = int(np.argmin(eces))
        by_nll = fit_temperature(raw, truth, "nll")
        ece_nll = top_class_reliability(apply_temperature(raw, by_nll.temperature), truth)["ece"]
        name = {"ctl": f"cluster-then-label (csc, {distance} distance)", "nb": "naive Bayes (nb_csc)"}[method]
        print(f"| {name} | {c['test']:,} ({c['test_sources']:,}) | {c['accuracy']:.3f} | {c['ece']:.3f} "
              f"| {cal['temperature']:.3f} | {c['ece_calibrated']:.3f} | {cal['ece_cross_fitted']:.3f} "
              f"| {by_nll.temperature:.3f} | {ece_nll:.3f} | {eces[best]:.3f} ({grid[best]:.2f}) |", flush=True)


if __name__ == "__main__":
    main()
