"""The naive-Bayes view of a preset (Tranin et al. 2022, Eq. 1): classes, label map, priors, target,
properties (the preset's features) and weighted categories as the classifier uses them.

:class:`NBSpec` holds nothing the :class:`~xsift.config.Preset` does not: it is built from it by
:func:`spec_from_preset` and keeps it as ``spec.preset`` (store ``spec.preset.to_dict()`` with a
model; ``spec_from_preset(Preset.from_dict(stored))`` gives the same spec back).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from xsift.config.preset import Preset, _load
from xsift.errors import XsiftError

DEFAULT_PRESET = "nb_csc"


@dataclass(frozen=True)
class NBSpec:
    """What a naive-Bayes preset declares, in the classifier's terms.

    classes: the K classes in output order; labels: catalogue label -> class; priors: ``"training"``
    or K numbers normalised to sum 1; target: the class (or aggregated class)
    whose F1 weight tuning maximises;
    properties: name -> ``{"formula", "columns", "transform"}`` (JSON-ready, model order);
    categories: name -> ``{"weight", "properties"}``; source_column / label_column: the
    preset's ``source`` and ``label`` columns (label may be None).
    """
    preset: Preset
    classes: list[str]
    labels: dict[str, str]
    priors: object
    target: str
    properties: dict[str, dict]
    categories: dict[str, dict]
    source_column: str | None = None
    label_column: str | None = None

    @property
    def property_names(self) -> list[str]:
        return list(self.properties)

    @property
    def category_names(self) -> list[str]:
        return list(self.categories)

    @property
    def weights(self) -> np.ndarray:
        """(T,) category weights alpha_t, in category order."""
        return np.array([float(c["weight"]) for c in self.categories.values()])

    def membership(self) -> np.ndarray:
        """(T, P) 0/1 matrix: property p belongs to category t."""
        props = self.property_names
        m = np.zeros((len(self.categories), len(props)))
        for t, cat in enumerate(self.categories.values()):
            for p in cat["properties"]:
                m[t, props.index(p)] = 1.0
        return m

    @property
    def options(self) -> dict:
        """The preset's ``[naive_bayes]`` options over :data:`NB_OPTION_DEFAULTS` (every option named)."""
        from xsift.config.preset import _plain
        return {**NB_OPTION_DEFAULTS, **_plain(self.preset.naive_bayes)}

    def input_columns(self) -> list[str]:
        """The catalogue columns the properties are made from, in first-use order."""
        return self.preset.feature_columns


def spec_from_preset(preset) -> NBSpec:
    """The :class:`NBSpec` of a naive-Bayes preset (a built-in name, a TOML path, a dict in the grammar
    or a :class:`Preset`). Raises :class:`XsiftError` if the preset is not a naive-Bayes preset."""
    preset = _load(preset, loading=())
    if preset.method != "naive_bayes":
        raise XsiftError(f"{preset.source or preset.name}: method: {preset.method!r}; the naive-Bayes "
                         "classifier needs a preset with method = \"naive_bayes\" (e.g. nb_csc, nb_muwclass)")
    c = preset.classes
    priors = c.priors
    if priors != "training":
        s = sum(priors)
        priors = [p / s for p in priors]
    return NBSpec(preset=preset, classes=list(c.order), labels=c.label_to_class, priors=priors, target=c.target,
                  properties={f.name: f.to_dict() for f in preset.features},
                  categories={cat.name: {"weight": cat.weight, "properties": list(cat.features)}
                              for cat in preset.categories},
                  source_column=preset.columns.source, label_column=preset.columns.label)


def load_nb_preset(name_or_path=None) -> NBSpec:
    """:func:`spec_from_preset` of ``name_or_path`` (default: the ``nb_csc`` preset)."""
    return spec_from_preset(name_or_path or DEFAULT_PRESET)


# ----------------------------------------------------------------------------- [naive_bayes] options
# How the method is run (Tranin et al. 2022 as their code CLAXBOI runs it, :mod:`xsift.methods.naive_bayes`).
# The defaults are Eq. 1 as xsift ran it before these options existed, so a preset without a
# [naive_bayes] table (or a model saved before) gives the same results.
NB_OPTION_DEFAULTS: dict = {
    "missing_likelihood": False,      # multiply by P(property present | C) / P(missing | C)**missing_alpha
    "missing_alpha": 1.0,             # alpha of the missing-value terms
    "missing_floor": 0.001,           # P(present | C) = (fraction present + floor) / (1 + 2 floor)
    "error_weights": False,           # property log-likelihood times (1/sigma) / category mean of 1/sigma
    "kernel": "gaussian",             # KDE kernel: "gaussian" | "exponential"
    "bandwidth": "scott",             # "scott" | "claxboi" (range / (5 n^(1/5))) | "cv" (held-out likelihood)
    "histogram_max_distinct": 0,      # a (property, class) with fewer distinct training values: a histogram
    "density_floor": 0.0,             # fraction of a uniform density over the property's range mixed in
    "normalisation": "eq1",           # exponent of Eq. 1: "eq1" (1 / sum alpha) | "claxboi" (CLAXBOI's code)
    "tune_sample": "training",        # F1 of tuning on "training" rows | a "priors"-proportioned subsample
    "alternative_classes": False,     # alt_class_without_<category> columns in the output table and tracks
    "prior_shapes": {},               # property -> class -> {"shape": "isotropic"|"uniform", "fraction": f}
}
NB_OPTION_CHOICES = {"kernel": ("gaussian", "exponential"), "bandwidth": ("scott", "claxboi", "cv"),
                     "normalisation": ("eq1", "claxboi"), "tune_sample": ("training", "priors")}
PRIOR_SHAPES = ("isotropic", "uniform")


def check_nb_option(name: str, value, *, where: str, features=None, classes=None):
    """The validated value of one naive-Bayes option (``NB_OPTION_DEFAULTS`` names them), or XsiftError
    naming ``where`` (a preset file's ``[naive_bayes] KEY`` or a constructor parameter) and what was
    expected. ``features``/``classes`` (the preset's) check ``prior_shapes`` against them.
    ``prior_shapes`` comes back as a plain nested dict ``{property: {class: {"shape", "fraction"}}}``."""
    def fail(expected):
        raise XsiftError(f"{where}: expected {expected}, got {value!r}")
    if name not in NB_OPTION_DEFAULTS:
        raise XsiftError(f"{where}: unknown naive-Bayes option {name!r}; options: {', '.join(NB_OPTION_DEFAULTS)}")
    if name in NB_OPTION_CHOICES:
        if value not in NB_OPTION_CHOICES[name]:
            fail("one of " + ", ".join(map(repr, NB_OPTION_CHOICES[name])))
        return str(value)
    if name in ("missing_likelihood", "error_weights", "alternative_classes"):
        if not isinstance(value, (bool, np.bool_)):
            fail("true or false")
        return bool(value)
    if name == "histogram_max_distinct":
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
            fail("an integer >= 0 (0: no histograms)")
        return int(value)
    if name in ("missing_alpha", "missing_floor", "density_floor"):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.floating, np.integer)):
            fail("a number")
        v = float(value)
        ok = {"missing_alpha": 0.0 <= v < np.inf, "missing_floor": 0.0 < v < 0.5, "density_floor": 0.0 <= v < 1.0}
        if not ok[name]:
            fail({"missing_alpha": "a number >= 0", "missing_floor": "a number in (0, 0.5)",
                  "density_floor": "a number in [0, 1)"}[name])
        return v
    # prior_shapes
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        fail("a table property = { CLASS = { shape = \"isotropic\", fraction = 0.5 } }")
    out: dict = {}
    for prop, per_class in value.items():
        if features is not None and prop not in features:
            raise XsiftError(f"{where} {prop}: unknown property; properties: {', '.join(features)}")
        if not isinstance(per_class, Mapping) or not per_class:
            raise XsiftError(f"{where} {prop}: expected {{ CLASS = {{ shape = ..., fraction = ... }} }}, "
                             f"got {per_class!r}")
        out[str(prop)] = {}
        for cls, spec in per_class.items():
            key = f"{where} {prop}.{cls}"
            if classes is not None and cls not in classes:
                raise XsiftError(f"{key}: unknown class; classes: {', '.join(classes)}")
            if not isinstance(spec, Mapping) or set(spec) - {"shape", "fraction"} or "shape" not in spec:
                raise XsiftError(f"{key}: expected {{ shape = \"isotropic\"|\"uniform\", fraction = F }}, got {spec!r}")
            if spec["shape"] not in PRIOR_SHAPES:
                raise XsiftError(f"{key} shape: expected one of {', '.join(map(repr, PRIOR_SHAPES))}, "
                                 f"got {spec['shape']!r}")
            frac = spec.get("fraction", 0.5)
            if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0.0 <= float(frac) <= 1.0:
                raise XsiftError(f"{key} fraction: expected a number in [0, 1], got {frac!r}")
            out[str(prop)][str(cls)] = {"shape": str(spec["shape"]), "fraction": float(frac)}
    return out


def parse_nb_options(source: str, table, features, classes) -> dict:
    """The ``[naive_bayes]`` table of a preset, validated: option -> value (only the keys given)."""
    if not isinstance(table, Mapping):
        raise XsiftError(f"{source}: [naive_bayes]: expected a table, got {table!r}")
    return {k: check_nb_option(k, v, where=f"{source}: [naive_bayes] {k}", features=features, classes=classes)
            for k, v in table.items()}
