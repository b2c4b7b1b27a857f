"""Cluster-wise Mahalanobis distances and the log-space softmin (the hot path of the
cluster-then-label classifier of Pérez-Díaz et al., seed 000).

Each (cluster, class) pair is described by the mean and the pseudo-inverted sample
covariance ("precision") of the reference detections of that class in that cluster,
stacked as arrays

``means (K, L, d)``, ``precisions (K, L, d, d)``, ``mask (K, L)`` bool

(K clusters, L classes, d features; ``mask`` False for a class excluded in a cluster).
No function here ever forms an N x N array: the published code computes
``diag(D P D^T)`` of an ``(N, d)`` difference matrix ``D`` (an N x N product), whereas
the distance of a row needs only its own ``d`` numbers.

Rows are laid out so that every fixed-size chunk holds rows of one cluster only
(:func:`cluster_chunk_layout`, vectorised); the chunk program takes the cluster index
as a traced argument, gathers that cluster's ``L`` blocks and computes all L distances
in one batched product, so it compiles once per chunk shape whatever the cluster.

Functions (arrays in, arrays out; dtype-generic):

``classify_rows(X, cluster, means, precisions, mask)``  distances -> softmin probabilities, argmax
``cluster_distances(X, means_k, precisions_k)``          (n, L) distances of one cluster's rows
``log_softmin(distances, usable)``                       log p_c = -d_c - logsumexp(-d_j), usable j
``cluster_chunk_layout(cluster, K, chunk)``              row slots so that chunks are cluster-pure
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from xsift.kernels import scoped_x64

DEFAULT_CHUNK_SIZE = 8192


def _dtype(dtype, default=jnp.float64):
    if dtype is None:
        return default
    dt = jnp.dtype(dtype)
    if dt not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dt.type


# ----------------------------------------------------------------------------
# distances and softmin (classify time; the hot path)
# ----------------------------------------------------------------------------

@scoped_x64
def log_softmin(distances, usable):
    """distances (n, L), usable (n, L) bool -> log probabilities (n, L).

    log p_c = -d_c - logsumexp_j(-d_j) over the usable classes j; -inf for an unusable
    class; NaN in every column of a row with no usable class. Never overflows: a row
    whose distances all exceed ~745 (where exp(-d) underflows) gets its correct limit.
    """
    any_usable = jnp.any(usable, axis=1, keepdims=True)
    neg = jnp.where(usable, -distances, 0.0)
    top = jnp.max(jnp.where(usable, neg, jnp.finfo(neg.dtype).min), axis=1, keepdims=True)
    top = jnp.where(any_usable, top, 0.0)
    total = jnp.sum(jnp.where(usable, jnp.exp(neg - top), 0.0), axis=1, keepdims=True)
    lse = top + jnp.log(jnp.where(any_usable, total, 1.0))
    # no arithmetic on infinities (XLA's CPU float32 path does not honour them reliably):
    # the masks decide which entries are -inf / NaN at the very end
    logp = jnp.where(usable, neg - lse, -jnp.inf)
    return jnp.where(any_usable, logp, jnp.nan)


@scoped_x64
def cluster_distances(X, means, precisions, squared=True):
    """X (n, d) rows of ONE cluster, means (L, d), precisions (L, d, d) of that cluster
    -> (n, L) squared Mahalanobis distances (x - mu_l)^T P_l (x - mu_l) (or their square
    roots if ``squared`` is False).

    Evaluated as the published code does per row, ``sum_j ((x - mu) P)_j (x - mu)_j``: the
    difference first (no cancellation of large terms, safe in float32), then one batched
    ``(L, n, d) @ (L, d, d)`` product; never the N x N ``D P D^T``.
    """
    D = X[None, :, :] - means[:, None, :]                     # (L, n, d)
    DP = jnp.matmul(D, precisions)                            # (L, n, d)
    d2 = jnp.sum(DP * D, axis=2).T                            # (n, L)
    return d2 if squared else jnp.sqrt(jnp.maximum(d2, 0.0))


@partial(jax.jit, static_argnames=("squared",))
def _classify_chunk(X, k, means, precisions, mask, squared):
    """One chunk of rows that all belong to cluster ``k`` (a traced scalar: one compile for all k)."""
    dist = cluster_distances(X, means[k], precisions[k], squared)
    usable = jnp.broadcast_to(mask[k][None, :], dist.shape)
    logp = log_softmin(dist, usable)
    probs = jnp.where(usable, jnp.exp(jnp.where(usable, logp, 0.0)), 0.0)
    probs = jnp.where(jnp.any(mask[k]), probs, jnp.nan)
    # the class of the largest reported probability (the first on a tie), so that a detection's
    # predicted class is always the argmax of the probabilities in its table row (a vote from
    # that table recomputes it so)
    pred = jnp.where(jnp.any(mask[k]), jnp.argmax(probs, axis=1), -1)
    return probs.T, pred                        # class-major (L, chunk): see classify_rows


def cluster_chunk_layout(cluster, n_clusters: int, chunk_size: int):
    """Arrange rows so that every fixed-size chunk holds rows of one cluster only.

    cluster (n,) int in [0, K) -> (slot (n,) int: the row's position in the padded layout,
    chunk_cluster (n_chunks,) int, n_slots). Rows keep their order within a cluster;
    each cluster's rows fill whole chunks, its last chunk padded. Vectorised (no loop
    over rows or clusters).
    """
    cluster = np.asarray(cluster, dtype=np.int64)
    counts = np.bincount(cluster, minlength=n_clusters)
    chunks_per = -(-counts // chunk_size)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    padded_start = np.concatenate([[0], np.cumsum(chunks_per * chunk_size)[:-1]])
    # a stable sort by cluster (16-bit keys: NumPy's radix sort); the i-th row in that order goes to
    # slot i + (padded start - start) of its cluster
    key = cluster.astype(np.int16) if n_clusters <= np.iinfo(np.int16).max else cluster
    order = np.argsort(key, kind="stable")
    slot = np.empty(len(cluster), dtype=np.int64)
    slot[order] = np.arange(len(cluster)) + np.repeat(padded_start - start, counts)
    chunk_cluster = np.repeat(np.arange(n_clusters), chunks_per)
    return slot, chunk_cluster, int(chunks_per.sum() * chunk_size)


@scoped_x64
def classify_rows(X, cluster, means, precisions, mask, *, squared: bool = True,
                  chunk_size: int = DEFAULT_CHUNK_SIZE, dtype=None, out_dtype=None):
    """Softmin class probabilities of rows over the classes of their own cluster.

    X (n, d); cluster (n,) int in [0, K); means (K, L, d); precisions (K, L, d, d)
    (pseudo-inverse covariances); mask (K, L) bool, False for a class excluded
    in a cluster. ``squared`` selects the squared distance (the published tables)
    or the Mahalanobis distance itself (Eq. 6).

    Returns NumPy arrays probs (n, L) (0 for excluded classes, NaN rows where the
    cluster has no usable class; a column-major view, so that each class's column is
    contiguous; in ``out_dtype``, by default the computing ``dtype``) and predicted (n,) int
    (argmax, first class on a tie, -1 where no class is usable).

    Rows are laid out so that each chunk of exactly ``chunk_size`` rows holds one cluster's rows
    (:func:`cluster_chunk_layout`); a chunk then needs only its cluster's L blocks,
    one batched ``(L, chunk, d) @ (L, d, d)`` product. The chunk program compiles once per chunk
    shape (the cluster index is a traced argument), chunks are dispatched
    asynchronously and gathered once at the end.
    """
    dt = _dtype(dtype)
    X = np.asarray(X)
    n, d = X.shape
    K, L = np.shape(mask)
    if n == 0:
        return np.zeros((0, L), dtype=np.dtype(dt)), np.zeros(0, dtype=np.int64)
    cluster = np.asarray(cluster, dtype=np.int64)
    if cluster.min() < 0 or cluster.max() >= K:
        raise ValueError(f"cluster labels must lie in [0, {K}), got [{cluster.min()}, {cluster.max()}]")
    c = int(chunk_size)     # one chunk shape whatever n: a new number of rows never recompiles
    slot, chunk_cluster, n_slots = cluster_chunk_layout(cluster, K, c)
    Xp = np.zeros((n_slots, d), dtype=np.dtype(dt))
    Xp[slot] = X
    means_j = jnp.asarray(np.nan_to_num(np.asarray(means, np.float64)), dt)
    P_j = jnp.asarray(np.nan_to_num(np.asarray(precisions, np.float64)), dt)
    mask_j = jnp.asarray(mask, bool)
    ks = np.arange(K, dtype=np.int32)
    # host-side slices (no eager device ops between dispatches); each call returns at once
    outs = [_classify_chunk(Xp[i * c:(i + 1) * c], ks[k], means_j, P_j, mask_j, squared)
            for i, k in enumerate(chunk_cluster.tolist())]
    # class-major on the host: each class's probabilities are one contiguous row (the tables' columns)
    padded = np.concatenate([np.asarray(p) for p, _ in outs], axis=1)
    probs_t = np.empty((L, n), dtype=np.dtype(out_dtype or padded.dtype))
    for j in range(L):          # a 1-d take per class row: several times faster than padded[:, slot]
        probs_t[j] = padded[j].take(slot)       # (converted here, in cache, if out_dtype differs)
    pred = np.concatenate([np.asarray(k) for _, k in outs])[slot].astype(np.int64)
    return probs_t.T, pred
