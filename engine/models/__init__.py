"""Ready-to-use models shipped with xsift, each a folder ``NAME/`` holding ``model.npz`` + ``model.json``
(:mod:`xsift.methods.persistence`); its ``info`` gives its provenance (data source, preset, options, date).

* ``csc-mw``: the naive-Bayes classifier (:class:`xsift.methods.naive_bayes.NaiveBayesKDE`) with the
  ``nb_csc_mw`` preset (X-ray and Gaia / 2MASS / WISE properties, the eight MUWCLASS classes),
  trained on the full MUWCLASS 2023 training set of 3,126 CSC sources (Yang et al. 2022; untuned: tuning
  the weights for one rare class did not carry to held-out sources, benchmarks/nbayes_real.py); rebuilt
  by ``scripts/build_csc_mw_model.py``. Use: ``xsift nb classify TABLE --model csc-mw``, or in Python
  ``xsift.load_model("csc-mw")``.
"""
from __future__ import annotations

import os
import pathlib

MODELS_DIR = pathlib.Path(__file__).resolve().parent


def shipped_models() -> list[str]:
    """Names of the models shipped in this folder (those with a ``model.json``)."""
    return sorted(p.parent.name for p in MODELS_DIR.glob("*/model.json"))


def resolve_model(name_or_path: str | os.PathLike) -> pathlib.Path:
    """The model directory ``name_or_path`` names: an existing directory as it is, else a shipped
    model's name (``csc-mw``) as its folder here; anything else is returned unchanged (the model reader
    then says it is not there)."""
    path = pathlib.Path(name_or_path)
    if path.is_dir():
        return path
    shipped = MODELS_DIR / str(name_or_path)
    if str(name_or_path) in shipped_models():
        return shipped
    return path
