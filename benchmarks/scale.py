"""Scale-out benchmark: simulated catalogues end to end on Dask (simulate, fit on a sample, classify
every detection, vote across shards), with wall time per stage, detections/s and peak memory of the
whole process tree (this process + every Dask worker), side by side with:

* the same classification on a LocalCluster of ONE worker (the 2-worker speed-up),
* the in-memory pipeline in one process (ClusterThenLabel.classify_frame + master_classes) at the smallest size,
* full-data EM: seconds per iteration over every complete detection.

Usage (the 10M run takes minutes; run it alone)::

    python benchmarks/scale.py --sizes 1000000            # quick
    python benchmarks/scale.py --sizes 1000000 10000000   # the table in benchmarks/README.md

Targets (issue 6): 10M end to end < 10 min with peak memory < 6 GB; cost per detection at 10M
<= 1.2x that at 1M; classification with 2 workers >= 1.6x one worker.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import psutil  # noqa: E402  (a dependency of dask.distributed)


class PeakMemory:
    """Peak resident memory of this process and all its descendants, sampled every 0.1 s."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        me = psutil.Process()
        total = 0
        for p in [me] + me.children(recursive=True):
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            time.sleep(0.1)

    def __enter__(self):
        self.peak = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def quiet(msg):
    pass


def _warm_worker(model_dir, shard, columns):
    """On a worker: import the engine and compile the classify kernels (fixed padded shapes, so one
    shard compiles everything), without writing anything."""
    from xsift import distributed as D
    from xsift.methods.cluster_then_label import ClusterThenLabel
    ClusterThenLabel.load(model_dir).classify_frame(D.read_shard(shard, columns), source=str(shard))
    return os.getpid()


def timed_classification(D, client, cat, model, run, repeats: int = 3) -> float:
    """Best of ``repeats`` timings of classifying every shard, on workers already warm (every worker
    has imported JAX and compiled the kernels), so the 1- vs 2-worker ratio measures the work itself."""
    from xsift.methods.cluster_then_label import ClusterThenLabel
    files = D.shard_files(cat)
    columns = D.catalog_columns(ClusterThenLabel.load(model).preset_, files)
    client.run(_warm_worker, str(model), str(files[0]), columns)
    best = float("inf")
    for _ in range(repeats):
        shutil.rmtree(run, ignore_errors=True)
        t0 = time.perf_counter()
        D.classify_shards(client, cat, model, run, log=quiet)
        best = min(best, time.perf_counter() - t0)
    return best


def run_size(n: int, work: pathlib.Path, rows_per_shard: int, fit_sample: int, em_iters: int,
             compare_one_worker: bool, in_memory: bool) -> dict:
    from distributed import Client
    from xsift import distributed as D
    from xsift.config import load_preset
    from xsift.simulate import write_simulated_catalog
    preset = load_preset("csc")
    cat, model, run = work / f"cat{n}", work / f"model{n}", work / f"run{n}"
    for p in (cat, model, run):
        shutil.rmtree(p, ignore_errors=True)
    n_shards = max(2, -(-n // rows_per_shard))
    row = {"n": n, "shards": n_shards}
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        write_simulated_catalog(cat, n, n_shards=n_shards, seed=0)
        row["simulate_s"] = time.perf_counter() - t0
        cluster = D.local_cluster(2)
        client = Client(cluster)
        try:
            client.wait_for_workers(2)
            t0 = time.perf_counter()
            D.fit_shards(client, cat, model, preset=preset, fit_sample=fit_sample, seed=0, log=quiet)
            row["fit_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            summ = D.classify_shards(client, cat, model, run, log=quiet)
            row["classify_s"] = time.perf_counter() - t0
            row["classified"] = summ["rows_classified"]
            t0 = time.perf_counter()
            vote = D.vote_shards(client, run, classes=_classes(model), aggregation=_aggregation(model), log=quiet)
            row["vote_s"] = time.perf_counter() - t0
            row["sources"] = vote["sources"]
            if compare_one_worker:
                row["classify_2w_warm_s"] = timed_classification(D, client, cat, model, work / f"run{n}-2w")
            if em_iters:
                from xsift.methods.cluster_then_label import ClusterThenLabel
                m = ClusterThenLabel.load(model)
                times = []
                D.distributed_em(client, cat, preset, m.transform_, m.gmm_, max_iter=em_iters, tol=0.0,
                                 on_iteration=lambda i, lb, s: times.append(s))
                row["em_first_s"] = times[0]
                row["em_iter_s"] = float(np.median(times[1:])) if len(times) > 1 else times[0]
        finally:
            client.close()
            cluster.close()
    row["peak_gb"] = mem.peak / 1e9
    row["end_to_end_s"] = row["simulate_s"] + row["fit_s"] + row["classify_s"] + row["vote_s"]
    row["det_per_s"] = n / row["end_to_end_s"]
    if compare_one_worker:
        run1 = work / f"run{n}-1w"
        shutil.rmtree(run1, ignore_errors=True)
        cluster = D.local_cluster(1)
        client = Client(cluster)
        try:
            client.wait_for_workers(1)
            row["classify_1w_warm_s"] = timed_classification(D, client, cat, model, run1)
        finally:
            client.close()
            cluster.close()
        shutil.rmtree(run1, ignore_errors=True)
        shutil.rmtree(work / f"run{n}-2w", ignore_errors=True)
    if in_memory:
        from xsift.methods.cluster_then_label import ClusterThenLabel
        from xsift.data.io import read_catalog
        from xsift.methods.voting import master_classes
        m = ClusterThenLabel.load(model)
        df = read_catalog(cat, columns=D.catalog_columns(m.preset_, D.shard_files(cat)))
        t0 = time.perf_counter()
        det = m.classify_frame(df)[0]
        master_classes(det, list(m.classes_), m.vote_aggregation)
        row["in_memory_classify_vote_s"] = time.perf_counter() - t0
        del df, det
    for p in (cat, run):
        shutil.rmtree(p, ignore_errors=True)
    return row


def _classes(model_dir):
    import json
    return json.loads((pathlib.Path(model_dir) / "model.json").read_text())["meta"]["classes"]


def _aggregation(model_dir):
    import json
    return json.loads((pathlib.Path(model_dir) / "model.json").read_text())["meta"]["preset"]["classes"]["aggregation"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--rows-per-shard", type=int, default=125_000)
    ap.add_argument("--fit-sample", type=int, default=1_000_000)
    ap.add_argument("--em-iters", type=int, default=3, help="full-data EM iterations to time (0: skip)")
    ap.add_argument("--workdir", default="/tmp/xsift-scale-bench")
    args = ap.parse_args(argv)
    import jax
    work = pathlib.Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    print(f"# xsift scale-out benchmark  cpu_count={os.cpu_count()}  jax.devices()={jax.devices()}  "
          f"LocalCluster 2 workers x 1 thread, each pinned to a core; {args.rows_per_shard:,} rows per shard; fit sample "
          f"{args.fit_sample:,}", flush=True)
    from machine import describe  # benchmarks/machine.py, beside this file
    print(f"# {describe()}", flush=True)
    rows = []
    smallest = min(args.sizes)
    for n in sorted(args.sizes):
        row = run_size(n, work, args.rows_per_shard, args.fit_sample, args.em_iters,
                       compare_one_worker=(n == smallest), in_memory=(n == smallest))
        rows.append(row)
        print(f"# done {n:,}: {row}", flush=True)
    print()
    print("| detections | shards | simulate s | fit (sample) s | classify s | vote s | end to end s | "
          "detections/s | peak memory GB | full-EM s/iteration |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['n']:,} | {r['shards']} | {r['simulate_s']:.1f} | {r['fit_s']:.1f} | {r['classify_s']:.1f} | "
              f"{r['vote_s']:.1f} | {r['end_to_end_s']:.1f} | {r['det_per_s']:,.0f} | {r['peak_gb']:.2f} | "
              f"{r.get('em_iter_s', float('nan')):.2f} |")
    base = rows[0]
    print()
    for r in rows[1:]:
        ratio = (r["end_to_end_s"] / r["n"]) / (base["end_to_end_s"] / base["n"])
        print(f"cost per detection at {r['n']:,} / at {base['n']:,}: {ratio:.2f}x (target <= 1.2x)")
    if "classify_1w_warm_s" in base:
        print(f"classification of {base['n']:,} on warm workers (best of 3): 1 worker {base['classify_1w_warm_s']:.1f} s, "
              f"2 workers {base['classify_2w_warm_s']:.1f} s -> speed-up "
              f"{base['classify_1w_warm_s'] / base['classify_2w_warm_s']:.2f}x (target >= 1.6x)")
    if "in_memory_classify_vote_s" in base:
        print(f"classify+vote at {base['n']:,}: in memory, one process {base['in_memory_classify_vote_s']:.1f} s; "
              f"on Dask (2 workers, from Parquet shards to Parquet outputs) "
              f"{base['classify_s'] + base['vote_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
