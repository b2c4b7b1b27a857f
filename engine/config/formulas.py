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
    """A formula of a feature: ``arity`` catalogue columns in (``arity`` or more when ``variadic``), one
    value per row out."""
    arity: int
    meaning: str
    variadic: bool = False

    def accepts(self, n_columns: int) -> bool:
        """Whether the formula takes ``n_columns`` columns."""
        return n_columns >= self.arity if self.variadic else n_columns == self.arity

    @property
    def arity_text(self) -> str:
        return f"{self.arity} or more" if self.variadic else str(self.arity)


# Photometric zero points of the magnitude -> band-flux conversions (xsift.data.features.band_flux):
# band -> (F_lambda of magnitude 0 [erg s^-1 cm^-2 A^-1], effective width Delta lambda [A], reference).
# The band flux is F = F_lambda,0 10^(-0.4 m) Delta lambda [erg cm^-2 s^-1], an energy flux integrated over
# the band as the X-ray band fluxes are (nu F_nu at the pivot wavelength differs by the constant
# lambda_pivot / Delta lambda per band, which shifts log ratios identically for every class).
PHOTOMETRIC_BANDS: dict[str, tuple[float, float, str]] = {
    "gaia_g": (2.50e-9, 4052.97, "Gaia DR3 G, Vega system: Riello et al. 2021 (A&A 649, A3) passband; zero point "
                                 "3228.75 Jy at the pivot wavelength 6217.6 A, effective width 4053 A "
                                 "(SVO Filter Profile Service, GAIA3/Gaia.G)"),
    "2mass_j": (3.129e-10, 1620.0, "2MASS J: Cohen, Wheaton & Megeath 2003 (AJ 126, 1090), Table 2: "
                                   "3.129e-13 W cm^-2 um^-1 at 1.235 um, bandwidth 0.162 um"),
    "wise_w1": (8.1787e-12, 6626.0, "WISE W1: Jarrett et al. 2011 (ApJ 735, 112), Table 1: "
                                    "8.1787e-15 W cm^-2 um^-1 at 3.3526 um, width 0.6626 um"),
}


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
    "difference": Formula(2, "a - b (e.g. a colour from two magnitudes)"),
    "log_xray_over_gaia_g": Formula(2, "log10(F_X / F_G): F_X the sum of the X-ray flux columns (erg/cm^2/s), "
                                       "F_G the Gaia G band flux of the last column (magnitude; "
                                       "PHOTOMETRIC_BANDS)", variadic=True),
    "log_xray_over_2mass_j": Formula(2, "log10(F_X / F_J): X-ray flux columns summed, 2MASS J magnitude last",
                                     variadic=True),
    "log_xray_over_wise_w1": Formula(2, "log10(F_X / F_W1): X-ray flux columns summed, WISE W1 magnitude last",
                                     variadic=True),
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
        class_keys=("order", "labels", "labels_from", "priors", "target", "aggregation"),
        categories=True),
}
