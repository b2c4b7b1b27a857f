"""``xsift simulate``: write a CSC-like simulated catalogue with ground-truth classes as Parquet shards.

Argument parsing only; the simulator is :mod:`xsift.simulate`.
"""
from __future__ import annotations

import pathlib
import sys
import time

CLI_HELP = "write a CSC-like simulated catalogue with ground-truth classes as Parquet shards"
CLI_COMMON = ()   # NumPy only, one built-in calibration: no device, precision or preset to choose


def add_cli_arguments(parser) -> None:
    from xsift.simulate.simulator import DEFAULT_BLOCK_ROWS   # NumPy only: light enough for --help
    parser.add_argument("--detections", type=int, default=100_000,
                        help="number of detections (rows) to simulate")
    parser.add_argument("--shards", type=int, default=1,
                        help="number of Parquet shards (contiguous row ranges; the catalogue is the same "
                             "whatever this number)")
    parser.add_argument("--out", default="xsift-sim",
                        help="output directory; shards are written as OUT/part-00000.parquet ... and a "
                             "manifest as OUT/manifest.json")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed -> same catalogue)")
    parser.add_argument("--block-rows", type=int, default=DEFAULT_BLOCK_ROWS,
                        help="rows generated at a time (bounds memory; changing it changes the catalogue)")
    parser.add_argument("--errors", action="store_true",
                        help="add CSC-like measurement errors: _lolim/_hilim columns of the hardness ratios, "
                             "powlaw_gamma and bb_kt, widths depending on counts as real ones do, and those "
                             "features reported scattered by them (true_class keeps the truth)")


def run_cli(args) -> int:
    from xsift.report import file_hash, write_manifest
    from xsift.simulate.simulator import CALIBRATION_PATH, write_simulated_catalog
    t0 = time.perf_counter()
    last = [0.0]

    def progress(done, total):
        now = time.perf_counter()
        if now - last[0] > 5.0 or done == total:
            last[0] = now
            print(f"  {done:,}/{total:,} detections ({now - t0:.0f} s)", file=sys.stderr)

    paths = write_simulated_catalog(args.out, args.detections, n_shards=args.shards, seed=args.seed,
                                    block_rows=args.block_rows, progress=progress, errors=args.errors)
    seconds = time.perf_counter() - t0
    write_manifest(args.out, command="simulate", detections=int(args.detections), shards=len(paths),
                   seed=int(args.seed), block_rows=int(args.block_rows), errors=bool(args.errors),
                   outputs=[p.name for p in paths], calibration=str(CALIBRATION_PATH),
                   calibration_hash=file_hash([CALIBRATION_PATH]), seconds=round(seconds, 3))
    print(f"wrote {int(args.detections):,} simulated detections in {len(paths)} shard(s) to "
          f"{pathlib.Path(args.out).resolve()}/ (part-00000.parquet ...; {seconds:.1f} s)")
    return 0
