"""Dask cluster start-up: a LocalCluster sized to the CPUs this process may use, or a client of a
running scheduler.

The same xsift functions run on a ``distributed.LocalCluster`` (default) or on any running
Dask cluster (``--scheduler tcp://HOST:PORT``): nothing in the code changes, only the address.
Local workers are processes with one thread each and the environment :data:`WORKER_ENV`
(single-threaded XLA/BLAS), pinned one per core by :mod:`xsift.distributed.worker_setup`, so two
workers on two cores do not oversubscribe. The default number of workers is :func:`available_cpus`:
the cores of the process's CPU affinity (``taskset``, a batch system's binding), capped by the cgroup
CPU quota of a container (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us``),
not the machine's core count.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import pathlib
import sys
from typing import Iterable, Iterator

from xsift.errors import XsiftError

__all__ = ["WORKER_ENV", "available_cpus", "cgroup_cpu_limit", "local_cluster", "dask_client", "show_progress"]

#: environment of each local worker process: single-threaded kernels, the workers are the parallelism
WORKER_ENV = {
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}

#: where the cgroup file systems are mounted (v2 unified, or v1 controllers below it)
CGROUP_ROOT = "/sys/fs/cgroup"


def _read_words(path: pathlib.Path) -> list[str] | None:
    try:
        return path.read_text().split()
    except (OSError, UnicodeDecodeError):
        return None


def _own_cgroup_dirs(root: pathlib.Path, proc_cgroup: str | os.PathLike | None) -> list[pathlib.Path]:
    """Candidate cgroup directories of this process under ``root``: those named by ``proc_cgroup``
    (``/proc/self/cgroup``: ``ID:CONTROLLERS:PATH`` lines) and their parents, then ``root`` itself (a
    container sees its own cgroup as the root)."""
    dirs = []
    lines = [] if proc_cgroup is None else (_read_words(pathlib.Path(proc_cgroup)) or [])
    for line in lines:
        _, _, rest = line.partition(":")
        controllers, _, rel = rest.partition(":")
        if not rel.startswith("/"):
            continue
        base = root
        if controllers and not (root / "cpu.max").exists():   # v1: the cpu controller's hierarchy
            names = controllers.split(",")
            if "cpu" not in names:
                continue
            for sub in (controllers, "cpu", "cpu,cpuacct", "cpuacct,cpu"):
                if (root / sub).is_dir():
                    base = root / sub
                    break
        d = base / rel.lstrip("/")
        while True:
            dirs.append(d)
            if d == base:
                break
            d = d.parent
    return dirs + [root, root / "cpu", root / "cpu,cpuacct"]


def cgroup_cpu_limit(root: str | os.PathLike = CGROUP_ROOT, *,
                     proc_cgroup: str | os.PathLike | None = "/proc/self/cgroup") -> float | None:
    """The CPU quota of this process's cgroup in CPUs (quota / period, e.g. 1.5), or None when there is
    none ("max", -1, or no cgroup files readable).

    Reads cgroup v2 ``cpu.max`` (``"QUOTA PERIOD"`` or ``"max PERIOD"``) and else cgroup v1
    ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us``, in the directories of the process's own cgroup
    (from ``proc_cgroup``; None: only ``root``) and their parents up to ``root``; the smallest quota
    found wins, as the kernel enforces every level. ``root`` is a parameter so that tests can point it
    at a fake cgroup tree.
    """
    root = pathlib.Path(root)
    limits = []
    for d in _own_cgroup_dirs(root, proc_cgroup):
        words = _read_words(d / "cpu.max")
        if words and len(words) == 2 and words[0] != "max":
            quota, period = words
        else:
            q, p = _read_words(d / "cpu.cfs_quota_us"), _read_words(d / "cpu.cfs_period_us")
            if not (q and p):
                continue
            quota, period = q[0], p[0]
        try:
            quota_f, period_f = float(quota), float(period)
        except ValueError:
            continue
        if quota_f > 0 and period_f > 0:
            limits.append(quota_f / period_f)
    return min(limits) if limits else None


def available_cpus(cgroup_root: str | os.PathLike = CGROUP_ROOT, *,
                   proc_cgroup: str | os.PathLike | None = "/proc/self/cgroup") -> int:
    """How many CPUs this process may use: the cores of its CPU affinity (``os.sched_getaffinity``;
    ``os.cpu_count()`` where the platform has none), capped by the floor of its cgroup CPU quota
    (:func:`cgroup_cpu_limit`: 1.5 CPUs -> 1, so that workers are never throttled); at least 1."""
    if hasattr(os, "sched_getaffinity"):
        n = len(os.sched_getaffinity(0))
    else:   # pragma: no cover (macOS, Windows)
        n = os.cpu_count() or 1
    quota = cgroup_cpu_limit(cgroup_root, proc_cgroup=proc_cgroup)
    if quota is not None:
        n = min(n, math.floor(quota))
    return max(1, int(n))


def local_cluster(n_workers: int | None = None, *, memory_limit: str | int = "auto",
                  env: dict | None = None, pin: bool = True):
    """A ``distributed.LocalCluster`` of worker *processes*, one thread each, sized to the machine.

    ``n_workers`` defaults to :func:`available_cpus` (affinity and cgroup quota); ``env`` (default :data:`WORKER_ENV`) is set in
    each worker process before JAX is imported there. With ``pin`` (default) and no more workers
    than usable cores, worker ``i`` is pinned to the ``i``-th core (:mod:`xsift.distributed.worker_setup`):
    JAX's CPU runtime starts thread pools that no flag limits, and unpinned they make two
    workers on two cores compete.
    """
    from distributed import LocalCluster
    from xsift.distributed.worker_setup import CORES_ENV
    if n_workers is not None and int(n_workers) < 1:
        raise XsiftError(f"--workers {n_workers}: expected a positive number of worker processes")
    n = int(n_workers or available_cpus())
    env = dict(WORKER_ENV if env is None else env)
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if pin and cores and n <= len(cores):
        env[CORES_ENV] = ",".join(map(str, cores))
    return LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                        memory_limit=memory_limit, dashboard_address=None,
                        silence_logs=logging.CRITICAL, env=env, preload=["xsift.distributed.worker_setup"])


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


def _progress_wanted(stream) -> bool:
    """The command line's rule (:func:`xsift.report.progress.progress_wanted`, which this layer may not
    import): ``XSIFT_PROGRESS`` 0/off/never or 1/on/always, else whether ``stream`` is a terminal."""
    value = os.environ.get("XSIFT_PROGRESS", "").strip().lower()
    if value in {"0", "off", "never", "no", "false"}:
        return False
    if value in {"1", "on", "always", "yes", "true"}:
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def show_progress(futures: Iterable, label: str = "tasks", *, enabled: bool | None = None, stream=None) -> None:
    """A bar labelled with the stage ``label`` (e.g. ``"classify shards"``) counting Dask ``futures`` as
    they finish, on ``stream`` (default standard error); returns when all have finished (errored ones
    count: the caller collects their errors). ``enabled`` None: at a terminal unless ``XSIFT_PROGRESS``
    says otherwise; when not enabled it returns at once and draws nothing."""
    stream = sys.stderr if stream is None else stream
    if not (_progress_wanted(stream) if enabled is None else enabled):
        return
    futures = list(futures)
    from distributed import as_completed
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    console = Console(file=stream, force_terminal=True, highlight=False)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task(label, total=len(futures))
        for _ in as_completed(futures):
            bar.advance(task)
