"""Feature presets, derived features and the paper's feature transform.

A preset is a TOML file in ``engine/presets/`` (or any file the user passes with
``--config``); it is the one definition of a method's features, their transform
and its classes. For the CSC preset (``csc.toml``):

* derived features: ``var_ratio_x = var_sigma_x / var_mean_x`` and
  ``var_newq_b = ((var_max_b + var_min_b) / 2) / var_mean_b``; a ratio whose
  denominator is 0 (or any non-finite result) is *missing*;
* Eq. 2 of the paper: natural log of each ``log`` feature after adding one tenth
  of the feature's smallest non-zero value, ``X_log = ln(X + X*_min / 10)``;
* Eq. 1: min-max scaling to [0, 1] of each ``minmax`` feature (after the log
  where both apply); the other features are used as they are (this is what the
  published code does).

:class:`FeatureTransform` is fitted once on the complete rows of a training
catalogue (offsets, minima, maxima) and saved with the model; classifying new
detections reuses it and never refits it. New values outside the fitted range
are allowed: they map outside [0, 1] (a detection harder than any in training
gets a scaled value above 1), which the Gaussian mixture and the Mahalanobis
distances handle like any other value. A log feature whose value is below
``-offset`` (a negative ratio, which valid CSC data cannot produce) becomes
missing.
"""
from __future__ import annotations

import os
import pathlib
import tomllib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from xsift.errors import SchemaError, XsiftError

PRESET_DIR = pathlib.Path(__file__).resolve().parents[1] / "config" / "presets"

DERIVED_FORMULAS = {
    # name -> (number of inputs, function of the input arrays)
    "ratio": (2, lambda a, b: a / b),
    "midrange_ratio": (3, lambda hi, lo, mean: ((hi + lo) / 2.0) / mean),
}


def load_preset(name_or_path: str | os.PathLike = "csc") -> dict:
    """Load a preset by built-in name (``csc``, ``nb_csc`` ...) or from a TOML file."""
    path = pathlib.Path(name_or_path)
    if not path.suffix and not path.exists():
        path = PRESET_DIR / f"{name_or_path}.toml"
    if not path.exists():
        known = sorted(p.stem for p in PRESET_DIR.glob("*.toml"))
        raise XsiftError(f"{name_or_path}: no such preset file; built-in presets: {', '.join(known)}")
    try:
        with open(path, "rb") as fh:
            preset = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise XsiftError(f"{path}: not valid TOML ({exc})") from None
    preset.setdefault("name", path.stem)
    preset["_path"] = str(path)
    return preset


def feature_names(preset: dict) -> list[str]:
    """The preset's features, in model order."""
    try:
        return list(preset["features"]["order"])
    except KeyError:
        raise XsiftError(f"{preset.get('_path', 'preset')}: [features] needs an 'order' list") from None


def derived_features(preset: dict) -> dict[str, tuple[str, list[str]]]:
    """name -> (formula, input columns) for the preset's derived features."""
    out = {}
    for name, spec in preset.get("features", {}).get("derived", {}).items():
        formula, inputs = spec
        if formula not in DERIVED_FORMULAS:
            raise XsiftError(f"{preset.get('_path', 'preset')}: derived feature {name!r} uses unknown "
                             f"formula {formula!r}; known: {', '.join(DERIVED_FORMULAS)}")
        if len(inputs) != DERIVED_FORMULAS[formula][0]:
            raise XsiftError(f"{preset.get('_path', 'preset')}: derived feature {name!r}: formula "
                             f"{formula!r} takes {DERIVED_FORMULAS[formula][0]} columns, got {inputs}")
        out[name] = (formula, list(inputs))
    return out


def raw_feature_columns(preset: dict) -> list[str]:
    """The catalogue columns the preset's features are made from, in first-use order."""
    derived = derived_features(preset)
    cols: list[str] = []
    for name in feature_names(preset):
        for col in (derived[name][1] if name in derived else [name]):
            if col not in cols:
                cols.append(col)
    return cols


def derive_features(df: pd.DataFrame, preset: dict) -> pd.DataFrame:
    """The preset's features of every row of ``df``, untransformed, as float64.

    Non-finite results (a ratio over a zero mean rate, an infinite input) are NaN,
    i.e. missing.
    """
    derived = derived_features(preset)
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for name in feature_names(preset):
            if name in derived:
                formula, inputs = derived[name]
                args = [_as_float(df, c) for c in inputs]
                values = DERIVED_FORMULAS[formula][1](*args)
            else:
                values = _as_float(df, name)
            values = np.where(np.isfinite(values), values, np.nan)
            out[name] = values
    return pd.DataFrame(out, index=df.index, copy=False)     # fresh arrays: no consolidating copy


def _as_float(df: pd.DataFrame, column: str) -> np.ndarray:
    if column not in df.columns:
        raise SchemaError(f"column {column!r} is missing; the preset's features need it")
    col = df[column]
    try:
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        raise SchemaError(f"column {column!r} holds non-numeric values; expected numbers") from None


def complete_rows(features: pd.DataFrame | np.ndarray) -> np.ndarray:
    """Boolean mask of the rows where every feature is present and finite (a DataFrame column by
    column: no 2-d copy of the table)."""
    if isinstance(features, pd.DataFrame):
        ok = np.ones(len(features), dtype=bool)
        for c in features.columns:
            ok &= np.isfinite(features[c].to_numpy(dtype=np.float64, na_value=np.nan))
        return ok
    values = np.asarray(features, dtype=np.float64)
    return np.isfinite(values).all(axis=1)


@dataclass
class FeatureTransform:
    """Eq. 2 (log with offset) then Eq. 1 (min-max) of the CSC paper, fitted once.

    ``offsets[f]`` is one tenth of the smallest non-zero training value of a log
    feature (0 for the others); ``minima``/``maxima`` are the training range of
    each min-max feature after the log (NaN for the others).
    """

    features: list[str]
    log: list[str]
    minmax: list[str]
    offsets: np.ndarray = field(default=None)
    minima: np.ndarray = field(default=None)
    maxima: np.ndarray = field(default=None)

    @classmethod
    def from_preset(cls, preset: dict) -> "FeatureTransform":
        feats = preset.get("features", {})
        names = feature_names(preset)
        for key in ("log", "minmax"):
            unknown = [f for f in feats.get(key, []) if f not in names]
            if unknown:
                raise XsiftError(f"{preset.get('_path', 'preset')}: [features] {key} names "
                                 f"{unknown}, which are not in 'order'")
        return cls(names, list(feats.get("log", [])), list(feats.get("minmax", [])))

    def fit(self, features: pd.DataFrame) -> "FeatureTransform":
        """Fit offsets and ranges on the complete rows of ``features`` (columns named as ``self.features``)."""
        values = np.asarray(features[self.features], dtype=np.float64)
        values = values[complete_rows(values)]
        if len(values) == 0:
            raise SchemaError("no complete row to fit the feature transform on: every row misses "
                              "at least one feature")
        d = len(self.features)
        self.offsets = np.zeros(d)
        for j, name in enumerate(self.features):
            if name in self.log:
                col = values[:, j]
                if (col < 0).any():
                    raise SchemaError(f"feature {name!r} has negative values (min {col.min():g}); "
                                      "its log transform (Eq. 2) expects values >= 0")
                nonzero = col[col != 0]
                if len(nonzero) == 0:
                    raise SchemaError(f"feature {name!r} is 0 in every complete row; its log transform "
                                      "(Eq. 2) needs a non-zero value")
                self.offsets[j] = nonzero.min() / 10.0
        self.minima = np.full(d, np.nan)
        self.maxima = np.full(d, np.nan)
        for j, name in enumerate(self.features):
            if name in self.minmax:
                logged = self._log_column(j, values[:, j])
                self.minima[j] = logged.min()
                self.maxima[j] = logged.max()
        return self

    def _log_column(self, j: int, col: np.ndarray) -> np.ndarray:
        """Eq. 2 on feature j's values (a new array for a log feature, ``col`` itself otherwise);
        NaN where the shifted value is not positive (the log is undefined there)."""
        if self.features[j] not in self.log:
            return col
        shifted = col + self.offsets[j]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.log(shifted)
        out[~(shifted > 0)] = np.nan
        return out

    def transform(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """``(n, d)`` float64 transformed features; missing stays NaN.

        Works column by column on contiguous arrays (a DataFrame's float64 columns are used as
        they are), each column written once, contiguously: the result is column-major (the
        transpose of a C-ordered ``(d, n)`` array; a row selection ``X[rows]`` is C-ordered).
        """
        if self.offsets is None:
            raise XsiftError("the feature transform is not fitted")
        if isinstance(features, pd.DataFrame):
            columns = [features[f].to_numpy(dtype=np.float64) for f in self.features]
        else:
            values = np.asarray(features, dtype=np.float64)
            columns = [values[:, j] for j in range(values.shape[1])]
        n = len(columns[0]) if columns else 0
        out = np.empty((len(self.features), n))
        for j, name in enumerate(self.features):
            col = self._log_column(j, columns[j])
            if name in self.minmax:
                span = self.maxima[j] - self.minima[j]
                col = (col - self.minima[j]) / (span if span > 0 else 1.0)
            out[j] = col
        return out.T

    def to_dict(self) -> dict:
        return {"features": self.features, "log": self.log, "minmax": self.minmax,
                "offsets": [float(v) for v in self.offsets],
                "minima": [None if np.isnan(v) else float(v) for v in self.minima],
                "maxima": [None if np.isnan(v) else float(v) for v in self.maxima]}

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureTransform":
        t = cls(list(data["features"]), list(data["log"]), list(data["minmax"]))
        t.offsets = np.asarray(data["offsets"], dtype=np.float64)
        t.minima = np.asarray([np.nan if v is None else v for v in data["minima"]], dtype=np.float64)
        t.maxima = np.asarray([np.nan if v is None else v for v in data["maxima"]], dtype=np.float64)
        return t
