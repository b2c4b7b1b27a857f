"""Typed, frozen presets: one grammar for both classification methods, validated once at load.

A preset is a TOML file (the built-in ones are in ``engine/config/presets/``) naming a method,
the catalogue's identity columns, the features (each a formula of catalogue columns followed
by transforms), the classes and, for the naive-Bayes method, the categories that group
features with a weight. Grammar::

    name = "csc"                       # optional; default: the file's stem
    method = "cluster_then_label"      # or "naive_bayes"

    [columns]                          # roles -> catalogue column names
    source = "name"                    # always; cluster_then_label also needs detection, ra, dec, label
    label = "main_type"                # reference class label of a row (SIMBAD-like type, literature class)

    [features]                         # in model order
    bb_kt = { formula = "column", columns = ["bb_kt"], transform = ["ln_offset", "minmax"], error = ["bb_kt_lolim", "bb_kt_hilim"] }
    #         error (optional): [1-sigma column] or [lolim, hilim] bounds
    var_ratio_b = { formula = "ratio", columns = ["var_sigma_b", "var_mean_b"], transform = ["log10"] }

    [classes]
    order = [...]                      # the classes, in output order
    # cluster_then_label: uninformative = [...], [classes.aggregation] group = [classes],
    #              optionally [classes.labels] class = [catalogue labels] (default: its own name)
    # naive_bayes: [classes.labels] class = [catalogue labels] (or labels_from = "PRESET": the
    #              aggregation of another preset), priors = "training" | [numbers], target = "CLASS" (or an
    #              aggregated class of [classes.aggregation]: its members' F1 pooled)

    [categories.NAME]                  # naive_bayes only
    weight = 1.0
    features = [...]

    [naive_bayes]                      # naive_bayes only, optional: how the method runs (defaults: Eq. 1)
    missing_likelihood = true          # keys and defaults: xsift.config.naive_bayes.NB_OPTION_DEFAULTS
    [naive_bayes.prior_shapes]         # property = { CLASS = { shape = "isotropic"|"uniform", fraction = F } }
    abs_b = { XRB = { shape = "isotropic", fraction = 0.5 } }

    [aliases]                          # optional: a column the preset names -> other names it has
    SC_HR1 = ["HR1"]                   # in some tables (also matched in any letter case)

A catalogue with one row per source (a source-level table) names its source column as the
``detection`` role too (``detection = source``): each source is then its own one detection.

Formulas and transforms are those of :mod:`xsift.config.formulas`. Anything else — an unknown
key, a value of the wrong type, a category naming an unknown feature, a training class missing
from the aggregation — is an :class:`~xsift.errors.XsiftError` naming the file and the key.

:func:`load_preset` accepts a built-in name (``"csc"``), a path to a TOML file, a dict in the
grammar (``Preset.to_dict()``) or a :class:`Preset` (returned as it is); every xsift function
that takes a preset accepts any of these.
"""
from __future__ import annotations

import os
import pathlib
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from xsift.config.formulas import FORMULAS, METHODS, TRANSFORM_ORDER, TRANSFORMS
from xsift.errors import XsiftError

PRESET_DIR = pathlib.Path(__file__).resolve().parent / "presets"

_TOP_KEYS = ("name", "method", "columns", "features", "classes", "categories", "aliases", "naive_bayes")
_COLUMN_ROLES = ("source", "detection", "ra", "dec", "label", "interval")
_FEATURE_KEYS = ("formula", "columns", "transform", "error")
_CLASS_KEYS = ("order", "uninformative", "aggregation", "labels", "labels_from", "priors", "target")
_CATEGORY_KEYS = ("weight", "features")


class FrozenDict(Mapping):
    """A read-only, hashable, picklable mapping (the tables of a frozen preset)."""

    __slots__ = ("_data",)

    def __init__(self, data=()):
        object.__setattr__(self, "_data", dict(data))

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self) -> Iterator:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(tuple(self._data.items()))

    def __repr__(self) -> str:
        return f"FrozenDict({self._data!r})"

    def __reduce__(self):
        return (FrozenDict, (self._data,))


# ----------------------------------------------------------------------------- the typed preset

@dataclass(frozen=True)
class Columns:
    """Catalogue column names of the identity roles (None: not used by this preset)."""
    source: str                         # one source (many detections share it)
    detection: str | None = None        # with ``source``, identifies one detection (a row)
    ra: str | None = None               # right ascension, degrees, ICRS
    dec: str | None = None              # declination, degrees, ICRS
    label: str | None = None            # reference class label of a row (may be null)
    interval: str | None = None         # optional third part of the detection key, used when the table has
                                        # it: CSC's ``obi`` (observation interval; one ObsID may hold several)

    def to_dict(self) -> dict:
        return {role: getattr(self, role) for role in _COLUMN_ROLES if getattr(self, role) is not None}


@dataclass(frozen=True)
class Feature:
    """One feature (the naive-Bayes paper's "property"): ``formula`` of ``columns``, then ``transform``
    steps in :data:`~xsift.config.formulas.TRANSFORM_ORDER`.

    ``error`` names how the measurement uncertainty of the feature's value (before the transform) is
    read: ``()`` none; ``(column,)`` a symmetric 1-sigma error column; ``(lolim, hilim)`` the lower and
    upper confidence bounds (CSC's ``_lolim``/``_hilim``), sigma = (hilim - lolim) / 2. The error
    columns give the uncertainty of the formula's value itself (for a ``column`` feature, of that
    column). :func:`xsift.data.features.feature_errors` reads them."""
    name: str
    formula: str
    columns: tuple[str, ...]
    transform: tuple[str, ...] = ()
    error: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d = {"formula": self.formula, "columns": list(self.columns), "transform": list(self.transform)}
        if self.error:  # omitted when empty, so presets without errors keep their stored form and hashes
            d["error"] = list(self.error)
        return d


@dataclass(frozen=True)
class Category:
    """Naive-Bayes category: features whose likelihoods multiply, with weight ``alpha_t`` (Tranin et al., Eq. 1)."""
    name: str
    weight: float
    features: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"weight": self.weight, "features": list(self.features)}


@dataclass(frozen=True)
class Classes:
    """The classes, in output order, and how catalogue labels map to them.

    ``labels``: class -> the catalogue labels that mean it (cluster-then-label: each class is its
    own label); ``uninformative``: labels that count as unlabelled (cluster-then-label);
    ``aggregation``: aggregated class -> its classes (cluster-then-label's master-class vote);
    ``priors``: ``"training"`` (the training sample's proportions) or one number per class, as
    written (naive Bayes; None for cluster-then-label); ``target``: the class, or aggregated class
    (F1 of its members pooled), whose F1 weight tuning maximises (naive Bayes).
    """
    order: tuple[str, ...]
    labels: FrozenDict
    uninformative: tuple[str, ...] = ()
    aggregation: FrozenDict = field(default_factory=FrozenDict)
    priors: str | tuple[float, ...] | None = None
    target: str | None = None

    @property
    def label_to_class(self) -> dict[str, str]:
        """catalogue label -> class."""
        return {lab: cls for cls, labs in self.labels.items() for lab in labs}

    @property
    def aggregated_class_of(self) -> dict[str, str]:
        """class -> aggregated class (a class in no group keeps its own name)."""
        out = {c: c for c in self.order}
        out.update({c: group for group, members in self.aggregation.items() for c in members})
        return out


@dataclass(frozen=True)
class Preset:
    """A validated preset (see the module docstring for the grammar).

    ``source`` is where it was read from (a file, ``model.json`` ...), used in messages only: it
    is neither compared nor written by :meth:`to_dict`.
    """
    name: str
    method: str
    columns: Columns
    features: tuple[Feature, ...]
    classes: Classes
    categories: tuple[Category, ...] = ()
    aliases: FrozenDict = field(default_factory=FrozenDict)    # column -> other names it may have
    source: str = field(default="", compare=False)
    # [naive_bayes] options (xsift.config.naive_bayes.NB_OPTION_DEFAULTS), only those the preset sets
    naive_bayes: FrozenDict = field(default_factory=FrozenDict)

    # -- features
    @property
    def feature_names(self) -> list[str]:
        """The features, in model order."""
        return [f.name for f in self.features]

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise XsiftError(f"{self.source or self.name}: no feature {name!r}; features: {self.feature_names}")

    @property
    def feature_columns(self) -> list[str]:
        """The catalogue columns the features are made from, in first-use order."""
        return list(dict.fromkeys(c for f in self.features for c in f.columns))

    @property
    def error_columns(self) -> list[str]:
        """The catalogue columns the features' measurement errors are read from, in first-use order."""
        return list(dict.fromkeys(c for f in self.features for c in f.error))

    @property
    def input_columns(self) -> list[str]:
        """Every catalogue column the preset names: the [columns] roles (but the optional ``interval``),
        then the feature columns."""
        roles = {r: c for r, c in self.columns.to_dict().items() if r != "interval"}
        return list(dict.fromkeys(list(roles.values()) + self.feature_columns))

    def features_with(self, transform: str) -> list[str]:
        """The features whose transform includes ``transform`` (e.g. ``"minmax"``), in model order."""
        return [f.name for f in self.features if transform in f.transform]

    # -- round trip
    def to_dict(self) -> dict:
        """Plain JSON-ready data in the TOML grammar; :meth:`from_dict` gives back an equal preset."""
        c = self.classes
        classes: dict = {"order": list(c.order)}
        if self.method == "cluster_then_label":
            classes["uninformative"] = list(c.uninformative)
            classes["aggregation"] = {g: list(m) for g, m in c.aggregation.items()}
        else:
            classes["labels"] = {k: list(v) for k, v in c.labels.items()}
            classes["priors"] = c.priors if isinstance(c.priors, str) else list(c.priors)
            classes["target"] = c.target
            if c.aggregation:   # omitted when absent, so presets without it keep their stored form and hashes
                classes["aggregation"] = {g: list(m) for g, m in c.aggregation.items()}
        out = {"name": self.name, "method": self.method, "columns": self.columns.to_dict(),
               "features": {f.name: f.to_dict() for f in self.features}, "classes": classes}
        if self.categories:
            out["categories"] = {cat.name: cat.to_dict() for cat in self.categories}
        if self.method == "cluster_then_label" and any(v != (k,) for k, v in c.labels.items()):
            classes["labels"] = {k: list(v) for k, v in c.labels.items()}
        if self.aliases:
            out["aliases"] = {k: list(v) for k, v in self.aliases.items()}
        if self.naive_bayes:   # omitted when absent, so presets without it keep their stored form and hashes
            out["naive_bayes"] = _plain(self.naive_bayes)
        return out

    @classmethod
    def from_dict(cls, data: Mapping, *, source: str = "preset dict") -> "Preset":
        """Validate ``data`` (the TOML grammar, e.g. a model's stored preset); ``source`` names it in errors."""
        return _parse(data, source, default_name=None, loading=())


# ----------------------------------------------------------------------------- loading

def builtin_presets() -> list[str]:
    """Names of the presets shipped in ``engine/config/presets/``."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_preset(preset: "str | os.PathLike | Mapping | Preset" = "csc") -> Preset:
    """The preset ``preset`` names: a :class:`Preset` (returned as it is), a built-in name (``"csc"``,
    ``"nb_csc"``, ``"nb_muwclass"``, ``"nb_xmm"``), a path to a TOML file, or a dict in the grammar.

    Raises :class:`XsiftError` naming the file and the key for anything the grammar does not allow.
    """
    return _load(preset, loading=())


def _load(preset, loading: tuple[str, ...]) -> Preset:
    if isinstance(preset, Preset):
        return preset
    if isinstance(preset, Mapping):
        return _parse(preset, "preset dict", default_name=None, loading=loading)
    if not isinstance(preset, (str, os.PathLike)):
        raise XsiftError(f"a preset is a built-in name, a TOML file or a Preset; got {type(preset).__name__}")
    path = pathlib.Path(preset)
    if not path.suffix and not path.exists():
        path = PRESET_DIR / f"{preset}.toml"
    if not path.is_file():
        raise XsiftError(f"{preset}: no such preset file; built-in presets: {', '.join(builtin_presets())}")
    key = str(path.resolve())
    if key in loading:
        raise XsiftError(f"{path}: [classes] labels_from refers back to this preset "
                         f"({' -> '.join(loading + (key,))})")
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise XsiftError(f"{path}: not valid TOML ({exc})") from None
    return _parse(data, str(path), default_name=path.stem, loading=loading + (key,))


# ----------------------------------------------------------------------------- validation

def _fail(source: str, key: str, problem: str):
    raise XsiftError(f"{source}: {key}: {problem}")


def _table(source: str, key: str, value) -> Mapping:
    if not isinstance(value, Mapping):
        _fail(source, key, f"expected a table, got {type(value).__name__} {value!r}")
    return value


def _known_keys(source: str, key: str, table: Mapping, allowed) -> None:
    unknown = [k for k in table if k not in allowed]
    if unknown:
        _fail(source, f"{key} {unknown[0]}" if key else unknown[0],
              f"unknown key; expected one of {', '.join(allowed)}")


def _string(source: str, key: str, value) -> str:
    if not isinstance(value, str) or not value:
        _fail(source, key, f"expected a non-empty string, got {value!r}")
    return value


def _strings(source: str, key: str, value, *, empty: bool = True) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        _fail(source, key, f"expected a list of strings, got {value!r}")
    if not empty and not value:
        _fail(source, key, "expected at least one name")
    dup = [v for i, v in enumerate(value) if v in value[:i]]
    if dup:
        _fail(source, key, f"{dup[0]!r} is listed twice")
    return tuple(value)


def _number(source: str, key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(source, key, f"expected a number, got {value!r}")
    return float(value)


def _groups(source: str, key: str, value) -> dict[str, tuple[str, ...]]:
    table = _table(source, key, value)
    return {str(g): _strings(source, f"{key}.{g}", members, empty=False) for g, members in table.items()}


def _parse(data: Mapping, source: str, *, default_name: str | None, loading: tuple[str, ...]) -> Preset:
    data = _table(source, "preset", data)
    _known_keys(source, "", data, _TOP_KEYS)
    name = _string(source, "name", data["name"]) if "name" in data else default_name
    if name is None:
        _fail(source, "name", "missing; expected the preset's name")
    if "method" not in data:
        _fail(source, "method", f"missing; expected one of {', '.join(METHODS)}")
    method_name = data["method"]
    if method_name not in METHODS:
        _fail(source, "method", f"unknown method {method_name!r}; expected one of {', '.join(METHODS)}")
    method = METHODS[method_name]

    # [columns]
    cols = _table(source, "[columns]", data.get("columns", {}))
    _known_keys(source, "[columns]", cols, _COLUMN_ROLES)
    for role in ("source",) + method.columns:
        if role not in cols:
            _fail(source, f"[columns] {role}", f"missing; the {method_name} method needs the {role} column")
    columns = Columns(**{role: _string(source, f"[columns] {role}", v) for role, v in cols.items()})
    named = [v for role, v in columns.to_dict().items() if not (role == "detection" and v == columns.source)]
    if len(set(named)) != len(named):
        _fail(source, "[columns]", f"two roles name the same column: {columns.to_dict()}")

    # [features]
    feats = _table(source, "[features]", data.get("features", {}))
    if not feats:
        _fail(source, "[features]", "missing or empty; expected at least one feature")
    features = []
    for fname, spec in feats.items():
        key = f"[features.{fname}]"
        spec = _table(source, key, spec)
        _known_keys(source, key, spec, _FEATURE_KEYS)
        formula = _string(source, f"{key} formula", spec.get("formula", "column"))
        if formula not in FORMULAS:
            _fail(source, f"{key} formula", f"unknown formula {formula!r}; known: {', '.join(FORMULAS)}")
        if "columns" in spec:
            fcols = _strings(source, f"{key} columns", spec["columns"], empty=False)
        elif formula == "column":
            fcols = (fname,)
        else:
            _fail(source, f"{key} columns", f"missing; formula {formula!r} needs {FORMULAS[formula].arity} columns")
        if not FORMULAS[formula].accepts(len(fcols)):
            _fail(source, f"{key} columns", f"formula {formula!r} takes {FORMULAS[formula].arity_text} column(s), "
                                            f"got {list(fcols)}")
        steps = _strings(source, f"{key} transform", spec.get("transform", []))
        for step in steps:
            if step not in TRANSFORMS:
                _fail(source, f"{key} transform", f"unknown transform {step!r}; known: {', '.join(TRANSFORMS)}")
            if step not in method.transforms:
                _fail(source, f"{key} transform", f"{step!r} is not a transform of the {method_name} method; "
                                                  f"it has {', '.join(method.transforms)}")
        if list(steps) != sorted(steps, key=TRANSFORM_ORDER.index):
            _fail(source, f"{key} transform", f"{list(steps)}: transforms apply in the order "
                                              f"{', '.join(TRANSFORM_ORDER)}")
        if "ln_offset" in steps and "log10" in steps:
            _fail(source, f"{key} transform", "ln_offset and log10 are two logs; choose one")
        error = _strings(source, f"{key} error", spec.get("error", []))
        if len(error) not in (0, 1, 2):
            _fail(source, f"{key} error", f"expected [] (no error), [column] (symmetric 1-sigma error) or "
                                          f"[lolim, hilim] (confidence bounds), got {list(error)}")
        features.append(Feature(str(fname), formula, fcols, steps, error))
    feature_names = [f.name for f in features]

    # [classes]
    cls = _table(source, "[classes]", data.get("classes", {}))
    _known_keys(source, "[classes]", cls, _CLASS_KEYS)
    for k in cls:
        if k not in method.class_keys:
            _fail(source, f"[classes] {k}", f"not used by the {method_name} method; its keys: "
                                            f"{', '.join(method.class_keys)}")
    if method_name == "cluster_then_label":
        classes = _ctl_classes(source, cls)
    else:
        classes = _nb_classes(source, cls, loading)

    # [categories]
    categories = []
    if "categories" in data and not method.categories:
        _fail(source, "[categories]", f"not used by the {method_name} method")
    if method.categories:
        cats = _table(source, "[categories]", data.get("categories", {}))
        if not cats:
            _fail(source, "[categories]", "missing; expected at least one [categories.NAME] table")
        seen: dict[str, str] = {}
        for cname, spec in cats.items():
            key = f"[categories.{cname}]"
            spec = _table(source, key, spec)
            _known_keys(source, key, spec, _CATEGORY_KEYS)
            weight = _number(source, f"{key} weight", spec.get("weight", 1.0))
            if not weight >= 0:
                _fail(source, f"{key} weight", f"expected a weight >= 0, got {weight}")
            if "features" not in spec:
                _fail(source, f"{key} features", "missing; expected the category's features")
            members = _strings(source, f"{key} features", spec["features"], empty=False)
            for m in members:
                if m not in feature_names:
                    _fail(source, f"{key} features", f"unknown feature {m!r}; [features] declares "
                                                     f"{', '.join(feature_names)}")
                if m in seen:
                    _fail(source, f"{key} features", f"{m!r} is already in category {seen[m]!r}")
                seen[m] = str(cname)
            categories.append(Category(str(cname), weight, members))
        unused = [f for f in feature_names if f not in seen]
        if unused:
            _fail(source, f"[features.{unused[0]}]", "in no category; list it in one [categories.NAME] "
                                                     "features or remove it")
    # [aliases]
    aliases = _groups(source, "[aliases]", data.get("aliases", {}))
    named_columns = list(columns.to_dict().values()) + [c for f in features for c in f.columns]
    for col, names in aliases.items():
        if col not in named_columns:
            _fail(source, f"[aliases] {col}", f"{col!r} is not a column this preset names "
                                              f"({', '.join(dict.fromkeys(named_columns))})")
    # [naive_bayes] options
    nb_options = {}
    if "naive_bayes" in data:
        if method_name != "naive_bayes":
            _fail(source, "[naive_bayes]", f"not used by the {method_name} method")
        from xsift.config.naive_bayes import parse_nb_options
        nb_options = parse_nb_options(source, data["naive_bayes"], feature_names, classes.order)
    return Preset(name=name, method=method_name, columns=columns, features=tuple(features), classes=classes,
                  categories=tuple(categories), aliases=FrozenDict(aliases), source=source,
                  naive_bayes=_frozen(nb_options))


def _frozen(value):
    """Nested dicts as nested FrozenDicts (hashable)."""
    return FrozenDict({k: _frozen(v) for k, v in value.items()}) if isinstance(value, Mapping) else value


def _plain(value):
    """Nested FrozenDicts back as plain dicts (JSON-ready)."""
    return {k: _plain(v) for k, v in value.items()} if isinstance(value, Mapping) else value


def _ctl_classes(source: str, cls: Mapping) -> Classes:
    for k in ("order", "aggregation"):
        if k not in cls:
            _fail(source, f"[classes] {k}", "missing; the cluster_then_label method needs it")
    order = _strings(source, "[classes] order", cls["order"], empty=False)
    uninformative = _strings(source, "[classes] uninformative", cls.get("uninformative", []))
    both = [u for u in uninformative if u in order]
    if both:
        _fail(source, "[classes] uninformative", f"{both[0]!r} is also a training class")
    aggregation = _groups(source, "[classes.aggregation]", cls["aggregation"])
    group_of: dict[str, str] = {}
    for group, members in aggregation.items():
        for m in members:
            if m not in order:
                _fail(source, f"[classes.aggregation] {group}", f"{m!r} is not a training class "
                                                                f"([classes] order: {', '.join(order)})")
            if m in group_of:
                _fail(source, f"[classes.aggregation] {group}", f"{m!r} is already in group {group_of[m]!r}")
            group_of[m] = group
    missing = [c for c in order if c not in group_of]
    if missing:
        _fail(source, "[classes.aggregation]", f"training class {missing[0]!r} is in no aggregated class")
    # catalogue labels of each class (a label column that is not SIMBAD's types, e.g. a literature
    # class): a class not listed is its own label
    given = _groups(source, "[classes.labels]", cls.get("labels", {}))
    labels = {c: given.get(c, (c,)) for c in order}
    class_of: dict[str, str] = {}
    for c in given:
        if c not in order:
            _fail(source, f"[classes.labels] {c}", f"{c!r} is not a training class ([classes] order: "
                                                   f"{', '.join(order)})")
    for c, labs in labels.items():
        for lab in labs:
            if lab in class_of:
                _fail(source, f"[classes.labels] {c}", f"label {lab!r} already means class {class_of[lab]!r}")
            if lab in uninformative:
                _fail(source, f"[classes.labels] {c}", f"label {lab!r} is also listed as uninformative")
            class_of[lab] = c
    return Classes(order=order, labels=FrozenDict(labels), uninformative=uninformative,
                   aggregation=FrozenDict(aggregation))


def _nb_classes(source: str, cls: Mapping, loading: tuple[str, ...]) -> Classes:
    if ("labels" in cls) == ("labels_from" in cls):
        _fail(source, "[classes.labels]", "expected either a [classes.labels] table (class = [labels]) "
                                          "or labels_from = \"PRESET\", not both or neither")
    if "labels_from" in cls:
        ref = _string(source, "[classes] labels_from", cls["labels_from"])
        try:
            other = _load(ref, loading)
        except XsiftError as exc:
            raise XsiftError(f"{source}: [classes] labels_from = {ref!r}: {exc}") from None
        if not other.classes.aggregation:
            _fail(source, "[classes] labels_from", f"preset {ref!r} has no [classes.aggregation] table")
        labels = {g: tuple(m) for g, m in other.classes.aggregation.items()}
    else:
        labels = _groups(source, "[classes.labels]", cls["labels"])
    order = _strings(source, "[classes] order", cls["order"], empty=False) if "order" in cls else tuple(labels)
    for c in labels:
        if c not in order:
            _fail(source, f"[classes.labels] {c}", f"class {c!r} is not in [classes] order {list(order)}")
    for c in order:
        if c not in labels:
            _fail(source, "[classes.labels]", f"class {c!r} of [classes] order has no labels")
    class_of: dict[str, str] = {}
    for c, labs in labels.items():
        for lab in labs:
            if lab in class_of:
                _fail(source, f"[classes.labels] {c}", f"label {lab!r} already means class {class_of[lab]!r}")
            class_of[lab] = c
    priors = cls.get("priors", "training")
    if isinstance(priors, str):
        if priors != "training":
            _fail(source, "[classes] priors", f"expected \"training\" or a list of numbers, got {priors!r}")
    else:
        if not isinstance(priors, (list, tuple)):
            _fail(source, "[classes] priors", f"expected \"training\" or a list of numbers, got {priors!r}")
        priors = tuple(_number(source, "[classes] priors", p) for p in priors)
        if len(priors) != len(order) or min(priors) <= 0:
            _fail(source, "[classes] priors", f"expected {len(order)} positive numbers (one per class of "
                                              f"{list(order)}), got {list(priors)}")
    target = _string(source, "[classes] target", cls["target"]) if "target" in cls else order[-1]
    # optional aggregated classes (group -> classes): reported beside the classes, probabilities summed;
    # a class in no group keeps its own name
    aggregation = _groups(source, "[classes.aggregation]", cls.get("aggregation", {}))
    group_of: dict[str, str] = {}
    for group, members in aggregation.items():
        for m in members:
            if m not in order or m in group_of:
                _fail(source, f"[classes.aggregation] {group}", f"{m!r} is not a class of [classes] order "
                                                                f"{list(order)} or is already in a group")
            group_of[m] = group
    if target not in order and target not in aggregation:   # a class, or an aggregated class (its F1 pooled)
        _fail(source, "[classes] target", f"{target!r} is not one of the classes {list(order)}"
                                          + (f" or aggregated classes {list(aggregation)}" if aggregation else ""))
    return Classes(order=order, labels=FrozenDict({c: labels[c] for c in order}), priors=priors, target=target,
                   aggregation=FrozenDict(aggregation))
