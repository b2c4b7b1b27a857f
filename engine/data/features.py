"""Features of a preset computed from a catalogue, and the CSC paper's fitted feature transform.

A preset (:mod:`xsift.config`) declares each feature as a formula of catalogue columns followed
by transforms; this module computes them. The array implementation of every formula named in
:data:`xsift.config.FORMULAS` is in :data:`FORMULA_FUNCTIONS` (same names):

* ``column``: the column as it is; ``ratio``: ``a / b`` (the CSC preset's
  ``var_ratio_x = var_sigma_x / var_mean_x``); ``midrange_ratio``: ``((hi + lo) / 2) / mean``
  (``var_newq_b``); ``hardness_ratio``: ``(a - b) / (a + b)``; ``abs_galactic_latitude``:
  ``|b|`` in degrees of (ra, dec) in degrees, ICRS (astropy); ``difference``: ``a - b`` (a colour);
  ``log_xray_over_gaia_g`` / ``_2mass_j`` / ``_wise_w1``: ``log10(F_X / F_band)``, the X-ray flux
  columns summed over the band flux of a magnitude (:func:`band_flux`, zero points in
  :data:`xsift.config.formulas.PHOTOMETRIC_BANDS`). A non-finite result (a ratio over a zero
  denominator) is *missing* (NaN).

Transforms:

* ``ln_offset`` (Eq. 2 of Perez-Diaz et al. 2024): natural log after adding one tenth of the
  feature's smallest non-zero training value, ``X_log = ln(X + X*_min / 10)``;
* ``minmax`` (Eq. 1): min-max scaling to [0, 1] of the training range (after the log where
  both apply); features without a transform are used as they are (as the published code does).
  A training range of 0, or equal up to rounding (at most ``xsift.data.schema.ROUNDING_SPAN`` = 1e-6
  of the values' magnitude), is not stretched: the feature is shifted to ~0 and stays constant, so its
  rounding noise is not scaled up into a spread the mixture would cluster on;
* ``log10`` (Tranin et al. 2022): base-10 log, a non-positive value becoming missing; it has
  no fitted parameter and is applied by :func:`feature_values`.

:class:`FeatureTransform` is fitted once on the complete rows of a training catalogue (offsets,
minima, maxima) and saved with the model; classifying new detections reuses it and never refits
it. New values outside the fitted range are allowed: they map outside [0, 1] (a detection harder
than any in training gets a scaled value above 1), which the Gaussian mixture and the Mahalanobis
distances handle like any other value. A log feature whose value is below ``-offset`` (a negative
ratio, which valid CSC data cannot produce) becomes missing.

Every function taking a ``preset`` accepts a built-in name (``"csc"``), a TOML path or a
:class:`xsift.config.Preset`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from xsift.config import FORMULAS, Preset, load_preset
from xsift.data.schema import checked_declinations, constant_to_rounding
from xsift.errors import SchemaError, XsiftError

__all__ = ["FORMULA_FUNCTIONS", "FeatureTransform", "complete_rows", "derive_features", "feature_names",
           "feature_errors", "feature_values", "measurement_variances", "raw_feature_columns"]


def _hardness_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a - b) / (a + b)


def _abs_galactic_latitude(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """|b| in degrees of ICRS (ra, dec) in degrees; NaN where either is missing."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    out = np.full(ra.shape, np.nan)
    ok = np.isfinite(ra) & np.isfinite(dec)
    if ok.any():
        out[ok] = np.abs(SkyCoord(ra=ra[ok] * u.deg, dec=dec[ok] * u.deg, frame="icrs").galactic.b.deg)
    return out


def band_flux(magnitude: np.ndarray, band: str) -> np.ndarray:
    """Band-integrated energy flux ``F = F_lambda,0 10^(-0.4 m) Delta lambda`` [erg cm^-2 s^-1] of (n,)
    Vega magnitudes in ``band`` (a key of :data:`xsift.config.formulas.PHOTOMETRIC_BANDS`: ``gaia_g``
    (Riello et al. 2021), ``2mass_j`` (Cohen et al. 2003), ``wise_w1`` (Jarrett et al. 2011))."""
    from xsift.config.formulas import PHOTOMETRIC_BANDS
    f0, width, _ = PHOTOMETRIC_BANDS[band]
    return f0 * width * 10.0 ** (-0.4 * np.asarray(magnitude, dtype=np.float64))


def _log_xray_over(band: str):
    """log10(F_X / F_band): F_X the sum of the X-ray flux columns, the band flux of the last column
    (a magnitude); NaN where F_X is not positive or an input is missing."""
    def formula(flux, *more):        # flux column(s) ..., magnitude: two parameters (arity 2, variadic)
        columns = (flux, *more)
        fx = np.sum(columns[:-1], axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(fx > 0, np.log10(np.where(fx > 0, fx, 1.0)) - np.log10(band_flux(columns[-1], band)),
                            np.nan)
    return formula


# formula name (xsift.config.FORMULAS) -> function of its column arrays (float64, NaN = missing)
FORMULA_FUNCTIONS = {
    "column": lambda a: a,
    "ratio": lambda a, b: a / b,
    "midrange_ratio": lambda hi, lo, mean: ((hi + lo) / 2.0) / mean,
    "hardness_ratio": _hardness_ratio,
    "abs_galactic_latitude": _abs_galactic_latitude,
    "difference": lambda a, b: a - b,
    "log_xray_over_gaia_g": _log_xray_over("gaia_g"),
    "log_xray_over_2mass_j": _log_xray_over("2mass_j"),
    "log_xray_over_wise_w1": _log_xray_over("wise_w1"),
}


def feature_names(preset: str | Preset = "csc") -> list[str]:
    """The preset's features, in model order (``Preset.feature_names``)."""
    return load_preset(preset).feature_names


def raw_feature_columns(preset: str | Preset = "csc") -> list[str]:
    """The catalogue columns the preset's features are made from, in first-use order
    (``Preset.feature_columns``)."""
    return load_preset(preset).feature_columns


def derive_features(df: pd.DataFrame, preset: str | Preset = "csc", *, source: str = "catalogue") -> pd.DataFrame:
    """The preset's features of every row of ``df`` (n rows -> n x P), untransformed, as float64.

    Non-finite results (a ratio over a zero mean rate, an infinite input) are NaN, i.e. missing.
    Raises :class:`SchemaError` naming ``source`` if a column the features need is missing or
    holds non-numeric values.
    """
    preset = load_preset(preset)
    missing = [c for c in preset.feature_columns if c not in df.columns]
    if missing:
        raise SchemaError(f"{source}: missing column{'s' if len(missing) > 1 else ''} "
                          f"{', '.join(repr(c) for c in missing)}; the features of preset {preset.name!r} "
                          f"need {', '.join(preset.feature_columns)}")
    out = {}
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for feature in preset.features:
            args = [_as_float(df, c, feature.name, source) for c in feature.columns]
            if feature.formula == "abs_galactic_latitude":     # sky coordinates need a declination in [-90, 90]
                args[1] = checked_declinations(args[1], column=feature.columns[1], source=source)
            values = np.asarray(FORMULA_FUNCTIONS[feature.formula](*args), dtype=np.float64)
            out[feature.name] = np.where(np.isfinite(values), values, np.nan)
    return pd.DataFrame(out, index=df.index, copy=False)     # fresh arrays: no consolidating copy


def feature_values(df: pd.DataFrame, preset: str | Preset, *, source: str = "catalogue"
                   ) -> tuple[np.ndarray, dict[str, int]]:
    """``(n, P)`` float64 values of the preset's features after their unfitted transforms (``log10``),
    NaN = missing, and per feature the count of values the log made missing (non-positive ones).

    This is the naive-Bayes method's property table. A preset with fitted transforms (``ln_offset``,
    ``minmax``) is transformed by :class:`FeatureTransform` instead: :class:`XsiftError`.
    """
    preset = load_preset(preset)
    fitted = [f.name for f in preset.features if set(f.transform) - {"log10"}]
    if fitted:
        raise XsiftError(f"{preset.source or preset.name}: [features.{fitted[0]}] transform has fitted steps; "
                         "use FeatureTransform.from_preset(preset).fit(...) for them")
    feats = derive_features(df, preset, source=source)
    out = np.full((len(df), len(preset.features)), np.nan)
    dropped: dict[str, int] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for j, feature in enumerate(preset.features):
            v = feats[feature.name].to_numpy(dtype=np.float64)
            if "log10" in feature.transform:
                bad = np.isfinite(v) & (v <= 0)
                if bad.any():
                    dropped[feature.name] = int(bad.sum())
                v = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)
            out[:, j] = np.where(np.isfinite(v), v, np.nan)
    return out, dropped


def feature_errors(df: pd.DataFrame, preset: str | Preset, *, source: str = "catalogue",
                   counts: dict | None = None) -> pd.DataFrame:
    """``(n, F)`` 1-sigma measurement errors of the preset's features, in the units of each feature's
    formula value (before any transform), NaN where the feature declares no ``error`` or the row's
    error is missing, not finite or negative. ``counts``: gets ``negative_errors_ignored``
    ({feature: rows}) when some errors are negative (bounds reversed, lolim > hilim, or a negative
    symmetric error): a data problem, so they are counted rather than turned around.

    A feature's ``error`` (:class:`xsift.config.Feature`) is one symmetric error column, sigma = the
    column, or the lower and upper confidence bounds (CSC's ``_lolim``/``_hilim``), sigma =
    (hilim - lolim) / 2 (for CSC's 68 % bounds, the Gaussian 1-sigma). Propagating sigma through a
    transform is the caller's (the derivative of the transform at the value).

    Raises :class:`SchemaError` naming ``source`` and the column when a declared error column is absent
    or holds non-numeric values.
    """
    preset = load_preset(preset)
    out = {}
    for feature in preset.features:
        sigma = np.full(len(df), np.nan)
        if feature.error:
            missing = [c for c in feature.error if c not in df.columns]
            if missing:
                raise SchemaError(f"{source}: column {missing[0]!r} (error of feature {feature.name!r}) "
                                  "not found; expected the error columns the preset names")
            cols = [_as_float(df, c, feature.name, source) for c in feature.error]
            with np.errstate(invalid="ignore"):
                sigma = cols[0] if len(cols) == 1 else (cols[1] - cols[0]) / 2.0
                negative = int((np.isfinite(sigma) & (sigma < 0)).sum())
                sigma = np.where(np.isfinite(sigma) & (sigma >= 0), sigma, np.nan)
            if negative and counts is not None:
                counts.setdefault("negative_errors_ignored", {})[feature.name] = negative
        out[feature.name] = sigma
    return pd.DataFrame(out, index=df.index)


def measurement_variances(df: pd.DataFrame, feats: pd.DataFrame, preset: str | Preset, transform,
                          *, source: str = "catalogue", counts: dict | None = None) -> np.ndarray:
    """``(n, d)`` measurement variances of the transformed features of the rows of ``df``: the preset's
    error columns (:func:`feature_errors`) propagated through the fitted ``transform``
    (:meth:`FeatureTransform.transform_errors`), squared; 0 where no error is given and where the value
    is missing (what extreme deconvolution and the error-convolved distances take as ``S_i``).
    ``feats``: ``df``'s derived features (:func:`derive_features`); ``counts`` as :func:`feature_errors`.
    Raises :class:`SchemaError` naming ``source`` and the column when an error column is absent."""
    var = transform.transform_errors(feats, feature_errors(df, preset, source=source, counts=counts)) ** 2
    return np.where(np.isfinite(var), var, 0.0)


def _as_float(df: pd.DataFrame, column: str, feature: str, source: str) -> np.ndarray:
    try:
        return df[column].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        bad = pd.to_numeric(df[column], errors="coerce").isna().to_numpy() & df[column].notna().to_numpy()
        i = int(np.flatnonzero(bad)[0]) if bad.any() else None
        where = f" (row {i} holds {df[column].iloc[i]!r}; {int(bad.sum())} such value(s))" if i is not None else ""
        raise SchemaError(f"{source}: column {column!r} (feature {feature!r}) holds non-numeric values{where}; "
                          "expected numbers") from None


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
    def from_preset(cls, preset: str | Preset = "csc") -> "FeatureTransform":
        """The unfitted transform of the preset's features: ``log`` = those with ``ln_offset``,
        ``minmax`` = those with ``minmax``. Raises :class:`XsiftError` for a ``log10`` feature (applied
        by :func:`feature_values`, not here)."""
        preset = load_preset(preset)
        log10 = preset.features_with("log10")
        if log10:
            raise XsiftError(f"{preset.source or preset.name}: [features.{log10[0]}] transform log10 is "
                             "applied by feature_values, not by FeatureTransform")
        return cls(preset.feature_names, preset.features_with("ln_offset"), preset.features_with("minmax"))

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
                # a range equal up to rounding is not stretched: the feature stays constant (module docstring)
                col = (col - self.minima[j]) / (1.0 if constant_to_rounding(self.minima[j], self.maxima[j]) else span)
            out[j] = col
        return out.T

    def transform_errors(self, features: pd.DataFrame | np.ndarray, sigma: pd.DataFrame | np.ndarray) -> np.ndarray:
        """``(n, d)`` float64 1-sigma errors of the transformed features: ``sigma`` (raw units, e.g.
        :func:`feature_errors`) times the derivative of the fitted transform at the raw value (first-order
        propagation): ``1 / (x + offset)`` for ``ln_offset`` (Eq. 2), ``1 / (max - min)`` for ``minmax``
        (Eq. 1), 1 for a feature without transform. A NaN sigma (no error declared or read) is 0, i.e.
        an exact value; NaN where the value is missing or not transformable. ``features`` and ``sigma``
        are (n, d) in ``self.features`` order (or DataFrames with those columns)."""
        if self.offsets is None:
            raise XsiftError("the feature transform is not fitted")

        def columns(table):
            if isinstance(table, pd.DataFrame):
                return [table[f].to_numpy(dtype=np.float64, na_value=np.nan) for f in self.features]
            values = np.asarray(table, dtype=np.float64)
            return [values[:, j] for j in range(values.shape[1])]
        values, errors = columns(features), columns(sigma)
        n = len(values[0]) if values else 0
        out = np.empty((len(self.features), n))
        for j, name in enumerate(self.features):
            scale = np.ones(n)
            if name in self.log:
                shifted = values[j] + self.offsets[j]
                with np.errstate(divide="ignore", invalid="ignore"):
                    scale = np.where(shifted > 0, 1.0 / shifted, np.nan)
            if name in self.minmax:          # the divisor transform uses (1 for a range equal up to rounding)
                span = self.maxima[j] - self.minima[j]
                scale = scale / (1.0 if constant_to_rounding(self.minima[j], self.maxima[j]) else span)
            e = np.where(np.isfinite(errors[j]), np.abs(errors[j]), 0.0)
            out[j] = np.where(np.isfinite(values[j]), e * np.abs(scale), np.nan)
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
