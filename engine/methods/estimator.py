"""What every xsift estimator shares: scikit-learn's parameter conventions and one way to read a table.

scikit-learn is a test extra, not a run-time dependency, so xsift's estimators cannot inherit from
``sklearn.base.BaseEstimator``. :class:`ParamsMixin` gives them the same contract instead:

* the constructor stores its arguments under their own names and does nothing else;
* :meth:`ParamsMixin.get_params` / :meth:`ParamsMixin.set_params` read and write those arguments
  (nested ``component__parameter`` names included), so ``sklearn.base.clone``, grid searches and
  ``cross_val_score`` work;
* ``__sklearn_tags__`` answers scikit-learn's tag query when scikit-learn is installed (a subclass
  sets ``_estimator_type`` to ``"classifier"``, ``"clusterer"`` or ``"density_estimator"``).

:func:`as_frame` turns what users pass — a pandas DataFrame, an astropy ``Table`` (FITS, VOTable), a
NumPy structured or 2-D array, a dict of columns — into one pandas DataFrame.
"""
from __future__ import annotations

import inspect

import numpy as np
import pandas as pd

from xsift.errors import XsiftError

__all__ = ["PRECISIONS", "ParamsMixin", "as_frame", "precision_dtype"]

PRECISIONS = ("float32", "float64")


class ParamsMixin:
    """scikit-learn's ``get_params``/``set_params``/``__repr__``/``__sklearn_tags__`` from ``__init__``'s signature."""

    _estimator_type: str | None = None

    @classmethod
    def _get_param_names(cls) -> list[str]:
        init = cls.__init__
        if init is object.__init__:
            return []
        params = inspect.signature(init).parameters.values()
        for p in params:
            if p.kind == p.VAR_POSITIONAL:
                raise TypeError(f"{cls.__name__}: estimators take no *args (scikit-learn's convention)")
        return sorted(p.name for p in params if p.name != "self" and p.kind != p.VAR_KEYWORD)

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's parameters and their current values (``deep``: also those of nested estimators)."""
        out = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params):
        """Set constructor parameters (``name=value`` or ``component__name=value``); returns ``self``.

        Raises ValueError for a name the constructor does not take (as scikit-learn does)."""
        if not params:
            return self
        valid = self.get_params(deep=True)
        nested: dict[str, dict] = {}
        for key, value in params.items():
            name, sep, sub = key.partition("__")
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for estimator {type(self).__name__}; "
                                 f"valid parameters are: {sorted(self._get_param_names())}")
            if sep:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
                valid[name] = value
        for name, sub_params in nested.items():
            valid[name].set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        shown = []
        for name in self._get_param_names():
            value = getattr(self, name, None)
            default = defaults.get(name, inspect.Parameter.empty)
            try:
                same = value is default or (default is not inspect.Parameter.empty and bool(value == default))
            except (TypeError, ValueError):
                same = False
            if not same:
                shown.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags, Tags, TargetTags
        kind = self._estimator_type
        return Tags(estimator_type=kind,
                    target_tags=TargetTags(required=kind == "classifier"),
                    transformer_tags=None, regressor_tags=None,
                    classifier_tags=ClassifierTags() if kind == "classifier" else None)


def as_frame(table, *, source: str = "table") -> pd.DataFrame:
    """A user's table as a pandas DataFrame (columns kept in order; nothing is copied twice).

    table: ``pandas.DataFrame`` (returned as is); astropy ``Table``/``QTable`` (read as
    :func:`xsift.data.io.read_catalog` reads FITS and VOTable: masked numbers NaN, strings decoded, empty
    strings null, units dropped); NumPy structured array (one column per field)
    or 2-D array ``(n, d)`` (columns ``x0 .. x{d-1}``); a dict of equal-length columns.
    source: how errors name the input. Raises XsiftError for anything else (e.g. a 1-D array, a
    list of rows of unequal length) naming what was given and what is accepted.
    """
    if isinstance(table, pd.DataFrame):
        return table
    from astropy.table import Table
    if isinstance(table, Table):
        from xsift.data.io import astropy_to_frame
        return astropy_to_frame(table)
    if isinstance(table, np.ndarray):
        if table.dtype.names:
            return pd.DataFrame({name: table[name] for name in table.dtype.names})
        if table.ndim == 2:
            return pd.DataFrame(table, columns=[f"x{i}" for i in range(table.shape[1])])
        raise XsiftError(f"{source}: a NumPy array of shape {table.shape} is not a table; pass a 2-D array "
                         "(n rows, d columns), a structured array, a DataFrame or an astropy Table")
    if isinstance(table, dict):
        try:
            return pd.DataFrame(table)
        except ValueError as exc:
            raise XsiftError(f"{source}: the dict's columns do not form a table ({exc})") from None
    raise XsiftError(f"{source}: cannot read a {type(table).__name__} as a table; pass a pandas DataFrame, "
                     "an astropy Table, a NumPy array or a dict of columns")


def precision_dtype(precision) -> type:
    """``np.float32`` or ``np.float64`` from an estimator's ``precision`` (a name or a NumPy dtype).

    Raises XsiftError for anything else, naming the value and the accepted ones."""
    try:
        dt = np.dtype(precision)
    except TypeError:
        dt = None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise XsiftError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return dt.type
