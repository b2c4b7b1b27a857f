"""Dask worker preload for xsift's LocalCluster: one worker per CPU core.

``dask_setup(worker)`` runs in each worker process when it starts, before any task
(and so before JAX is imported there). It pins every thread of the process to the
core given by the worker's index, so threads created later (XLA's and Eigen's pools,
sized from the affinity mask when JAX starts) stay on that core too: the workers are
the parallelism, and one worker's runtime threads never compete with another
worker's. JAX offers no switch for its CPU thread pools; task affinity is the
mechanism its maintainers point to. Workers of a cluster started elsewhere
(``--scheduler``) are never pinned by xsift. It also makes the worker ignore SIGINT
(:func:`ignore_interrupts`): Ctrl-C is the command's to handle.
"""
from __future__ import annotations

import os

#: environment variable holding the cores to pin to, comma-separated, one per worker index
CORES_ENV = "XSIFT_WORKER_CORES"


def pin_process(core: int) -> None:
    """Pin every current thread of this process to ``core`` (Linux; a no-op elsewhere)."""
    if not hasattr(os, "sched_setaffinity"):
        return
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), {core})
        except OSError:
            pass


def ignore_interrupts() -> None:
    """Ignore SIGINT in this (worker) process: Ctrl-C at a terminal reaches every process of the
    command's group, and the command itself stops the run and closes the cluster; a worker taking
    it as well printed its own KeyboardInterrupt traceback."""
    import signal
    import threading
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def dask_setup(worker) -> None:
    ignore_interrupts()
    cores = [int(c) for c in os.environ.get(CORES_ENV, "").split(",") if c.strip()]
    if not cores:
        return
    try:
        index = int(worker.name)
    except (TypeError, ValueError):
        return
    pin_process(cores[index % len(cores)])
