"""Full-data EM of the Gaussian mixture over every complete detection of a sharded catalogue, or of the
extreme-deconvolution mixture with each detection's measurement errors (``errors=True``).

The feature rows of every shard are transformed on the workers into fixed-size padded chunks and
*persisted* there when they fit in the workers' memory (re-read from the shards at every iteration
otherwise). Each iteration maps the GMM kernel's jitted
:func:`~xsift.kernels.gmm.sufficient_statistics` over the chunks of every partition
(:func:`partition_statistics`), sums the statistics with a tree reduction on the workers
(:func:`tree_sum`) and makes ONE call of :func:`xsift.kernels.gmm.em_update` on the client — the same
update step the in-memory loop of :func:`xsift.kernels.gmm.fit_gmm` runs, so both give the same
parameters, lower bound, iteration count and convergence from the same start, to float rounding.
With ``errors`` the chunks also carry each row's measurement variances (the preset's error columns
propagated through the transform, as :meth:`xsift.ClusterThenLabel.fit` does), the statistics are
:func:`xsift.kernels.xd.xd_statistics` and the step :func:`xsift.kernels.xd.xd_update`: the in-memory
:func:`xsift.kernels.xd.fit_xd` runs that same step.
"""
from __future__ import annotations

import math
import os
import time

import numpy as np

from xsift.errors import XsiftError

__all__ = ["EM_CHUNK_ROWS", "pad_chunks", "partition_statistics", "tree_sum", "distributed_em"]

#: rows per padded chunk of the full-data EM (every kernel call has this shape, so it compiles once)
EM_CHUNK_ROWS = 16384


def pad_chunks(X: np.ndarray, chunk_rows: int, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """X (n, d) -> (Xc (m, chunk_rows, d), maskc (m, chunk_rows)) with zero padding masked out (m >= 1)."""
    n, d = X.shape
    m = max(1, math.ceil(n / chunk_rows))
    Xc = np.zeros((m * chunk_rows, d), dtype=dtype)
    Xc[:n] = X
    mask = np.zeros(m * chunk_rows, dtype=bool)
    mask[:n] = True
    return Xc.reshape(m, chunk_rows, d), mask.reshape(m, chunk_rows)


def _feature_chunks(path, preset, transform_dict, chunk_rows, dtype_name, errors=False):
    """Worker: a shard's complete, transformed feature rows as (Xc (m, c, d), maskc (m, c)), padded; with
    ``errors`` also their measurement variances Sc (m, c, d) (0 where a feature has no error)."""
    from xsift.data.features import FeatureTransform, complete_rows, derive_features, measurement_variances
    from xsift.data.shards import read_shard
    df = read_shard(path, preset.feature_columns + (preset.error_columns if errors else []))
    feats = derive_features(df, preset, source=str(path))
    transform = FeatureTransform.from_dict(transform_dict)
    X = transform.transform(feats)
    keep = complete_rows(X)
    Xc, maskc = pad_chunks(X[keep], chunk_rows, np.dtype(dtype_name))
    if not errors:
        return Xc, maskc
    var = measurement_variances(df, feats, preset, transform, source=str(path))
    Sc, _ = pad_chunks(var[keep], chunk_rows, np.dtype(dtype_name))
    return Xc, maskc, Sc


def partition_statistics(params, chunks) -> tuple:
    """Worker: the sufficient statistics of one partition's chunks, summed, as float64 NumPy arrays.

    ``params``: a :class:`~xsift.kernels.gmm.GMMParams` (NumPy arrays; the dtype of ``means`` is the
    compute dtype); ``chunks``: ``(Xc (m, c, d), maskc (m, c))`` -> the five
    :class:`~xsift.kernels.gmm.SuffStats` fields ``(nk (K,), sx (K, d), sxx (K, d, d), loglik (), n ())``;
    or ``(Xc, maskc, Sc (m, c, d))`` with measurement variances -> the six
    :class:`~xsift.kernels.xd.XDStats` fields of extreme deconvolution (every feature observed).
    Every call of the jitted kernel has the same shape (c, d), so it compiles once per worker."""
    from xsift.kernels.gmm import sufficient_statistics
    from xsift.kernels.xd import xd_statistics
    Xc, maskc = chunks[:2]
    total = None
    for i, (x, m) in enumerate(zip(Xc, maskc)):
        if len(chunks) == 3:
            parts = xd_statistics(params, x, chunks[2][i], np.ones(x.shape, bool), m)
        else:
            parts = sufficient_statistics(params, x, m)
        s = tuple(np.asarray(v, dtype=np.float64) for v in parts)
        total = s if total is None else tuple(a + b for a, b in zip(total, s))
    return total


def _file_statistics(params, path, preset, transform_dict, chunk_rows, dtype_name, errors=False):
    """Worker: statistics of a shard re-read from disk (when the data are not persisted)."""
    return partition_statistics(params, _feature_chunks(path, preset, transform_dict, chunk_rows, dtype_name,
                                                        errors))


def _sum_statistics(*parts):
    return tuple(sum(vals) for vals in zip(*parts))


def tree_sum(client, futures, fan_in: int = 4):
    """Sum futures of statistics tuples by a tree reduction on the workers; returns one future.

    Raises XsiftError when there is nothing to sum."""
    futures = list(futures)
    if not futures:
        raise XsiftError("no partition to reduce")
    while len(futures) > 1:
        futures = [client.submit(_sum_statistics, *futures[i:i + fan_in], pure=False)
                   if len(futures[i:i + fan_in]) > 1 else futures[i]
                   for i in range(0, len(futures), fan_in)]
    return futures[0]


def _worker_memory_bytes(client) -> int:
    info = client.scheduler_info()
    return int(sum(w.get("memory_limit") or 0 for w in info.get("workers", {}).values()))


def _host_params(params):
    """The parameters as NumPy arrays (what the workers receive)."""
    from xsift.kernels.gmm import GMMParams
    return GMMParams(*(np.asarray(v) for v in params))


def distributed_em(client, catalog: str | os.PathLike, preset, transform, init, *,
                   max_iter: int = 100, tol: float = 1e-3, reg_covar: float = 1e-6,
                   dtype=np.float64, chunk_rows: int = EM_CHUNK_ROWS, persist: bool | None = None,
                   on_iteration=None, errors: bool = False):
    """Full-data EM over every complete detection of a sharded catalogue; returns a ``GMMResult``.

    ``preset``: a preset name, TOML path or :class:`xsift.config.Preset` (loaded once here, shipped to
    the workers typed); ``transform``: the fitted :class:`~xsift.data.features.FeatureTransform` (d features); ``init``:
    starting parameters (``weights (K,)``, ``means (K, d)``, ``precisions_cholesky (K, d, d)`` and
    optionally ``covariances``). Each iteration maps :func:`partition_statistics` over the partitions,
    tree-sums them on the workers and calls :func:`xsift.kernels.gmm.em_update` once on the client
    (scikit-learn's order: the lower bound is the mean log-likelihood of the parameters *entering*
    the iteration; stop when it changes by less than ``tol``). ``persist``: keep the transformed
    chunks in worker memory (default: when they take less than a third of the workers' memory), else
    re-read the shards at every iteration. ``on_iteration(i, lower_bound, seconds)`` is called after
    each iteration. ``errors``: extreme deconvolution (Bovy, Hogg & Roweis 2011) with each detection's
    measurement variances (the preset's error columns through ``transform``), the update of
    :func:`xsift.kernels.xd.fit_xd` (covariances are then the deconvolved ``V_k``). Raises XsiftError
    when the catalogue has no complete detection, or (``errors``) a shard lacks an error column.
    """
    from xsift.config import load_preset
    from xsift.data.shards import ShardedCatalog
    from xsift.kernels import gmm
    preset = load_preset(preset)
    cat = ShardedCatalog(catalog)
    files = cat.files
    dtype_name = np.dtype(dtype).name
    tdict = transform.to_dict()
    d = len(tdict["features"])
    if persist is None:
        need = cat.n_rows * d * np.dtype(dtype).itemsize * (2 if errors else 1)     # values (and variances)
        mem = _worker_memory_bytes(client)
        persist = mem == 0 or need < mem / 3
    if persist:
        parts = [client.submit(_feature_chunks, str(f), preset, tdict, chunk_rows, dtype_name, errors, pure=False)
                 for f in files]
    K = np.shape(init.means)[0]
    start = gmm.GMMParams(np.asarray(init.weights, dtype), np.asarray(init.means, dtype),
                          np.asarray(getattr(init, "covariances", np.zeros((K, d, d))), dtype),
                          np.asarray(init.precisions_cholesky, dtype))
    from xsift.kernels import xd
    Stats, update = (xd.XDStats, xd.xd_update) if errors else (gmm.SuffStats, gmm.em_update)
    state = gmm.em_start(start)
    try:
        while int(state.n_iter) < int(max_iter) and not bool(state.converged):
            t0 = time.perf_counter()
            params = _host_params(state.params)
            if persist:
                stats = [client.submit(partition_statistics, params, p, pure=False) for p in parts]
            else:
                stats = [client.submit(_file_statistics, params, str(f), preset, tdict, chunk_rows,
                                       dtype_name, errors, pure=False) for f in files]
            total = Stats(*tree_sum(client, stats).result())
            if total.n <= 0:
                raise XsiftError(f"{catalog}: no complete detection to fit the mixture on")
            state = update(state, Stats(*(np.asarray(v, dtype) for v in total)), tol=tol, reg_covar=reg_covar)
            if on_iteration is not None:
                on_iteration(int(state.n_iter), float(state.lower_bound), time.perf_counter() - t0)
    finally:
        if persist:
            client.cancel(parts)
    p = _host_params(state.params)
    return gmm.GMMResult(p.weights, p.means, p.covariances, p.precisions_cholesky,
                         float(state.lower_bound), int(state.n_iter), bool(state.converged))
