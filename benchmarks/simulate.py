"""Benchmark: the streamed simulator against the in-memory way of writing the same catalogue.

    python benchmarks/simulate.py [--sizes 1000000 10000000] [--shards 16] [--peer-max 1000000]

For each size, in a fresh process each (so that peak memory is that run's own):

* xsift:  ``write_simulated_catalog(dir, N, n_shards=S)`` — generated block by block and streamed to
  Parquet shards, one block in memory at a time;
* peer:   ``simulate_catalog(N).to_parquet(file)`` — the same rows built in memory as one pandas
  DataFrame and written as one file (the straightforward way; its memory grows with N, so it
  runs only up to ``--peer-max`` detections).

Prints detections/s, wall and CPU time and peak resident memory (``resource.getrusage`` ru_maxrss of the
child process, which includes NumPy and Arrow buffers), the baseline memory after imports, and the
xsift/peer ratios, with the machine (cpu count, jax.devices()).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _child(mode: str, n: int, shards: int, out: str) -> None:
    import resource
    sys.path.insert(0, str(ROOT))
    from xsift.simulate import simulate_catalog, write_simulated_catalog
    simulate_catalog(1000, seed=0)                   # imports and calibration loaded before timing
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0, c0 = time.perf_counter(), time.process_time()
    if mode == "xsift":
        write_simulated_catalog(out, n, n_shards=shards, seed=0)
    else:
        simulate_catalog(n, seed=0).to_parquet(pathlib.Path(out) / "catalog.parquet", index=False)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "peak_mb": peak, "base_mb": base}))


def run(mode: str, n: int, shards: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="xsift-bench-") as out:
        proc = subprocess.run([sys.executable, __file__, "--child", mode, str(n), str(shards), out],
                              capture_output=True, text=True, check=True)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["bytes"] = sum(p.stat().st_size for p in pathlib.Path(out).glob("*.parquet"))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000],
                        help="numbers of detections to simulate")
    parser.add_argument("--shards", type=int, default=16, help="Parquet shards of the streamed run")
    parser.add_argument("--peer-max", type=int, default=1_000_000,
                        help="largest size the in-memory peer is run at (its memory grows with N)")
    parser.add_argument("--child", nargs=4, metavar=("MODE", "N", "SHARDS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child[0], int(args.child[1]), int(args.child[2]), args.child[3])
        return 0

    import jax
    print(f"machine: os.cpu_count()={os.cpu_count()}  jax.devices()={jax.devices()}")
    print(f"xsift = write_simulated_catalog(N, n_shards={args.shards}) streamed; "
          "peer = simulate_catalog(N).to_parquet() in memory")
    head = (f"{'detections':>12} | {'xsift s':>8} {'cpu s':>7} {'det/s':>10} {'peak MB':>8} {'base MB':>8} | "
            f"{'peer s':>8} {'cpu s':>7} {'det/s':>10} {'peak MB':>8} | {'speed x':>7} {'mem x':>6}")
    print(head)
    print("-" * len(head))
    for n in args.sizes:
        x = run("xsift", n, args.shards)
        row = (f"{n:>12,} | {x['seconds']:>8.1f} {x['cpu_seconds']:>7.1f} {n / x['seconds']:>10,.0f} {x['peak_mb']:>8.0f} "
               f"{x['base_mb']:>8.0f} | ")
        if n <= args.peer_max:
            p = run("peer", n, 1)
            row += (f"{p['seconds']:>8.1f} {p['cpu_seconds']:>7.1f} {n / p['seconds']:>10,.0f} {p['peak_mb']:>8.0f} | "
                    f"{p['seconds'] / x['seconds']:>7.2f} {p['peak_mb'] / x['peak_mb']:>6.2f}")
        else:
            row += f"{'(not run: memory grows with N)':>37} | {'-':>7} {'-':>6}"
        print(row, flush=True)
    print("det/s = detections per wall-clock second; cpu s = CPU time of the process (all threads)")
    print("speed x = peer time / xsift time; mem x = peer peak RSS / xsift peak RSS (higher favours xsift)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
