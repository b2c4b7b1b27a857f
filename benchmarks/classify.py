"""Side by side: the published cluster-wise distance formula against xsift, and xsift's whole
classify stage at 1M detections.

Part 1 — one cluster, L = 10 classes, d = 12 features, N unlabelled detections (5k, 10k, 20k):
  published : the CSC paper's code path per class: ``x_mu = X - mu; left = x_mu @ pinv(S);
              mahal = left @ x_mu.T; mahal.diagonal()`` (an N x N product), then the softmin
              with ``np.exp`` — run in this process on the same arrays;
  xsift     : ``xsift.kernels.mahalanobis.classify_rows`` (compiled once beforehand), same arrays.
  The two results are checked to agree (max |dp|) before the times are printed.

Part 2 — the whole classify stage of a fitted model (``xsift.ClusterThenLabel.classify``,
what ``xsift classify`` and ``xsift run`` call: schema check, derived features, transform, GMM cluster
assignment, distances, softmin, detection table, hard/soft votes) on 1M complete unlabelled detections
in memory, float64 and float32, after one warm-up run of the same shape; --runs timed runs per
precision (default 5), taking turns between the precisions, and the median run is reported with the
range. The published code cannot run here at all (its N x N arrays would need N^2 x 8 bytes per
cluster and class).

Part 1 runs with glibc's malloc defaults, as the published code runs in a plain Python process; before
part 2 the process keeps freed memory as the ``xsift`` command does (``xsift.cli.memory``), unless
``--malloc system``.

Usage: python benchmarks/classify.py [--sizes 5000,10000,20000] [--detections 1000000] [--runs 5] [--malloc system]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def published_cluster(X, means, precs):
    """The published per-cluster computation: an N x N product per class, keep the diagonal."""
    dist = []
    for mu, P in zip(means, precs):
        x_mu = X - mu
        left = np.dot(x_mu, P)
        mahal = np.dot(left, x_mu.T)
        dist.append(mahal.diagonal().copy())
        del left, mahal
    d = np.stack(dist, axis=1)
    e = np.exp(-d)
    return e / e.sum(axis=1, keepdims=True)


def part1(sizes, L=10, d=12, seed=0):
    import jax
    from xsift.kernels.mahalanobis import classify_rows
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=0.3, size=(L, d))
    A = rng.normal(size=(L, d, d))
    precs = np.linalg.pinv(A @ np.swapaxes(A, 1, 2) + np.eye(d)) * 3.0
    mask = np.ones((1, L), bool)
    rows = []
    for n in sizes:
        X = rng.normal(scale=0.3, size=(n, d))
        cl = np.zeros(n, np.int64)
        classify_rows(X, cl, means[None], precs[None], mask)              # compile for this shape
        t = time.perf_counter()
        p_x, _ = classify_rows(X, cl, means[None], precs[None], mask)
        jax.block_until_ready(p_x)
        tx = time.perf_counter() - t
        t = time.perf_counter()
        p_pub = published_cluster(X, means, precs)
        tp = time.perf_counter() - t
        err = float(np.nanmax(np.abs(p_pub - p_x)))
        rows.append((n, tp, tx, tp / tx, err, n * n * 8 / 1e9))
    return rows


def model_and_catalog(n_detections, fit_detections, seed=0):
    """A model fitted on a simulated catalogue, and ``n_detections`` complete unlabelled detections
    (several simulated catalogues' complete rows, renamed so that sources stay distinct)."""
    import pandas as pd
    from xsift.methods.cluster_then_label import ClusterThenLabel, features_of
    from xsift.config import load_preset
    from xsift.simulate import simulate_catalog
    preset = load_preset("csc")
    fit_cat = simulate_catalog(fit_detections, seed=seed)
    model = ClusterThenLabel(preset=preset, n_components=6, seed=seed).fit(fit_cat)
    parts, total, rep = [], 0, 0
    base = simulate_catalog(min(n_detections, 400_000) * 13 // 10, seed=seed + 1)
    _, ok = features_of(base, preset)
    base = base[ok].reset_index(drop=True)
    base["main_type"] = None
    while total < n_detections:
        part = base.iloc[: n_detections - total].copy()
        part["name"] = part["name"] + f"_{rep}"
        parts.append(part)
        total += len(part)
        rep += 1
    return preset, model, pd.concat(parts, ignore_index=True)


def part2(n_detections, fit_detections, runs):
    preset, model, cat = model_and_catalog(n_detections, fit_detections)
    dtypes = (np.float64, np.float32)

    def stage(dtype):
        t0 = time.perf_counter()
        result = model.set_params(precision=np.dtype(dtype).name).classify(cat)
        total = time.perf_counter() - t0
        return total, result.report["classify"], result.report["voting"]

    for dtype in dtypes:
        stage(dtype)                                    # warm-up: compile for this shape
    timed = {dtype: [] for dtype in dtypes}
    for _ in range(runs):                               # the precisions take turns (a shared machine's speed drifts)
        for dtype in dtypes:
            timed[dtype].append(stage(dtype))
    rows = []
    for dtype in dtypes:
        ts = sorted(timed[dtype], key=lambda r: r[0])
        total, rep, summary = ts[len(ts) // 2]          # the median run, with its stage timings
        rows.append((np.dtype(dtype).name, len(cat), rep["classified"], summary["sources_voted"], total,
                     len(cat) / total, rep["timings"], summary["timings"]["voting_s"], ts[0][0], ts[-1][0]))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="5000,10000,20000", help="detections per cluster for part 1")
    ap.add_argument("--detections", type=int, default=1_000_000, help="detections for part 2 (0: skip)")
    ap.add_argument("--fit-detections", type=int, default=100_000, help="simulated detections the model is fitted on")
    ap.add_argument("--runs", type=int, default=5, help="timed runs of part 2 per precision (the median is reported)")
    ap.add_argument("--malloc", choices=("xsift", "system"), default="xsift",
                    help="xsift: before part 2, keep freed memory in the process, as the xsift command does "
                         "(xsift.cli.memory.keep_freed_memory); system: glibc's defaults throughout. Part 1 always runs "
                         "with the defaults, as the published code runs in a plain Python process")
    args = ap.parse_args(argv)
    import jax
    from xsift.cli.memory import keep_freed_memory
    from machine import describe
    print(f"machine: cpu_count={os.cpu_count()} jax.devices()={jax.devices()}\n{describe()}")
    print("\nPart 1: one cluster, 10 classes, 12 features: published N x N formula vs xsift (float64)")
    print(f"{'N':>7} | {'published s':>11} | {'xsift s':>8} | {'ratio':>7} | {'max |dp|':>9} | published N x N array")
    for n, tp, tx, r, err, gb in part1([int(s) for s in args.sizes.split(",")]):
        print(f"{n:>7} | {tp:>11.3f} | {tx:>8.4f} | {r:>6.0f}x | {err:>9.1e} | {gb:.2f} GB per class")
    if args.detections:
        kept = keep_freed_memory() if args.malloc == "xsift" else False
        print(f"\nmalloc for part 2: "
              f"{'freed memory kept in the process (as the xsift command runs)' if kept else 'system defaults'}")
        print(f"Part 2: whole classify stage (features, transform, GMM assignment, distances, softmin, "
              f"table, voting), {args.detections:,} detections in memory")
        print(f"median of {args.runs} runs per precision (range of the runs in brackets); the stages of the median run")
        print(f"{'precision':>9} | {'detections':>10} | {'classified':>10} | {'sources':>8} | {'total s':>17} | "
              f"{'detections/s':>12} | stages (s)")
        for name, n, ncls, nsrc, total, rate, tm, tv, lo, hi in part2(args.detections, args.fit_detections, args.runs):
            stages = ", ".join(f"{k[:-2]} {v:.2f}" for k, v in tm.items()) + f", voting {tv:.2f}"
            print(f"{name:>9} | {n:>10,} | {ncls:>10,} | {nsrc:>8,} | {total:>5.2f} [{lo:.2f}-{hi:.2f}] | "
                  f"{rate:>12,.0f} | {stages}")
        print("published code at this size: not runnable (one N x N float64 array per cluster and class: "
              f"{(args.detections / 6) ** 2 * 8 / 1e12:.1f} TB for 1/6 of the rows)")


if __name__ == "__main__":
    main()
