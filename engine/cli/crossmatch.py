"""``xsift crossmatch``: give each detection the type of its nearest reference object within a radius.

Argument parsing only; the match is :func:`xsift.data.crossmatch.crossmatch`.
"""
from __future__ import annotations

import pathlib

from xsift.cli import add_format_option

CLI_HELP = "give each detection the type of its nearest reference object within a radius (e.g. SIMBAD)"
CLI_COMMON = ("config",)   # astropy only: the preset names the type column and classes


def add_cli_arguments(parser) -> None:
    parser.add_argument("catalog", metavar="CATALOG", help="catalogue to label (Parquet, CSV, FITS or VOTable)")
    parser.add_argument("--reference", required=True, metavar="REF",
                        help="reference table with ra, dec (degrees, ICRS) and a type column (VOTable, CSV ...)")
    parser.add_argument("--radius", default="1arcsec", help="match radius (e.g. 1arcsec, 0.5arcmin, 2e-4deg)")
    parser.add_argument("--type-column", default="main_type", help="the reference table's type column")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="output catalogue (.parquet, .csv, .fits or .vot); a manifest is written beside it")
    add_format_option(parser, default=None, what="the output catalogue (default: from the suffix of --out)")


def _output_format(args) -> str:
    """The output format: ``--format``, else the suffix of ``--out``; XsiftError if they disagree."""
    from xsift.data.io import table_format
    from xsift.errors import XsiftError
    if args.format is None:
        return table_format(args.out)
    try:
        suffix_format = table_format(args.out)
    except XsiftError:   # no known suffix: --format decides
        return args.format
    if suffix_format != args.format:
        raise XsiftError(f"--out {args.out} names a {suffix_format} file but --format is {args.format}; "
                         "make them agree (or drop --format)")
    return args.format


def run_cli(args) -> int:
    from xsift.config import load_preset
    from xsift.data.columns import provenance
    from xsift.data.crossmatch import crossmatch, parse_radius
    from xsift.data.io import read_catalog, write_table
    from xsift.report import write_manifest
    fmt = _output_format(args)
    preset = load_preset(args.config or "csc")
    cols = preset.columns
    cat = read_catalog(args.catalog)
    ref = read_catalog(args.reference)
    out, counts = crossmatch(cat, ref, radius_arcsec=parse_radius(args.radius), type_column=args.type_column,
                             out_column=cols.label or "main_type", ra=cols.ra or "ra", dec=cols.dec or "dec",
                             reference_name=str(args.reference))
    path = write_table(out, args.out, fmt, provenance=provenance(
        preset=preset.name, inputs=[str(args.catalog), str(args.reference)], command="xsift crossmatch"))
    write_manifest(pathlib.Path(path).parent, command="crossmatch",
                   inputs={"catalog": str(args.catalog), "reference": str(args.reference)},
                   config={"radius": args.radius, "type_column": args.type_column}, crossmatch=counts,
                   outputs={"catalog": str(path)})
    print(f"{counts['matched']:,} of {counts['catalogue_rows']:,} detections matched within "
          f"{counts['radius_arcsec']:g} arcsec -> {path}")
    return 0
