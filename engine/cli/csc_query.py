"""``xsift csc-query``: print the ADQL query for the Chandra Source Catalog TAP service whose result
has the ``csc`` preset's columns (the per-observation table joined to the master sources, with the
paper's selection).

::

    xsift csc-query > csc.adql     # then run it in TOPCAT or with pyvo, and `xsift run` the result

The query ships inside the package (``xsift/config/presets/csc_per_detection.adql``, also reachable
as ``scripts/csc_per_detection.adql`` in a clone).
"""
from __future__ import annotations

CLI_HELP = "print the ADQL query for the CSC TAP service that yields the csc preset's columns"
CLI_COMMON: tuple[str, ...] = ()

QUERY_FILE = "csc_per_detection.adql"


def csc_query() -> str:
    """The text of the shipped ADQL query (``xsift.config.presets/csc_per_detection.adql``)."""
    from importlib.resources import files
    return files("xsift.config.presets").joinpath(QUERY_FILE).read_text(encoding="utf-8")


def add_cli_arguments(parser) -> None:
    parser.add_argument("--path", action="store_true", help="print where the query file is instead of its text")


def run_cli(args) -> int:
    if args.path:
        from importlib.resources import files
        print(files("xsift.config.presets").joinpath(QUERY_FILE))
    else:
        print(csc_query(), end="")
    return 0
