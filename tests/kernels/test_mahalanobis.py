"""xsift.kernels.mahalanobis against the published per-cluster formula in plain NumPy."""
import numpy as np
import pytest
from scipy.special import softmax

from xsift.kernels.mahalanobis import classify_rows, cluster_chunk_layout, log_softmin


def _problem(seed=0, n=3000, K=4, L=5, d=6):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    cluster = rng.integers(0, K, n)
    means = rng.normal(size=(K, L, d))
    A = rng.normal(size=(K, L, d, d))
    cov = A @ np.swapaxes(A, -1, -2) + 0.1 * np.eye(d)
    prec = np.linalg.pinv(cov)
    mask = rng.random((K, L)) > 0.25
    mask[1] = False                       # a cluster with no usable class
    mask[2, :] = True
    return X, cluster, means, prec, mask


def published(X, cluster, means, prec, mask, squared=True):
    """The published code: per cluster and class, diag(D P D^T) (an N x N product), then softmin."""
    n, L = len(X), means.shape[1]
    probs = np.full((n, L), np.nan)
    for k in range(means.shape[0]):
        rows = np.flatnonzero(cluster == k)
        if not mask[k].any() or len(rows) == 0:
            continue
        dist = np.full((len(rows), L), np.inf)
        for j in np.flatnonzero(mask[k]):
            D = X[rows] - means[k, j]
            m = np.diag(D @ prec[k, j] @ D.T)
            dist[:, j] = m if squared else np.sqrt(m)
        p = np.zeros((len(rows), L))
        p[:, mask[k]] = softmax(-dist[:, mask[k]], axis=1)
        probs[rows] = p
    return probs


@pytest.mark.parametrize("squared", [True, False])
def test_matches_published_formula(squared):
    X, cluster, means, prec, mask = _problem()
    probs, pred = classify_rows(X, cluster, means, prec, mask, squared=squared, chunk_size=512)
    ref = published(X, cluster, means, prec, mask, squared)
    assert np.array_equal(np.isnan(probs), np.isnan(ref))
    np.testing.assert_allclose(probs[~np.isnan(ref)], ref[~np.isnan(ref)], atol=1e-12, rtol=0)
    none = ~mask[cluster].any(axis=1)
    assert (pred[none] == -1).all()
    assert (pred[~none] == np.argmax(ref[~none], axis=1)).all()
    assert (probs[~none][~mask[cluster[~none]]] == 0).all()          # excluded classes: probability 0


def test_chunk_size_does_not_change_results():
    X, cluster, means, prec, mask = _problem(seed=1, n=1000)
    a, pa = classify_rows(X, cluster, means, prec, mask, chunk_size=64)
    b, pb = classify_rows(X, cluster, means, prec, mask, chunk_size=4096)
    np.testing.assert_allclose(a, b, atol=1e-13, rtol=0)   # matmul blocking differs by shape
    assert (pa == pb).all()


def test_float32_close_to_float64():
    X, cluster, means, prec, mask = _problem(seed=2, n=800)
    a, pa = classify_rows(X, cluster, means, prec, mask, dtype="float64")
    b, pb = classify_rows(X, cluster, means, prec, mask, dtype="float32")
    assert b.dtype == np.float32
    ok = ~np.isnan(a)
    np.testing.assert_allclose(b[ok], a[ok], atol=2e-4)
    assert np.mean(pa == pb) > 0.99


def test_softmin_in_log_space_survives_huge_distances():
    """The published code exponentiates directly: every distance above ~745 gives 0/0 = NaN.
    xsift returns the correct limit."""
    d = np.array([[800.0, 801.0, 1e6], [2000.0, 2000.0, 2000.0], [1.0, 2.0, 3.0]])
    usable = np.array([[True, True, True], [True, True, False], [False, False, False]])
    with np.errstate(invalid="ignore"):
        naive = np.exp(-d[0]) / np.exp(-d[0]).sum()
    assert np.isnan(naive).all()
    p = np.exp(np.asarray(log_softmin(d, usable)))
    np.testing.assert_allclose(p[0], [1 / (1 + np.exp(-1)), np.exp(-1) / (1 + np.exp(-1)), 0.0], rtol=1e-12)
    np.testing.assert_allclose(p[1], [0.5, 0.5, 0.0], rtol=1e-12)   # 2000 x eps of rounding
    assert np.isnan(p[2]).all()


def test_huge_distances_through_classify_rows():
    X, cluster, means, prec, mask = _problem(seed=3, n=200)
    probs, pred = classify_rows(X, cluster, means, prec * 1e4, mask)   # distances ~1e4 .. 1e6
    ok = mask[cluster].any(axis=1)
    assert np.isfinite(probs[ok]).all()
    np.testing.assert_allclose(probs[ok].sum(axis=1), 1.0, atol=1e-12)


def test_chunk_layout_is_cluster_pure_and_complete():
    rng = np.random.default_rng(4)
    cluster = rng.integers(0, 5, 1003)
    cluster[cluster == 3] = 0                  # an empty cluster
    slot, chunk_cluster, n_slots = cluster_chunk_layout(cluster, 5, 64)
    assert n_slots == len(chunk_cluster) * 64
    assert len(np.unique(slot)) == len(cluster) and slot.max() < n_slots
    assert (chunk_cluster[slot // 64] == cluster).all()
    for k in range(5):                          # order kept within a cluster
        assert (np.diff(slot[cluster == k]) > 0).all()
    assert 3 not in chunk_cluster


def test_empty_input():
    _, _, means, prec, mask = _problem()
    probs, pred = classify_rows(np.zeros((0, 6)), np.zeros(0, int), means, prec, mask)
    assert probs.shape == (0, 5) and pred.shape == (0,)
