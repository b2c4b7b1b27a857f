"""``xsift bic``: the BIC curve over the number of mixture components and the elbow choice of K.

The paper's Fig. 1 (Pérez-Díaz et al., Sec. 3.3): full-covariance Gaussian mixtures for
K = 2..20, each fitted several times from different k-means starts; the mean BIC and its
standard deviation per K, the gradient of the mean BIC, and the K after which the gradient
stops changing (:func:`xsift.kernels.gmm.choose_k`, rule and threshold documented there).

Data flow: read (``xsift.data.io``) -> the preset's features (``xsift.data.features``: derive,
complete rows only, the paper's log + min-max transform fitted on those rows) -> optional
seeded random subset -> ``xsift.kernels.gmm.bic_sweep`` -> ``bic.csv``, ``bic.png``,
``manifest.json`` in ``--out``.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from xsift.errors import XsiftError


def check_free_parameters(n_rows: int, n_features: int, ks, *, source: str = "catalogue",
                          option: str = "--k") -> None:
    """Refuse mixtures with more free parameters than rows: raise :class:`XsiftError` unless every K of
    ``ks`` (an int or a sequence) has at most ``n_rows`` free parameters (``K d(d+1)/2 + K d + K - 1``,
    :func:`xsift.kernels.gmm.n_parameters`, for ``d = n_features``), naming ``source``, the K values
    refused and the largest K the rows determine. A mixture with more parameters than rows has a
    likelihood that grows without bound (held back only by ``reg_covar``) and a BIC that means nothing;
    the floor is the textbook one: at least one row per free parameter."""
    from xsift.kernels.gmm import n_parameters
    ks = [int(ks)] if np.ndim(ks) == 0 else [int(k) for k in ks]
    over = [k for k in ks if n_parameters(k, n_features) > n_rows]
    if not over:
        return
    most = 0
    while n_parameters(most + 1, n_features) <= n_rows:
        most += 1
    k = over[0]
    fix = (f"use {option} {most} or less, or give more rows" if most else
           f"even one component needs {n_parameters(1, n_features)}; give more rows")
    raise XsiftError(f"{source}: K={k}{' (and ' + str(len(over) - 1) + ' larger K)' if len(over) > 1 else ''} "
                     f"full-covariance components on {n_features} features have {n_parameters(k, n_features)} "
                     f"free parameters, more than the {n_rows} usable rows; {fix}")


def parse_k_range(text: str) -> list[int]:
    """'2..20' -> [2, ..., 20]; '2..20:2' -> every second; '3,6,9' -> those values."""
    text = text.strip()
    m = re.fullmatch(r"(\d+)\s*\.\.\s*(\d+)(?::(\d+))?", text)
    try:
        if m:
            lo, hi, step = int(m.group(1)), int(m.group(2)), int(m.group(3) or 1)
            ks = list(range(lo, hi + 1, step))
        else:
            ks = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        ks = []
    if len(ks) < 3 or min(ks) < 1:
        raise XsiftError(f"--k {text!r}: expected a range like 2..20 (or 2..20:2, or a list 2,4,6) "
                         "of at least 3 component counts >= 1")
    return ks


def bic_table(curve) -> pd.DataFrame:
    """k, bic_mean, bic_std, gradient (np.gradient of the mean BIC against K), bic_min (the best
    repeat's BIC), n_converged."""
    ks = np.asarray(curve.ks)
    return pd.DataFrame({
        "k": ks.astype(np.int64),
        "bic_mean": np.asarray(curve.bic_mean, np.float64),
        "bic_std": np.asarray(curve.bic_std, np.float64),
        "gradient": np.gradient(np.asarray(curve.bic_mean, np.float64), ks.astype(np.float64)),
        "bic_min": np.asarray(curve.bic, np.float64).min(axis=1),
        "n_converged": np.asarray(curve.converged).sum(axis=1).astype(np.int64),
    })


def catalog_features(path: str, preset="csc") -> tuple[np.ndarray, dict]:
    """Transformed features (n, d) of the complete rows of a catalogue, and row counts. ``preset``: a
    built-in name, a TOML path or a :class:`xsift.config.Preset`."""
    from xsift.config import load_preset
    from xsift.data.features import FeatureTransform, complete_rows, derive_features
    from xsift.data.io import read_catalog

    from xsift.data.schema import match_columns
    preset = load_preset(preset)
    # the feature columns under the preset's names, in any letter case or under an [aliases] name
    wanted = preset.feature_columns + [a for c in preset.feature_columns for a in preset.aliases.get(c, ())]
    df, _ = match_columns(read_catalog(path, columns=wanted), preset.feature_columns, preset.aliases,
                          source=str(path))
    feats = derive_features(df, preset, source=str(path))
    ok = complete_rows(feats)
    if not ok.any():
        raise XsiftError(f"{path}: no row has all {feats.shape[1]} features of preset "
                         f"{preset.name!r}; cannot fit a mixture")
    transform = FeatureTransform.from_preset(preset).fit(feats[ok])
    X = transform.transform(feats[ok])
    ok_t = complete_rows(X)
    X = X[ok_t]
    counts = {"rows_read": int(len(df)), "rows_incomplete_dropped": int((~ok).sum()),
              "rows_untransformable_dropped": int((~ok_t).sum()), "rows_used": int(len(X))}
    return X, counts
