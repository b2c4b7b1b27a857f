"""``xsift presets``: the shipped presets, their method and the catalogue columns each needs.

::

    xsift presets              # every shipped preset
    xsift presets xmm          # one preset, with its features and classes

Argument parsing and printing only: the presets are read with :func:`xsift.config.load_preset`.
"""
from __future__ import annotations

CLI_HELP = "list the shipped presets: the method of each and the catalogue columns it needs"
CLI_COMMON: tuple[str, ...] = ()


def add_cli_arguments(parser) -> None:
    parser.add_argument("names", metavar="NAME", nargs="*",
                        help="presets to describe (default: every shipped preset)")
    parser.add_argument("--features", action="store_true",
                        help="also list each feature's formula, columns and transform, and the classes")


def describe_preset(preset, *, features: bool = False) -> list[str]:
    """Lines describing ``preset``: name, method, file, the columns of each identity role, the feature
    columns (with the other names each is found under), and with ``features`` the features and classes."""
    from xsift.config import load_preset
    p = load_preset(preset)
    lines = [f"{p.name}  ({p.method})  {p.source}"]
    roles = p.columns.to_dict()
    lines.append("  identity columns: " + ", ".join(f"{role}={col}" for role, col in roles.items()))

    def spelled(col: str) -> str:
        others = p.aliases.get(col, ())
        return f"{col} (or {' / '.join(others)})" if others else col

    lines.append("  feature columns:  " + ", ".join(spelled(c) for c in p.feature_columns))
    case = " (found in any letter case)" if p.method == "cluster_then_label" else ""
    lines.append(f"  every column it reads{case}: " + ", ".join(p.input_columns))
    if features:
        lines.append("  features:")
        for f in p.features:
            steps = f" then {', '.join(f.transform)}" if f.transform else ""
            lines.append(f"    {f.name} = {f.formula}({', '.join(f.columns)}){steps}")
        lines.append("  classes: " + ", ".join(
            f"{c} ({', '.join(p.classes.labels[c])})" if p.classes.labels.get(c, (c,)) != (c,) else c
            for c in p.classes.order))
        if p.classes.aggregation:
            lines.append("  aggregated classes: " + "; ".join(
                f"{g} = {', '.join(m)}" for g, m in p.classes.aggregation.items()))
        if p.categories:
            lines.append("  categories: " + "; ".join(
                f"{c.name} (weight {c.weight:g}): {', '.join(c.features)}" for c in p.categories))
    return lines


def run_cli(args) -> int:
    from xsift.config import builtin_presets
    names = args.names or builtin_presets()
    blocks = ["\n".join(describe_preset(name, features=args.features)) for name in names]
    print("\n\n".join(blocks))
    if not args.names:
        print("\nUse one with --config NAME (or copy its file, edit it and pass the copy); "
              "`xsift presets NAME --features` shows its features and classes.")
    return 0
