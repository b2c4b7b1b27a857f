"""The command line as a user meets it: every command and option is described."""
import os
import pathlib
import subprocess
import sys

import pytest

from xsift.cli import COMMANDS, build_parser, main


def _subparsers(parser):
    import argparse
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def _all_parsers(parser, prefix="xsift"):
    yield prefix, parser
    for name, sub in _subparsers(parser).items():
        yield from _all_parsers(sub, f"{prefix} {name}")


def test_every_command_and_option_has_help():
    parser = build_parser()
    assert set(_subparsers(parser)) == set(COMMANDS)
    for where, p in _all_parsers(parser):
        assert p.description or where == "xsift", where
        for action in p._actions:
            if action.dest in ("help", "version") or action.help == "==SUPPRESS==":
                continue
            assert action.help and len(action.help) > 10, f"{where}: option {action.option_strings or action.dest} has no help"


def test_console_script_help():
    exe = pathlib.Path(sys.executable).with_name("xsift")
    assert exe.exists(), "the xsift console script should be installed (pip install -e .)"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    for name in COMMANDS:
        assert name in out
    out = subprocess.run([str(exe), "simulate", "--help"], capture_output=True, text=True, check=True).stdout
    for option in ("--detections", "--shards", "--out", "--seed"):
        assert option in out
    for option in ("--scheduler", "--device", "--precision", "--config"):
        assert option not in out     # NumPy only, one calibration; only the Dask commands take a scheduler
    out = subprocess.run([str(exe), "classify-shards", "--help"], capture_output=True, text=True, check=True).stdout
    for option in ("--model", "--out", "--scheduler", "--workers", "--device", "--force"):
        assert option in out


def test_user_error_is_one_line_not_a_traceback(tmp_path, capsys):
    code = main(["demo", "--config", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o"),
                 "--detections", "2000"])
    err = capsys.readouterr().err
    assert code == 2
    assert "missing.toml" in err and "Traceback" not in err


@pytest.mark.parametrize("argv, option", [
    (["simulate", "--out", "x", "--config", "my.toml"], "--config"),          # one built-in calibration
    (["simulate", "--out", "x", "--precision", "float32"], "--precision"),    # NumPy only
    (["classify", "cat.parquet", "--model", "m", "--out", "r", "--config", "my.toml"], "--config"),  # model's preset
    (["classify-shards", "shards", "--model", "m", "--out", "r", "--precision", "float32"], "--precision"),
    (["nb", "classify", "cat.parquet", "--config", "nb_csc"], "--config"),
    (["crossmatch", "cat.parquet", "--reference", "r.vot", "--out", "o.parquet", "--device", "cpu"], "--device"),
])
def test_an_option_a_command_would_ignore_is_refused(argv, option, capsys):
    """Accepting an option and silently ignoring it misleads: argparse refuses it (exit 2), naming it."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert option in capsys.readouterr().err


def test_the_common_options_still_reach_the_commands_that_use_them():
    parser = build_parser()
    args = parser.parse_args(["fit", "cat.parquet", "--out", "m", "--config", "my.toml", "--precision", "float32",
                              "--device", "cpu"])
    assert (args.config, args.precision, args.device) == ("my.toml", "float32", "cpu")
    args = parser.parse_args(["nb", "tune", "cat.csv", "--config", "nb_csc", "--precision", "float32"])
    assert (args.config, args.precision) == ("nb_csc", "float32")
    args = parser.parse_args(["nb", "classify", "cat.csv", "--precision", "float32"])
    assert args.precision == "float32"
    args = parser.parse_args(["crossmatch", "cat.parquet", "--reference", "r.vot", "--out", "o.parquet",
                              "--config", "my.toml"])
    assert args.config == "my.toml"


def test_nothing_in_xsift_imports_the_cli():
    """The command line sits on top: no module of the library (engine/ outside engine/cli, kernels/)
    imports xsift.cli, so the library never depends on argument parsing or process-wide settings."""
    import re
    root = pathlib.Path(__file__).resolve().parents[2]
    pattern = re.compile(r"^\s*(from\s+xsift\.cli\b|import\s+xsift\.cli\b|from\s+xsift\s+import\s+.*\bcli\b)", re.M)
    offenders = []
    for folder in ("engine", "kernels"):
        for path in (root / folder).rglob("*.py"):
            if path.is_relative_to(root / "engine" / "cli"):
                continue
            if pattern.search(path.read_text()):
                offenders.append(str(path.relative_to(root)))
    assert offenders == []


def test_command_choices_are_the_librarys():
    """The CLI spells its choices out (importing the methods would slow `xsift --help`); they must be
    exactly the values the library accepts."""
    from xsift.cli import cluster_then_label as cli_ctl
    from xsift.methods.cluster_then_label import DISTANCES
    from xsift.report.outputs import FORMAT_SUFFIX
    assert tuple(cli_ctl.DISTANCES) == tuple(DISTANCES)
    assert set(cli_ctl.FORMATS) == set(FORMAT_SUFFIX)
    parser = build_parser()
    for command in ("fit", "run", "validate"):
        args = parser.parse_args([command, "cat.parquet", "--out", "o", "--distance", "mahalanobis"])
        assert args.distance == "mahalanobis"
        # the American spelling of the missing-feature mode is the library's marginalise
        assert parser.parse_args([command, "c.parquet", "--out", "o", "--missing", "marginalize"]).missing == "marginalise"
    assert parser.parse_args(["classify", "c.parquet", "--model", "m", "--out", "o", "--missing",
                              "marginalize"]).missing == "marginalise"
