"""The ``xsift`` command line: argument parsing and process-wide settings, nothing else.

Every command is a module of this package (nothing in xsift imports it). A command module
exposes three names:

``CLI_HELP``            one line shown by ``xsift --help``
``add_cli_arguments``   ``(parser) -> None``: declares its options (every option has a help text)
``run_cli``             ``(args) -> int``: calls the library to do the work, returns the exit code

and optionally ``CLI_COMMON``, the common options it honours (default: all of
``COMMON_OPTIONS``). It is listed once in ``COMMANDS`` below. A module owning several
commands is listed as ``"module:prefix"`` and exposes ``{prefix}_help``,
``add_{prefix}_arguments``, ``run_{prefix}`` (and optionally ``{prefix}_common``)
instead. Command modules import heavy modules (JAX, Dask, matplotlib, astropy, the methods)
inside their run functions only, so that ``xsift --help`` answers at once.

The common options (``--device``, ``--precision``, ``--config``) are
declared here once, and only on the commands that use them: an option accepted
and silently ignored is worse than none (``xsift simulate --config`` is an error,
not a no-op). The Dask commands (``*-shards``) add ``--scheduler`` and ``--workers``.

What every command shares is checked in :func:`main` before any work: ``--out`` must be a
directory (a file for ``crossmatch``) that this process can write in (:func:`check_output_path`),
and the run directory of ``classify-shards`` / ``vote-shards`` is locked for the whole command
(:func:`xsift.distributed.rundir.lock_run_dir`; a second command into it refuses); every other output
directory is kept whole or not at all (:func:`xsift.report.outputs.all_or_nothing`: a failure, a full
disk or Ctrl-C undoes what the command wrote there), and a full disk is one line, not a traceback.
Output piped into a reader that stops early (``xsift presets | head -1``) ends the command quietly;
Ctrl-C ends it with status 130.

Process-wide settings belong to :func:`main` alone: ``--device`` selects JAX's platform for the
process and :func:`xsift.cli.memory.keep_freed_memory` tunes glibc's allocator for it. Errors a
user can act on are raised as :class:`xsift.errors.XsiftError` and printed as one message, never
as a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pathlib
import sys
import tempfile

# command name -> module owning it, in the order `xsift --help` lists them
COMMANDS: dict[str, str] = {
    "demo": "xsift.cli.demo",
    "simulate": "xsift.cli.simulate",
    "bic": "xsift.cli.bic",
    "fit": "xsift.cli.cluster_then_label:fit",
    "classify": "xsift.cli.cluster_then_label:classify",
    "run": "xsift.cli.cluster_then_label:run",
    "explore": "xsift.cli.explore",
    "validate": "xsift.cli.validate",
    "crossmatch": "xsift.cli.crossmatch",
    "nb": "xsift.cli.naive_bayes",
    "fit-shards": "xsift.cli.shards:fit_shards",
    "classify-shards": "xsift.cli.shards:classify_shards",
    "vote-shards": "xsift.cli.shards:vote_shards",
    "presets": "xsift.cli.presets",
    "csc-query": "xsift.cli.csc_query",
}


COMMON_OPTIONS = ("device", "precision", "config")

# what Ctrl-C prints, after "xsift COMMAND: ": a resumable run directory keeps its finished shards, any other
# output directory is put back as it was (xsift.report.outputs.all_or_nothing)
INTERRUPTED = ("interrupted; nothing of this command's output was kept (its output directory is as it was), "
               "rerun the same command")
INTERRUPTED_RESUMABLE = ("interrupted; the shards finished so far are kept (writes are atomic), rerun the same "
                         "command to finish")


def _interrupted(command: str) -> str:
    return INTERRUPTED_RESUMABLE if command in RUN_DIR_OPTION else INTERRUPTED

# commands whose --out names a file (every other command's --out is a directory)
OUT_IS_FILE = frozenset({"crossmatch", "explore"})
# commands writing into a run directory, and the option holding it: locked for the whole command
RUN_DIR_OPTION = {"classify-shards": "out", "vote-shards": "run"}

# the formats every table-writing command offers (xsift.report.outputs.FORMAT_SUFFIX; tests/cli checks
# they agree: importing it here would load pandas for --help)
TABLE_FORMATS = ("parquet", "csv", "fits", "votable")


def table_format_name(text: str) -> str:
    """A ``--format`` value as a format name (``vot`` is taken for ``votable``)."""
    return {"vot": "votable"}.get(text.lower(), text.lower())


def add_format_option(parser, default: str | None = "parquet", what: str = "the output tables") -> None:
    """Declare ``--format parquet|csv|fits|votable`` on ``parser``."""
    parser.add_argument("--format", type=table_format_name, choices=TABLE_FORMATS, default=default,
                        help=f"format of {what}: parquet, csv, fits or votable (FITS and VOTable columns carry "
                             "units, descriptions and UCDs; every format but CSV records the xsift version, "
                             "method, preset, model hash and input files)")


def _common_options(names=COMMON_OPTIONS) -> argparse.ArgumentParser:
    """A parent parser holding the common options ``names`` (a subset of COMMON_OPTIONS)."""
    unknown = set(names) - set(COMMON_OPTIONS)
    if unknown:  # pragma: no cover (a programming error in a command module)
        raise ValueError(f"unknown common option(s) {sorted(unknown)}")
    common = argparse.ArgumentParser(add_help=False)
    if not names:
        return common
    group = common.add_argument_group("common options")
    if "device" in names:
        group.add_argument("--device", choices=["cpu", "gpu"], default=None,
                           help="JAX device to run the kernels on (default: JAX's default device)")
    if "precision" in names:
        group.add_argument("--precision", choices=["float32", "float64"], default="float64",
                           help="floating-point precision of the kernels (default: float64, the reference)")
    if "config" in names:
        group.add_argument("--config", metavar="FILE", default=None,
                           help="a preset TOML file (copy one from engine/config/presets/ and edit it) "
                                "replacing the built-in preset")
    return common


def _command_functions(target: str):
    """(help, add_arguments, run, common option names) of a COMMANDS entry ``module`` or ``module:prefix``."""
    module_name, _, prefix = target.partition(":")
    module = importlib.import_module(module_name)
    if prefix:
        return (getattr(module, f"{prefix}_help"), getattr(module, f"add_{prefix}_arguments"),
                getattr(module, f"run_{prefix}"), getattr(module, f"{prefix}_common", COMMON_OPTIONS))
    return (module.CLI_HELP, module.add_cli_arguments, module.run_cli,
            getattr(module, "CLI_COMMON", COMMON_OPTIONS))


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless its help already says it or there is none."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or action.default is None or action.default is False:
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xsift",
        description="Classify the sources of large X-ray catalogues into physical classes "
                    "with calibrated probabilities (cluster-then-label after Pérez-Díaz et al.; "
                    "interpretable naive Bayes after Tranin et al.).",
    )
    from xsift import __version__
    parser.add_argument("--version", action="version", version=f"xsift {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                help="the step to run; `xsift COMMAND --help` lists its options")
    for name, target in COMMANDS.items():
        help_text, add_arguments, run, common_names = _command_functions(target)
        p = sub.add_parser(name, help=help_text, description=help_text,
                           parents=[_common_options(common_names)],
                           formatter_class=HelpFormatter)
        add_arguments(p)
        p.set_defaults(_run=run)
    return parser


def apply_device(device: str | None) -> None:
    """Select the JAX platform before any kernel runs."""
    if device is None:
        return
    import jax
    platform = "gpu" if device == "gpu" else "cpu"
    try:
        jax.devices(platform)
    except RuntimeError as exc:
        from xsift.errors import XsiftError
        raise XsiftError(f"--device {device}: JAX finds no {platform} device here ({exc}). "
                         "Install a CUDA-enabled jaxlib or use --device cpu.") from None
    jax.config.update("jax_platform_name", platform)


def check_output_path(path: str | os.PathLike, *, is_file: bool = False) -> None:
    """Raise XsiftError unless ``path`` can be written as an output directory (``is_file``: an output file).

    Checked before any work: an existing file where a directory is expected (or the reverse), or a
    directory this process cannot write in (tried by creating and removing a temporary file in the
    nearest existing directory, since ``os.access`` answers yes to root on a read-only directory)."""
    from xsift.errors import XsiftError
    out = pathlib.Path(path)
    if is_file and out.is_dir():
        raise XsiftError(f"--out {out}: is a directory; expected an output file name")
    if not is_file and out.exists() and not out.is_dir():
        raise XsiftError(f"--out {out}: is a file; expected a directory (it is created if need be)")
    probe = out.parent if is_file else out
    probe = probe.absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise XsiftError(f"--out {out}: {probe} is a file, so no directory can be made under it")
    try:
        with tempfile.TemporaryFile(dir=probe, prefix=".xsift-write-test-"):
            pass
    except OSError as exc:
        raise XsiftError(f"--out {out}: cannot write in {probe} ({exc.strerror}); choose a writable "
                         "directory") from None


def _quiet_stdout() -> None:
    """Point stdout at /dev/null after its reader went away, so that the exit's flush does not fail too."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Run the ``xsift`` command ``argv`` (default: ``sys.argv[1:]``) and return its exit status: 0,
    2 for an :class:`~xsift.errors.XsiftError` (printed as one line, no traceback), 130 on Ctrl-C,
    141 when stdout's reader closed the pipe early (as a shell reports SIGPIPE). Run as the program
    (``argv`` None: the ``xsift`` script, ``python -m xsift.cli``), Ctrl-C ends the process at once with
    status 130 (:func:`_exit_now`) rather than returning."""
    from xsift.errors import XsiftError
    from xsift.cli.memory import keep_freed_memory
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    if argv is None:
        _catch_swallowed_interrupts(args.command)
        # the program's own setting: a Dask gather cut short by Ctrl-C leaves asyncio tasks whose
        # exception nobody retrieves, and asyncio logs each with a traceback when it is collected
        import logging
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    try:
        if getattr(args, "out", None) is not None:
            check_output_path(args.out, is_file=args.command in OUT_IS_FILE)
        apply_device(getattr(args, "device", None))
        # a command runs and ends: keep freed memory mapped rather than fault it in again (xsift.cli.memory)
        keep_freed_memory()
        with contextlib.ExitStack() as stack:
            if args.command in RUN_DIR_OPTION:
                from xsift.distributed.rundir import lock_run_dir
                run_dir = pathlib.Path(getattr(args, RUN_DIR_OPTION[args.command]))
                if args.command == "classify-shards" or run_dir.is_dir():
                    stack.enter_context(lock_run_dir(run_dir, command=f"xsift {args.command}"))
            elif getattr(args, "out", None) is not None and args.command not in OUT_IS_FILE:
                # a directory of outputs is kept whole or not at all (xsift.report.outputs.all_or_nothing)
                from xsift.report.outputs import all_or_nothing
                stack.enter_context(all_or_nothing(args.out))
            try:
                status = int(args._run(args) or 0)
            except KeyboardInterrupt:
                _silence_shutdown_logs()     # before the contexts above close the Dask client
                raise
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        _quiet_stdout()
        return 141
    except OSError as exc:
        from xsift.report.outputs import DISK_FULL_ERRNOS
        if exc.errno not in DISK_FULL_ERRNOS:
            raise
        where = getattr(args, "out", None) or getattr(args, RUN_DIR_OPTION.get(args.command, ""), None) or "."
        print(f"xsift {args.command}: error: {where}: {os.strerror(exc.errno)} while writing the outputs; "
              "nothing of this command's output was kept (a resumable run directory keeps its finished shards); "
              "free some space or choose another --out", file=sys.stderr)
        return 2
    except XsiftError as exc:
        print(f"xsift {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"xsift {args.command}: {_interrupted(args.command)}", file=sys.stderr)
        if argv is None:
            _exit_now(130)
        return 130


def _silence_shutdown_logs() -> None:
    """After Ctrl-C, the Dask client's cancelled gathers are logged by asyncio ('Task exception was never
    retrieved', with a traceback) as the client closes: noise about an interrupt the user asked for, so
    asyncio's and Dask's loggers keep only critical records from then on."""
    import logging
    for name in ("asyncio", "distributed", "tornado"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _catch_swallowed_interrupts(command: str) -> None:
    """Make a Ctrl-C that lands in code whose exceptions Python ignores (a garbage-collector callback,
    such as Dask's, or a ``__del__``) end the program, as :func:`main` ends it, instead of being
    printed as 'Exception ignored' and lost while the command carries on (``sys.unraisablehook``)."""
    def hook(unraisable):
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            print(f"xsift {command}: {_interrupted(command)}", file=sys.stderr)
            _exit_now(130)
        sys.__unraisablehook__(unraisable)
    sys.unraisablehook = hook


def _exit_now(status: int) -> None:
    """End the program at once with ``status`` after flushing its streams: after Ctrl-C stopped JAX
    mid-computation, the interpreter's normal shutdown tears down XLA's threads while they still run
    and dies of SIGSEGV (exit 139) instead of 130. Every output is complete by then (writes are atomic;
    an interrupted write has removed its temporary file), so nothing is left to clean up."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
