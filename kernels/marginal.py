"""Exact marginal Gaussians on each row's observed features: mixture responsibilities and the
cluster-wise class distances of the cluster-then-label method for rows with missing features.

A Gaussian ``N(mu, Sigma)`` marginalised over the features a row lacks is ``N(mu_o, Sigma_oo)``:
the sub-vector of the mean and the sub-block of the covariance on the observed features ``o``. So

* a mixture's log-density of a row is ``log sum_k w_k N(x_o | mu_ko, Sigma_koo)`` and its
  responsibilities follow by log-sum-exp (:func:`marginal_e_step`, :func:`marginal_predict_proba`,
  :func:`marginal_predict`); with nothing missing this is :func:`xsift.kernels.gmm.e_step`;
* the distance of a row to class c of its cluster k is ``(x - mu_kc)_o^T (Sigma_kc,oo)^+ (x - mu_kc)_o``
  with ``^+`` the Moore-Penrose pseudo-inverse of the observed sub-block (what the published method
  does with ``np.linalg.pinv`` on the full covariance), then the log-space softmin of
  :func:`xsift.kernels.mahalanobis.log_softmin` over the usable classes (:func:`marginal_classify_rows`).

How (and why this way)
    The sub-blocks depend only on WHICH features are missing, and a catalogue has few missing
    patterns (tens) against millions of rows. So rows are grouped by pattern on the host
    (:func:`missing_patterns`, one ``np.unique`` over the boolean rows), the per-pattern factors are
    computed once, for every (pattern, component) or (pattern, cluster, class), in one vmapped
    float64 program (:func:`observed_precision_cholesky`, :func:`observed_pseudo_inverse`), and the
    rows then go through a chunk program that is the complete-row computation with the factor of the
    chunk's pattern gathered by a traced index: no per-row factorisation and no Python loop over rows.
    A masked formulation keeps one shape for every pattern: with ``M = diag(observed)``, missing
    entries of x set to 0 and

        Sigma~ = M Sigma M + (I - M)   (block-diagonal: Sigma_oo and the identity),

    ``chol(Sigma~)^{-T}`` with the rows of missing features zeroed whitens exactly the observed
    sub-vector, and ``log det Sigma~ = log det Sigma_oo``; for the class statistics
    ``pinv(M Sigma M) = R^T (Sigma_oo)^+ R`` (R the projection onto the observed features), computed as
    np.linalg.pinv does (SVD; singular values above ``rcond`` times the largest inverted): on
    ill-conditioned class covariances (condition numbers 1e5 and beyond) another algorithm, e.g. a
    symmetric eigen-decomposition, moves the probabilities by ~1e-10. Doing the
    factorisation per row instead (a masked Cholesky or eigen-decomposition in the row kernel) would
    cost ~d^3 per row and component instead of ~d^2, and an eigen-decomposition per row is slow on
    CPU; the pattern grouping costs one stable sort on the host and the padding of at most one chunk
    per (pattern[, cluster]) group.

    Chunks are group-pure and of one fixed shape (``chunk_size`` rows, ``_CHUNKS_PER_CALL`` chunks
    per call, the last call padded), and the pattern table is padded to a power of two (at least 8)
    patterns: one compilation per (chunk shape, K[, L], dtype, pattern-table size) whatever the
    table's length. Factors are computed in float64 and cast to the compute dtype.

Rows with no observed feature: the marginal over nothing is the empty product, so
:func:`marginal_e_step` gives them log p = 0 and responsibilities equal to the weights;
:func:`marginal_classify_rows` gives them no probabilities (NaN, predicted -1, 0 features used).
"""
from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from xsift.kernels import scoped_x64
from xsift.kernels.mahalanobis import cluster_chunk_layout, cluster_distances, log_softmin

__all__ = ["missing_patterns", "observed_precision_cholesky", "observed_pseudo_inverse",
           "marginal_e_step", "marginal_predict_proba", "marginal_predict", "marginal_score_samples",
           "marginal_classify_rows", "error_classify_rows", "DEFAULT_CHUNK_SIZE", "ERROR_CHUNK_SIZE",
           "PINV_RCOND"]

DEFAULT_CHUNK_SIZE = 1024
# rows per chunk of error_classify_rows: each row factors L matrices of d x d (about 12 MB per chunk
# at L = 10, d = 12 in float64)
ERROR_CHUNK_SIZE = 1024
# np.linalg.pinv's default cut-off, the one the published method (and class_statistics_of) uses
PINV_RCOND = 1e-15
_CHUNKS_PER_CALL = 8
_LOG_2PI = math.log(2.0 * math.pi)


def _checked_clusters_and_covariances(cluster, means, covariances, n, K, L, d):
    """(n,) int64 cluster labels in [0, K) and (K, L, d, d) float64 class covariances (NaN -> 0); raises
    ValueError for a wrong shape or a label out of range."""
    cluster = np.asarray(cluster, np.int64).reshape(-1)
    if cluster.shape != (n,):
        raise ValueError(f"cluster must have one label per row ({n}), got shape {cluster.shape}")
    if cluster.min() < 0 or cluster.max() >= K:
        raise ValueError(f"cluster labels must lie in [0, {K}), got [{cluster.min()}, {cluster.max()}]")
    cov = np.nan_to_num(np.asarray(covariances, np.float64))
    if cov.shape != (K, L, d, d) or np.shape(means) != (K, L, d):
        raise ValueError(f"means and covariances must have shapes {(K, L, d)} and {(K, L, d, d)}, got "
                         f"{np.shape(means)} and {cov.shape}")
    return cluster, cov


def _dtype(dtype, default=np.float64):
    if dtype is None:
        return np.dtype(default)
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dt


def missing_patterns(observed):
    """observed (n, d) bool -> (patterns (P, d) bool, the distinct rows; index (n,) int64, each row's
    pattern). Vectorised: each row's bits packed into one integer key (up to 64 features; beyond that
    the packed bytes as one opaque value), then one ``np.unique`` of the keys."""
    observed = np.asarray(observed)
    if observed.ndim != 2 or observed.dtype != bool:
        raise ValueError(f"observed must be a 2-d boolean array (n, d), got {observed.dtype} {observed.shape}")
    n, d = observed.shape
    if n == 0:
        return np.zeros((0, d), bool), np.zeros(0, np.int64)
    packed = np.packbits(observed, axis=1, bitorder="little")                 # (n, ceil(d / 8)) uint8
    if packed.shape[1] <= 8:
        packed = np.pad(packed, ((0, 0), (0, 8 - packed.shape[1])))
        keys = np.ascontiguousarray(packed).view(np.uint64).reshape(n)
    else:
        keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).reshape(n)
    _, first, index = np.unique(keys, return_index=True, return_inverse=True)
    return observed[first], np.asarray(index, np.int64).reshape(-1)


def _padded_patterns(patterns):
    """patterns (P, d) -> (P', d) with P' a power of two >= 8 (extra rows all observed, never used): the
    factor tables' shapes, hence the compiled programs, then change only when P crosses a power of two."""
    P, d = patterns.shape
    size = max(8, 1 << max(0, P - 1).bit_length())
    return np.concatenate([patterns, np.ones((size - P, d), bool)])


def _observed_mask(X, observed):
    """-> X (n, d) float64 with 0 at unobserved entries, observed (n, d) bool (default: finite entries)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-d array (n_rows, n_features), got shape {X.shape}")
    if observed is None:
        observed = np.isfinite(X)
    observed = np.asarray(observed)
    if observed.shape != X.shape or observed.dtype != bool:
        raise ValueError(f"observed must be a boolean array of X's shape {X.shape}, got {observed.dtype} "
                         f"{observed.shape}")
    bad = observed & ~np.isfinite(X)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        cols = [int(j) for j in np.flatnonzero(bad.any(axis=0))]
        raise ValueError(f"X has NaN or inf at observed entries in {rows.size} rows (first: {rows[:5].tolist()}), "
                         f"columns {cols}; mark them False in `observed`")
    return np.where(observed, X, 0.0), observed


# ----------------------------------------------------------------------------
# per-pattern factors (float64, once per table)
# ----------------------------------------------------------------------------

@jax.jit
def _precision_cholesky_program(covariances, patterns):
    """covariances (K, d, d), patterns (P, d) bool -> (P, K, d, d) whitening factors, (P, K) log dets."""
    d = covariances.shape[-1]
    eye = jnp.eye(d, dtype=covariances.dtype)

    def one(obs):
        m = obs.astype(covariances.dtype)
        C = (m[:, None] * m[None, :]) * covariances + (1.0 - m) * eye          # (K, d, d)
        L = jnp.linalg.cholesky(C)
        Linv = lax.linalg.triangular_solve(L, jnp.broadcast_to(eye, C.shape), left_side=True, lower=True)
        P = jnp.swapaxes(Linv, -1, -2) * m[None, :, None]                     # rows of missing features 0
        logdet = jnp.sum(jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1)), axis=-1)
        return P, -logdet
    return jax.vmap(one)(patterns)


@scoped_x64
def observed_precision_cholesky(covariances, patterns):
    """Whitening factors of the observed sub-blocks, per pattern and component.

    covariances (K, d, d) positive definite; patterns (P, d) bool -> (P (P, K, d, d), half_logdet
    (P, K)) as float64 host arrays: ``P[p, k]`` is ``chol(Sigma~)^{-T}`` of ``Sigma~ = M Sigma_k M +
    (I - M)`` (M the pattern's diagonal mask) with the rows of missing features zeroed, so for x with
    0 at missing entries ``|(x - mu_k)^T P[p, k]|^2`` is the squared Mahalanobis distance of the
    observed sub-vector under ``Sigma_k,oo``; ``half_logdet = -1/2 log det Sigma_k,oo``. For the
    all-observed pattern ``P`` is scikit-learn's ``precisions_cholesky_``. NaN where a sub-block is not
    positive definite.
    """
    cov = jnp.asarray(np.asarray(covariances, np.float64))
    P, hl = _precision_cholesky_program(cov, jnp.asarray(np.asarray(patterns, bool)))
    return np.array(P), np.array(hl)


@partial(jax.jit, static_argnames=("rcond",))
def _pseudo_inverse_program(covariances, patterns, rcond):
    """covariances (G, d, d), patterns (P, d) bool -> (P, G, d, d) pinv of the masked covariances."""
    def one(obs):
        m = obs.astype(covariances.dtype)
        mm = m[:, None] * m[None, :]
        # np.linalg.pinv's algorithm: SVD, singular values above rcond * the largest inverted
        U, s, Vt = jnp.linalg.svd(mm * covariances, full_matrices=False)      # (G, d, d), (G, d), (G, d, d)
        keep = s > rcond * jnp.max(s, axis=-1, keepdims=True)
        inv_s = jnp.where(keep, 1.0 / jnp.where(keep, s, 1.0), 0.0)
        return mm * jnp.einsum("gji,gj,gkj->gik", Vt, inv_s, U)
    return jax.vmap(one)(patterns)


@scoped_x64
def observed_pseudo_inverse(covariances, patterns, rcond=PINV_RCOND):
    """Pseudo-inverses of the observed sub-blocks, per pattern.

    covariances (..., d, d) symmetric positive semi-definite (e.g. class covariances (K, L, d, d));
    patterns (P, d) bool -> (P, ..., d, d) float64 host array ``R^T (Sigma_oo)^+ R``: the pseudo-inverse
    of the observed sub-block (np.linalg.pinv's definition: singular values above ``rcond`` times the
    largest are inverted, the others dropped) in the observed rows and columns, 0 elsewhere.
    """
    cov = np.asarray(covariances, np.float64)
    batch, d = cov.shape[:-2], cov.shape[-1]
    out = _pseudo_inverse_program(jnp.asarray(cov.reshape(-1, d, d)), jnp.asarray(np.asarray(patterns, bool)),
                                  float(rcond))
    return np.asarray(out).reshape((len(patterns),) + batch + (d, d))


# ----------------------------------------------------------------------------
# group-pure chunks
# ----------------------------------------------------------------------------

def _group_chunks(group, n_groups, X, chunk_size):
    """Rows -> (blocks of _CHUNKS_PER_CALL group-pure chunks (calls, B, c, d), the chunks' groups
    (calls, B), slot (n,) each row's position in the flattened padded layout)."""
    n, d = X.shape
    c = int(chunk_size)
    if c < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    slot, chunk_group, n_slots = cluster_chunk_layout(group, n_groups, c)
    n_chunks = n_slots // c
    calls = -(-n_chunks // _CHUNKS_PER_CALL)
    Xp = np.zeros((calls * _CHUNKS_PER_CALL * c, d), X.dtype)
    Xp[slot] = X
    groups = np.zeros(calls * _CHUNKS_PER_CALL, np.int32)
    groups[:n_chunks] = chunk_group
    return (Xp.reshape(calls, _CHUNKS_PER_CALL, c, d), groups.reshape(calls, _CHUNKS_PER_CALL), slot)


@jax.jit
def _marginal_e_step_program(log_weights, means, P, half_logdet, n_obs, Xb, gb):
    """Xb (B, c, d) chunks, gb (B,) their patterns; P (P, K, d, d), half_logdet (P, K), n_obs (P,)
    -> log_resp (B, c, K), log_norm (B, c)."""
    K, d = means.shape

    def one(args):
        X, g = args
        Pg = P[g]                                                             # (K, d, d)
        W = jnp.transpose(Pg, (1, 0, 2)).reshape(d, K * d)
        shift = jnp.einsum("ki,kij->kj", means, Pg).reshape(K * d)
        Y = X @ W - shift[None, :]
        maha = jnp.sum((Y * Y).reshape(X.shape[0], K, d), axis=2)
        wlp = -0.5 * (n_obs[g] * _LOG_2PI + maha) + half_logdet[g][None, :] + log_weights[None, :]
        top = jnp.max(wlp, axis=1, keepdims=True)
        top = jnp.where(jnp.isfinite(top), top, 0.0)
        log_norm = jnp.log(jnp.sum(jnp.exp(wlp - top), axis=1)) + top[:, 0]
        return wlp - log_norm[:, None], log_norm
    return lax.map(one, (Xb, gb))


@scoped_x64
def marginal_e_step(params, X, observed=None, *, chunk_size=DEFAULT_CHUNK_SIZE):
    """(log_resp (n, K), log p(x_o) (n,)) as host arrays for rows with missing features.

    params: a fitted mixture (weights (K,), means (K, d), covariances (K, d, d), and optionally
    precisions_cholesky (K, d, d), used as is for the all-observed pattern so that complete rows get
    :func:`xsift.kernels.gmm.e_step`'s numbers); the dtype of ``params.means`` is the compute dtype.
    X (n, d), NaN allowed where not observed; observed (n, d) bool (default: the finite entries).
    Each row's log-density is that of the marginal mixture on its observed features. Raises
    ValueError for NaN/inf at an observed entry or a sub-block that is not positive definite.
    """
    dt = _dtype(np.asarray(params.means).dtype)
    X, observed = _observed_mask(X, observed)
    n, d = X.shape
    weights = np.asarray(params.weights, np.float64)
    means = np.asarray(params.means, np.float64)
    K = means.shape[0]
    patterns, index = missing_patterns(observed)
    if n == 0:
        return np.zeros((0, K), dt), np.zeros(0, dt)
    patterns = _padded_patterns(patterns)
    P, half_logdet = observed_precision_cholesky(params.covariances, patterns)
    pc = getattr(params, "precisions_cholesky", None)
    full = patterns.all(axis=1)
    if pc is not None and full.any():
        pc = np.asarray(pc, np.float64)
        P[full] = pc
        half_logdet[full] = np.sum(np.log(np.diagonal(pc, axis1=1, axis2=2)), axis=1)
    if not (np.isfinite(P).all() and np.isfinite(half_logdet).all()):
        raise ValueError("a covariance's observed sub-block is not positive definite; the mixture cannot be "
                         "marginalised (check the fitted covariances)")
    Xb, gb, slot = _group_chunks(index, len(patterns), X.astype(dt), chunk_size)
    log_w = np.where(weights > 0, np.log(np.where(weights > 0, weights, 1.0)), -np.inf)
    args = [jnp.asarray(a, dt) for a in (log_w, means, P, half_logdet, patterns.sum(axis=1))]
    outs = [_marginal_e_step_program(*args, Xb[i], gb[i]) for i in range(len(Xb))]
    outs = jax.device_get(outs)
    log_resp = np.concatenate([lr.reshape(-1, K) for lr, _ in outs])[slot]
    log_norm = np.concatenate([ln.reshape(-1) for _, ln in outs])[slot]
    return log_resp, log_norm


@scoped_x64
def marginal_predict_proba(params, X, observed=None, *, chunk_size=DEFAULT_CHUNK_SIZE):
    """Responsibilities (n, K) on each row's observed features (see :func:`marginal_e_step`)."""
    return np.exp(marginal_e_step(params, X, observed, chunk_size=chunk_size)[0])


@scoped_x64
def marginal_predict(params, X, observed=None, *, chunk_size=DEFAULT_CHUNK_SIZE):
    """Component labels (n,) int64: argmax of the marginal responsibilities (first on a tie)."""
    return np.argmax(marginal_e_step(params, X, observed, chunk_size=chunk_size)[0], axis=1).astype(np.int64)


@scoped_x64
def marginal_score_samples(params, X, observed=None, *, chunk_size=DEFAULT_CHUNK_SIZE):
    """log p(x_o) (n,) under the mixture marginalised on each row's observed features."""
    return marginal_e_step(params, X, observed, chunk_size=chunk_size)[1]


@partial(jax.jit, static_argnames=("squared", "n_clusters"))
def _classify_program(means, precisions, mask, patterns, Xb, gb, *, squared, n_clusters):
    """Xb (B, c, d) chunks, gb (B,) their groups (pattern * K + cluster); means (K, L, d),
    precisions (P*K, L, d, d) of the observed sub-blocks, mask (K, L), patterns (P, d)
    -> probs (B, L, c) class-major, predicted (B, c)."""
    def one(args):
        X, g = args
        k = g % n_clusters
        m = patterns[g // n_clusters].astype(X.dtype)
        # x with 0 at missing entries minus the masked means: (x - mu)_o, 0 elsewhere
        dist = cluster_distances(X, means[k] * m[None, :], precisions[g], squared)
        usable = jnp.broadcast_to(mask[k][None, :], dist.shape)
        logp = log_softmin(dist, usable)
        probs = jnp.where(usable, jnp.exp(jnp.where(usable, logp, 0.0)), 0.0)
        ok = jnp.any(mask[k]) & jnp.any(m > 0)
        probs = jnp.where(ok, probs, jnp.nan)
        pred = jnp.where(ok, jnp.argmax(probs, axis=1), -1)
        return probs.T, pred
    return lax.map(one, (Xb, gb))


@scoped_x64
def marginal_classify_rows(X, observed, cluster, means, covariances, mask, *, squared: bool = True,
                           rcond=PINV_RCOND, chunk_size: int = DEFAULT_CHUNK_SIZE, dtype=None):
    """Softmin class probabilities of rows over the classes of their cluster, on observed features.

    X (n, d), NaN allowed where not observed; observed (n, d) bool (None: the finite entries);
    cluster (n,) int in [0, K) (e.g. :func:`marginal_predict`); means (K, L, d) class means;
    covariances (K, L, d, d) class covariances (a model that stores only ``precisions = pinv(cov)``
    recovers them exactly as ``np.linalg.pinv(precisions)``, since pinv(pinv(A)) = A); mask (K, L)
    bool, False for a class excluded in a cluster. The distance to class c of cluster k is
    ``(x - mu_kc)_o^T pinv(Sigma_kc,oo) (x - mu_kc)_o`` (``squared``; else its square root), then
    ``log p_c = -d_c - logsumexp_j(-d_j)`` over the usable classes (:func:`~xsift.kernels.mahalanobis.log_softmin`).

    Returns host arrays probs (n, L) (0 for an excluded class; NaN rows where the cluster has no usable
    class or the row no observed feature), predicted (n,) int64 (argmax, first on a tie, -1 where no
    probabilities) and n_features_used (n,) int64. With every feature observed this is
    :func:`xsift.kernels.mahalanobis.classify_rows` with ``precisions = pinv(covariances)``.
    """
    dt = _dtype(dtype)
    X, observed = _observed_mask(X, observed)
    n, d = X.shape
    K, L = np.shape(mask)
    used = observed.sum(axis=1).astype(np.int64)
    if n == 0:
        return np.zeros((0, L), dt), np.zeros(0, np.int64), used
    cluster, cov = _checked_clusters_and_covariances(cluster, means, covariances, n, K, L, d)
    patterns, index = missing_patterns(observed)
    patterns = _padded_patterns(patterns)
    prec = observed_pseudo_inverse(cov, patterns, rcond).reshape(len(patterns) * K, L, d, d)
    Xb, gb, slot = _group_chunks(index * K + cluster, len(patterns) * K, X.astype(dt), chunk_size)
    args = (jnp.asarray(np.nan_to_num(np.asarray(means, np.float64)), dt), jnp.asarray(prec, dt),
            jnp.asarray(mask, bool), jnp.asarray(patterns))
    outs = [_classify_program(*args, Xb[i], gb[i], squared=bool(squared), n_clusters=int(K))
            for i in range(len(Xb))]
    outs = jax.device_get(outs)
    probs = np.concatenate([np.moveaxis(p, 1, 0).reshape(L, -1) for p, _ in outs], axis=1)[:, slot].T
    pred = np.concatenate([k.reshape(-1) for _, k in outs])[slot].astype(np.int64)
    return probs, pred, used


# ----------------------------------------------------------------------------
# class distances with each row's measurement errors: (Sigma_c + S_i) on observed features
# ----------------------------------------------------------------------------

# condition bound (of the diagonally equilibrated matrix) below which a row's error-convolved class matrices
# are solved by Cholesky (its forward error ~ kappa * eps, 1e-10 relative in float64); above it, or where the
# Cholesky factorisation fails (a singular matrix), the eigen-decomposition with np.linalg.pinv's cut-off
ERROR_CHOLESKY_KAPPA = 1e6


def _convolved(X, S, O, mean, cov):
    """Chunk rows X, S (c, d), O (c, d) bool; one cluster's class means (L, d), covariances (L, d, d) ->
    A = M (Sigma_c + S_i) M (c, L, d, d), r = M (x - mu_c) (c, L, d), the observed mask m (c, d)."""
    m = O.astype(X.dtype)
    mm = m[:, :, None] * m[:, None, :]
    eye = jnp.eye(X.shape[1], dtype=X.dtype)
    A = mm[:, None] * (cov[None] + (S[:, :, None] * eye)[:, None])
    r = m[:, None, :] * (X[:, None, :] - mean[None])
    return A, r, m


@jax.jit
def _error_cholesky_program(means, covariances, Xb, Sb, Ob, gb):
    """-> distances (B, c, L) by Cholesky of the diagonally equilibrated ``T = M (Sigma_c + S_i) M + (I - M)``,
    and solved (B, c, L) bool: False where the factorisation failed or the Frobenius condition bound
    ``||T_e||_F ||T_e^-1||_F`` of the equilibrated matrix exceeds ERROR_CHOLESKY_KAPPA (those go to the
    eigen-decomposition).

    Equilibration ``T_e = D T D``, ``D = diag(T)^{-1/2}`` (unit diagonal), and ``r^T T^{-1} r =
    (D r)^T T_e^{-1} (D r)``: the error of a Cholesky solve is governed by the condition of the
    equilibrated matrix (van der Sluis 1969; Demmel 1989, SIAM J. Matrix Anal. Appl. 10, 55), so a
    class covariance ill-conditioned only by its features' scales (variances 1e-6 beside 1, as in the
    transformed CSC features) is solved to ~kappa(T_e) eps. Bounding the unequilibrated condition
    number instead sent two thirds of a simulated catalogue's rows to the eigen-decomposition, which
    is ~5x slower per matrix and no more accurate (its error grows with kappa(T))."""
    def one(args):
        X, S, O, k = args
        A, r, m = _convolved(X, S, O, means[k], covariances[k])
        d = X.shape[1]
        eye = jnp.eye(d, dtype=X.dtype)
        T = A + (1.0 - m)[:, None, :, None] * eye                                          # (c, L, d, d)
        diag = jnp.diagonal(T, axis1=-2, axis2=-1)                                          # (c, L, d)
        scale = jnp.where(diag > 0, 1.0 / jnp.sqrt(jnp.where(diag > 0, diag, 1.0)), jnp.nan)
        Te = T * scale[..., :, None] * scale[..., None, :]
        Lc = jnp.linalg.cholesky(Te)
        W = lax.linalg.triangular_solve(Lc, jnp.broadcast_to(eye, T.shape), left_side=True, lower=True)
        y = jnp.einsum("clij,clj->cli", W, scale * r)
        dist = jnp.sum(y * y, axis=-1)
        kappa = jnp.sqrt(jnp.sum(Te * Te, axis=(-2, -1))) * jnp.sum(W * W, axis=(-2, -1))
        solved = jnp.isfinite(dist) & (kappa < ERROR_CHOLESKY_KAPPA)
        return jnp.where(solved, dist, 0.0), solved
    return lax.map(one, (Xb, Sb, Ob, gb))


@jax.jit
def _error_eigh_program(means, covariances, rcond, Xb, Sb, Ob, gb):
    """-> distances (B, c, L) with the pseudo-inverse of M (Sigma_c + S_i) M by its eigen-decomposition and
    np.linalg.pinv's cut-off on the singular values |lambda| of the symmetric matrix."""
    def one(args):
        X, S, O, k = args
        A, r, _ = _convolved(X, S, O, means[k], covariances[k])
        lam, V = jnp.linalg.eigh(A)
        keep = jnp.abs(lam) > rcond * jnp.max(jnp.abs(lam), axis=-1, keepdims=True)
        inv = jnp.where(keep, 1.0 / jnp.where(keep, lam, 1.0), 0.0)
        y = jnp.einsum("clji,clj->cli", V, r)
        return jnp.sum(y * y * inv, axis=-1)
    return lax.map(one, (Xb, Sb, Ob, gb))


@partial(jax.jit, static_argnames=("squared",))
def _softmin_program(dist, usable, any_obs, *, squared):
    """dist (n, L) squared distances, usable (n, L), any_obs (n,) -> probs (n, L), predicted (n,)."""
    dist = dist if squared else jnp.sqrt(jnp.maximum(dist, 0.0))
    logp = log_softmin(dist, usable)
    probs = jnp.where(usable, jnp.exp(jnp.where(usable, logp, 0.0)), 0.0)
    ok = jnp.any(usable, axis=1) & any_obs
    probs = jnp.where(ok[:, None], probs, jnp.nan)
    return probs, jnp.where(ok, jnp.argmax(probs, axis=1), -1)


def _error_distances(program, args, rows, cluster, K, stacked, d, chunk_size):
    """Run an error-distance chunk program over ``rows`` (cluster-pure chunks) -> its outputs per row."""
    blocks, gb, slot = _group_chunks(cluster[rows], K, stacked[rows], chunk_size)
    outs = [program(*args, jnp.asarray(b[..., :d]), jnp.asarray(b[..., d:2 * d]), jnp.asarray(b[..., 2 * d:] > 0.5),
                    jnp.asarray(g)) for b, g in zip(blocks, gb)]
    outs = jax.device_get(outs)
    if isinstance(outs[0], tuple):
        return tuple(np.concatenate([o[i].reshape((-1,) + o[i].shape[2:]) for o in outs])[slot]
                     for i in range(len(outs[0])))
    return np.concatenate([o.reshape((-1,) + o.shape[2:]) for o in outs])[slot]


@scoped_x64
def error_classify_rows(X, observed, noise_var, cluster, means, covariances, mask, *, squared: bool = True,
                        rcond=PINV_RCOND, chunk_size: int = ERROR_CHUNK_SIZE, dtype=None):
    """Softmin class probabilities of rows over the classes of their cluster, each class's covariance
    convolved with the row's measurement errors, on the row's observed features.

    The distance of row i to class c of its cluster k is ``(x_i - mu_kc)_o^T pinv(Sigma_kc + S_i)_oo
    (x_i - mu_kc)_o`` (``squared``; else its square root): the class Gaussian convolved with the row's
    noise, ``N(mu_kc, Sigma_kc + S_i)`` (Bovy, Hogg & Roweis 2011, Eq. 3's ``T_ij = R V R^T + S``),
    marginalised on the observed features; then the log-space softmin of
    :func:`xsift.kernels.mahalanobis.log_softmin` over the usable classes.

    X (n, d), NaN allowed where not observed; observed (n, d) bool (None: the finite entries);
    noise_var (n, d) measurement variances ``S_i``'s diagonal (in X's units squared, >= 0 where
    observed; anything where not); cluster (n,) int in [0, K); means (K, L, d), covariances
    (K, L, d, d) class covariances, mask (K, L) bool as :func:`marginal_classify_rows`.

    Rows whose noise is 0 on every observed feature take :func:`marginal_classify_rows` (so with every
    ``S_i = 0`` the result is exactly the marginalised one); the others go through one chunk program on
    cluster-pure chunks of ``chunk_size`` rows (``_CHUNKS_PER_CALL`` chunks per call, the last padded):
    per row and class a Cholesky factorisation of the masked ``d x d`` matrix ``M (Sigma_kc + S_i) M``
    (the unobserved block filled with the identity), equilibrated to a unit diagonal; the rows where a
    usable class's matrix is singular or the condition bound of its equilibrated matrix exceeds
    ``ERROR_CHOLESKY_KAPPA`` then go through one symmetric
    eigen-decomposition per class and the pseudo-inverse with np.linalg.pinv's cut-off (eigenvalues whose
    magnitude exceeds ``rcond`` times the largest are inverted; for a symmetric matrix these are its
    singular values). No Python loop over rows; one compilation per (chunk shape, K, L, dtype).

    Returns host arrays probs (n, L), predicted (n,) int64, n_features_used (n,) int64, as
    :func:`marginal_classify_rows`. Raises ValueError for NaN/inf values or negative / non-finite
    variances at observed entries, or bad shapes.
    """
    dt = _dtype(dtype)
    X, observed = _observed_mask(X, observed)
    n, d = X.shape
    K, L = np.shape(mask)
    used = observed.sum(axis=1).astype(np.int64)
    if n == 0:
        return np.zeros((0, L), dt), np.zeros(0, np.int64), used
    try:
        noise = np.broadcast_to(np.asarray(noise_var, np.float64), (n, d))
    except ValueError:
        raise ValueError(f"noise_var must have X's shape {(n, d)} (or broadcast to it), got {np.shape(noise_var)}") from None
    bad = observed & ~(np.isfinite(noise) & (noise >= 0))
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ValueError(f"noise_var is negative or not finite at observed entries in {rows.size} rows (first: "
                         f"{rows[:5].tolist()}); give variances >= 0 (0 for an exact value)")
    noise = np.where(observed, noise, 0.0)
    cluster, cov = _checked_clusters_and_covariances(cluster, means, covariances, n, K, L, d)
    probs = np.full((n, L), np.nan, dt)
    pred = np.full(n, -1, np.int64)
    noisy = (noise > 0).any(axis=1)
    if (~noisy).any():
        Xq = np.where(observed[~noisy], X[~noisy], np.nan)
        probs[~noisy], pred[~noisy], _ = marginal_classify_rows(
            Xq, observed[~noisy], cluster[~noisy], means, cov, mask, squared=squared, rcond=rcond,
            chunk_size=chunk_size, dtype=dt)
    if noisy.any():
        rows = np.flatnonzero(noisy)
        stacked = np.concatenate([X[rows], noise[rows], observed[rows].astype(np.float64)], axis=1).astype(dt)
        dmeans = jnp.asarray(np.nan_to_num(np.asarray(means, np.float64)), dt)
        dcov = jnp.asarray(cov, dt)
        local = np.arange(len(rows))
        dist, solved = _error_distances(_error_cholesky_program, (dmeans, dcov), local, cluster[rows], K,
                                        stacked, d, chunk_size)
        usable = np.asarray(mask, bool)[cluster[rows]]
        hard = np.flatnonzero(~(solved | ~usable).all(axis=1))          # a usable class Cholesky did not solve
        if len(hard):
            dist[hard] = _error_distances(_error_eigh_program, (dmeans, dcov, jnp.asarray(rcond, dt)), hard,
                                          cluster[rows], K, stacked, d, chunk_size)
        p, k = jax.device_get(_softmin_program(jnp.asarray(dist, dt), jnp.asarray(usable),
                                               jnp.asarray(observed[rows].any(axis=1)), squared=bool(squared)))
        probs[rows], pred[rows] = p, np.asarray(k, np.int64)
    return probs, pred, used
