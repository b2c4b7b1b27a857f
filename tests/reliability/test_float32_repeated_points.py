"""The float32 mixture on repeated points: every row carrying one of two feature vectors fits in float32
as in float64 (it raised "ill-defined empirical covariance": the M-step's raw-moment covariance lost more
than reg_covar to cancellation). A collapsed component gets its floored diagonal plus reg_covar
(kernels.gmm.em._m_step); oracle: the two input vectors and the float64 fit."""
import numpy as np
import pytest

from xsift.kernels.gmm import SuffStats, fit_gmm, m_step


def test_the_m_step_of_collapsed_float32_components_is_positive_definite():
    """The statistics of two components, each on one repeated point, summed in float32: the raw-moment
    covariance cancels to rounding (not positive definite before); now reg_covar I up to that rounding."""
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0, 30, 12), rng.uniform(0, 30, 12)
    X = np.where((np.arange(5000) % 2 == 0)[:, None], a, b).astype(np.float32)
    r = np.stack([np.arange(5000) % 2 == 0, np.arange(5000) % 2 == 1], axis=1).astype(np.float32)
    stats = SuffStats(r.sum(0), r.T @ X, np.einsum("nk,nd,ne->kde", r, X, X), np.float32(0), np.float32(5000))
    params = m_step(stats, 1e-6)
    cov = np.asarray(params.covariances, np.float64)
    assert np.isfinite(np.asarray(params.precisions_cholesky)).all()
    assert (np.linalg.eigvalsh(cov) > 0).all()
    # within the rounding of the float32 sums (a few eps * n * |x|^2 / nk)
    assert np.abs(cov - 1e-6 * np.eye(12)).max() < 1e-4 * max(a.max(), b.max()) ** 2
    np.testing.assert_allclose(np.asarray(params.means), np.stack([a, b]), rtol=1e-5)


@pytest.mark.slow
def test_two_repeated_vectors_fit_in_float32_as_in_float64():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 30, 12), rng.uniform(0, 30, 12)      # |mu|^2 * eps32 ~ 1e-4 >> reg_covar
    X = np.where((np.arange(2000) % 3 == 0)[:, None], a, b)
    fits = {dt: fit_gmm(X, 2, seed=0, dtype=dt) for dt in (np.float32, np.float64)}
    for dt, res in fits.items():
        assert all(np.isfinite(np.asarray(v)).all() for v in res[:4]), dt
        order = np.argsort(np.asarray(res.weights))
        np.testing.assert_allclose(np.asarray(res.weights)[order], [1 / 3, 2 / 3], atol=1e-3)
        np.testing.assert_allclose(np.asarray(res.means)[order], np.stack([a, b]), rtol=1e-5, atol=1e-4)
        # a component on one point: covariance reg_covar I up to the float32 rounding of the moments
        cov = np.asarray(res.covariances, np.float64)
        assert np.abs(cov - 1e-6 * np.eye(12)).max() < (1e-3 if dt is np.float32 else 1e-9)
        assert (np.linalg.eigvalsh(cov) > 0).all()
