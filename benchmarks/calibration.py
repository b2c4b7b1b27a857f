"""Calibration of the class probabilities on a simulated catalogue: expected calibration error (ECE,
15 equal-width bins of the top-class probability) of the held-out detections of
:func:`xsift.methods.validation.validate` (70/30 split by source), before and after temperature
scaling (``--calibrate``), for both methods.

Columns: the temperature fitted on the held-out detections (minimum NLL); ECE of the raw probabilities
and of the calibrated ones on the same held-out detections; the cross-fitted ECE (held-out sources cut in
two halves by source, each half scaled by the temperature fitted on the other); mean NLL (nats) raw and
calibrated; and, as a diagnostic only (it is fitted to the metric it reports), the lowest ECE any single
temperature on a grid reaches and that temperature.

Cluster-then-label runs twice: with the squared Mahalanobis distance in the softmin (the published
tables, the default) and with the distance itself (Eq. 6, ``--distance mahalanobis``).

    python benchmarks/calibration.py [--detections 200000] [--seed 0] [--methods ctl nb]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from machine import describe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detections", type=int, default=200_000, help="simulated detections")
    ap.add_argument("--seed", type=int, default=0, help="simulator seed (the split seed is 0)")
    ap.add_argument("--methods", nargs="+", default=["ctl", "nb"], choices=["ctl", "nb"])
    args = ap.parse_args()
    from xsift.methods.calibration import apply_temperature
    from xsift.methods.metrics import top_class_reliability
    from xsift.methods.validation import validate
    from xsift.simulate import simulate_catalog

    df = simulate_catalog(args.detections, seed=args.seed)
    print(describe())
    print(f"{args.detections:,} simulated detections (seed {args.seed}), 70/30 split by source, 15 bins\n")
    print("| method | held-out detections (sources) | accuracy | T | ECE raw | ECE calibrated | ECE cross-fitted "
          "| NLL raw → calibrated | lowest ECE on a T grid (T) | time s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    runs = [(m, d) for m in args.methods for d in (("squared", "mahalanobis") if m == "ctl" else (None,))]
    for method, distance in runs:
        preset = {"ctl": "csc", "nb": "nb_csc"}[method]
        t0 = time.perf_counter()
        r = validate(df, preset, calibrate=True, **({"distance": distance} if distance else {}))
        elapsed = time.perf_counter() - t0
        c, cal = r["counts"], r["calibration"]
        pred = r["predictions"]
        classes = r["classes"]
        truth = pred["true_class"].map({k: i for i, k in enumerate(classes)}).to_numpy()
        raw = pred[classes].to_numpy()
        grid = np.exp(np.linspace(np.log(0.25), np.log(20), 121))
        eces = [top_class_reliability(apply_temperature(raw, T), truth)["ece"] for T in grid]
        best = int(np.argmin(eces))
        name = {"ctl": f"cluster-then-label (csc, {distance} distance)", "nb": "naive Bayes (nb_csc)"}[method]
        print(f"| {name} | {c['test']:,} ({c['test_sources']:,}) | {c['accuracy']:.3f} | {cal['temperature']:.3f} "
              f"| {c['ece']:.3f} | {c['ece_calibrated']:.3f} | {cal['ece_cross_fitted']:.3f} "
              f"| {cal['nll_raw']:.3f} → {cal['nll_calibrated']:.3f} | {eces[best]:.3f} ({grid[best]:.2f}) "
              f"| {elapsed:.0f} |", flush=True)


if __name__ == "__main__":
    main()
