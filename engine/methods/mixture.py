"""xsift.GaussianMixture: a drop-in for ``sklearn.mixture.GaussianMixture(covariance_type="full")``.

The estimator is a thin shell in scikit-learn's conventions over the JAX kernel
:mod:`xsift.kernels.gmm` (:func:`~xsift.kernels.gmm.fit_gmm`, :func:`~xsift.kernels.gmm.predict`,
...): it validates parameters and tables at the door, turns pandas DataFrames, astropy Tables and
NumPy arrays into one float array, calls the kernel, and stores the fitted mixture as NumPy arrays
under scikit-learn's attribute names. The EM maths, its iteration order and its lower bound are
scikit-learn's (Dempster, Laird & Rubin 1977; scikit-learn's ``sklearn/mixture/_base.py``), so from
the same starting parameters both give the same fitted attributes to float rounding.

Differences from scikit-learn, by design:

* ``covariance_type`` is ``"full"`` only (the one the cluster-then-label method uses);
* ``init_params`` is ``"kmeans"`` (k-means++ seeding then Lloyd's, as scikit-learn's) or ``"random"``;
  scikit-learn's ``"k-means++"`` and ``"random_from_data"`` raise a ValueError. Random draws come from
  JAX's generator, so a seeded k-means or random start is reproducible but not the same start as
  scikit-learn's for the same ``random_state``;
* ``n_init`` restarts run side by side in one compiled program, and the whole EM loop runs compiled:
  ``verbose`` reports per initialisation batch, not per iteration (``verbose_interval`` is accepted
  and has no effect), and ``lower_bounds_`` (the per-iteration history) is not recorded;
* ``dtype`` (``"float64"``, the reference, or ``"float32"``, faster) is the compute precision; the
  fitted arrays have that dtype.

scikit-learn is not needed at run time. When it is installed, a fit that stops at ``max_iter`` emits
``sklearn.exceptions.ConvergenceWarning`` and methods called before ``fit`` raise
``sklearn.exceptions.NotFittedError`` (else :class:`xsift.errors.ConvergenceWarning` and
:class:`xsift.errors.NotFittedError`), so scikit-learn code that filters or catches them keeps working.
"""
from __future__ import annotations

import numbers
import time
import warnings

import numpy as np

from xsift import errors
from xsift.methods.estimator import ParamsMixin

__all__ = ["GaussianMixture"]

_INIT_PARAMS = ("kmeans", "random")
_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


def _sklearn_or_own(name: str):
    """scikit-learn's exception class ``name`` when scikit-learn is importable, else xsift's own."""
    try:
        from sklearn import exceptions
    except ImportError:
        return getattr(errors, name)
    return getattr(exceptions, name)


def _feature_names(table) -> np.ndarray | None:
    """Column names of a DataFrame as an object array when they are all strings (scikit-learn's rule)."""
    columns = getattr(table, "columns", None)
    if columns is None:
        return None
    names = list(columns)
    if names and all(isinstance(c, str) for c in names):
        return np.asarray(names, dtype=object)
    return None


def _table_array(X):
    """A user's table -> (values (n, d) as a NumPy array, feature names or None).

    pandas DataFrame and astropy Table (through :func:`xsift.methods.estimator.as_frame`: masked values
    NaN) keep their column names; anything else goes through ``np.asarray``. Sparse matrices are
    refused (a Gaussian mixture's covariances are dense)."""
    if type(X).__module__.startswith("scipy.sparse"):
        raise TypeError("GaussianMixture does not accept sparse input; pass a dense array (X.toarray())")
    if type(X).__module__.startswith("astropy") or isinstance(X, dict):
        from xsift.methods.estimator import as_frame
        X = as_frame(X, source="X")
    if hasattr(X, "columns") and hasattr(X, "to_numpy") and hasattr(X, "dtypes"):
        names = _feature_names(X)
        try:
            values = X.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            import pandas as pd
            bad = [str(c) for c, t in X.dtypes.items() if not pd.api.types.is_numeric_dtype(t)]
            raise ValueError(f"X: columns {bad} are not numeric ({exc}); GaussianMixture needs numeric "
                             "feature columns") from None
        return values, names
    return np.asarray(X), None


class GaussianMixture(ParamsMixin):
    """Full-covariance Gaussian mixture fitted by EM (scikit-learn's ``GaussianMixture`` in JAX).

    Parameters (scikit-learn's, with the same defaults)
    ----------
    n_components : int, default 1
        Number of mixture components K.
    covariance_type : {"full"}, default "full"
        Only full covariances; any other value raises ValueError at ``fit``.
    tol : float, default 1e-3
        EM stops when the change of the lower bound (mean log-likelihood per row) is below ``tol``.
    reg_covar : float, default 1e-6
        Added to every covariance's diagonal (keeps them positive definite).
    max_iter : int, default 100
        EM iterations per initialisation; 0 returns the initial parameters.
    n_init : int, default 1
        Initialisations; the one with the best lower bound is kept.
    init_params : {"kmeans", "random"}, default "kmeans"
        How the initial responsibilities are drawn (k-means++ seeded Lloyd's, or uniform random).
    weights_init : array (K,), optional
        Initial weights (non-negative, summing to 1).
    means_init : array (K, d), optional
        Initial means.
    precisions_init : array (K, d, d), optional
        Initial precision matrices (inverse covariances), symmetric positive definite.
    random_state : int, numpy RandomState or Generator, or None
        Seed of the initialisation and of :meth:`sample`.
    warm_start : bool, default False
        Refit from the current fitted parameters (``n_init`` ignored), as scikit-learn does.
    verbose : int, default 0
        1: print a line per fit; 2: also the time, iterations and lower bound.
    verbose_interval : int, default 10
        Accepted for scikit-learn compatibility; EM runs compiled, so there are no per-iteration lines.
    dtype : {"float64", "float32"}, default "float64"
        Compute precision of the fit and of every method (float64 is the reference).

    Attributes (after ``fit``)
    ----------
    weights_ : (K,) mixture weights. means_ : (K, d). covariances_ : (K, d, d).
    precisions_ : (K, d, d) inverse covariances. precisions_cholesky_ : (K, d, d) upper-triangular
    factors P with P P^T = precisions_ (scikit-learn's). converged_ : bool. n_iter_ : int, EM iterations
    of the kept initialisation. lower_bound_ : float, mean log-likelihood per row of the parameters that
    entered the last iteration (scikit-learn's). n_features_in_ : int d. feature_names_in_ : (d,) object
    array, only when fitted on a table with string column names (DataFrame, astropy Table).

    Raises ValueError for invalid parameters or input (non-numeric, non-finite, fewer rows than
    components, wrong number of features), TypeError for sparse input.
    """

    _estimator_type = "density_estimator"

    def __init__(self, n_components=1, *, covariance_type="full", tol=1e-3, reg_covar=1e-6, max_iter=100,
                 n_init=1, init_params="kmeans", weights_init=None, means_init=None, precisions_init=None,
                 random_state=None, warm_start=False, verbose=0, verbose_interval=10, dtype="float64"):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.dtype = dtype

    # ------------------------------------------------------------------ checks at the door

    def _check_params(self) -> np.dtype:
        """Validate the constructor's parameters; returns the compute dtype."""
        def integer(name, low):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"GaussianMixture: {name} must be an integer >= {low}, got {value!r}")

        def real(name):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
                raise ValueError(f"GaussianMixture: {name} must be a number >= 0, got {value!r}")

        integer("n_components", 1)
        integer("max_iter", 0)
        integer("n_init", 1)
        if not isinstance(self.verbose, (bool, np.bool_)):
            integer("verbose", 0)
        integer("verbose_interval", 1)
        real("tol")
        real("reg_covar")
        if self.covariance_type != "full":
            raise ValueError(f"GaussianMixture: covariance_type={self.covariance_type!r} is not supported; "
                             "xsift fits full covariances only (covariance_type='full')")
        if self.init_params not in _INIT_PARAMS:
            raise ValueError(f"GaussianMixture: init_params={self.init_params!r} is not supported; use one of "
                             f"{list(_INIT_PARAMS)}, or give weights_init, means_init and precisions_init")
        if not isinstance(self.warm_start, (bool, np.bool_)):
            raise ValueError(f"GaussianMixture: warm_start must be True or False, got {self.warm_start!r}")
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype not in _DTYPES:
            raise ValueError(f"GaussianMixture: dtype must be 'float64' or 'float32', got {self.dtype!r}")
        return dtype

    def _seed(self) -> int:
        """An int seed for the kernel from ``random_state`` (None: drawn from NumPy's global generator,
        as scikit-learn's ``check_random_state(None)``)."""
        rs = self.random_state
        if rs is None:
            return int(np.random.randint(0, 2**31 - 1))
        if isinstance(rs, numbers.Integral) and not isinstance(rs, bool):
            if not 0 <= rs < 2**32:
                raise ValueError(f"GaussianMixture: random_state must be in [0, 2**32), got {rs}")
            return int(rs)
        if isinstance(rs, np.random.RandomState):
            return int(rs.randint(0, 2**31 - 1))
        if isinstance(rs, np.random.Generator):
            return int(rs.integers(0, 2**31 - 1))
        raise ValueError(f"GaussianMixture: random_state must be None, an int, a numpy RandomState or "
                         f"Generator, got {rs!r}")

    def _validate_X(self, X, *, reset: bool, min_samples: int = 1) -> np.ndarray:
        """X (n, d) from a NumPy array, DataFrame or astropy Table as a float array, checked; in ``fit``
        (reset) records n_features_in_ and feature_names_in_, else checks X against them."""
        values, names = _table_array(X)
        self._check_feature_names(names, reset)
        if np.iscomplexobj(values):
            raise ValueError("Complex data not supported: X must hold real numbers")
        if values.dtype.kind not in "fiub":
            values = values.astype(np.float64)          # object arrays of numbers; TypeError otherwise
        if values.ndim != 2:
            raise ValueError(f"Expected a 2-d array X (n_samples, n_features), got shape {values.shape}. "
                             "Reshape your data: X.reshape(-1, 1) for a single feature, X.reshape(1, -1) for a "
                             "single row")
        n, d = values.shape
        if n < min_samples:
            raise ValueError(f"Found array with {n} sample(s) (shape={values.shape}) while a minimum of "
                             f"{min_samples} is required by GaussianMixture.")
        if d < 1:
            raise ValueError(f"Found array with 0 feature(s) (shape={values.shape}) while a minimum of 1 is "
                             "required by GaussianMixture.")
        if values.dtype.kind != "f":
            values = values.astype(np.float64)
        # one memory layout whatever the source (a DataFrame's columns, a Fortran array): the column
        # means EM centres on then sum in one order, so a table and its array give the same fit
        values = np.ascontiguousarray(values)
        finite = np.isfinite(values)
        if not finite.all():
            cols = np.flatnonzero(~finite.all(axis=0))
            named = [str(names[j]) if names is not None else int(j) for j in cols]
            raise ValueError(f"Input X contains NaN or inf in {int(np.sum(~finite.all(axis=1)))} rows, "
                             f"columns {named}; GaussianMixture needs complete rows: drop or impute them")
        if reset:
            self.n_features_in_ = d
        elif d != self.n_features_in_:
            raise ValueError(f"X has {d} features, but GaussianMixture is expecting {self.n_features_in_} "
                             "features as input.")
        return values

    def _check_feature_names(self, names, reset: bool) -> None:
        """scikit-learn's feature-name contract: set at fit, then the same names in the same order."""
        if reset:
            if names is not None:
                self.feature_names_in_ = names
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
            return
        fitted = getattr(self, "feature_names_in_", None)
        if fitted is None and names is None:
            return
        if fitted is None:
            warnings.warn("X has feature names, but GaussianMixture was fitted without feature names")
            return
        if names is None:
            warnings.warn("X does not have valid feature names, but GaussianMixture was fitted with feature names")
            return
        if len(fitted) == len(names) and np.all(fitted == names):
            return
        message = "The feature names should match those that were passed during fit.\n"
        unseen, missing = sorted(set(names) - set(fitted)), sorted(set(fitted) - set(names))

        def listed(items):
            return "".join(f"- {s}\n" for s in items[:5]) + ("- ...\n" if len(items) > 5 else "")
        if unseen:
            message += "Feature names unseen at fit time:\n" + listed(unseen)
        if missing:
            message += "Feature names seen at fit time, yet now missing:\n" + listed(missing)
        if not unseen and not missing:
            message += "Feature names must be in the same order as they were in fit.\n"
        raise ValueError(message)

    def _check_is_fitted(self) -> None:
        if not hasattr(self, "means_"):
            raise _sklearn_or_own("NotFittedError")(
                "This GaussianMixture instance is not fitted yet. Call 'fit' with appropriate arguments "
                "before using this estimator.")

    def _initial_values(self, d: int):
        """weights_init (K,), means_init (K, d), precisions_init (K, d, d) checked; the precisions' lower
        Cholesky factors (scikit-learn's start from precisions) -> (weights, means, precisions_cholesky),
        each None where not given."""
        K = self.n_components
        w = mu = pc = None
        if self.weights_init is not None:
            w = np.asarray(self.weights_init, np.float64)
            if w.shape != (K,):
                raise ValueError(f"GaussianMixture: weights_init must have shape ({K},), got {w.shape}")
            if np.any(w < 0) or np.any(w > 1) or not np.isclose(w.sum(), 1.0, rtol=0, atol=1e-6):
                raise ValueError("GaussianMixture: weights_init must lie in [0, 1] and sum to 1, got "
                                 f"min {w.min():.6g}, max {w.max():.6g}, sum {w.sum():.6g}")
        if self.means_init is not None:
            mu = np.asarray(self.means_init, np.float64)
            if mu.shape != (K, d):
                raise ValueError(f"GaussianMixture: means_init must have shape ({K}, {d}), got {mu.shape}")
        if self.precisions_init is not None:
            prec = np.asarray(self.precisions_init, np.float64)
            if prec.shape != (K, d, d):
                raise ValueError(f"GaussianMixture: precisions_init must have shape ({K}, {d}, {d}), got {prec.shape}")
            if not np.allclose(prec, np.swapaxes(prec, 1, 2)):
                raise ValueError("GaussianMixture: precisions_init must be symmetric")
            try:
                pc = np.linalg.cholesky(prec)
            except np.linalg.LinAlgError:
                raise ValueError("GaussianMixture: precisions_init must be positive definite") from None
        return w, mu, pc

    # ------------------------------------------------------------------ fitting

    def fit(self, X, y=None):
        """Fit the mixture to X (n, d) by EM (``n_init`` initialisations, the best lower bound kept).

        X: NumPy array, pandas DataFrame or astropy Table of n rows and d numeric feature columns.
        y: ignored. Returns self. Emits ConvergenceWarning when the kept initialisation stopped at
        ``max_iter`` (max_iter > 0) before the lower bound changed by less than ``tol``.
        """
        from xsift.kernels.gmm import GMMParams, fit_gmm

        dtype = self._check_params()
        X = self._validate_X(X, reset=True, min_samples=2)
        n, d = X.shape
        K = self.n_components
        if n < K:
            raise ValueError(f"Expected n_samples >= n_components but got n_components = {K}, n_samples = {n}")
        w0, mu0, pc0 = self._initial_values(d)
        warm = bool(self.warm_start) and hasattr(self, "converged_")
        seed = self._seed()
        common = dict(max_iter=self.max_iter, tol=float(self.tol), reg_covar=float(self.reg_covar), dtype=dtype)
        started = time.perf_counter()
        if self.verbose:
            print(f"GaussianMixture: fitting {K} components to {n} rows x {d} features "
                  f"({'warm start' if warm else f'{self.n_init} initialisation(s)'}, {dtype.name})")
        if warm:
            start = GMMParams(self.weights_, self.means_, self.covariances_, self.precisions_cholesky_)
            result = fit_gmm(X, K, seed=seed, init=start, start_lower_bound=self.lower_bound_, **common)
        elif w0 is not None and mu0 is not None and pc0 is not None:
            # every restart would start from the same given parameters: one fit
            result = fit_gmm(X, K, seed=seed, init=GMMParams(w0, mu0, None, pc0), **common)
        elif w0 is None and mu0 is None and pc0 is None:
            result = fit_gmm(X, K, seed=seed, n_init=self.n_init, init=self.init_params, **common)
        else:
            # some initial values given: each restart draws the rest (scikit-learn's rule: weights and
            # means from the drawn responsibilities, covariances too unless precisions are given)
            result = None
            for r in range(self.n_init):
                drawn = fit_gmm(X, K, seed=(seed + r) % 2**32, init=self.init_params, reg_covar=float(self.reg_covar),
                                dtype=dtype, max_iter=0)
                start = GMMParams(drawn.weights if w0 is None else w0, drawn.means if mu0 is None else mu0,
                                  drawn.covariances if pc0 is None else None,
                                  drawn.precisions_cholesky if pc0 is None else pc0)
                fitted = fit_gmm(X, K, seed=seed, init=start, **common)
                if result is None or fitted.lower_bound > result.lower_bound:
                    result = fitted
        self.weights_ = np.asarray(result.weights)
        self.means_ = np.asarray(result.means)
        self.covariances_ = np.asarray(result.covariances)
        self.precisions_cholesky_ = np.asarray(result.precisions_cholesky)
        self.precisions_ = np.einsum("kij,klj->kil", self.precisions_cholesky_, self.precisions_cholesky_)
        self.converged_ = bool(result.converged)
        self.n_iter_ = int(result.n_iter)
        self.lower_bound_ = float(result.lower_bound)
        if self.verbose:
            line = "Initialization converged." if self.converged_ else "Initialization did not converge."
            if self.verbose >= 2:
                line += (f" time lapse {time.perf_counter() - started:.5f}s\t {self.n_iter_} iterations\t "
                         f"lower bound {self.lower_bound_:.5f}.")
            print(line)
        if not self.converged_ and self.max_iter > 0:
            warnings.warn("Best performing initialization did not converge. Try different init parameters, "
                          "or increase max_iter, tol, or check for degenerate data.",
                          _sklearn_or_own("ConvergenceWarning"), stacklevel=2)
        return self

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fit to X (n, d), then the most probable component of each row: (n,) int64 labels."""
        return self.fit(X).predict(X)

    # ------------------------------------------------------------------ applying the fitted mixture

    def _params(self):
        from xsift.kernels.gmm import GMMParams
        return GMMParams(self.weights_, self.means_, self.covariances_, self.precisions_cholesky_)

    def _applied(self, X) -> np.ndarray:
        self._check_is_fitted()
        return self._validate_X(X, reset=False)

    def predict(self, X) -> np.ndarray:
        """(n,) int64: the component of highest responsibility for each row of X (n, d)."""
        X = self._applied(X)
        from xsift.kernels.gmm import predict
        return np.asarray(predict(self._params(), X), dtype=np.int64)

    def predict_proba(self, X) -> np.ndarray:
        """(n, K) responsibilities p(k | x) of each component for each row of X (n, d); rows sum to 1."""
        X = self._applied(X)
        from xsift.kernels.gmm import predict_proba
        return np.asarray(predict_proba(self._params(), X))

    def score_samples(self, X) -> np.ndarray:
        """(n,) log p(x) of each row of X (n, d) under the mixture (natural log of a density in X's units^-d)."""
        X = self._applied(X)
        from xsift.kernels.gmm import score_samples
        return np.asarray(score_samples(self._params(), X))

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per row of X (n, d) (y ignored)."""
        return float(np.mean(self.score_samples(X), dtype=np.float64))

    def bic(self, X) -> float:
        """Bayesian information criterion of X (n, d): -2 log L + p log n, p = K d(d+1)/2 + K d + K - 1
        (Schwarz 1978; scikit-learn's ``bic``). Lower is better."""
        X = self._applied(X)
        from xsift.kernels.gmm import bic
        return float(bic(self._params(), X))

    def aic(self, X) -> float:
        """Akaike information criterion of X (n, d): -2 log L + 2 p (Akaike 1974; scikit-learn's ``aic``)."""
        X = self._applied(X)
        from xsift.kernels.gmm import aic
        return float(aic(self._params(), X))

    def sample(self, n_samples=1):
        """Draw n_samples rows from the fitted mixture -> (X (n_samples, d) float64, y (n_samples,) int64
        component labels), rows grouped by component as scikit-learn's.

        Uses NumPy's RandomState from ``random_state`` exactly as scikit-learn does (component counts
        from a multinomial over ``weights_``, then ``multivariate_normal`` per component), so an integer
        ``random_state`` draws the same rows as scikit-learn's ``sample``. Raises ValueError for
        n_samples < 1.
        """
        self._check_is_fitted()
        if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"Invalid value for 'n_samples': {n_samples!r}. The sampling requires at least one sample.")
        rs = self.random_state
        if rs is None:
            rng = np.random.mtrand._rand
        elif isinstance(rs, np.random.RandomState):
            rng = rs
        elif isinstance(rs, numbers.Integral) and not isinstance(rs, bool):
            rng = np.random.RandomState(rs)
        else:
            raise ValueError(f"GaussianMixture.sample: random_state must be None, an int or a numpy RandomState, "
                             f"got {rs!r}")
        weights = np.asarray(self.weights_, np.float64)
        counts = rng.multinomial(int(n_samples), weights / weights.sum())
        X = np.vstack([rng.multivariate_normal(mean, cov, int(c))
                       for mean, cov, c in zip(np.asarray(self.means_, np.float64),
                                               np.asarray(self.covariances_, np.float64), counts)])
        y = np.concatenate([np.full(int(c), k, dtype=np.int64) for k, c in enumerate(counts)])
        return X, y
