"""Dask cluster start-up: a LocalCluster sized to the machine, or a client of a running scheduler.

The same xsift functions run on a ``distributed.LocalCluster`` (default) or on any running
Dask cluster (``--scheduler tcp://HOST:PORT``): nothing in the code changes, only the address.
Local workers are processes with one thread each and the environment :data:`WORKER_ENV`
(single-threaded XLA/BLAS), pinned one per core by :mod:`xsift.distributed.worker_setup`, so two
workers on two cores do not oversubscribe.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Iterator

from xsift.errors import XsiftError

__all__ = ["WORKER_ENV", "local_cluster", "dask_client", "show_progress"]

#: environment of each local worker process: single-threaded kernels, the workers are the parallelism
WORKER_ENV = {
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def local_cluster(n_workers: int | None = None, *, memory_limit: str | int = "auto",
                  env: dict | None = None, pin: bool = True):
    """A ``distributed.LocalCluster`` of worker *processes*, one thread each, sized to the machine.

    ``n_workers`` defaults to ``os.cpu_count()``; ``env`` (default :data:`WORKER_ENV`) is set in
    each worker process before JAX is imported there. With ``pin`` (default) and no more workers
    than usable cores, worker ``i`` is pinned to the ``i``-th core (:mod:`xsift.distributed.worker_setup`):
    JAX's CPU runtime starts thread pools that no flag limits, and unpinned they make two
    workers on two cores compete.
    """
    from distributed import LocalCluster
    from xsift.distributed.worker_setup import CORES_ENV
    n = int(n_workers or os.cpu_count() or 1)
    env = dict(WORKER_ENV if env is None else env)
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if pin and cores and n <= len(cores):
        env[CORES_ENV] = ",".join(map(str, cores))
    return LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                        memory_limit=memory_limit, dashboard_address=None,
                        silence_logs=logging.ERROR, env=env, preload=["xsift.distributed.worker_setup"])


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, *, n_workers: int | None = None,
                device: str | None = None) -> Iterator:
    """Yield a ``distributed.Client``: to ``scheduler`` (``tcp://HOST:PORT``) if given, else to a
    new :func:`local_cluster` that is closed on exit.

    ``device="cpu"`` keeps the local workers' JAX on the CPU (``JAX_PLATFORMS=cpu``); otherwise they
    use JAX's default device (a GPU when a CUDA jaxlib finds one). On a running cluster each worker's
    device is whatever its own environment gives it. Raises XsiftError when ``scheduler`` cannot be
    reached within 20 s."""
    from distributed import Client
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise XsiftError(f"--scheduler {scheduler}: cannot reach a Dask scheduler there ({exc}); "
                             "start one with `dask scheduler` or omit --scheduler for a local cluster") from None
        try:
            yield client
        finally:
            client.close()
        return
    env = dict(WORKER_ENV)
    if device == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
    cluster = local_cluster(n_workers, env=env)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def show_progress(futures) -> None:
    """Dask's own progress bar at a terminal; nothing otherwise."""
    if sys.stderr.isatty():
        from distributed import progress
        progress(futures)
