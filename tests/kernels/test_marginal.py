"""xsift.kernels.marginal against plain-NumPy per-row computations on the observed sub-blocks
(np.linalg.pinv, as the published method), and against the complete-row kernels (kernels.gmm e_step,
kernels.mahalanobis classify_rows) when nothing is missing."""
import numpy as np
import pytest
from scipy.special import logsumexp

from xsift.kernels.gmm import GMMParams, e_step, predict
from xsift.kernels.mahalanobis import classify_rows
from xsift.kernels.marginal import (_error_cholesky_program, _error_eigh_program, _marginal_e_step_program,
                                    error_classify_rows,
                                    marginal_classify_rows, marginal_e_step,
                                    marginal_predict, marginal_predict_proba, missing_patterns,
                                    observed_pseudo_inverse)

N, D, K, L = 400, 5, 3, 4


@pytest.fixture(scope="module")
def mixture():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(K, D, D))
    cov = A @ A.transpose(0, 2, 1) + 0.5 * np.eye(D)
    pc = np.linalg.inv(np.linalg.cholesky(cov)).transpose(0, 2, 1)
    return GMMParams(np.array([0.2, 0.3, 0.5]), rng.normal(size=(K, D)), cov, pc)


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(N, D)) * 2.0
    observed = rng.random((N, D)) > 0.3
    observed[:40] = True
    observed[40] = False                                   # nothing observed
    return X, observed


@pytest.fixture(scope="module")
def classes():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(K, L, D, D))
    cov = A @ np.swapaxes(A, -1, -2)
    # a rank-deficient class (pinv matters) and an ill-conditioned one
    cov[0, 1] = A[0, 1, :, :3] @ A[0, 1, :, :3].T
    cov[2, 3] = cov[2, 3] + 1e4 * np.outer(np.ones(D), np.ones(D))
    means = rng.normal(size=(K, L, D))
    mask = np.ones((K, L), bool)
    mask[1, 2] = False                                     # an excluded class
    return means, cov, mask


def _log_marginal_per_row(params, X, observed):
    """(n, K) log w_k N(x_o | mu_ko, Sigma_koo), row by row with np.linalg.pinv on the sub-block."""
    out = np.empty((X.shape[0], K))
    for i in range(X.shape[0]):
        o = observed[i]
        for k in range(K):
            C = params.covariances[k][np.ix_(o, o)]
            r = X[i, o] - params.means[k, o]
            logdet = np.linalg.slogdet(C)[1] if o.any() else 0.0
            out[i, k] = np.log(params.weights[k]) - 0.5 * (o.sum() * np.log(2 * np.pi) + logdet
                                                           + r @ np.linalg.pinv(C) @ r)
    return out


def test_responsibilities_equal_per_row_marginals(mixture, rows):
    X, observed = rows
    ref = _log_marginal_per_row(mixture, X, observed)
    ref_norm = logsumexp(ref, axis=1)
    for chunk_size in (1024, 16):                          # one chunk per pattern, or many calls
        log_resp, log_norm = marginal_e_step(mixture, np.where(observed, X, np.nan), observed,
                                             chunk_size=chunk_size)
        np.testing.assert_allclose(np.exp(log_resp), np.exp(ref - ref_norm[:, None]), rtol=0, atol=1e-10)
        np.testing.assert_allclose(log_norm, ref_norm, rtol=1e-12, atol=1e-12)
    # observed defaults to the finite entries
    np.testing.assert_allclose(marginal_predict_proba(mixture, np.where(observed, X, np.nan)),
                               np.exp(ref - ref_norm[:, None]), atol=1e-10)
    np.testing.assert_array_equal(marginal_predict(mixture, np.where(observed, X, np.nan)),
                                  np.argmax(ref, axis=1))
    # nothing observed: the responsibilities are the weights and log p = 0
    np.testing.assert_allclose(np.exp(log_resp[40]), mixture.weights, atol=1e-15)
    assert log_norm[40] == 0.0


def test_nothing_missing_equals_full_gmm(mixture, rows):
    X, _ = rows
    ref_resp, ref_norm = e_step(mixture, X)
    log_resp, log_norm = marginal_e_step(mixture, X)
    np.testing.assert_allclose(log_resp, ref_resp, rtol=0, atol=1e-12)
    np.testing.assert_allclose(log_norm, ref_norm, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(marginal_predict(mixture, X), predict(mixture, X))


def test_float32(mixture, rows):
    X, observed = rows
    p32 = GMMParams(*(np.asarray(a, np.float32) for a in mixture))
    lr32, _ = marginal_e_step(p32, np.where(observed, X, np.nan))
    lr64, _ = marginal_e_step(mixture, np.where(observed, X, np.nan))
    assert lr32.dtype == np.float32
    np.testing.assert_allclose(np.exp(lr32), np.exp(lr64), atol=1e-4)


def test_compiles_once_per_chunk_shape(mixture, rows):
    X, observed = rows
    marginal_e_step(mixture, np.where(observed, X, np.nan), chunk_size=64)
    size = _marginal_e_step_program._cache_size()
    other = np.random.default_rng(9).random((N // 3, D)) > 0.5      # other patterns, other length
    marginal_e_step(mixture, np.where(other, X[: N // 3], np.nan), chunk_size=64)
    assert _marginal_e_step_program._cache_size() == size


def _class_probs_per_row(X, observed, cluster, means, cov, mask, squared=True, noise=None):
    """Softmin over the usable classes of each row's cluster of the distances with np.linalg.pinv of
    the observed sub-block (of Sigma_c + diag(noise_i) when noise is given); NaN rows where no class or
    no feature."""
    n = X.shape[0]
    out = np.full((n, L), np.nan)
    for i in range(n):
        o, k = observed[i], cluster[i]
        if not o.any() or not mask[k].any():
            continue
        S = np.zeros((D, D)) if noise is None else np.diag(noise[i])
        d2 = np.array([(X[i, o] - means[k, c, o]) @ np.linalg.pinv((cov[k, c] + S)[np.ix_(o, o)])
                       @ (X[i, o] - means[k, c, o]) for c in range(L)])
        dist = d2 if squared else np.sqrt(np.maximum(d2, 0.0))
        lp = np.where(mask[k], -dist, -np.inf)
        out[i] = np.exp(lp - logsumexp(lp))
    return out


@pytest.mark.parametrize("squared", [True, False])
def test_class_probabilities_equal_per_row_pinv(rows, classes, squared):
    X, observed = rows
    means, cov, mask = classes
    cluster = np.random.default_rng(3).integers(0, K, N)
    ref = _class_probs_per_row(X, observed, cluster, means, cov, mask, squared)
    for chunk_size in (1024, 8):
        probs, pred, used = marginal_classify_rows(np.where(observed, X, np.nan), observed, cluster, means, cov,
                                                   mask, squared=squared, chunk_size=chunk_size)
        assert probs.shape == (N, L)
        np.testing.assert_array_equal(np.isnan(probs), np.isnan(ref))
        np.testing.assert_allclose(probs, ref, rtol=0, atol=1e-10)
        ok = ~np.isnan(ref).any(axis=1)
        np.testing.assert_array_equal(pred[ok], np.argmax(ref[ok], axis=1))
        np.testing.assert_array_equal(pred[~ok], -1)
        np.testing.assert_array_equal(used, observed.sum(axis=1))
    assert used[40] == 0 and np.isnan(probs[40]).all()
    assert (probs[cluster == 1, 2][~np.isnan(probs[cluster == 1, 2])] == 0).all()   # excluded class


def test_class_probabilities_nothing_missing_equal_complete_rows(rows, classes):
    X, _ = rows
    means, cov, mask = classes
    mask = mask.copy()
    mask[2] = False                                         # a cluster without a usable class
    cluster = np.random.default_rng(4).integers(0, K, N)
    ref_probs, ref_pred = classify_rows(X, cluster, means, np.linalg.pinv(cov), mask)
    probs, pred, used = marginal_classify_rows(X, None, cluster, means, cov, mask)
    np.testing.assert_allclose(probs, ref_probs, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(np.isnan(probs), np.isnan(ref_probs))
    np.testing.assert_array_equal(pred, ref_pred)
    assert (used == D).all()


def test_pseudo_inverse_of_observed_blocks(classes):
    _, cov, _ = classes
    patterns = np.array([[True] * D, [True, False, True, True, False], [False] * D])
    P = observed_pseudo_inverse(cov, patterns)
    assert P.shape == (3, K, L, D, D)
    o = patterns[1]
    for k in range(K):
        for c in range(L):
            np.testing.assert_allclose(P[0, k, c], np.linalg.pinv(cov[k, c]), rtol=1e-7, atol=1e-9)
            np.testing.assert_allclose(P[1, k, c][np.ix_(o, o)], np.linalg.pinv(cov[k, c][np.ix_(o, o)]),
                                       rtol=1e-7, atol=1e-9)
            assert (P[1, k, c][~o] == 0).all() and (P[1, k, c][:, ~o] == 0).all()
    assert (P[2] == 0).all()


def test_missing_patterns():
    obs = np.array([[1, 0, 1], [1, 1, 1], [1, 0, 1], [0, 0, 0]], bool)
    patterns, index = missing_patterns(obs)
    assert len(patterns) == 3
    np.testing.assert_array_equal(patterns[index], obs)
    # more than 64 features (keys of packed bytes), rows differing only in the last feature
    wide = np.ones((6, 70), bool)
    wide[1::2, 69] = False
    wide[4, 0] = False
    patterns, index = missing_patterns(wide)
    assert len(patterns) == 3 == len(np.unique(wide, axis=0))
    np.testing.assert_array_equal(patterns[index], wide)


def test_clear_errors(mixture, rows, classes):
    X, observed = rows
    Xn = X.copy()
    Xn[5, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf at observed entries in 1 rows \(first: \[5\]\), columns \[1\]"):
        marginal_e_step(mixture, Xn, np.ones_like(observed))
    means, cov, mask = classes
    with pytest.raises(ValueError, match=r"cluster labels must lie in \[0, 3\)"):
        marginal_classify_rows(X, None, np.full(N, 3), means, cov, mask)
    with pytest.raises(ValueError, match="one label per row"):
        marginal_classify_rows(X, None, np.zeros(N - 1, int), means, cov, mask)


@pytest.fixture(scope="module")
def noise(rows):
    """Measurement variances: some features of some rows noisy, others exact (0), rows 40-80 exact."""
    X, _ = rows
    rng = np.random.default_rng(5)
    S = (rng.uniform(0.05, 0.6, size=X.shape) ** 2) * (rng.random(X.shape) > 0.4)
    S[40:80] = 0.0
    return S


@pytest.mark.parametrize("squared", [True, False])
def test_error_convolved_probabilities_equal_per_row_pinv(rows, classes, noise, squared):
    """(Sigma_c + S_i) on the observed sub-block, pseudo-inverted row by row by np.linalg.pinv, equals the
    batched kernel to 1e-10 (float64), chunked or not."""
    X, observed = rows
    means, cov, mask = classes
    cluster = np.random.default_rng(6).integers(0, K, N)
    ref = _class_probs_per_row(X, observed, cluster, means, cov, mask, squared, noise=noise)
    for chunk_size in ((1024, 8) if squared else (1024,)):
        probs, pred, used = error_classify_rows(np.where(observed, X, np.nan), observed, noise, cluster, means,
                                                cov, mask, squared=squared, chunk_size=chunk_size)
        np.testing.assert_array_equal(np.isnan(probs), np.isnan(ref))
        np.testing.assert_allclose(probs, ref, rtol=0, atol=1e-10)
        ok = ~np.isnan(ref).any(axis=1)
        np.testing.assert_array_equal(pred[ok], np.argmax(ref[ok], axis=1))
        np.testing.assert_array_equal(pred[~ok], -1)
        np.testing.assert_array_equal(used, observed.sum(axis=1))
    # the noise matters: the probabilities differ from the noiseless ones where a row is noisy
    plain, _, _ = marginal_classify_rows(np.where(observed, X, np.nan), observed, cluster, means, cov, mask,
                                         squared=squared)
    noisy = ok & (noise * observed > 0).any(axis=1)
    assert np.abs(probs[noisy] - plain[noisy]).max() > 1e-2


def test_error_convolved_without_noise_is_the_marginalised_path(rows, classes):
    X, observed = rows
    means, cov, mask = classes
    cluster = np.random.default_rng(7).integers(0, K, N)
    Xm = np.where(observed, X, np.nan)
    ref = marginal_classify_rows(Xm, observed, cluster, means, cov, mask)
    got = error_classify_rows(Xm, observed, np.zeros((N, D)), cluster, means, cov, mask)
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)
    # noise only where a feature is missing changes nothing either
    got = error_classify_rows(Xm, observed, np.where(observed, 0.0, 5.0), cluster, means, cov, mask)
    np.testing.assert_array_equal(got[0], ref[0])


def test_error_convolved_compiles_once_and_refuses_bad_noise(rows, classes, noise):
    X, observed = rows
    means, cov, mask = classes
    cluster = np.random.default_rng(8).integers(0, K, N)
    error_classify_rows(X, None, noise, cluster, means, cov, mask)           # the default chunk shape
    sizes = _error_cholesky_program._cache_size(), _error_eigh_program._cache_size()
    assert sizes[1] > 0                     # the singular class matrices went through the eigen-decomposition
    error_classify_rows(X[:N // 3], None, noise[:N // 3] * 2, cluster[:N // 3], means, cov, mask)
    assert (_error_cholesky_program._cache_size(), _error_eigh_program._cache_size()) == sizes
    bad = noise.copy()
    bad[7, 2] = -1.0
    with pytest.raises(ValueError, match=r"noise_var is negative or not finite at observed entries in 1 rows \(first: \[7\]\)"):
        error_classify_rows(X, None, bad, cluster, means, cov, mask)


def test_error_convolved_scale_ill_conditioned_classes_are_exact():
    """Class covariances ill-conditioned only by their features' scales (kappa(Sigma_c + S_i) ~ 1e9, as
    transformed CSC features with variances 1e-8 beside 1 give): the error-convolved probabilities equal
    the exact ones to 1e-12. Exact: with T = D (C + 0.01 I) D for well-conditioned C and diagonal D, the
    distance is (D^-1 r)^T (C + 0.01 I)^-1 (D^-1 r), computed without ever forming the ill-conditioned T."""
    rng = np.random.default_rng(8)
    n, k, l, d = 300, 2, 3, 6
    scales = np.array([1.0, 3e-1, 1e-2, 3e-3, 1e-4, 1.0])
    B = rng.normal(size=(k, l, d, d))
    C = B @ np.swapaxes(B, -1, -2) / d + 0.5 * np.eye(d)                    # kappa ~ 10
    cov = scales[:, None] * C * scales[None, :]
    means = rng.normal(size=(k, l, d)) * scales
    X = rng.normal(size=(n, d)) * scales * 2.0
    noise = np.tile(0.01 * scales ** 2, (n, 1))
    cluster = rng.integers(0, k, n)
    mask = np.ones((k, l), bool)
    assert np.linalg.cond(cov[0, 0] + np.diag(noise[0])) > 1e8
    y = (X[:, None, :] - means[cluster]) / scales                            # (n, l, d)
    inner = np.linalg.inv(C + 0.01 * np.eye(d))[cluster]                     # (n, l, d, d)
    dist = np.einsum("nli,nlij,nlj->nl", y, inner, y)
    exact = np.exp(-dist - logsumexp(-dist, axis=1, keepdims=True))
    probs, pred, _ = error_classify_rows(X, None, noise, cluster, means, cov, mask)
    np.testing.assert_allclose(probs, exact, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(pred, np.argmax(exact, axis=1))
