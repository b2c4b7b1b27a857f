"""The one interface both classifiers implement, and the result a classification returns.

:class:`Classifier` is what the rest of xsift may rely on about a fitted classifier — the command
line, the Dask layer (:mod:`xsift.distributed`, which loads a model directory, asks it for the columns
it reads, classifies each shard with :meth:`Classifier.classify_frame` and votes when
:attr:`Classifier.vote_aggregation` says so) and users. Both
:class:`xsift.ClusterThenLabel` (Pérez-Díaz et al. 2024) and :class:`xsift.NaiveBayesKDE`
(Tranin, Webb & Godet 2022) implement it; ``isinstance(model, Classifier)`` checks that an object
has every member (a :func:`typing.runtime_checkable` protocol checks names, not signatures; an
unfitted estimator has no ``classes_`` and no ``model_hash`` yet, so the check is one for a fitted
classifier).

:class:`Classification` is what :meth:`Classifier.classify` returns: the detection-level table and,
for a method that votes master classes per source (cluster-then-label), the uniquely classified and
ambiguous source tables, with the run's report.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd

from xsift.errors import XsiftError

__all__ = ["Classification", "Classifier", "NotFittedError"]


class NotFittedError(XsiftError, AttributeError):
    """A fitted member (``classes_``, ``model_hash``, ``predict`` ...) of an estimator not fitted yet.

    An AttributeError too, as scikit-learn's, so that ``hasattr`` and ``isinstance(model, Classifier)``
    answer False for an unfitted estimator instead of raising."""


@dataclass(frozen=True, eq=False)
class Classification:
    """The outcome of classifying one catalogue.

    detections: one row per classified detection (cluster-then-label: the unlabelled complete
        detections; naive Bayes: every input row) with one probability column per class, named as
        the class, and ``predicted_class``; the method's docstring lists the other columns.
    uniquely_classified: one row per source whose hard and soft votes agree (``master_class``,
        ``agg_master_class``, mean and std of each class's probability); None for a method without
        a vote (naive Bayes classifies sources directly).
    ambiguous: one row per source whose votes differ (``hard_master_class``, ``soft_master_class``);
        None without a vote.
    report: JSON-serialisable facts of the run, method-specific: ``report["classify"]`` (row counts,
        model hash, timings) and, with a vote, ``report["voting"]`` (the vote's summary).

    The tables are pandas DataFrames; the object is frozen (the tables themselves are not copied).
    """

    detections: pd.DataFrame
    uniquely_classified: pd.DataFrame | None = None
    ambiguous: pd.DataFrame | None = None
    report: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        for name in ("detections", "uniquely_classified", "ambiguous"):
            value = getattr(self, name)
            if value is None and name == "detections":
                raise TypeError("Classification.detections is required (a pandas DataFrame)")
            if value is not None and not isinstance(value, pd.DataFrame):
                raise TypeError(f"Classification.{name} must be a pandas DataFrame or None, "
                                f"not {type(value).__name__}")
        if (self.uniquely_classified is None) != (self.ambiguous is None):
            raise TypeError("Classification: uniquely_classified and ambiguous are given together (a vote) "
                            "or both None (no vote)")

    @property
    def voted(self) -> bool:
        """True when the sources were given master classes (uniquely classified and ambiguous tables)."""
        return self.uniquely_classified is not None

    @property
    def counts(self) -> dict[str, int]:
        """Rows of each table: ``detections`` and, with a vote, ``uniquely_classified``, ``ambiguous``, ``sources``."""
        out = {"detections": int(len(self.detections))}
        if self.voted:
            out["uniquely_classified"] = int(len(self.uniquely_classified))
            out["ambiguous"] = int(len(self.ambiguous))
            out["sources"] = out["uniquely_classified"] + out["ambiguous"]
        return out

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables by their output names: ``detection_level`` and, with a vote, ``uniquely_classified``,
        ``ambiguous`` (the file stems the command line writes)."""
        out = {"detection_level": self.detections}
        if self.voted:
            out["uniquely_classified"] = self.uniquely_classified
            out["ambiguous"] = self.ambiguous
        return out

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v:,}" for k, v in self.counts.items())
        return f"Classification({counts})"


@runtime_checkable
class Classifier(Protocol):
    """A fitted xsift classifier: what the command line, the Dask layer and users rely on.

    Members (``table`` is a pandas DataFrame, an astropy ``Table``, a NumPy structured array or a dict
    of columns; see :func:`xsift.methods.estimator.as_frame`):

    kind: the model kind of :mod:`xsift.methods.persistence` (``"cluster_then_label"``, ``"naive_bayes"``).
    classes_: the L class names, in the order of the probability columns.
    fit(table, y=None): fit on a table; returns self.
    predict_proba(table): (n, L) float64 class probabilities, one row per input row.
    predict(table): (n,) class names, one per input row.
    classify(table): the whole classification of a catalogue as a :class:`Classification`.
    classify_frame(df, source): (detection table, report dict) of one DataFrame (one shard); ``source``
        names the input in errors. The Dask layer calls this per shard; the tables of all shards
        concatenated are the detection table of the whole catalogue.
    wanted_columns(): the catalogue columns classifying reads (the Dask layer reads only these).
    vote_aggregation: class -> aggregated class grouping used by a master-class vote per source, or
        None when the method gives one row per source already (no vote).
    save(directory): write ``model.npz`` + ``model.json`` (:func:`xsift.methods.persistence.save_model`);
        returns the content hash.
    model_hash: the content hash of the fitted model (the identity of a classification run); raises
        AttributeError on an unfitted estimator.
    """

    kind: str
    classes_: Sequence[str]

    def fit(self, table, y=None) -> "Classifier": ...

    def predict_proba(self, table) -> np.ndarray: ...

    def predict(self, table) -> np.ndarray: ...

    def classify(self, table) -> Classification: ...

    def classify_frame(self, df: pd.DataFrame, source: str = "catalogue") -> tuple[pd.DataFrame, dict]: ...

    def wanted_columns(self) -> list[str]: ...

    @property
    def vote_aggregation(self) -> Mapping[str, Sequence[str]] | None: ...

    def save(self, directory: str | os.PathLike) -> str: ...

    @property
    def model_hash(self) -> str: ...
