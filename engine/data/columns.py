"""What each output column means: its unit, a one-line description and its IVOA UCD.

:func:`xsift.data.io.write_table` looks every column up here and writes what it finds into the
formats that can hold it: FITS (``TUNITn``, plus ``TCOMMn``/``TUCDn`` cards and astropy's column
block, so astropy and TOPCAT both read the description and UCD back), VOTable (``FIELD`` ``unit``,
``ucd`` and ``DESCRIPTION``) and Parquet (each field's key-value metadata ``unit``,
``description``, ``ucd``). CSV carries values only; its ``manifest.json`` says where it came from.

One registry, keyed by column name:

* :data:`REGISTRY` — the columns xsift writes (identity, position, cluster, votes, outlier
  measure) and the catalogue columns it carries through (the CSC features of the ``csc`` preset and
  their raw inputs, fluxes, the 4XMM and eRASS1 columns of the survey presets). Looked up exactly,
  then case-insensitively (survey catalogues spell ``SC_HR1`` or ``sc_hr1``).
* :data:`PATTERNS` — families of columns (``p_cluster_<k>``, band fluxes and their errors,
  hardness ratios) recognised by a regular expression.
* Class columns, recognised from the model's classes (``classes=``): ``<class>`` is the probability
  of that class (dimensionless, ``stat.probability``), ``<class>_std`` its standard deviation over a
  source's detections (``stat.stdev``).

A column not found gets no metadata (its values are still written). UCDs are IVOA UCD1+ words
(https://www.ivoa.net/documents/UCD1+/); units are astropy unit strings in the FITS convention
(``erg cm-2 s-1``: astropy writes it as ``erg.s**-1.cm**-2`` in VOTable). An empty unit ``""``
declares a dimensionless quantity (a probability, a ratio, a hardness ratio); ``None`` means the
column is not a quantity (a name, a class, a count of things).

The table header (:func:`provenance`) records what made the table: the xsift version, the method,
the preset, the model's content hash and the input file(s).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

__all__ = ["ColumnInfo", "REGISTRY", "PATTERNS", "column_info", "describe_columns", "identity_columns",
           "provenance", "PROVENANCE_KEYWORDS"]


@dataclass(frozen=True)
class ColumnInfo:
    """Metadata of one column.

    unit: astropy unit string; ``""`` dimensionless; None not a physical quantity.
    description: one line, what the value is (a FITS ``TCOMMn`` card holds 68 characters; longer
        descriptions are continued with CONTINUE cards).
    ucd: IVOA UCD1+ string, or None where no word fits.
    """
    unit: str | None = None
    description: str = ""
    ucd: str | None = None


_NUM = ""   # dimensionless
_RATE = "ct s-1"
_FLUX = "erg cm-2 s-1"
_BANDS = {"b": "broad (0.5-7 keV)", "h": "hard (2-7 keV)", "m": "medium (1.2-2 keV)",
          "s": "soft (0.5-1.2 keV)", "u": "ultrasoft (0.2-0.4 keV)", "w": "HRC wide (0.1-10 keV)"}


def _csc_variability() -> dict[str, ColumnInfo]:
    out = {}
    for band, words in _BANDS.items():
        out[f"var_prob_{band}"] = ColumnInfo(_NUM, f"intra-observation variability probability (Gregory-Loredo), "
                                                   f"{words} band", "stat.probability;src.var")
        out[f"var_ratio_{band}"] = ColumnInfo(_NUM, f"var_sigma_{band} / var_mean_{band}: spread over mean of the "
                                                    f"light-curve count rate, {words} band", "src.var")
        out[f"var_sigma_{band}"] = ColumnInfo(_RATE, f"standard deviation of the light-curve count rate, {words} band",
                                              "stat.stdev;phot.count")
        out[f"var_mean_{band}"] = ColumnInfo(_RATE, f"mean light-curve count rate, {words} band",
                                             "phot.count;stat.mean")
        out[f"var_min_{band}"] = ColumnInfo(_RATE, f"minimum light-curve count rate, {words} band",
                                            "phot.count;stat.min")
        out[f"var_max_{band}"] = ColumnInfo(_RATE, f"maximum light-curve count rate, {words} band",
                                            "phot.count;stat.max")
        out[f"flux_significance_{band}"] = ColumnInfo(_NUM, f"flux significance (signal to noise), {words} band",
                                                      "stat.snr")
    return out


#: column name -> metadata (looked up exactly, then case-insensitively)
REGISTRY: dict[str, ColumnInfo] = {
    # identity and position
    "name": ColumnInfo(None, "source name (e.g. CSC 2CXO J..., 4XMM J...)", "meta.id;meta.main"),
    "obsid": ColumnInfo(None, "observation identifier (ObsID) of the detection", "meta.id"),
    "obi": ColumnInfo(None, "observation interval (OBI) of the detection within its ObsID", "meta.id"),
    "ra": ColumnInfo("deg", "right ascension (ICRS)", "pos.eq.ra;meta.main"),
    "dec": ColumnInfo("deg", "declination (ICRS)", "pos.eq.dec;meta.main"),
    # the cluster-then-label method's outputs
    "cluster": ColumnInfo(None, "Gaussian-mixture component of the detection, 0..K-1", "meta.code.class"),
    "predicted_class": ColumnInfo(None, "most probable class", "src.class"),
    "no_usable_class": ColumnInfo(None, "true when the detection's cluster has no class with enough references",
                                  "meta.code.qual"),
    "n_features_used": ColumnInfo(None, "number of the model's features the detection was classified on "
                                        "(the observed ones under --missing marginalise)", "meta.number"),
    "master_class": ColumnInfo(None, "class agreed by the hard and soft votes over the source's detections",
                               "src.class"),
    "agg_master_class": ColumnInfo(None, "aggregated class of master_class (AGN, Seyfert, XB, YSO)", "src.class"),
    "hard_master_class": ColumnInfo(None, "hard vote: the most common class of the source's detections",
                                    "src.class"),
    "soft_master_class": ColumnInfo(None, "soft vote: the class of highest mean probability over the "
                                          "source's detections", "src.class"),
    "detection_count": ColumnInfo(None, "detections of the source that were voted", "meta.number"),
    "reference_type": ColumnInfo(None, "reference (SIMBAD-like) object type of the detection", "src.class"),
    "reference_label": ColumnInfo(None, "training class the reference type maps to, 'other' or 'unlabelled'",
                                  "src.class"),
    "main_type": ColumnInfo(None, "SIMBAD main object type (reference label)", "src.class"),
    "true_class": ColumnInfo(None, "true class (simulator ground truth or reference label)", "src.class"),
    "class": ColumnInfo(None, "literature class of the source (reference label)", "src.class"),
    # validation tables (one row per class)
    "precision": ColumnInfo(_NUM, "precision: share of the held-out detections predicted as the class that "
                                  "are of it", None),
    "precision_prior_corrected": ColumnInfo(_NUM, "precision with each true class's row of the confusion matrix "
                                                  "rescaled to the class's prior share (Tranin et al. 2022)", None),
    "recall": ColumnInfo(_NUM, "recall: share of the held-out detections of the class predicted as it", None),
    "f1": ColumnInfo(_NUM, "F1 score, harmonic mean of precision and recall", None),
    "support": ColumnInfo(None, "held-out detections of the class", "meta.number"),
    # the naive-Bayes method's outputs
    "outlier_measure": ColumnInfo(_NUM, "-log10 of the summed numerator of Eq. 1 (Tranin et al. 2022): "
                                        "large = unusual under the training sample", "stat.likelihood"),
    "n_categories": ColumnInfo(None, "property categories with at least one observed property", "meta.number"),
    # CSC features of the csc preset and their raw inputs
    "hard_hm": ColumnInfo(_NUM, "hardness ratio, hard (2-7 keV) vs medium (1.2-2 keV) band", "phot.color"),
    "hard_hs": ColumnInfo(_NUM, "hardness ratio, hard (2-7 keV) vs soft (0.5-1.2 keV) band", "phot.color"),
    "hard_ms": ColumnInfo(_NUM, "hardness ratio, medium (1.2-2 keV) vs soft (0.5-1.2 keV) band", "phot.color"),
    "powlaw_gamma": ColumnInfo(_NUM, "photon index of the absorbed power-law spectral fit", "spect.index"),
    "powlaw_gamma_mean": ColumnInfo(_NUM, "mean photon index of the absorbed power-law fits", "spect.index"),
    "powlaw_nh": ColumnInfo("1e+20 cm-2", "absorbing column density of the power-law fit", "phys.columnDensity"),
    "bb_kt": ColumnInfo("keV", "black-body temperature kT of the black-body spectral fit", "phys.temperature"),
    "bb_nh": ColumnInfo("1e+20 cm-2", "absorbing column density of the black-body fit", "phys.columnDensity"),
    "var_newq_b": ColumnInfo(_NUM, "((var_max_b + var_min_b) / 2) / var_mean_b, broad band", "src.var"),
    "var_intra_prob": ColumnInfo(_NUM, "intra-observation variability probability", "stat.probability;src.var"),
    "var_inter_prob": ColumnInfo(_NUM, "inter-observation variability probability", "stat.probability;src.var"),
    **_csc_variability(),
    # 4XMM (Webb et al. 2020) columns of the xmm presets
    "sc_det_ml": ColumnInfo(_NUM, "detection likelihood, total band", "stat.likelihood"),
    "sc_ep_8_flux": ColumnInfo(_FLUX, "EPIC flux, 0.2-12 keV", "phot.flux;em.X-ray"),
    "sc_ep_8_fmin": ColumnInfo(_FLUX, "minimum EPIC flux over the detections, 0.2-12 keV", "phot.flux;stat.min"),
    "sc_ep_8_fmax": ColumnInfo(_FLUX, "maximum EPIC flux over the detections, 0.2-12 keV", "phot.flux;stat.max"),
    "sc_var_flag": ColumnInfo(None, "variability flag", "meta.code;src.var"),
    "sc_fvar": ColumnInfo(_NUM, "fractional excess variance", "src.var"),
    "sc_extent": ColumnInfo("arcsec", "source extent (core radius of the beta model)", "phys.angSize"),
    "sc_chi2prob": ColumnInfo(_NUM, "probability that the source is constant (chi-squared)", "stat.probability"),
    # eRASS1 (Merloni et al. 2024) columns of the eRASS1 preset
    "ml_flux_1": ColumnInfo(_FLUX, "source flux, 0.2-2.3 keV", "phot.flux;em.X-ray"),
    "ml_cts_1": ColumnInfo("ct", "source counts, 0.2-2.3 keV", "phot.count"),
    "det_like_0": ColumnInfo(_NUM, "detection likelihood, 0.2-2.3 keV", "stat.likelihood"),
    "ext_like": ColumnInfo(_NUM, "extent likelihood", "stat.likelihood"),
    "ext": ColumnInfo("arcsec", "source extent", "phys.angSize"),
}

#: (regular expression, builder of the metadata from the match): column families
PATTERNS: list[tuple[re.Pattern, Callable[[re.Match], ColumnInfo]]] = [
    (re.compile(r"p_cluster_(\d+)"),
     lambda m: ColumnInfo(_NUM, f"probability of Gaussian-mixture component {m[1]}", "stat.probability")),
    (re.compile(r"alt_class_without_(.+)"),
     lambda m: ColumnInfo(None, f"class predicted with the {m[1]} category left out (naive Bayes)", "src.class")),
    (re.compile(r"(?:flux_aper90|flux_aper|flux_powlaw|flux_bb)_([bhmsuw])", re.I),
     lambda m: ColumnInfo(_FLUX, f"energy flux, {_BANDS[m[1].lower()]} band", "phot.flux;em.X-ray")),
    (re.compile(r"(?:flux_aper90|flux_aper)_(?:lolim|hilim)_([bhmsuw])", re.I),
     lambda m: ColumnInfo(_FLUX, f"energy flux bound, {_BANDS[m[1].lower()]} band", "stat.error;phot.flux")),
    (re.compile(r"fcsc_([smh])", re.I),
     lambda m: ColumnInfo(_FLUX, f"aperture-corrected CSC flux, {_BANDS[m[1].lower()]} band", "phot.flux;em.X-ray")),
    (re.compile(r"e_fcsc_([smh])", re.I),
     lambda m: ColumnInfo(_FLUX, f"error of Fcsc_{m[1]}", "stat.error;phot.flux")),
    (re.compile(r"(?:sc_ep_|ep_)?([1-8])_flux|f([1-8])", re.I),
     lambda m: ColumnInfo(_FLUX, f"EPIC flux, band {m[1] or m[2]}", "phot.flux;em.X-ray")),
    (re.compile(r"(?:sc_)?hr([1-4])", re.I),
     lambda m: ColumnInfo(_NUM, f"hardness ratio between EPIC bands {m[1]} and {int(m[1]) + 1}", "phot.color")),
    (re.compile(r"ml_flux_([1-9])", re.I),
     lambda m: ColumnInfo(_FLUX, f"source flux, eROSITA band {m[1]}", "phot.flux;em.X-ray")),
    (re.compile(r"ml_rate_([1-9])", re.I),
     lambda m: ColumnInfo(_RATE, f"source count rate, eROSITA band {m[1]}", "phot.count")),
    (re.compile(r"ml_cts_([1-9])", re.I),
     lambda m: ColumnInfo("ct", f"source counts, eROSITA band {m[1]}", "phot.count")),
]


def column_info(name: str, classes: Iterable[str] = ()) -> ColumnInfo | None:
    """The metadata of column ``name``, or None when xsift knows nothing of it.

    Order: a class probability or ``<class>_std`` (``classes``: the model's class names, which win
    over the registry, since a class may be called like a catalogue column); the registry exactly,
    then case-insensitively; the patterns (whole name)."""
    name = str(name)
    classes = [str(c) for c in classes]
    if name in classes:
        return ColumnInfo(_NUM, f"probability of class {name}", "stat.probability")
    if name.endswith("_std") and name[:-4] in classes:
        return ColumnInfo(_NUM, f"standard deviation of the probability of class {name[:-4]} over the "
                                f"source's detections", "stat.stdev")
    info = REGISTRY.get(name) or REGISTRY.get(name.lower())
    if info is not None:
        return info
    for pattern, build in PATTERNS:
        m = pattern.fullmatch(name)
        if m:
            return build(m)
    return None


def describe_columns(names: Iterable[str], classes: Iterable[str] = (),
                     overrides: Mapping[str, ColumnInfo] | None = None) -> dict[str, ColumnInfo]:
    """name -> metadata for the columns of ``names`` that have any: ``overrides`` first (a table whose
    column means something else than the registry says, or a preset's own identity columns), then
    :func:`column_info`."""
    overrides = dict(overrides or {})
    classes = list(classes)
    out = {}
    for name in names:
        info = overrides.get(name) or column_info(name, classes)
        if info is not None:
            out[str(name)] = info
    return out


def identity_columns(*, source: str | None = None, detection: str | None = None, ra: str | None = None,
                     dec: str | None = None) -> dict[str, ColumnInfo]:
    """The registry's metadata of the identity roles under a preset's own column names (a 4XMM preset's
    source column may be ``IAUNAME``): pass it as ``overrides`` of :func:`describe_columns`."""
    roles = {"name": source, "obsid": detection, "ra": ra, "dec": dec}
    return {col: REGISTRY[role] for role, col in roles.items() if col}


#: provenance key -> (FITS keyword, comment); ``inputs`` become INPUT1, INPUT2, ...
PROVENANCE_KEYWORDS = {
    "xsift_version": ("XSIFTVER", "xsift version that wrote this table"),
    "method": ("METHOD", "classification method"),
    "preset": ("PRESET", "preset (features, classes) of the model"),
    "model_hash": ("MODELHSH", "sha256 content hash of the model"),
    "command": ("COMMAND", "xsift command that wrote this table"),
}


def provenance(*, method: str | None = None, preset: str | None = None, model_hash: str | None = None,
               inputs: Iterable[str] | str | None = None, command: str | None = None) -> dict:
    """What made a table, as :func:`xsift.data.io.write_table` records it in the header: the xsift
    version (always), and those of ``method``, ``preset`` (its name), ``model_hash``, ``inputs`` (file
    names, a list) and ``command`` that are given."""
    from xsift import __version__
    if isinstance(inputs, str):
        inputs = [inputs]
    facts = {"xsift_version": __version__, "method": method, "preset": preset, "model_hash": model_hash,
             "command": command, "inputs": [str(p) for p in inputs] if inputs else None}
    return {k: v for k, v in facts.items() if v is not None}
