"""Rebuild the README's figures at scale: 2M simulated CSC-like detections drawn by their simulated
(aggregated) class, as `xsift run` draws its run figures (xsift.report.figures).

    .venv/bin/python scripts/readme_figures.py [--detections 2000000] [--out scripts/figures]

Writes sky_by_class_2M.png (one galactic Mollweide density panel per class) and
hardness_by_class_2M.png (one hexbin panel per class). About 10 s and 2 GB of memory at 2M.
"""
from __future__ import annotations

import argparse
import pathlib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detections", type=int, default=2_000_000, help="simulated detections")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulation")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).with_name("figures")), help="output folder")
    args = parser.parse_args()

    from xsift.config import load_preset
    from xsift.methods.voting import aggregated_class_of
    from xsift.report.figures import hardness_diagram, sky_map
    from xsift.simulate import simulate_catalog

    preset = load_preset("csc")
    catalog = simulate_catalog(args.detections, seed=args.seed)
    classes = sorted(catalog["true_class"].unique())
    agg = catalog["true_class"].map(aggregated_class_of(classes, preset.classes.aggregation))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size = f"{args.detections / 1e6:g}M"
    sky = sky_map(catalog["ra"], catalog["dec"], agg, out / f"sky_by_class_{size}.png", label="class",
                  title=f"{args.detections:,} simulated detections by simulated class")
    catalog["aggregated_class"] = agg
    hardness = hardness_diagram(catalog, out / f"hardness_by_class_{size}.png", by="aggregated_class",
                                label="class", title=f"{args.detections:,} simulated detections")
    print(f"wrote {sky} and {hardness}")


if __name__ == "__main__":
    main()
