"""The naive-Bayes view of a preset (Tranin et al. 2022, Eq. 1): classes, label map, priors, target,
properties (the preset's features) and weighted categories as the classifier uses them.

:class:`NBSpec` holds nothing the :class:`~xsift.config.Preset` does not: it is built from it by
:func:`spec_from_preset` and keeps it as ``spec.preset`` (store ``spec.preset.to_dict()`` with a
model; ``spec_from_preset(Preset.from_dict(stored))`` gives the same spec back).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xsift.config.preset import Preset, _load
from xsift.errors import XsiftError

DEFAULT_PRESET = "nb_csc"


@dataclass(frozen=True)
class NBSpec:
    """What a naive-Bayes preset declares, in the classifier's terms.

    classes: the K classes in output order; labels: catalogue label -> class; priors: ``"training"``
    or K numbers normalised to sum 1; target: the class whose F1 weight tuning maximises;
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
