"""xsift.kernels.smallmat (batch-last unrolled Cholesky, solves, triangular inverse) against NumPy's
LAPACK-backed np.linalg.cholesky / solve / inv / slogdet, including ill-conditioned and non-positive-
definite matrices."""
import numpy as np

from xsift.kernels.smallmat import small_cho_solve, small_cholesky, small_lower_inverse

D = 6
N = 40                 # one batch shape for every test: each program compiles once


def _spd(n, d, seed, cond=None):
    """n symmetric positive-definite d x d matrices (n, d, d); with ``cond`` each has that condition number."""
    rng = np.random.default_rng(seed)
    if cond is None:
        A = rng.normal(size=(n, d, d))
        return A @ np.swapaxes(A, 1, 2) / d + 0.05 * np.eye(d)
    Q, _ = np.linalg.qr(rng.normal(size=(n, d, d)))
    lam = np.logspace(0.0, -np.log10(cond), d)
    return np.einsum("nij,j,nkj->nik", Q, lam, Q)


def _last(A):
    """(n, d, d) -> batch-last (d, d, n)."""
    return np.ascontiguousarray(np.moveaxis(A, 0, -1))


def test_float64_equals_lapack():
    A = _spd(N, D, seed=0)
    b = np.random.default_rng(1).normal(size=(N, D))
    L, logdet = (np.asarray(a) for a in small_cholesky(_last(A)))
    L = np.moveaxis(L, -1, 0)
    ref = np.linalg.cholesky(A)
    assert np.max(np.abs(L - ref)) <= 1e-12 * np.max(np.abs(ref))
    np.testing.assert_allclose(logdet, np.linalg.slogdet(A)[1], rtol=1e-12, atol=1e-12)
    x = np.moveaxis(np.asarray(small_cho_solve(_last(A), b.T)), -1, 0)
    ref_x = np.linalg.solve(A, b[..., None])[..., 0]
    assert np.max(np.abs(x - ref_x)) <= 1e-12 * np.max(np.abs(ref_x))
    W = np.moveaxis(np.asarray(small_lower_inverse(_last(A))), -1, 0)
    assert np.all(np.triu(W, 1) == 0.0)
    ref_inv = np.linalg.inv(A)
    assert np.max(np.abs(np.swapaxes(W, 1, 2) @ W - ref_inv)) <= 1e-12 * np.max(np.abs(ref_inv))


def test_batch_shape_and_float32():
    A = _spd(24, 5, seed=2)
    A4 = _last(A).reshape(5, 5, 4, 6)                       # any batch shape, here (4, 6)
    L, logdet = small_cholesky(A4.astype(np.float32))
    assert L.dtype == np.float32 and L.shape == (5, 5, 4, 6) and logdet.shape == (4, 6)
    L = np.moveaxis(np.asarray(L, np.float64).reshape(5, 5, 24), -1, 0)
    ref = np.linalg.cholesky(A)
    assert np.max(np.abs(L - ref)) <= 1e-5 * np.max(np.abs(ref))
    np.testing.assert_allclose(np.asarray(logdet).reshape(24), np.linalg.slogdet(A)[1], atol=1e-4)


def test_ill_conditioned_is_backward_stable():
    """cond 1e10: the factor reproduces A to rounding (the forward error of the solve grows as cond * eps,
    as LAPACK's does)."""
    A = _spd(N, D, seed=3, cond=1e10)
    L = np.moveaxis(np.asarray(small_cholesky(_last(A))[0]), -1, 0)
    assert np.max(np.abs(L @ np.swapaxes(L, 1, 2) - A)) <= 1e-14 * np.max(np.abs(A))
    b = np.random.default_rng(4).normal(size=(N, D))
    x = np.moveaxis(np.asarray(small_cho_solve(_last(A), b.T)), -1, 0)
    ref = np.linalg.solve(A, b[..., None])[..., 0]
    assert np.max(np.abs(x - ref)) <= 1e-4 * np.max(np.abs(ref))     # cond * eps ~ 2e-6
    residual = np.abs(np.einsum("nij,nj->ni", A, x) - b).max(axis=1)
    assert (residual <= 1e-13 * np.abs(A).max(axis=(1, 2)) * np.abs(x).max(axis=1)).all()


def test_not_positive_definite_gives_nan_from_the_failing_pivot_on():
    """A negative pivot at column j: NaN from L_jj on, the leading j x j block is the factor of A's leading
    block, the log-determinant is NaN, and the other matrices of the batch are unaffected."""
    A = _spd(N, D, seed=5)
    j = 4
    A[1, j, j] = 0.5 * (A[1, j, :j] @ np.linalg.solve(A[1, :j, :j], A[1, :j, j]))   # Schur complement < 0
    L, logdet = (np.asarray(a) for a in small_cholesky(_last(A)))
    L = np.moveaxis(L, -1, 0)
    with np.testing.assert_raises(np.linalg.LinAlgError):
        np.linalg.cholesky(A[1])
    np.testing.assert_allclose(L[1, :j, :j], np.linalg.cholesky(A[1, :j, :j]), rtol=1e-12, atol=1e-14)
    assert np.isnan(L[1, j, j]) and np.isnan(L[1, j:, j]).all() and np.isnan(logdet[1])
    for k in (0, 2, N - 1):
        np.testing.assert_allclose(L[k], np.linalg.cholesky(A[k]), rtol=1e-12, atol=1e-14)
        assert np.isfinite(logdet[k])
    # a zero pivot (a zero row and column): no finite inverse for that matrix, the others exact
    Z = _spd(N, D, seed=6)
    Z[0, 3, :] = Z[0, :, 3] = 0.0
    W = np.moveaxis(np.asarray(small_lower_inverse(_last(Z))), -1, 0)
    assert not np.isfinite(W[0, 3:]).all()
    ref = np.linalg.inv(np.linalg.cholesky(Z[1:]))
    assert np.max(np.abs(W[1:] - ref)) <= 1e-12 * np.max(np.abs(ref))
