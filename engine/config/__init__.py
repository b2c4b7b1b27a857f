"""Typed, frozen presets: one grammar for both methods, validated once at load (see :mod:`xsift.config.preset`).

``load_preset("csc")`` (or a TOML path, a dict in the grammar, or a :class:`Preset`) returns a
:class:`Preset`; :func:`spec_from_preset` gives the naive-Bayes view of one. The formulas,
transforms and methods a preset may name are in :mod:`xsift.config.formulas`.
"""
from xsift.config.formulas import FORMULAS, METHODS, TRANSFORM_ORDER, TRANSFORMS, Formula, Method, Transform
from xsift.config.naive_bayes import DEFAULT_PRESET as DEFAULT_NB_PRESET
from xsift.config.naive_bayes import NBSpec, load_nb_preset, spec_from_preset
from xsift.config.preset import (PRESET_DIR, Category, Classes, Columns, Feature, FrozenDict, Preset,
                                 builtin_presets, load_preset)

__all__ = ["FORMULAS", "METHODS", "TRANSFORMS", "TRANSFORM_ORDER", "Formula", "Method", "Transform",
           "DEFAULT_NB_PRESET", "NBSpec", "load_nb_preset", "spec_from_preset", "PRESET_DIR", "Category",
           "Classes", "Columns", "Feature", "FrozenDict", "Preset", "builtin_presets", "load_preset"]
