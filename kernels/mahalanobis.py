"""Cluster-wise class statistics, Mahalanobis distances and the log-space softmin.

The cluster-then-label classifier of Pérez-Díaz et al. (seed 000) describes every
(cluster, class) pair by the mean and the pseudo-inverted sample covariance of the
reference detections of that class in that cluster. Here those statistics are
stacked as arrays

``means (K, L, d)``, ``precisions (K, L, d, d)``, ``mask (K, L)`` bool

(K clusters, L classes, d features; ``mask`` False for a class excluded in a
cluster), and every detection gathers its own cluster's block. No function here
ever forms an N x N array: the published code computes ``diag(D P D^T)`` of an
``(N, d)`` difference matrix ``D`` (an N x N product), whereas the distance of a
row needs only its own ``d`` numbers.

How the distances are computed. Each precision (a pseudo-inverse, symmetric
positive semi-definite) is factored once as ``P = W W^T`` (eigen-decomposition,
negative rounding eigenvalues clipped to 0), so that

``(x - mu)^T P (x - mu) = || (x - mu) W ||^2``,

and all K*L whitenings of a chunk of rows are one ``(n, d) @ (d, K*L*d)``
product minus the precomputed ``mu W``. The row then keeps its own cluster's L
values (``take_along_axis``). This costs K times the minimum arithmetic but is a
single dense matrix product, which is what CPUs and GPUs run fastest; it never
cancels large terms the way the expanded ``x^T P x - 2 mu^T P x + mu^T P mu``
would (important in float32).

Functions (arrays in, arrays out; dtype-generic; rows in fixed-size chunks):

``class_statistics(X, group, n_groups)``       counts, means, covariances (ddof = 1) per group
``pseudo_inverse(covariances)``                 batched Moore-Penrose inverse, NumPy's default cutoff
``whitening_factors(precisions)``               W with P = W W^T
``classify_rows(X, cluster, means, whiteners, mask)``  distances -> softmin probabilities, argmax
``log_softmin(distances, usable)``              log p_c = -d_c - logsumexp(-d_j) over usable classes
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_CHUNK_SIZE = 8192
# NumPy's default relative cutoff for np.linalg.pinv (singular values below
# rcond * largest are treated as zero); used so that results match the published code.
PINV_RCOND = 1e-15


def _dtype(dtype, default=jnp.float64):
    if dtype is None:
        return default
    dt = jnp.dtype(dtype)
    if dt not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dt.type


def _pad_rows(a: np.ndarray, rows: int, fill=0) -> np.ndarray:
    """a (n, ...) padded with ``fill`` to ``rows`` rows."""
    a = np.asarray(a)
    if a.shape[0] == rows:
        return a
    pad = np.full((rows - a.shape[0],) + a.shape[1:], fill, dtype=a.dtype)
    return np.concatenate([a, pad], axis=0)


# ----------------------------------------------------------------------------
# class statistics (fit time)
# ----------------------------------------------------------------------------

@partial(jax.jit, static_argnames=("n_groups",))
def _group_sums(X, group, n_groups):
    """X (c, d), group (c,) int in [-1, G) -> counts (G,), sums (G, d). Rows of group -1 add nothing."""
    onehot = (group[:, None] == jnp.arange(n_groups)[None, :]).astype(X.dtype)   # (c, G)
    return onehot.sum(0), onehot.T @ X


@partial(jax.jit, static_argnames=("n_groups",))
def _group_scatter(X, group, means, n_groups):
    """X (c, d), group (c,), means (G, d) -> sum over the group's rows of (x - mu)(x - mu)^T, (G, d, d)."""
    valid = group >= 0
    centred = X - means[jnp.where(valid, group, 0)]
    centred = jnp.where(valid[:, None], centred, 0.0)
    onehot = (group[:, None] == jnp.arange(n_groups)[None, :]).astype(X.dtype)   # (c, G)
    c, d = X.shape
    weighted = (onehot[:, :, None] * centred[:, None, :]).reshape(c, n_groups * d)   # (c, G*d)
    return (weighted.T @ centred).reshape(n_groups, d, d)


def class_statistics(X, group, n_groups: int, *, chunk_size: int = DEFAULT_CHUNK_SIZE, dtype=None):
    """Per-group count, mean and sample covariance (ddof = 1), two passes over fixed-size row chunks.

    X (n, d) float; group (n,) int, the group of each row in [0, n_groups) or -1 (row ignored).
    Returns NumPy arrays counts (G,) int, means (G, d), covariances (G, d, d); a group
    with fewer than 2 rows has NaN covariance (and a group with none NaN mean).
    The covariance is centred on the group mean (two-pass), as ``np.cov``.
    """
    dt = _dtype(dtype)
    X = np.asarray(X)
    group = np.asarray(group, dtype=np.int32)
    n, d = X.shape
    c = int(min(chunk_size, max(8, -(-n // 8) * 8)))
    n_chunks = max(1, -(-n // c))
    counts = jnp.zeros(n_groups, dt)
    sums = jnp.zeros((n_groups, d), dt)
    chunks = []
    for i in range(n_chunks):
        Xc = jnp.asarray(_pad_rows(X[i * c:(i + 1) * c], c), dt)
        gc = jnp.asarray(_pad_rows(group[i * c:(i + 1) * c], c, fill=-1))
        chunks.append((Xc, gc))
        k, s = _group_sums(Xc, gc, n_groups)
        counts, sums = counts + k, sums + s
    means = sums / jnp.maximum(counts, 1.0)[:, None]
    scatter = jnp.zeros((n_groups, d, d), dt)
    for Xc, gc in chunks:
        scatter = scatter + _group_scatter(Xc, gc, means, n_groups)
    counts_np = np.asarray(counts).round().astype(np.int64)
    means_np = np.array(means, dtype=np.float64)
    means_np[counts_np == 0] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = np.asarray(scatter, dtype=np.float64) / (counts_np - 1.0)[:, None, None]
    cov[counts_np < 2] = np.nan
    return counts_np, means_np, cov


@jax.jit
def _pinv(cov):
    return jnp.linalg.pinv(cov, rtol=PINV_RCOND)


def pseudo_inverse(covariances):
    """covariances (..., d, d) -> Moore-Penrose inverses (..., d, d), float64, NumPy's default cutoff
    (singular values below 1e-15 x the largest are dropped, as ``np.linalg.pinv``). NaN blocks stay NaN."""
    cov = np.asarray(covariances, dtype=np.float64)
    bad = ~np.isfinite(cov).all(axis=(-2, -1))
    out = np.array(_pinv(jnp.asarray(np.where(bad[..., None, None], 0.0, cov))), dtype=np.float64)
    out[bad] = np.nan
    return out


@jax.jit
def _whiten(prec):
    sym = 0.5 * (prec + jnp.swapaxes(prec, -1, -2))
    vals, vecs = jnp.linalg.eigh(sym)
    return vecs * jnp.sqrt(jnp.clip(vals, 0.0, None))[..., None, :]


def whitening_factors(precisions):
    """precisions (..., d, d) symmetric PSD -> W (..., d, d) float64 with P = W W^T (NaN blocks -> 0)."""
    prec = np.asarray(precisions, dtype=np.float64)
    bad = ~np.isfinite(prec).all(axis=(-2, -1))
    W = np.array(_whiten(jnp.asarray(np.where(bad[..., None, None], 0.0, prec))), dtype=np.float64)
    W[bad] = 0.0
    return W


# ----------------------------------------------------------------------------
# distances and softmin (classify time; the hot path)
# ----------------------------------------------------------------------------

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


def cluster_distances(X, means, whiteners, squared=True):
    """X (n, d) rows of ONE cluster, means (L, d), whiteners (L, d, d) of that cluster
    -> (n, L) squared Mahalanobis distances (x - mu_l)^T W_l W_l^T (x - mu_l)
    (or their square roots if ``squared`` is False), as one (n, d) @ (d, L*d) product."""
    n, d = X.shape
    L = means.shape[0]
    Wflat = jnp.transpose(whiteners, (1, 0, 2)).reshape(d, L * d)      # column (l, j) = W_l[:, j]
    shift = jnp.einsum("li,lij->lj", means, whiteners).reshape(L * d)  # mu_l W_l
    Z = (X @ Wflat - shift[None, :]).reshape(n, L, d)
    d2 = jnp.sum(Z * Z, axis=2)
    return d2 if squared else jnp.sqrt(d2)


@partial(jax.jit, static_argnames=("squared",))
def _classify_chunk(X, k, means, whiteners, mask, squared):
    """One chunk of rows that all belong to cluster ``k`` (a traced scalar: one compile for all k)."""
    dist = cluster_distances(X, means[k], whiteners[k], squared)
    usable = jnp.broadcast_to(mask[k][None, :], dist.shape)
    logp = log_softmin(dist, usable)
    probs = jnp.where(usable, jnp.exp(jnp.where(usable, logp, 0.0)), 0.0)
    probs = jnp.where(jnp.any(mask[k]), probs, jnp.nan)
    pred = jnp.where(jnp.any(mask[k]), jnp.argmax(jnp.where(usable, logp, -jnp.inf), axis=1), -1)
    return probs, pred


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
    order = np.argsort(cluster, kind="stable")
    rank = np.empty(len(cluster), dtype=np.int64)
    rank[order] = np.arange(len(cluster)) - start[cluster[order]]
    slot = padded_start[cluster] + rank
    chunk_cluster = np.repeat(np.arange(n_clusters), chunks_per)
    return slot, chunk_cluster, int(chunks_per.sum() * chunk_size)


def classify_rows(X, cluster, means, whiteners, mask, *, squared: bool = True,
                  chunk_size: int = DEFAULT_CHUNK_SIZE, dtype=None):
    """Softmin class probabilities of rows over the classes of their own cluster.

    X (n, d); cluster (n,) int in [0, K); means (K, L, d); whiteners (K, L, d, d)
    (from :func:`whitening_factors`); mask (K, L) bool, False for a class excluded
    in a cluster. ``squared`` selects the squared distance (the published tables)
    or the Mahalanobis distance itself (Eq. 6).

    Returns NumPy arrays probs (n, L) (0 for excluded classes, NaN rows where the
    cluster has no usable class) and predicted (n,) int (argmax, first class on a tie,
    -1 where no class is usable).

    Rows are laid out so that each fixed-size chunk holds one cluster's rows
    (:func:`cluster_chunk_layout`); a chunk then needs only its cluster's L blocks,
    one ``(chunk, d) @ (d, L*d)`` product. The chunk program compiles once per chunk
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
    c = int(min(chunk_size, max(8, -(-n // 8) * 8)))
    slot, chunk_cluster, n_slots = cluster_chunk_layout(cluster, K, c)
    Xp = np.zeros((n_slots, d), dtype=np.dtype(dt))
    Xp[slot] = X
    Xp = jnp.asarray(Xp)
    means_j = jnp.asarray(means, dt)
    W_j = jnp.asarray(whiteners, dt)
    mask_j = jnp.asarray(mask, bool)
    outs = [_classify_chunk(Xp[i * c:(i + 1) * c], jnp.int32(k), means_j, W_j, mask_j, squared)
            for i, k in enumerate(chunk_cluster.tolist())]
    probs = np.concatenate([np.asarray(p) for p, _ in outs])[slot]
    pred = np.concatenate([np.asarray(k) for _, k in outs])[slot].astype(np.int64)
    return probs, pred
