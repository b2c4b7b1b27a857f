"""Reference labels by crossmatch: each catalogue detection gets the type of its nearest reference
object (e.g. a SIMBAD extract) within a radius (1 arcsec by default).

Sky geometry is astropy's (``SkyCoord.match_to_catalog_sky``, a k-d tree on the unit
sphere). Every catalogue row is kept: a row with no reference within the radius gets a
null type (unlabelled); its separation to the nearest reference is reported in
``match_separation_arcsec`` either way. Several detections may match the same
reference object (one source observed several times), as in the paper.

``xsift crossmatch CATALOG --reference REF --radius 1arcsec --out OUT`` writes the
catalogue with the type column filled in; ``xsift fit/run --reference REF`` do the
same in memory before fitting.
"""
from __future__ import annotations

import re
import time

import numpy as np
import pandas as pd

from xsift.errors import SchemaError, XsiftError

_RADIUS = re.compile(r"^\s*([0-9.eE+-]+)\s*(arcsec|arcmin|deg|mas)?\s*$")


def parse_radius(text: str | float) -> float:
    """'1arcsec', '0.5 arcmin', '2e-4deg', '300mas' or a bare number (arcsec) -> arcsec."""
    import astropy.units as u
    if isinstance(text, (int, float)):
        value, unit = float(text), "arcsec"
    else:
        m = _RADIUS.match(str(text))
        if not m:
            raise XsiftError(f"--radius {text!r}: expected a number with a unit, e.g. 1arcsec, 0.5arcmin, 2e-4deg")
        value, unit = float(m.group(1)), m.group(2) or "arcsec"
    radius = (value * getattr(u, unit)).to(u.arcsec).value
    if not radius > 0:
        raise XsiftError(f"--radius {text!r}: the radius must be positive")
    return float(radius)


def crossmatch(catalog: pd.DataFrame, reference: pd.DataFrame, *, radius_arcsec: float = 1.0,
               type_column: str = "main_type", out_column: str = "main_type", ra: str = "ra", dec: str = "dec",
               ref_ra: str = "ra", ref_dec: str = "dec", reference_name: str = "reference table"
               ) -> tuple[pd.DataFrame, dict]:
    """The catalogue (every row, same order) with ``out_column`` set to the nearest reference's
    ``type_column`` within ``radius_arcsec`` (null otherwise) and ``match_separation_arcsec``.

    Returns (catalogue, counts). Raises :class:`SchemaError` if the reference table lacks its
    position or type column or a position is not finite.
    """
    from astropy.coordinates import SkyCoord
    import astropy.units as u
    catalog_name = (catalog.attrs.get("xsift_read") or {}).get("source", "catalogue")
    if len(catalog) == 0:
        raise SchemaError(f"{catalog_name}: the table is empty; expected at least one detection")
    for name, table, cols in ((catalog_name, catalog, (ra, dec)),
                              (reference_name, reference, (ref_ra, ref_dec, type_column))):
        missing = [c for c in cols if c not in table.columns]
        if missing:
            raise SchemaError(f"{name}: missing column(s) {missing}; the crossmatch needs "
                              f"{', '.join(cols)}" + (" (set the type column with --type-column)"
                                                      if type_column in missing else ""))
    if len(reference) == 0:
        raise SchemaError(f"{reference_name}: the reference table is empty")
    from xsift.data.schema import checked_declinations
    rra = reference[ref_ra].to_numpy(dtype=np.float64, na_value=np.nan)
    rdec = checked_declinations(reference[ref_dec].to_numpy(dtype=np.float64, na_value=np.nan), column=ref_dec,
                                source=reference_name)
    good_ref = np.isfinite(rra) & np.isfinite(rdec)
    if not good_ref.any():
        raise SchemaError(f"{reference_name}: no reference row has a finite ({ref_ra}, {ref_dec}) position")
    cra = catalog[ra].to_numpy(dtype=np.float64, na_value=np.nan)
    cdec = checked_declinations(catalog[dec].to_numpy(dtype=np.float64, na_value=np.nan), column=dec,
                                source=catalog_name)
    good_cat = np.isfinite(cra) & np.isfinite(cdec)
    t0 = time.perf_counter()
    out = catalog.copy()
    sep = np.full(len(catalog), np.nan)
    types = np.full(len(catalog), None, dtype=object)
    ref_types = reference[type_column].astype("object").to_numpy()[good_ref]
    if good_cat.any():
        cat_c = SkyCoord(cra[good_cat] * u.deg, cdec[good_cat] * u.deg, frame="icrs")
        ref_c = SkyCoord(rra[good_ref] * u.deg, rdec[good_ref] * u.deg, frame="icrs")
        idx, d2d, _ = cat_c.match_to_catalog_sky(ref_c)
        s = d2d.to(u.arcsec).value
        sep[good_cat] = s
        hit = s <= radius_arcsec
        matched = np.full(int(good_cat.sum()), None, dtype=object)
        matched[hit] = ref_types[idx[hit]]
        types[good_cat] = matched
    types = np.array([None if (t is None or t is pd.NA or (isinstance(t, float) and np.isnan(t))) else str(t)
                      for t in types], dtype=object)
    out[out_column] = pd.array(types, dtype="str")
    out["match_separation_arcsec"] = sep
    counts = {"radius_arcsec": radius_arcsec, "reference_rows": int(len(reference)),
              "reference_rows_without_position": int((~good_ref).sum()),
              "catalogue_rows": int(len(catalog)), "catalogue_rows_without_position": int((~good_cat).sum()),
              "matched": int(pd.notna(types).sum()), "seconds": round(time.perf_counter() - t0, 3)}
    return out, counts
