"""Scale-out over Parquet shards on Dask: cluster start-up, EM driver, resumable classification, vote."""
from xsift.distributed.core import *  # noqa: F401,F403
