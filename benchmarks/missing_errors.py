"""Accuracy of cluster-then-label with missing features and measurement errors, on a simulated catalogue
whose truth is known (issue 18).

One simulated catalogue with CSC-like measurement errors and missing features
(``xsift.simulate.simulate_catalog(n, errors=True)``: hardness ratios, powlaw_gamma and bb_kt reported
scattered by their calibrated errors; 21.7 % of detections missing one band). Two models are fitted on
it, both on its complete detections: the paper's (Gaussian mixture, exact values) and ``errors=True``
(extreme deconvolution, class covariances deconvolved). Each classifies the catalogue's unlabelled
detections under ``--missing drop``, ``median`` and ``marginalise``. For every configuration the table
gives

* the share of the unlabelled detections (all of them have an observed feature) that get probabilities;
* the aggregated-class accuracy (AGN, Seyfert, XB, YSO: the master-class vote's classes) of the
  predicted class against ``true_class``, over the classified complete detections, the classified
  detections with a missing feature, and all classified detections;
* the aggregated-class accuracy over the noisiest third of the unlabelled complete detections (the
  largest sum over features of the measurement variances after the transform of the errors model),
  the same detections for every configuration.

``--seeds N`` repeats everything (simulation and both fits) for seeds 0 .. N-1 and adds a table of the
gap between complete and incomplete detections' accuracy (marginalise) and of the noisiest third's
accuracy, as the mean and range over the seeds: one catalogue's gap moves by about 0.01 from seed to
seed.

    python benchmarks/missing_errors.py                      # 200,000 detections
    python benchmarks/missing_errors.py --detections 50000   # quicker
    python benchmarks/missing_errors.py --seeds 5            # seeds 0-4, then the spread
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine import describe  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detections", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulation and of both fits")
    parser.add_argument("--seeds", type=int, default=None,
                        help="repeat for seeds 0 .. N-1 (instead of --seed) and summarise the spread")
    parser.add_argument("--k", type=int, default=6)
    args = parser.parse_args(argv)
    seeds = list(range(args.seeds)) if args.seeds else [args.seed]
    per_seed = [one_catalogue(args.detections, seed, args.k) for seed in seeds]
    if len(seeds) > 1:
        print(f"\n{args.detections:,} simulated detections with errors, seeds {seeds[0]}-{seeds[-1]}: "
              "mean [min, max] over the seeds\n")
        print("| --errors | accuracy complete | accuracy incomplete | gap complete − incomplete | accuracy noisiest third |")
        print("|---|---:|---:|---:|---:|")
        for errors in (False, True):
            got = [next(r for r in rows if r["errors"] == errors and r["missing"] == "marginalise") for rows in per_seed]

            def spread(values):
                v = np.asarray(values)
                return f"{v.mean():.3f} [{v.min():.3f}, {v.max():.3f}]"
            print(f"| {'yes' if errors else 'no'} | {spread([g['complete'] for g in got])} | "
                  f"{spread([g['incomplete'] for g in got])} | "
                  f"{spread([g['complete'] - g['incomplete'] for g in got])} | {spread([g['noisiest'] for g in got])} |")
    return 0


def one_catalogue(detections, seed, k):
    """Simulate, fit both models and classify under every mode (module docstring); prints the table of one
    catalogue and returns its rows."""

    from xsift.methods.cluster_then_label import (UNLABELLED, ClusterThenLabel, features_of, preset_classes,
                                                  reference_labels)
    from xsift.simulate import simulate_catalog

    df = simulate_catalog(detections, seed=seed, errors=True)
    _, _, aggregation = preset_classes("csc")
    agg_of = {c: g for g, members in aggregation.items() for c in members}
    labels, _ = reference_labels(df, "csc")
    feats, complete = features_of(df, "csc")
    unlabelled = labels == UNLABELLED
    key = df["name"].astype(str) + "|" + df["obsid"].astype(str)
    truth = df["true_class"].astype(str).map(agg_of).to_numpy()

    t0 = time.perf_counter()
    plain = ClusterThenLabel(n_components=k, seed=seed).fit(df)
    t_plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    xd = ClusterThenLabel(n_components=k, seed=seed, errors=True).fit(df)
    t_xd = time.perf_counter() - t0

    # the noisiest third of the unlabelled complete detections, by the errors model's transformed variances
    noise = np.nansum(xd._noise_var(df, feats), axis=1)
    pool = np.flatnonzero(unlabelled & complete)
    noisiest = np.zeros(len(df), bool)
    noisiest[pool[np.argsort(noise[pool])[-(len(pool) // 3):]]] = True

    rows = []
    for errors, model in ((False, plain), (True, xd)):
        for missing in ("drop", "median", "marginalise"):
            t0 = time.perf_counter()
            det = model.set_params(missing=missing).classify(df).detections
            seconds = time.perf_counter() - t0
            pos = key.reset_index(drop=True).pipe(lambda k: dict(zip(k, range(len(k)))))
            idx = np.fromiter((pos[f"{n}|{o}"] for n, o in zip(det["name"].astype(str), det["obsid"].astype(str))),
                              np.int64, len(det))
            pred = det["predicted_class"].astype(object).map(agg_of).to_numpy()
            right = pred == truth[idx]
            got = np.zeros(len(df), bool)
            got[idx] = True

            def acc(sel):
                return float(right[sel].mean()) if sel.any() else float("nan")
            rows.append({"errors": errors, "missing": missing,
                         "classified": got[unlabelled].mean(),
                         "complete": acc(complete[idx]), "incomplete": acc(~complete[idx]), "all": acc(np.ones(len(idx), bool)),
                         "noisiest": acc(noisiest[idx]) if got[noisiest].all() else float("nan"),
                         "seconds": seconds})
            print(rows[-1], flush=True)

    print(f"\n{detections:,} simulated detections with errors (seed {seed}); "
          f"{int(unlabelled.sum()):,} unlabelled, {int((unlabelled & ~complete).sum()):,} of them with a missing "
          f"feature; fits: GMM {t_plain:.0f} s, XD {t_xd:.0f} s ({xd.fit_report_['gmm']['n_iter']} iterations); "
          f"{describe()}\n")
    print("| --errors | --missing | unlabelled classified | accuracy complete | accuracy incomplete | accuracy all "
          "| accuracy noisiest third |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        f = (lambda v: "—" if np.isnan(v) else f"{v:.3f}")
        print(f"| {'yes' if r['errors'] else 'no'} | {r['missing']} | {100 * r['classified']:.1f} % | "
              f"{f(r['complete'])} | {f(r['incomplete'])} | {f(r['all'])} | {f(r['noisiest'])} |")
    return rows


if __name__ == "__main__":
    sys.exit(main())
