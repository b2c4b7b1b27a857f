"""The names a preset may use: formulas of derived features, feature transforms, methods.

This module is the one registry of those names, what each means and how many catalogue
columns a formula takes; :mod:`xsift.config.preset` validates presets against it. The array
implementation of each formula lives in :mod:`xsift.data.features` (``FORMULA_FUNCTIONS``,
keyed by the same names), and the fitted transforms in
:class:`xsift.data.features.FeatureTransform` (``ln_offset``, ``minmax``).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Formula:
    """A formula of a feature: ``arity`` catalogue columns in, one value per row out."""
    arity: int
    meaning: str


@dataclass(frozen=True)
class Transform:
    """A transform applied to a feature's values after its formula."""
    meaning: str
    fitted: bool            # True: parameters fitted on the training rows and saved with the model


@dataclass(frozen=True)
class Method:
    """What a classification method reads from a preset."""
    meaning: str
    columns: tuple[str, ...]            # [columns] roles the method requires (besides ``source``)
    transforms: tuple[str, ...]         # transforms its feature pipeline implements
    class_keys: tuple[str, ...]         # [classes] keys it uses
    categories: bool                    # whether it groups features in [categories]


FORMULAS: dict[str, Formula] = {
    "column": Formula(1, "the catalogue column as it is"),
    "ratio": Formula(2, "a / b (e.g. var_ratio_x = var_sigma_x / var_mean_x)"),
    "midrange_ratio": Formula(3, "((hi + lo) / 2) / mean (e.g. var_newq_b from var_max_b, var_min_b, var_mean_b)"),
    "hardness_ratio": Formula(2, "(a - b) / (a + b) of two band fluxes or rates"),
    "abs_galactic_latitude": Formula(2, "|b| in degrees from (ra, dec) in degrees, ICRS (astropy)"),
}

TRANSFORMS: dict[str, Transform] = {
    "ln_offset": Transform("natural log after adding one tenth of the smallest non-zero training value, "
                           "ln(x + x*_min / 10) (Perez-Diaz et al. 2024, Eq. 2)", fitted=True),
    "log10": Transform("base-10 log; a non-positive value becomes missing (Tranin et al. 2022)", fitted=False),
    "minmax": Transform("min-max scaling of the training range to [0, 1], after any log "
                        "(Perez-Diaz et al. 2024, Eq. 1)", fitted=True),
}

# the order in which transforms apply; a feature lists its transforms in this order
TRANSFORM_ORDER: tuple[str, ...] = ("ln_offset", "log10", "minmax")

METHODS: dict[str, Method] = {
    "cluster_then_label": Method(
        meaning="Gaussian-mixture clusters, SIMBAD reference labels, cluster-wise Mahalanobis distances "
                "(Perez-Diaz et al. 2024)",
        columns=("detection", "ra", "dec", "label"),
        transforms=("ln_offset", "minmax"),
        class_keys=("order", "uninformative", "aggregation", "labels"),
        categories=False),
    "naive_bayes": Method(
        meaning="naive Bayes with per-class KDE likelihoods in weighted categories (Tranin et al. 2022, Eq. 1)",
        columns=(),
        transforms=("log10",),
        class_keys=("order", "labels", "labels_from", "priors", "target"),
        categories=True),
}
