"""Scale-out over Parquet shards on Dask: the same steps as in memory, mapped over a sharded catalogue.

One module per job:

:mod:`~xsift.distributed.cluster`   a LocalCluster sized to the machine, or a client of a running scheduler
:mod:`~xsift.distributed.em`        full-data EM (workers sum sufficient statistics; the kernels' ``em_update`` steps)
:mod:`~xsift.distributed.fit`       fit the cluster-then-label model on a seeded sample (and optionally full-data EM)
:mod:`~xsift.distributed.rundir`    the run directory: run record and per-shard ledger, which make runs resumable
:mod:`~xsift.distributed.classify`  classify every shard with any :class:`~xsift.methods.base.Classifier`, resumably
:mod:`~xsift.distributed.vote`      master classes of every source across shards (shuffle on ``name``)

The sharded catalogue itself (files, row counts, reads, seeded sample) is
:class:`xsift.data.shards.ShardedCatalog`; its thin functions are re-exported here.
"""
from xsift.data.shards import (ShardedCatalog, catalog_columns, read_shard, read_sharded, sample_catalog,
                               shard_columns, shard_files, shard_row_counts)
from xsift.distributed.classify import classify_shards, load_classifier
from xsift.distributed.cluster import WORKER_ENV, dask_client, local_cluster
from xsift.distributed.em import EM_CHUNK_ROWS, distributed_em, pad_chunks, partition_statistics, tree_sum
from xsift.distributed.fit import fit_shards
from xsift.distributed.rundir import (AMBIGUOUS_DIR, LEDGER_DIR, OUTPUT_DIR, RUN_RECORD, UNIQUE_DIR, VOTE_RECORD,
                                      ledger_records, output_name, shard_done)
from xsift.distributed.vote import vote_run, vote_shards

__all__ = [
    # cluster
    "WORKER_ENV", "local_cluster", "dask_client",
    # the sharded catalogue
    "ShardedCatalog", "shard_files", "shard_row_counts", "shard_columns", "read_shard", "read_sharded",
    "sample_catalog", "catalog_columns",
    # fitting
    "fit_shards", "distributed_em", "EM_CHUNK_ROWS", "pad_chunks", "partition_statistics", "tree_sum",
    # run directory
    "RUN_RECORD", "VOTE_RECORD", "LEDGER_DIR", "OUTPUT_DIR", "UNIQUE_DIR", "AMBIGUOUS_DIR",
    "ledger_records", "output_name", "shard_done",
    # classification and vote
    "load_classifier", "classify_shards", "vote_shards", "vote_run",
]
