"""Cholesky factorisation, triangular solves and inverse of many small symmetric matrices at once.

A batch of ``B`` matrices of size ``d x d`` is held batch-LAST: a matrix entry ``(i, j)`` is one array
over the whole batch (any batch shape, e.g. ``(K, c)`` for K components and c rows). The algorithms
are the textbook ones (Golub & Van Loan, *Matrix Computations*, 4th ed.: Alg. 4.2.1, the
"gaxpy" Cholesky ``L L^T = A``; forward and back substitution, Algs. 3.1.1-3.1.2; the inverse of a
lower-triangular matrix column by column), unrolled over the static ``d`` when JAX traces them, so
each step is one elementwise operation over the whole batch (vectorised over B) instead of B small
LAPACK calls: on CPU, XLA's batched Cholesky costs ~0.8 us per 12 x 12 matrix in per-matrix call
overhead, the unrolled form a fraction of that. The traced program grows as ``d^3`` (about 1,500
operations at d = 12), so this is for small ``d`` (:data:`SMALL_D_MAX`); compile time at d = 12 is
~2 s for extreme deconvolution's whole EM program (see :mod:`xsift.kernels.xd` for arranging the
caller so that XLA fuses the unrolled steps into one loop).

Inside the kernels the entries travel as nested Python lists (``A[i][j]``, only ``i >= j`` used for
a symmetric or lower-triangular matrix), which costs no stacking; the public functions take and
return stacked arrays ``(d, d, *batch)`` / ``(d, *batch)``.

Not positive definite: a pivot ``A_jj - sum_p L_jp^2`` that is negative gives NaN (square root of a
negative number) in ``L_jj`` and every later entry that depends on it, a zero pivot gives inf/NaN;
the log-determinant is then NaN or -inf. Other matrices of the batch are unaffected. (LAPACK through
``jnp.linalg.cholesky`` sets the whole factor to NaN instead; callers that test ``isfinite`` see the
same failure either way.) There is no pivoting and no check: positive definiteness is the caller's
to ensure (a regularised covariance plus a non-negative diagonal, as in extreme deconvolution).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from xsift.kernels import scoped_x64

__all__ = ["SMALL_D_MAX", "cholesky_entries", "forward_entries", "back_entries", "lower_inverse_entries",
           "small_cholesky", "small_cho_solve", "small_lower_inverse"]

# largest d for which callers use the unrolled factorisation: the traced program grows as d^3 (fit_xd's
# first call at d = 12 compiles in ~2 s against ~1.3 s with LAPACK's batched calls)
SMALL_D_MAX = 12


def cholesky_entries(A):
    """Lower Cholesky factor of symmetric positive-definite matrices given entry by entry.

    A: nested list, ``A[i][j]`` (i >= j; the upper triangle is not read) an array of the batch shape.
    Returns (L, inv_diag, logdet): ``L[i][j]`` (i >= j) entries of ``L`` with ``L L^T = A``;
    ``inv_diag[j] = 1 / L[j][j]``; ``logdet = log det A = sum_j log(pivot_j)`` (batch shape).
    Golub & Van Loan Alg. 4.2.1 (left-looking, one column at a time). See the module docstring for
    what a matrix that is not positive definite gives.
    """
    d = len(A)
    L = [[None] * d for _ in range(d)]
    inv = [None] * d
    logdet = None
    for j in range(d):
        pivot = A[j][j]
        for p in range(j):
            pivot = pivot - L[j][p] * L[j][p]
        L[j][j] = jnp.sqrt(pivot)
        inv[j] = 1.0 / L[j][j]
        logdet = jnp.log(pivot) if logdet is None else logdet + jnp.log(pivot)
        for i in range(j + 1, d):
            t = A[i][j]
            for p in range(j):
                t = t - L[i][p] * L[j][p]
            L[i][j] = t * inv[j]
    return L, inv, logdet


def forward_entries(L, inv_diag, b):
    """z with ``L z = b`` (forward substitution): b, z lists of d batch arrays."""
    d = len(b)
    z = [None] * d
    for i in range(d):
        t = b[i]
        for p in range(i):
            t = t - L[i][p] * z[p]
        z[i] = t * inv_diag[i]
    return z


def back_entries(L, inv_diag, z):
    """x with ``L^T x = z`` (back substitution): z, x lists of d batch arrays."""
    d = len(z)
    x = [None] * d
    for i in reversed(range(d)):
        t = z[i]
        for p in range(i + 1, d):
            t = t - L[p][i] * x[p]
        x[i] = t * inv_diag[i]
    return x


def lower_inverse_entries(L, inv_diag):
    """W = L^{-1} (lower triangular) entry by entry: ``W[i][j]`` for i >= j, column by column
    (``W[j][j] = 1 / L_jj``, ``W[i][j] = -(sum_{j <= p < i} L_ip W_pj) / L_ii``)."""
    d = len(L)
    W = [[None] * d for _ in range(d)]
    for j in range(d):
        W[j][j] = inv_diag[j]
        for i in range(j + 1, d):
            t = L[i][j] * W[j][j]
            for p in range(j + 1, i):
                t = t + L[i][p] * W[p][j]
            W[i][j] = -t * inv_diag[i]
    return W


def _entries(A):
    d = A.shape[0]
    return [[A[i, j] for j in range(d)] for i in range(d)]


def _stack_lower(E, like):
    d = len(E)
    zero = jnp.zeros_like(like)
    return jnp.stack([jnp.stack([E[i][j] if j <= i else zero for j in range(d)]) for i in range(d)])


@scoped_x64
@jax.jit
def small_cholesky(A):
    """A (d, d, *batch) symmetric positive definite (lower triangle read) -> (L (d, d, *batch) lower
    triangular with zeros above, logdet (*batch) = log det A). Batch-last; d small (unrolled at trace
    time). See the module docstring for matrices that are not positive definite."""
    L, _, logdet = cholesky_entries(_entries(A))
    return _stack_lower(L, A[0, 0]), logdet


@scoped_x64
@jax.jit
def small_cho_solve(A, b):
    """x (d, *batch) with ``A x = b`` for A (d, d, *batch) symmetric positive definite, by its
    Cholesky factor (forward then back substitution); b (d, *batch)."""
    L, inv, _ = cholesky_entries(_entries(A))
    x = back_entries(L, inv, forward_entries(L, inv, [b[i] for i in range(b.shape[0])]))
    return jnp.stack(x)


@scoped_x64
@jax.jit
def small_lower_inverse(A):
    """W = chol(A)^{-1} (d, d, *batch), lower triangular, for A (d, d, *batch) symmetric positive
    definite; ``W^T W = A^{-1}``."""
    L, inv, _ = cholesky_entries(_entries(A))
    return _stack_lower(lower_inverse_entries(L, inv), A[0, 0])
