"""The scale-out commands: ``xsift fit-shards``, ``xsift classify-shards``, ``xsift vote-shards``.

They run :mod:`xsift.distributed` on a ``distributed.LocalCluster`` sized to the
machine, or on a running Dask cluster given by the common ``--scheduler
tcp://HOST:PORT`` option (the same commands, only the address changes). At a terminal each Dask
stage draws a bar labelled with it ("classify: shards", "vote: partitions"); ``XSIFT_PROGRESS=0``
switches them off::

    xsift fit-shards CATALOG_DIR --out model/ [--fit-sample 1000000 | --full-em]
    xsift classify-shards CATALOG_DIR --model model/ --out run/     # classify every shard, then vote
    xsift vote-shards run/                                          # redo only the vote

``classify-shards`` is resumable: rerun the same command after a crash and only
unfinished shards are done again. A run directory holds the results of one model:
with another model it refuses unless ``--force`` (which discards the old results).
"""
from __future__ import annotations

import sys
import time

import numpy as np

from xsift.cli.cluster_then_label import add_missing_option
from xsift.errors import XsiftError


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _add_cluster_options(parser) -> None:
    parser.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help="address of a running Dask scheduler (tcp://HOST:PORT); by default a "
                             "LocalCluster sized to this machine is started and closed")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes of the local cluster (default: one per CPU this process may "
                             "use: its CPU affinity, e.g. taskset, capped by a container's cgroup CPU quota); "
                             "ignored with --scheduler")


# ---------------------------------------------------------------- fit-shards

fit_shards_help = "fit the cluster-then-label model on a directory of Parquet shards (sample or full-data EM, on Dask)"


def add_fit_shards_arguments(parser) -> None:
    parser.add_argument("catalog", metavar="CATALOG", help="directory (or glob) of Parquet shards")
    parser.add_argument("--out", required=True, metavar="MODEL_DIR", help="model directory to write")
    parser.add_argument("--fit-sample", type=int, default=1_000_000, metavar="N",
                        help="fit on a seeded random sample of N detections (all of them if fewer); with "
                             "--full-em the sample gives the transform, the references and the EM start")
    parser.add_argument("--full-em", action="store_true",
                        help="refine the mixture by EM over every complete detection of every shard "
                             "(sufficient statistics summed across the workers)")
    parser.add_argument("--k", type=int, default=6, help="number of Gaussian components")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample and of the k-means start")
    parser.add_argument("--max-iter", type=int, default=100, help="maximum full-data EM iterations")
    parser.add_argument("--tol", type=float, default=1e-3,
                        help="full-data EM stops when the mean log-likelihood changes by less than this")
    parser.add_argument("--persist", choices=["auto", "yes", "no"], default="auto",
                        help="keep the transformed features in worker memory during full-data EM "
                             "(auto: when they fit in a third of it) or re-read the shards each iteration")
    add_missing_option(parser)
    parser.add_argument("--errors", action="store_true",
                        help="use each detection's measurement errors (the preset's error columns, CSC's "
                             "_lolim/_hilim bounds): cluster by extreme deconvolution (on the sample, or over every "
                             "shard with --full-em) and deconvolve the class covariances; saved with the model")
    _add_cluster_options(parser)


def _add_shards_errors_option(parser) -> None:
    parser.add_argument("--errors", action="store_true",
                        help="not an option of classify-shards: it uses the errors its model was saved with "
                             "(`xsift fit-shards --errors` or `xsift fit --errors`)")


def _refuse_errors(args, command: str) -> None:
    if args.errors:
        raise XsiftError(f"--errors is not an option of {command}: it classifies with the errors its model was "
                         "saved with; fit the model with `xsift fit-shards CATALOG --errors` (or `xsift fit "
                         "--errors`)")


def run_fit_shards(args) -> int:
    from xsift.distributed import dask_client, fit_shards
    from xsift.config import load_preset
    from xsift.report import write_manifest
    preset = load_preset(args.config or "csc")
    persist = {"auto": None, "yes": True, "no": False}[args.persist]
    t0 = time.perf_counter()
    with dask_client(args.scheduler, n_workers=args.workers, device=args.device) as client:
        model, report = fit_shards(client, args.catalog, args.out, preset=preset, fit_sample=args.fit_sample,
                                   full_em=args.full_em, n_components=args.k, seed=args.seed,
                                   max_iter=args.max_iter, tol=args.tol, dtype=np.dtype(args.precision),
                                   persist=persist, missing=args.missing, errors=args.errors, log=_log)
    write_manifest(args.out, command="fit-shards", inputs=[str(args.catalog)], scheduler=args.scheduler,
                   config={"fit_sample": args.fit_sample, "full_em": args.full_em, "k": args.k,
                           "seed": args.seed, "precision": args.precision, "preset": preset.source,
                           "missing": args.missing, "errors": bool(args.errors)},
                   report=report, seconds=time.perf_counter() - t0)
    print(f"model {report['model_hash'][:12]} written to {args.out} "
          f"({'full-data EM' if args.full_em else 'fitted on a sample'} of {report['fit_sample']:,} detections)")
    return 0


# ---------------------------------------------------------------- classify-shards

classify_shards_help = ("classify every row of a directory of Parquet shards, resumably, then vote across shards "
                        "(cluster-then-label model from fit/fit-shards; a naive-Bayes model from nb fit classifies "
                        "one row per source, no vote)")
classify_shards_common = ("device",)   # precision and preset are the saved model's


def add_classify_shards_arguments(parser) -> None:
    parser.add_argument("catalog", metavar="CATALOG", help="directory (or glob) of Parquet shards")
    parser.add_argument("--model", required=True, metavar="MODEL_DIR", help="model directory (from fit, fit-shards, nb fit or nb tune)")
    parser.add_argument("--out", required=True, metavar="RUN_DIR",
                        help="run directory: detection_level/ (one shard per input shard), ledger/, "
                             "uniquely_classified/, ambiguous/, manifest.json; the tables are Parquet "
                             "shards only (no --format: xsift.read_catalog and xsift.write_table convert them)")
    parser.add_argument("--force", action="store_true",
                        help="if RUN_DIR holds results of another model, discard them and start again")
    parser.add_argument("--no-vote", action="store_true", help="classify only; vote later with vote-shards")
    parser.add_argument("--vote-partitions", type=int, default=None, metavar="N",
                        help="partitions of the shuffle on name for the vote (default: one per input shard)")
    add_missing_option(parser, classify=True)
    _add_shards_errors_option(parser)
    _add_cluster_options(parser)


def run_classify_shards(args) -> int:
    from xsift.distributed import classify_shards, dask_client
    from xsift.report import write_manifest
    _refuse_errors(args, "classify-shards")
    t0 = time.perf_counter()
    with dask_client(args.scheduler, n_workers=args.workers, device=args.device) as client:
        summary = classify_shards(client, args.catalog, args.model, args.out, force=args.force,
                                  missing=args.missing, log=_log)
        _log(f"classified {summary['rows_classified']:,} of {summary['rows_in']:,} detections "
             f"in {summary['shards']} shards ({summary['shards_skipped']} already done)")
        vote = None
        if summary["one_row_per_source"] and not args.no_vote:
            _log("naive-Bayes model: one row per source, no vote")
        if not args.no_vote and not summary["one_row_per_source"]:
            vote = _vote(client, args.out, args.vote_partitions)
    write_manifest(args.out, command="classify-shards", inputs=[str(args.catalog)], model=str(args.model),
                   model_hash=summary["model_hash"], scheduler=args.scheduler, classification=summary,
                   vote=vote, seconds=time.perf_counter() - t0)
    print(f"{args.out}: {summary['rows_classified']:,} detections classified"
          + (f", {vote['sources']:,} sources voted ({vote['uniquely_classified']:,} uniquely, "
             f"{vote['ambiguous']:,} ambiguous)" if vote else ""))
    return 0


def _vote(client, run_dir, n_partitions):
    from xsift.distributed import vote_run
    return vote_run(client, run_dir, n_partitions=n_partitions, log=_log)


# ---------------------------------------------------------------- vote-shards

vote_shards_help = ("master classes of every source of a classify-shards run, across shards (shuffle on name); "
                    "writes Parquet shards")
vote_shards_common = ("device",)


def add_vote_shards_arguments(parser) -> None:
    parser.add_argument("run", metavar="RUN_DIR", help="run directory written by classify-shards")
    parser.add_argument("--vote-partitions", type=int, default=None, metavar="N",
                        help="partitions of the shuffle on name (default: one per classified shard)")
    _add_cluster_options(parser)
    from xsift.cli.explore import add_samp_option
    add_samp_option(parser)


def run_vote_shards(args) -> int:
    from xsift.distributed import dask_client
    with dask_client(args.scheduler, n_workers=args.workers, device=args.device) as client:
        vote = _vote(client, args.run, args.vote_partitions)
    print(f"{args.run}: {vote['sources']:,} sources voted ({vote['uniquely_classified']:,} uniquely, "
          f"{vote['ambiguous']:,} ambiguous, kappa {vote['cohen_kappa_hard_soft']:.3f})")
    import pathlib
    from xsift.cli.explore import send_tables
    from xsift.distributed.rundir import AMBIGUOUS_DIR, UNIQUE_DIR
    send_tables(args, [pathlib.Path(args.run) / UNIQUE_DIR, pathlib.Path(args.run) / AMBIGUOUS_DIR])
    return 0
