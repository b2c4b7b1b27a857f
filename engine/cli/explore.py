"""``xsift explore RUN_DIR``: one self-contained HTML page to look at a run's results; and ``--samp``,
the SAMP hand-off every table-writing command offers.

::

    xsift explore run/                              # run/explore.html
    xsift explore run/ --out page.html --max-points 20000 --samp

With ``--samp`` the page's sources are also written as ``samp/<page stem>_sources.vot`` beside the page,
the page gets a "Send selection (SAMP)" button (SAMP Web Profile, :mod:`xsift.report.explore`), and the
run's tables are broadcast to a running hub.

Argument parsing and printing only: the page is :func:`xsift.report.explore.write_explorer`, the
hand-off :func:`xsift.report.samp.broadcast_tables`. :func:`add_samp_option` and :func:`send_tables`
are what the other command modules call to offer ``--samp``.
"""
from __future__ import annotations

import pathlib
import sys

CLI_HELP = "write one self-contained HTML page (sky map, feature diagrams, filters, table) to explore a run"
CLI_COMMON = ()


def add_samp_option(parser, extra: str = "") -> None:
    """``--samp``: broadcast the tables written to a running SAMP hub (TOPCAT, Aladin); ``extra``: a
    sentence added to the option's help."""
    parser.add_argument("--samp", action="store_true",
                        help="send the tables written to a running SAMP hub (TOPCAT, Aladin) as VOTables "
                             "(table.load.votable); found through SAMP_HUB or ~/.samp; no hub: a one-line "
                             "message, not an error" + (f"; {extra}" if extra else ""))


def send_tables(args, paths) -> None:
    """With ``--samp`` set on ``args``: broadcast the tables ``paths`` (:mod:`xsift.report.samp`) and print
    one line on standard output (sent) or standard error (no hub)."""
    if not getattr(args, "samp", False):
        return
    from xsift.report.samp import broadcast_tables
    sent, message = broadcast_tables([p for p in paths if p])
    print(f"xsift {args.command}: {message}", file=sys.stdout if sent else sys.stderr)


def add_cli_arguments(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help="a run directory of `xsift run`, `classify`, `demo` or `nb classify`")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="the page to write (default: RUN_DIR/explore.html)")
    parser.add_argument("--max-points", type=int, default=50_000, metavar="N",
                        help="most sources drawn as points and listed in the table; beyond it a uniform random "
                             "sample of N (seeded by --seed), over a density image of all sources")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the --max-points sample")
    parser.add_argument("--max-tracks", type=int, default=500, metavar="N",
                        help="naive Bayes: sources whose probability track is inlined (needs the run's model "
                             "and catalogue)")
    add_samp_option(parser, "also writes the page's sources as samp/<page stem>_sources.vot beside the page "
                            "and gives the page a 'Send selection (SAMP)' button (SAMP Web Profile)")


def run_cli(args) -> int:
    from xsift.report.explore import write_explorer
    samp = getattr(args, "samp", False)
    path = write_explorer(args.run_dir, args.out, max_points=args.max_points, seed=args.seed,
                          max_tracks=args.max_tracks, samp=samp)
    size = path.stat().st_size / 1e6
    print(f"explorer page -> {path} ({size:.1f} MB; open it in a browser, it works offline)")
    if samp:
        print(f"its sources for SAMP -> {path.parent / 'samp' / (path.stem + '_sources.vot')} (the page's "
              "'Send selection (SAMP)' button loads it in TOPCAT/Aladin and selects the rows chosen)")
    if getattr(args, "samp", False):
        run = pathlib.Path(args.run_dir)
        stems = ("detection_level", "uniquely_classified", "ambiguous", "nb_classification")
        tables = [p for stem in stems for p in sorted(run.glob(f"{stem}.*"))
                  if p.suffix in (".parquet", ".csv", ".fits", ".vot")]
        tables += [run / stem for stem in stems if (run / stem).is_dir()]   # a sharded run's Parquet folders
        send_tables(args, tables)
    return 0
