"""xsift.kernels.nbayes (Eq. 1 of Tranin et al. 2022) against a plain-NumPy transcription and scikit-learn's F1."""
import jax
import numpy as np
import pytest
from sklearn.metrics import f1_score

from xsift.kernels.nbayes import (category_log_likelihoods, f1_of_class, log_numerator, negative_f1_objective,
                                  posterior_and_outlier, track_posteriors, tune_category_weights)

MEMBERSHIP = np.array([[1, 1, 0, 0, 0],
                       [0, 0, 1, 0, 0],
                       [0, 0, 0, 1, 1]], dtype=float)          # T = 3 categories of P = 5 properties
WEIGHTS = np.array([2.0, 1.0, 0.5])
PRIORS = np.array([0.5, 0.3, 0.15, 0.05])                      # K = 4 classes


def _loglik(n=300, seed=0, missing=0.3):
    """(n, P, K) log-likelihoods with whole properties missing (NaN for every class) at random."""
    rng = np.random.default_rng(seed)
    ll = rng.normal(-1.5, 2.0, size=(n, MEMBERSHIP.shape[1], len(PRIORS)))
    gone = rng.uniform(size=(n, MEMBERSHIP.shape[1])) < missing
    ll[gone] = np.nan
    ll[0] = np.nan                      # nothing observed
    ll[1, :2] = np.nan                  # the first category absent
    return ll


def _eq1_numpy(ll, membership, weights, priors):
    """Eq. 1 written out row by row: categories with an observed property, their weighted mean log
    likelihood, the prior, the normalised posterior and -log10 of the summed numerator."""
    n, P, K = ll.shape
    T = membership.shape[0]
    cat = np.zeros((n, T, K))
    observed = np.zeros((n, T), bool)
    post = np.zeros((n, K))
    om = np.zeros(n)
    for i in range(n):
        num_log = np.log(priors).copy()
        acc = np.zeros(K)
        wsum = 0.0
        for t in range(T):
            props = [p for p in range(P) if membership[t, p] and np.isfinite(ll[i, p, 0])]
            if not props:
                continue
            observed[i, t] = True
            cat[i, t] = sum(ll[i, p] for p in props)
            acc += weights[t] * cat[i, t]
            wsum += weights[t]
        if wsum > 0:
            num_log += acc / wsum
        num = np.exp(num_log)
        post[i] = num / num.sum()
        om[i] = -np.log10(num.sum())
    return cat, observed, post, om


def test_eq1_matches_plain_numpy_including_missing_properties_and_categories():
    ll = _loglik()
    cat_ref, obs_ref, post_ref, om_ref = _eq1_numpy(ll, MEMBERSHIP, WEIGHTS, PRIORS)
    cat, obs = category_log_likelihoods(ll, MEMBERSHIP)
    assert cat.dtype == np.float64 and cat.shape == (300, 3, 4) and obs.shape == (300, 3)
    np.testing.assert_array_equal(np.asarray(obs), obs_ref)
    np.testing.assert_allclose(np.asarray(cat), cat_ref, rtol=1e-13, atol=1e-13)
    post, om = posterior_and_outlier(cat, obs, WEIGHTS, np.log(PRIORS))
    np.testing.assert_allclose(np.asarray(post), post_ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.asarray(om), om_ref, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(post)[0], PRIORS, rtol=1e-13)       # nothing observed -> priors
    num = np.asarray(log_numerator(cat, obs, WEIGHTS, np.log(PRIORS)))
    np.testing.assert_allclose(np.exp(num - num.max(axis=1, keepdims=True))
                               / np.exp(num - num.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True),
                               post_ref, rtol=1e-12, atol=1e-15)
    # only the ratios of the weights matter
    post2, _ = posterior_and_outlier(cat, obs, 7.0 * WEIGHTS, np.log(PRIORS))
    np.testing.assert_allclose(np.asarray(post2), np.asarray(post), rtol=1e-12)


def test_float64_is_kept_whatever_the_global_setting_and_float32_is_honoured():
    ll = _loglik(50, seed=1)
    assert not jax.config.jax_enable_x64
    cat, obs = category_log_likelihoods(ll, MEMBERSHIP)
    post, om = posterior_and_outlier(cat, obs, WEIGHTS, np.log(PRIORS))
    assert np.asarray(post).dtype == np.float64 and np.asarray(om).dtype == np.float64
    assert not jax.config.jax_enable_x64
    cat32, obs32 = category_log_likelihoods(ll.astype(np.float32), MEMBERSHIP)
    post32, om32 = posterior_and_outlier(cat32, obs32, WEIGHTS, np.log(PRIORS))
    assert np.asarray(post32).dtype == np.float32
    np.testing.assert_allclose(np.asarray(post32), np.asarray(post), atol=1e-5)


def test_rows_are_independent_so_chunks_concatenate():
    ll = _loglik(120, seed=2)
    cat, obs = category_log_likelihoods(ll, MEMBERSHIP)
    whole = np.asarray(posterior_and_outlier(cat, obs, WEIGHTS, np.log(PRIORS))[0])
    parts = [np.asarray(posterior_and_outlier(*category_log_likelihoods(ll[s], MEMBERSHIP), WEIGHTS,
                                              np.log(PRIORS))[0]) for s in (slice(0, 50), slice(50, 120))]
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-14)


def test_track_posteriors_are_prior_times_likelihood_normalised():
    ll = _loglik(40, seed=3)
    by_prop, by_cat = (np.asarray(a) for a in track_posteriors(ll, MEMBERSHIP, np.log(PRIORS)))
    cat_ref, obs_ref, _, _ = _eq1_numpy(ll, MEMBERSHIP, WEIGHTS, PRIORS)
    for i in range(40):
        for p in range(5):
            if np.isfinite(ll[i, p, 0]):
                ref = PRIORS * np.exp(ll[i, p])
                np.testing.assert_allclose(by_prop[i, p], ref / ref.sum(), rtol=1e-12)
            else:
                assert np.isnan(by_prop[i, p]).all()
        for t in range(3):
            if obs_ref[i, t]:
                ref = PRIORS * np.exp(cat_ref[i, t])
                np.testing.assert_allclose(by_cat[i, t], ref / ref.sum(), rtol=1e-12)
            else:
                assert np.isnan(by_cat[i, t]).all()


def test_f1_matches_sklearn():
    rng = np.random.default_rng(5)
    yt, yp = rng.integers(0, 4, 500), rng.integers(0, 4, 500)
    for t in range(4):
        assert float(f1_of_class(yt, yp, t)) == pytest.approx(f1_score(yt, yp, labels=[t], average=None)[0])


def test_tuning_objective_and_differential_evolution():
    rng = np.random.default_rng(6)
    n = 600
    y = rng.choice(4, n, p=PRIORS)
    # category 1 carries the class, category 0 and 2 are noise: tuning must favour category 1 for class 2
    ll = rng.normal(-2.0, 1.0, size=(n, 5, 4))
    ll[np.arange(n), 2, y] += 2.0
    ll[:, [0, 1, 3, 4], :] += rng.normal(0, 3.0, size=(n, 4, 4))
    cat, obs = category_log_likelihoods(ll, MEMBERSHIP)
    cat, obs = np.asarray(cat), np.asarray(obs)
    lp = np.log(PRIORS)

    def f1_numpy(w):
        _, _, post, _ = _eq1_numpy(ll, MEMBERSHIP, w, PRIORS)
        return f1_score(y, post.argmax(axis=1), labels=[2], average=None)[0]

    start = np.array([1.0, 0.05, 1.0])
    assert -float(negative_f1_objective(start, cat, obs, lp, y, 2)) == pytest.approx(f1_numpy(start))
    res = tune_category_weights(cat, obs, lp, y, 2, jax.random.PRNGKey(0), popsize=10, maxiter=30)
    best = np.asarray(res.x)
    assert best.shape == (3,) and np.all((best >= 0) & (best <= 1))
    assert -float(res.fun) == pytest.approx(f1_numpy(best))          # the reported F1 is that of x
    assert -float(res.fun) > f1_numpy(start) + 0.05
    assert best[1] / best.sum() > 0.5                                  # the informative category wins
