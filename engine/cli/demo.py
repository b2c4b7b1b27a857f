"""``xsift demo``: simulate a small CSC-like catalogue and run the whole pipeline on it.

Argument parsing only; the work is :func:`xsift.demo.run_demo`.
"""
from __future__ import annotations

CLI_HELP = "simulate a small CSC-like catalogue and run the whole pipeline on it"


def add_cli_arguments(parser) -> None:
    parser.add_argument("--out", default="xsift-demo", help="directory for the demo's outputs")
    parser.add_argument("--detections", type=int, default=20000, help="number of simulated detections")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the simulation and the fit")
    parser.add_argument("--k", type=int, default=6, help="number of GMM clusters")
    parser.add_argument("--no-validate", action="store_true", help="skip the 70/30 validation run")
    parser.add_argument("--no-figures", action="store_true", help="skip the figures and the explorer page")
    from xsift.cli.cluster_then_label import add_quiet_option
    add_quiet_option(parser)


def run_cli(args) -> int:
    from xsift.cli.cluster_then_label import with_progress
    from xsift.demo import DEMO_STAGES
    return with_progress("demo", DEMO_STAGES)(_run)(args)


def _run(args) -> int:
    from xsift.demo import run_demo
    from xsift.methods.cluster_then_label import resolve_preset
    run_demo(args.out, detections=args.detections, seed=args.seed, k=args.k, validate=not args.no_validate,
             figures=not args.no_figures, preset=resolve_preset(args.config or "csc"), precision=args.precision,
             progress=args.progress)
    return 0
