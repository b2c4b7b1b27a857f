"""The naive-Bayes posterior as CLAXBOI runs it (Tranin et al. 2022; their ``claxboi/classify_new.py``)
against a plain-NumPy, source-by-source transcription of it written from the paper's Eq. 1 and the
code's description: missing-value likelihoods with a floor, error weights normalised within their
category, category weights, the missing-value exponent alpha and the code's exponent normalisation.

The per-(property, class) densities are taken from the fitted model (they are tested against scipy
and scikit-learn in tests/kernels/test_kde.py); everything that combines them is recomputed here.
"""
import numpy as np
import pandas as pd
import pytest

from xsift.kernels.nbayes import (category_log_likelihoods, category_terms, posterior_and_outlier,
                                  weighted_posterior_and_outlier)
from xsift.methods.naive_bayes import NaiveBayesKDE

CLASSES = ["A", "B", "C"]
CATEGORIES = {"Loc": ["p0"], "Spec": ["p1", "p2"], "Var": ["p3", "p4"]}
PRESET = {
    "name": "claxboi_toy", "method": "naive_bayes",
    "columns": {"source": "name", "label": "cls"},
    "classes": {"order": CLASSES, "priors": [0.5, 0.3, 0.2], "target": "C",
                "labels": {c: [c] for c in CLASSES}},
    "features": {"p0": {"formula": "column", "columns": ["p0"]},
                 "p1": {"formula": "column", "columns": ["p1"], "error": ["e_p1"]},
                 "p2": {"formula": "column", "columns": ["p2"], "transform": ["log10"], "error": ["e_p2"]},
                 "p3": {"formula": "column", "columns": ["p3"], "error": ["e_p3"]},
                 "p4": {"formula": "column", "columns": ["p4"]}},
    "categories": {name: {"weight": 1.0, "features": props} for name, props in CATEGORIES.items()},
}
PROPS = ["p0", "p1", "p2", "p3", "p4"]
MEANS = np.array([[0.0, 0.0, 1.0, 0.0, 0.0], [1.0, -1.0, 3.0, 1.0, 0.5], [-1.0, 1.0, 10.0, -1.0, 1.0]])
# per class, the share of sources where each property is missing (so the presence terms differ)
MISSING = np.array([[0.05, 0.1, 0.1, 0.3, 0.1], [0.2, 0.05, 0.3, 0.1, 0.2], [0.4, 0.2, 0.05, 0.5, 0.3]])
WEIGHTS = {"Loc": 2.5, "Spec": 0.7, "Var": 1.6}
ALPHA = 0.6
FLOOR = 0.001


def _table(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.choice(3, n, p=[0.45, 0.35, 0.2])
    X = MEANS[y] + rng.normal(size=(n, 5)) * 0.8
    X[:, 2] = np.abs(X[:, 2]) + 0.1
    X[rng.uniform(size=X.shape) < MISSING[y]] = np.nan
    df = pd.DataFrame(X, columns=PROPS)
    for p in ("p1", "p2", "p3"):
        df["e_" + p] = rng.uniform(0.05, 0.5, n)
    df.loc[rng.uniform(size=n) < 0.1, "e_p3"] = np.nan          # some errors unknown
    df["cls"] = np.asarray(CLASSES, dtype=object)[y]
    df["name"] = [f"s{i}" for i in range(n)]
    return df


def _claxboi_numpy(model, df, train, weights, alpha, floor, normalisation="claxboi"):
    """Source by source, class by class, as CLAXBOI multiplies likelihoods (linear space).

    pbgood (observed p) = f_pC(x_p) ** (c_p / mean_{q in cat(p), observed} c_q) * q_pC
    pbnull (missing p)  = 1 - q_pC,  q_pC = (share of class-C training rows with p present + floor) / (1 + 2 floor)
    category t:  (prod pbgood * prod pbnull ** alpha) ** (5 w_t / (2 n_obs + alpha n_mis))
    posterior:   prod_t (...) ** (8 / sum_t w_t) * prior, normalised
    c_p = 1 / sigma_p (sigma on the property's axis: sigma / (x ln 10) for log10(x)) where the property has
    an error column, 1 where it has none; a property whose sigma is unknown gets the category mean
    (CLAXBOI's 1/NaN would drop the category's observed terms: xsift's documented choice instead).
    """
    props = np.column_stack([df["p0"], df["p1"], np.log10(df["p2"]), df["p3"], df["p4"]])
    sigma = np.column_stack([np.full(len(df), np.nan), df["e_p1"], df["e_p2"] / (df["p2"] * np.log(10)),
                             df["e_p3"], np.full(len(df), np.nan)])
    has_error = [False, True, True, True, False]
    f = np.exp(model.log_likelihoods(df))                          # (n, P, K) densities from the model
    ytr = train["cls"].to_numpy()
    ptr = np.column_stack([train["p0"], train["p1"], np.log10(train["p2"]), train["p3"], train["p4"]])
    q = np.array([[(np.isfinite(ptr[ytr == c, p]).mean() + floor) / (1 + 2 * floor) for c in CLASSES]
                  for p in range(5)])
    priors = np.array([0.5, 0.3, 0.2])
    cats = {t: [PROPS.index(p) for p in ps] for t, ps in CATEGORIES.items()}
    gw = np.array([weights[t] for t in CATEGORIES])
    out = np.zeros((len(df), 3))
    for i in range(len(df)):
        obs = np.isfinite(props[i])
        n_obs, n_mis = obs.sum(), (~obs).sum()
        coef = np.ones(5)
        for p in range(5):
            if has_error[p] and obs[p]:
                coef[p] = 1 / sigma[i, p] if np.isfinite(sigma[i, p]) and sigma[i, p] > 0 else np.nan
        expo = np.ones(5)
        for t, members in cats.items():
            seen = [p for p in members if obs[p]]
            known = [coef[p] for p in seen if np.isfinite(coef[p])]
            for p in seen:
                expo[p] = coef[p] / np.mean(known) if np.isfinite(coef[p]) else 1.0
        pb = np.ones(3)
        for c in range(3):
            for k, (t, members) in enumerate(cats.items()):
                good = np.prod([f[i, p, c] ** expo[p] * q[p, c] for p in members if obs[p]])
                null = np.prod([1 - q[p, c] for p in members if not obs[p]])
                if normalisation == "claxboi":
                    pb[c] *= (good * null ** alpha) ** (5 * gw[k] / (2 * n_obs + alpha * n_mis))
                else:
                    pb[c] *= (good * null ** alpha) ** gw[k]
        pb = pb ** ((8 if normalisation == "claxboi" else 1) / gw.sum()) * priors
        out[i] = pb / pb.sum()
    return out


@pytest.fixture(scope="module")
def fitted():
    train, test = _table(400, 1), _table(60, 2)
    model = NaiveBayesKDE(PRESET, weights=WEIGHTS, n_grid=256, missing_likelihood=True, missing_alpha=ALPHA,
                          missing_floor=FLOOR, error_weights=True, normalisation="claxboi").fit(train)
    return model, train, test


def test_claxboi_posterior_matches_numpy_transcription(fitted):
    model, train, test = fitted
    ref = _claxboi_numpy(model, test, train, WEIGHTS, ALPHA, FLOOR)
    post = model.predict_proba(test)
    assert np.isnan(test[PROPS].to_numpy()).any(axis=1).mean() > 0.3 and test["e_p3"].isna().any()
    np.testing.assert_allclose(post, ref, rtol=0, atol=1e-10)
    # and Eq. 1's normalisation (1 / sum of the weights: every category enters with missing terms)
    eq1 = model.set_params(normalisation="eq1")
    try:
        np.testing.assert_allclose(eq1.predict_proba(test), _claxboi_numpy(model, test, train, WEIGHTS, ALPHA, FLOOR,
                                                                            normalisation="eq1"), rtol=0, atol=1e-10)
    finally:
        model.set_params(normalisation="claxboi")


def test_alternative_class_is_the_argmax_with_that_category_weight_zero(fitted):
    model, train, test = fitted
    alt = model.alternative_class_table(test)
    for t in CATEGORIES:
        ref = _claxboi_numpy(model, test, train, {**WEIGHTS, t: 0.0}, ALPHA, FLOOR)
        expected = np.asarray(CLASSES, dtype=object)[np.argmax(ref, axis=1)]
        assert (alt[f"alt_class_without_{t}"].to_numpy(dtype=object) == expected).all()
    table = model.set_params(alternative_classes=True).classify_frame(test)[0]
    model.set_params(alternative_classes=None)
    assert (table[[f"alt_class_without_{t}" for t in CATEGORIES]].to_numpy() == alt.to_numpy()).all()


def test_options_off_is_eq1_as_before():
    """Every option off: the generalised kernels give Eq. 1's kernels' numbers exactly."""
    rng = np.random.default_rng(3)
    ll = rng.normal(-1.0, 1.5, (50, 5, 3))
    ll[rng.uniform(size=(50, 5)) < 0.3] = np.nan
    membership = np.array([[1, 0, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 1, 1]], float)
    weights, log_prior = np.array([2.0, 0.5, 1.0]), np.log([0.5, 0.3, 0.2])
    zero = np.zeros((5, 3))
    terms = category_terms(ll, membership, np.ones((50, 5)), zero, zero, False)
    post, om = weighted_posterior_and_outlier(terms, weights, 1.0, log_prior)
    post0, om0 = posterior_and_outlier(*category_log_likelihoods(ll, membership), weights, log_prior)
    np.testing.assert_array_equal(np.asarray(post), np.asarray(post0))
    np.testing.assert_array_equal(np.asarray(om), np.asarray(om0))


def test_group_f1_objective_is_sklearn_f1_of_the_mapped_labels():
    """Tuning for an aggregated class (XRB = HMXB + LMXB): the jitted objective's F1 is scikit-learn's
    binary F1 of "true class in the group" against "predicted class in the group"; a class alone is
    the group of one and gives the index objective's number exactly."""
    from sklearn.metrics import f1_score
    from xsift.kernels.nbayes import (CategoryTerms, f1_of_group, negative_f1_of_terms, target_membership,
                                      weighted_log_numerator)
    rng = np.random.default_rng(7)
    n, T, K = 200, 3, 5
    terms = CategoryTerms(rng.normal(0, 2, (n, T, K)), rng.normal(0, 1, (n, T, K)), rng.uniform(size=(n, T)) < 0.8,
                          rng.integers(1, 6, n).astype(float), rng.integers(0, 3, n).astype(float))
    y = rng.integers(0, K, n)
    log_prior = np.log(rng.dirichlet(np.ones(K)))
    for trial in range(4):
        w, a = rng.uniform(size=T), rng.uniform()
        pred = np.argmax(np.asarray(weighted_log_numerator(terms, w, a, log_prior)), axis=1)
        for group in ([3, 4], [0, 2, 4], [1]):
            member = target_membership(group, K)
            want = f1_score(np.isin(y, group), np.isin(pred, group), zero_division=0.0)
            assert float(f1_of_group(y, pred, member)) == pytest.approx(want, abs=1e-12)
            assert -float(negative_f1_of_terms(w, terms, log_prior, y, member, a)) == pytest.approx(want, abs=1e-12)
        assert float(negative_f1_of_terms(w, terms, log_prior, y, target_membership(2, K), a)) == \
            float(negative_f1_of_terms(w, terms, log_prior, y, 2, a))
    with pytest.raises(ValueError, match="expected indices"):
        target_membership([5], K)
