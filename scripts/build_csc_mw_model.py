"""Rebuild the shipped ready model ``csc-mw`` (engine/models/csc-mw: model.npz + model.json).

The naive-Bayes classifier (Tranin et al. 2022, as their code CLAXBOI runs it) with the ``nb_csc_mw`` preset,
fitted on the full MUWCLASS 2023 training set (../shared/data/muwclass/td_multiwavelength_2023.csv, 3,126
labelled CSC sources; Yang et al. 2022, ApJ 941, 104), with the preset's options, priors and category weights.
Everything it does is deterministic: rerunning it gives the same content hash (model arrays, preset, priors,
weights; ``tests/cli/test_nb_cli_mw.py`` checks it against the shipped model).

``--tune CLASS`` instead tunes the category weights (and the missing-value exponent) by differential evolution
on a 5-fold cross-validation for that class's F1 (seeded) before the fit. The shipped model is not tuned:
nested cross-validation by source (``xsift nb validate ... --tune LMXB``, benchmarks/README.md) showed tuning
for one rare class's F1 lowers the out-of-fold macro F1 and the XRB F1 on this sample.

    python scripts/build_csc_mw_model.py [--data PATH] [--out engine/models/csc-mw] [--tune CLASS] [--seed 0]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "muwclass" / "td_multiwavelength_2023.csv"
OUT = ROOT / "engine" / "models" / "csc-mw"
PRESET = "nb_csc_mw"


def build(data=DATA, out=OUT, *, tune: str | None = None, seed: int = 0, popsize: int = 8, maxiter: int = 40,
          date: str | None = None) -> str:
    """Fit (and with ``tune`` tune) the model on ``data`` and save it in ``out``; returns its content hash.
    ``date``: the build date written in the provenance (default: today, UTC; not part of the hash)."""
    from xsift import __version__
    from xsift.data.io import read_catalog
    from xsift.methods.naive_bayes import NaiveBayesKDE, tune_weights
    df = read_catalog(data)
    model = NaiveBayesKDE(PRESET, seed=seed)
    tuning = None
    if tune:
        res = tune_weights(model, df, target=tune, n_folds=5, seed=seed, popsize=popsize, maxiter=maxiter,
                           tune_alpha=True, source=str(data))
        model.set_params(**res.params)
        tuning = res.as_dict()
    model.fit(df, source=str(data))
    model.fit_report_["provenance"] = {
        "data": "MUWCLASS 2023 training set: muwclass/td_multiwavelength_2023.csv (Yang et al. 2022, ApJ 941, 104; "
                "3,126 literature-classified CSC v2 sources with Gaia/2MASS/WISE counterparts)",
        "data_file": pathlib.Path(data).name, "preset": PRESET, "options": model.options(),
        "weights": model.category_weights(), "seed": seed, "tuning": tuning,
        "built_by": "scripts/build_csc_mw_model.py", "xsift_version": __version__,
        "date": date or _dt.datetime.now(_dt.timezone.utc).date().isoformat()}
    return model.save(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA), help="td_multiwavelength_2023.csv")
    ap.add_argument("--out", default=str(OUT), help="model directory to write")
    ap.add_argument("--tune", default=None, metavar="CLASS", help="tune weights and alpha for this class's F1")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    digest = build(args.data, args.out, tune=args.tune, seed=args.seed)
    print(f"wrote {args.out} (content hash {digest})")


if __name__ == "__main__":
    main()
