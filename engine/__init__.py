"""xsift: classify the sources of large X-ray catalogues (CSC, 4XMM, 2SXPS, eRASS) into physical classes.

Two published methods in one engine:

* :class:`ClusterThenLabel` — Pérez-Díaz et al. (2024, MNRAS, arXiv:2401.12203): a full-covariance
  Gaussian mixture on per-detection X-ray features, SIMBAD reference labels, cluster-wise Mahalanobis
  distances and softmin class probabilities, master classes per source by voting;
* :class:`NaiveBayesKDE` — Tranin, Webb & Godet (2022, A&A 657, A138): per-class KDE likelihoods of
  each property in weighted categories, priors, an outlier measure and probability tracks.

and :class:`GaussianMixture`, a JAX drop-in for ``sklearn.mixture.GaussianMixture(covariance_type="full")``.

Importing xsift changes no global state (JAX's 64-bit mode, matplotlib's backend, the allocator) and
loads its heavy modules only when a name is first used.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it (imported on first use)
_LAZY = {
    "GaussianMixture": "xsift.methods.mixture",
    "ClusterThenLabel": "xsift.methods.cluster_then_label",
    "NaiveBayesKDE": "xsift.methods.naive_bayes",
    "Classification": "xsift.methods.base",
    "Classifier": "xsift.methods.base",
    "load_model": "xsift.methods.persistence",
    "load_preset": "xsift.config",
    "read_catalog": "xsift.data.io",
    "write_table": "xsift.data.io",
    "simulate_catalog": "xsift.simulate",
    "XsiftError": "xsift.errors",
    "SchemaError": "xsift.errors",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'xsift' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
