"""The reliability battery: bad inputs and faults thrown at every ``xsift`` command, each outcome classified
automatically, and one table of totals.

    python benchmarks/battery.py [--keep DIR] [--only SUBSTRING] [--list]

Every case builds its input from scratch (a simulated catalogue, no personal data) in a temporary
directory and runs ``python -m xsift.cli ...`` as a real process. Outcomes:

* **clear error**: exit 2, no traceback, and exactly one stderr line holding ``error:`` (argparse's
  usage lines aside) that names what the case expects (file, column, row, option ...); an exit-2
  message that does not name it is an **unclear error**;
* **handled**: exit 0 and the case's own check holds (the documented count in the manifest, the
  rows of the tables against the input);
* **traceback**: ``Traceback`` on stderr, or an exit status other than 0/2/130/141 (a crash);
* **silent wrong**: exit 0 where a refusal was expected, or a check that fails;
* **rows lost or duplicated**: a handled run whose tables do not hold each classified detection once
  and each voted source in exactly one of the uniquely-classified and ambiguous tables.

Prints one line per case and the table: tried / clear errors / handled / unclear errors / tracebacks /
silent wrong / rows lost or duplicated. Exit status 1 when any case is a traceback, silent, lost or
unclear.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import pathlib
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

ROOT = pathlib.Path(__file__).resolve().parents[1]
CLASSES = None        # the fitted model's classes, set by prepare()
TIMEOUT_S = 300


# ------------------------------------------------------------------ inputs

def prepare(work: pathlib.Path) -> dict:
    """The good inputs every case starts from: a catalogue, shards, a cluster-then-label model, a
    naive-Bayes model and a classify-shards run directory."""
    global CLASSES
    from xsift.cli import main
    from xsift.data.io import write_table
    from xsift.simulate import simulate_catalog
    df = simulate_catalog(1500, seed=7)
    write_table(df, work / "cat.parquet")
    df.to_csv(work / "cat.csv", index=False)
    shards = work / "shards"
    shards.mkdir()
    for i in range(3):
        write_table(df.iloc[i * 500:(i + 1) * 500].reset_index(drop=True), shards / f"part-{i}.parquet")
    quiet = open(os.devnull, "w")
    old = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = quiet
    try:
        assert main(["fit", str(work / "cat.parquet"), "--out", str(work / "model"), "--k", "3", "--quiet"]) == 0
        assert main(["nb", "fit", str(work / "cat.parquet"), "--out", str(work / "nbmodel"), "--quiet"]) == 0
    finally:
        sys.stdout, sys.stderr = old
    from xsift.methods.cluster_then_label import ClusterThenLabel
    CLASSES = [str(c) for c in ClusterThenLabel.load(work / "model").classes_]
    run = subprocess.run([sys.executable, "-m", "xsift.cli", "classify-shards", str(shards), "--model",
                          str(work / "model"), "--out", str(work / "shardrun"), "--workers", "1"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return {"df": df, "cat": work / "cat.parquet", "model": work / "model", "nbmodel": work / "nbmodel",
            "shards": shards, "shardrun": work / "shardrun"}


def edited(base: dict, d: pathlib.Path, edit, name: str = "bad.parquet") -> pathlib.Path:
    """The catalogue after ``edit(frame) -> frame`` written to ``d/name`` (format from the suffix)."""
    from xsift.data.io import write_table
    df = edit(base["df"].copy())
    path = d / name
    if name.endswith(".csv"):
        df.to_csv(path, index=False)
    else:
        write_table(df, path)
    return path


def unlabelled_complete(df: pd.DataFrame) -> pd.Index:
    from xsift.data.features import raw_feature_columns
    return df.index[df["main_type"].isna() & df[raw_feature_columns("csc")].notna().all(axis=1)]


# the faults of one input table: name -> (edit of the catalogue or a writer, file name, expected outcome,
# what a refusal must name / the check of a handled run)
def _set(col, rows, value):
    def edit(df):
        if df[col].dtype.kind != "O" and isinstance(value, str):
            df[col] = df[col].astype(object)
        df.loc[rows(df) if callable(rows) else rows, col] = value
        return df
    return edit


TABLE_FAULTS = {
    "missing file": (None, "absent.parquet", "error", ["absent.parquet"]),
    "empty file": ("empty", "empty.csv", "error", ["empty.csv"]),
    "header only": (lambda df: df.iloc[:0], "header.csv", "error", ["header.csv"]),
    "garbage parquet": ("garbage", "garbage.parquet", "error", ["garbage.parquet"]),
    "truncated parquet": ("truncated", "trunc.parquet", "error", ["trunc.parquet"]),
    "semicolon csv": ("semicolon", "semi.csv", "error", ["semi.csv", "';'"]),
    "no ra column": (lambda df: df.drop(columns=["ra"]), "nora.parquet", "error", ["nora.parquet", "'ra'"]),
    "text in a feature": (_set("hard_hm", [7], "soft"), "text.csv", "error", ["text.csv", "hard_hm", "row 7"]),
    "dec past the pole": (_set("dec", [3], 95.0), "dec.parquet", "error", ["dec.parquet", "'dec'", "row 3"]),
    "null source name": (_set("name", [4], None), "nullname.parquet", "error", ["nullname.parquet", "'name'", "row 4"]),
    "a directory, not a table": ("emptydir", "emptydir", "error", ["emptydir"]),
    "unknown extension": ("txt", "cat.txt", "error", ["cat.txt"]),
    "columns in upper case": (lambda df: df.rename(columns=str.upper), "upper.parquet", "ok", None),
    "duplicated rows": (lambda df: pd.concat([df, df.iloc[:50]], ignore_index=True), "dup.parquet", "ok", None),
    "infinite values": (_set("powlaw_gamma", lambda df: unlabelled_complete(df)[:5], np.inf), "inf.parquet", "ok", None),
    "1e200 sentinel": (_set("powlaw_gamma", lambda df: unlabelled_complete(df)[:5], 1e200), "big.parquet", "ok", None),
    "1.6e38 sentinel (float32)": (_set("var_sigma_b", lambda df: unlabelled_complete(df)[:5], 1.6e38), "f32.parquet",
                                  "ok", None),
}


# (command, fault) whose right outcome differs from the fault's: a command that never reads the column
OUTCOME_OF = {("crossmatch", "text in a feature"): "ok", ("crossmatch", "null source name"): "ok",
              ("nb fit", "no ra column"): "ok", ("nb classify", "no ra column"): "ok", ("bic", "no ra column"): "ok",
              ("nb fit", "null source name"): "ok", ("nb classify", "null source name"): "ok"}


def table_input(base: dict, d: pathlib.Path, fault: str) -> pathlib.Path:
    how, name, _, _ = TABLE_FAULTS[fault]
    path = d / name
    if how is None:
        return path
    if how == "empty":
        path.write_text("")
    elif how == "garbage":
        path.write_bytes(os.urandom(4096))
    elif how == "truncated":
        data = base["cat"].read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif how == "semicolon":
        base["df"].to_csv(path, index=False, sep=";")
    elif how == "emptydir":
        path.mkdir()
    elif how == "txt":
        shutil.copy(d.parent / "cat.csv", path)
    else:
        return edited(base, d, how, name)
    return path


# ------------------------------------------------------------------ checks of handled runs

def check_classify_run(out: pathlib.Path, fmt: str = "parquet") -> tuple[bool, bool, str]:
    """(check holds, rows lost or duplicated, why): every detection once, probabilities finite and summing
    to 1 or none beside no_usable_class, every voted source in exactly one master table."""
    suffix = {"parquet": ".parquet", "csv": ".csv"}[fmt]
    read = pd.read_parquet if fmt == "parquet" else pd.read_csv
    try:
        det = read(out / f"detection_level{suffix}")
        tables = [read(out / f"{t}{suffix}") for t in ("uniquely_classified", "ambiguous")]
        json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        return False, True, f"outputs missing: {exc}"
    none = det["no_usable_class"].astype(bool).to_numpy()
    probs = det[CLASSES].to_numpy(dtype=np.float64)
    if not (np.isfinite(probs[~none]).all() and np.allclose(probs[~none].sum(axis=1), 1, atol=1e-4)):
        return False, False, "probabilities not finite / not summing to 1 beside a class"
    if det.duplicated(subset=["name", "obsid"]).any():
        return False, True, "a detection twice"
    names = pd.concat([t["name"] for t in tables])
    if names.duplicated().any():
        return False, True, "a source in two master-table rows"
    if set(names) != set(det.loc[~none, "name"]):
        return False, True, "voted sources differ from the classified ones"
    return True, False, f"{len(det)} detections, {len(names)} sources"


def manifest_has(out: pathlib.Path, *keys, file="manifest.json"):
    """A check: the manifest holds a non-empty value under the first of the nested key paths given."""
    def check(_out):
        m = json.loads((out / file).read_text())
        for path in keys:
            v = m
            for k in path:
                v = v.get(k) if isinstance(v, dict) else None
            if v:
                return True, False, f"{'.'.join(path)} = {v}"
        return False, False, f"none of {keys} in the manifest"
    return check


def nb_output_check(out: pathlib.Path, rows: int):
    def check(_out):
        t = pd.read_parquet(out / "nb_classification.parquet")
        classes = [c for c in t.columns if c not in ("name", "predicted_class", "outlier_measure", "n_categories",
                                                     "obsid", "ra", "dec")]
        p = t[classes].to_numpy(dtype=np.float64)
        ok = np.isfinite(p).all(axis=1)
        if not np.allclose(p[ok].sum(axis=1), 1, atol=1e-4) or t.loc[~ok, "predicted_class"].notna().any():
            return False, False, "probabilities not summing to 1 / class beside NaN"
        if len(t) != rows:       # naive Bayes classifies every input row (one per source in its catalogues)
            return False, True, f"{len(t)} rows from {rows} input rows"
        return True, False, f"{len(t)} rows"
    return check


# ------------------------------------------------------------------ the cases

def cases(base: dict, work: pathlib.Path):
    """Yield (name, argv, expected "error"|"ok"|"interrupt", names or check, options)."""
    m, nbm, cat = str(base["model"]), str(base["nbmodel"]), str(base["cat"])

    # 1. every table fault into every command that reads a catalogue
    for fault, (_, _, expect_fault, names) in TABLE_FAULTS.items():
        for command in ("fit", "classify", "run", "validate", "nb fit", "nb classify", "bic", "crossmatch"):
            expect = OUTCOME_OF.get((command, fault), expect_fault)
            if command in ("bic",) and fault in ("null source name", "dec past the pole", "duplicated rows",
                                                 "1.6e38 sentinel (float32)", "infinite values"):
                continue            # bic reads the features only
            if command == "crossmatch" and expect == "ok" and expect_fault == "ok":
                continue
            d = work / f"{command.replace(' ', '_')}-{fault.replace(' ', '_').replace('(', '').replace(')', '')}"
            d.mkdir()
            inp = str(table_input(base, d, fault))
            out = d / "out"
            argv = {"fit": ["fit", inp, "--out", str(out), "--k", "3", "--quiet"],
                    "classify": ["classify", inp, "--model", m, "--out", str(out), "--quiet", "--no-figures"],
                    "run": ["run", inp, "--out", str(out), "--k", "3", "--quiet", "--no-figures"],
                    "validate": ["validate", inp, "--out", str(out), "--k", "3"],
                    "nb fit": ["nb", "fit", inp, "--out", str(out), "--quiet"],
                    "nb classify": ["nb", "classify", inp, "--model", nbm, "--out", str(out), "--quiet"],
                    "bic": ["bic", inp, "--k", "1..3", "--repeats", "1", "--out", str(out)],
                    "crossmatch": ["crossmatch", inp, "--reference", cat, "--out", str(out) + ".parquet"],
                    }[command]
            if command == "classify" and fault == "1.6e38 sentinel (float32)":
                argv += ["--precision", "float32"]
            if expect == "error":
                yield f"{command}: {fault}", argv, "error", names, {"out": out}
                continue
            check = {"classify": lambda o: check_classify_run(o), "run": lambda o: check_classify_run(o)}.get(command)
            if command == "fit":
                check = manifest_has(out, ("fit", "schema", "columns_matched"), ("fit", "schema", "duplicates_dropped"),
                                     ("fit", "schema", "infinite_to_missing"), ("fit", "schema", "beyond_range_to_missing"),
                                     ("fit", "schema", "rows_out"))
            elif command == "validate":
                check = manifest_has(out, ("counts", "test"), ("validation", "counts", "test"), ("counts",))
            elif command == "nb fit":
                check = (lambda o: ((o / "model.json").exists(), False, "model written"))
            elif command == "nb classify":
                check = nb_output_check(out, len(base["df"]) + (50 if fault == "duplicated rows" else 0))
            elif command == "bic":
                check = (lambda o: ((o / "bic.csv").exists(), False, "bic.csv written"))
            elif command == "crossmatch":
                def check(o, rows=len(base["df"])):
                    n = len(pd.read_parquet(str(o) + ".parquet"))
                    return n == rows, n != rows, f"{n} of {rows} rows crossmatched"
            yield f"{command}: {fault}", argv, "ok", check, {"out": out}

    # 2. models
    def broken_model(name, damage, kind="model"):
        d = work / f"model-{name.replace(' ', '_')}"
        shutil.copytree(base[kind], d)
        damage(d)
        return d

    def json_edit(fn):
        def damage(d):
            meta = json.loads((d / "model.json").read_text())
            fn(meta)
            (d / "model.json").write_text(json.dumps(meta))
        return damage

    model_faults = {
        "no such model": lambda: work / "no-model",
        "broken model.json": lambda: broken_model("broken json", lambda d: (d / "model.json").write_text("{oops")),
        "truncated model.npz": lambda: broken_model("trunc npz", lambda d: (d / "model.npz").write_bytes(
            (d / "model.npz").read_bytes()[:200])),
        "hash deleted": lambda: broken_model("no hash", json_edit(lambda meta: meta.pop("hash"))),
        "hash edited": lambda: broken_model("bad hash", json_edit(lambda meta: meta.update(hash="0" * 64))),
        "preset removed": lambda: broken_model("no preset", json_edit(lambda meta: meta["meta"].pop("preset"))),
        "model.npz removed": lambda: broken_model("no npz", lambda d: (d / "model.npz").unlink()),
    }
    for fault, make in model_faults.items():
        d = make()
        yield f"classify: {fault}", ["classify", cat, "--model", str(d), "--out", str(work / f"o-{d.name}"),
                                     "--quiet"], "error", [d.name], {"out": work / f"o-{d.name}"}
        yield f"classify-shards: {fault}", ["classify-shards", str(base["shards"]), "--model", str(d), "--out",
                                            str(work / f"s-{d.name}"), "--workers", "1"], "error", [d.name], {}
    for fault, damage in {"nb hash edited": json_edit(lambda meta: meta.update(hash="0" * 64)),
                          "nb hash deleted": json_edit(lambda meta: meta.pop("hash")),
                          "nb broken model.json": lambda d: (d / "model.json").write_text("[1, 2"),
                          "nb truncated model.npz": lambda d: (d / "model.npz").write_bytes(b"PK\x03\x04")}.items():
        d = broken_model(fault, damage, "nbmodel")
        yield f"nb classify: {fault}", ["nb", "classify", cat, "--model", str(d), "--out", str(work / f"o-{d.name}"),
                                        "--quiet"], "error", [d.name], {}
    yield "classify: a naive-Bayes model", ["classify", cat, "--model", nbm, "--out", str(work / "o-nbm"), "--quiet"], \
        "error", ["nbmodel"], {}
    yield "nb classify: a cluster model", ["nb", "classify", cat, "--model", m, "--out", str(work / "o-ctlm"),
                                           "--quiet"], "error", ["model"], {}

    # 3. options and output paths
    (work / "a-file").write_text("x\n")
    opts = [
        ("fit: --k 0", ["fit", cat, "--out", str(work / "k0"), "--k", "0"], ["n_components 0"]),
        ("fit: --k -3", ["fit", cat, "--out", str(work / "km3"), "--k", "-3"], ["n_components -3"]),
        ("fit: --k abc", ["fit", cat, "--out", str(work / "kabc"), "--k", "abc"], ["--k"]),
        ("fit: --k 500 (more parameters than rows)", ["fit", cat, "--out", str(work / "k500"), "--k", "500"], ["K=500"]),
        ("bic: --k 0..3", ["bic", cat, "--k", "0..3", "--out", str(work / "b0")], ["--k"]),
        ("bic: --k 5..40 (more parameters than rows)", ["bic", cat, "--k", "5..40", "--out", str(work / "b40")],
         ["free parameters"]),
        ("fit: --out is a file", ["fit", cat, "--out", str(work / "a-file"), "--k", "3"], ["a-file", "is a file"]),
        ("run: --out under a file", ["run", cat, "--out", str(work / "a-file" / "sub"), "--k", "3"], ["a-file"]),
        ("classify: --out is a file", ["classify", cat, "--model", m, "--out", str(work / "a-file")], ["a-file"]),
        ("crossmatch: --out is a directory", ["crossmatch", cat, "--reference", cat, "--out", str(work)],
         ["is a directory"]),
        ("crossmatch: bad --radius", ["crossmatch", cat, "--reference", cat, "--radius", "wide", "--out",
                                      str(work / "xm.parquet")], ["wide"]),
        ("crossmatch: reference without a type column", ["crossmatch", cat, "--reference",
                                                         str(edited(base, work, lambda df: df.drop(columns=["main_type"]),
                                                                    "ref-notype.parquet")),
                                                         "--out", str(work / "xm2.parquet")], ["main_type"]),
        ("simulate: --detections 0", ["simulate", "--detections", "0", "--out", str(work / "sim0")], ["--detections"]),
        ("simulate: --detections -5", ["simulate", "--detections", "-5", "--out", str(work / "sim5")], ["--detections"]),
        ("simulate: --shards 0", ["simulate", "--detections", "100", "--shards", "0", "--out", str(work / "simS")],
         ["--shards"]),
        ("presets: unknown name", ["presets", "nosuchpreset"], ["nosuchpreset"]),
        ("fit: --config missing file", ["fit", cat, "--out", str(work / "cfg"), "--config", str(work / "none.toml")],
         ["none.toml"]),
        ("fit: --config broken TOML", ["fit", cat, "--out", str(work / "cfg2"), "--config",
                                       str(_write(work / "broken.toml", "[features\nx = 1"))], ["broken.toml"]),
        ("classify: --published-format with FITS", ["classify", cat, "--model", m, "--out", str(work / "pf"),
                                                    "--format", "fits", "--published-format"], ["--published-format"]),
        ("validate: one labelled class", ["validate", str(edited(base, work, lambda df: df.assign(
            main_type=np.where(df["main_type"].notna(), "QSO", None)), "oneclass.parquet")), "--out",
            str(work / "val1"), "--k", "3"], ["oneclass.parquet"]),
        ("nb tracks: unknown source", ["nb", "tracks", "NO SUCH SOURCE", "--catalog", cat, "--model", nbm, "--out",
                                       str(work / "tracks")], ["NO SUCH SOURCE"]),
        ("explore: not a run directory", ["explore", str(base["model"]), "--out", str(work / "x.html")], ["model"]),
        ("explore: no such run", ["explore", str(work / "no-run"), "--out", str(work / "y.html")], ["no-run"]),
        ("vote-shards: no such run", ["vote-shards", str(work / "no-run")], ["no-run"]),
        ("vote-shards: a model directory", ["vote-shards", str(base["model"])], ["model"]),
        ("fit-shards: no such directory", ["fit-shards", str(work / "no-shards"), "--out", str(work / "fs0")],
         ["no-shards"]),
        ("fit-shards: --k 0", ["fit-shards", str(base["shards"]), "--out", str(work / "fsk0"), "--k", "0",
                               "--workers", "1"], ["0"]),
        ("classify-shards: --workers 0", ["classify-shards", str(base["shards"]), "--model", m, "--out",
                                          str(work / "w0"), "--workers", "0"], ["--workers"]),
        ("classify-shards: another model into the run", ["classify-shards", str(base["shards"]), "--model",
                                                         str(work / "model-no_npz").replace("no_npz", "no_hash")
                                                         if False else str(base["nbmodel"]), "--out",
                                                         str(base["shardrun"]), "--workers", "1"], ["--force"]),
        ("demo: --detections 0", ["demo", "--detections", "0", "--out", str(work / "demo0")], ["--detections"]),
    ]
    for name, argv, names in opts:
        yield name, argv, "error", names, {}
    yield "no command", [], "usage", None, {}
    out = work / "nblow"
    yield "nb fit: labels in lower case", ["nb", "fit", str(edited(base, work, lambda df: df.assign(
        main_type=df["main_type"].str.lower()), "lower.parquet")), "--out", str(out), "--quiet"], "ok", \
        _same_nb_model(base["nbmodel"], out), {"out": out}

    # 4. shards
    sh = work / "badshards"

    def shard_dir(name, build):
        d = sh / name
        d.mkdir(parents=True)
        for i, f in enumerate(sorted(base["shards"].iterdir())):
            shutil.copy(f, d / f.name)
        build(d)
        return d

    from xsift.data.io import write_table
    missing_col = shard_dir("missing_col", lambda d: write_table(
        pd.read_parquet(d / "part-1.parquet").drop(columns=["hard_hm"]), d / "part-1.parquet"))
    unreadable = shard_dir("unreadable", lambda d: (d / "part-1.parquet").write_bytes(b"PAR1garbage"))
    empty = shard_dir("empty", lambda d: write_table(pd.read_parquet(d / "part-1.parquet").iloc[:0],
                                                       d / "part-1.parquet"))
    stray = shard_dir("stray", lambda d: (d / "notes.txt").write_text("x"))
    nullname = shard_dir("nullname", lambda d: write_table(pd.read_parquet(d / "part-2.parquet").assign(
        name=lambda f: f["name"].where(f.index != 3)), d / "part-2.parquet"))
    for label, d, expect, names in [
            ("a shard without a feature column, --missing drop", missing_col, "error", ["part-1.parquet", "hard_hm"]),
            ("an unreadable shard", unreadable, "error", ["part-1.parquet"]),
            ("a null source name in one shard", nullname, "error", ["part-2.parquet", "'name'"])]:
        extra = ["--missing", "drop"] if "drop" in label else []
        yield f"classify-shards: {label}", ["classify-shards", str(d), "--model", m, "--out",
                                            str(work / f"cs-{d.name}"), "--workers", "1", *extra], expect, names, {}
        if "drop" not in label:
            yield f"fit-shards: {label}", ["fit-shards", str(d), "--out", str(work / f"fs-{d.name}"), "--k", "3",
                                           "--workers", "1"], expect, names, {}
    yield "fit-shards: a shard without a feature column", ["fit-shards", str(missing_col), "--out",
                                                          str(work / "fs-mc"), "--k", "3", "--workers", "1"], \
        "error", ["part-1.parquet", "hard_hm"], {}
    yield "classify DIR: a shard without a feature column, --missing drop", \
        ["classify", str(missing_col), "--model", m, "--out", str(work / "cd-mc"), "--missing", "drop", "--quiet"], \
        "error", ["part-1.parquet", "hard_hm"], {}
    out = work / "cd-mc2"
    yield "classify DIR: a shard without a feature column, --missing marginalise", \
        ["classify", str(missing_col), "--model", m, "--out", str(out), "--missing", "marginalise", "--quiet",
         "--no-figures"], "ok", lambda o: _both(check_classify_run(o), manifest_has(
            o, ("classify", "schema", "features_missing_by_file"))(o)), {"out": out}
    out = work / "cs-mc2"
    yield "classify-shards: a shard without a feature column, --missing marginalise", \
        ["classify-shards", str(missing_col), "--model", m, "--out", str(out), "--missing", "marginalise",
         "--workers", "1"], "ok", manifest_has(out, ("classification", "features_missing_by_file")), {"out": out}
    out = work / "cs-stray"
    yield "classify-shards: a stray non-Parquet file beside the shards (ignored)", \
        ["classify-shards", str(stray), "--model", m, "--out", str(out), "--workers", "1"], "ok", \
        manifest_has(out, ("classification", "rows_in")), {"out": out}
    out = work / "cs-empty"
    yield "classify-shards: an empty shard", ["classify-shards", str(empty), "--model", m, "--out", str(out),
                                              "--workers", "1"], "ok", \
        manifest_has(out, ("classification", "shards_empty")), {"out": out}

    # 5. faults while running
    out = work / "full-run"
    yield "run: the disk fills up (RLIMIT_FSIZE 64 kB)", ["run", cat, "--out", str(out), "--k", "3", "--quiet"], \
        "error", [str(out), "File too large"], {"fsize": 64_000, "out": out, "nothing_left": True}
    out = work / "full-classify"
    yield "classify: the disk fills up (RLIMIT_FSIZE 64 kB)", ["classify", cat, "--model", m, "--out", str(out),
                                                                "--quiet"], \
        "error", [str(out), "File too large"], {"fsize": 64_000, "out": out, "nothing_left": True}
    out = work / "int-fit"
    big = work / "big.parquet"
    yield "fit: Ctrl-C while the mixture fits", ["fit", str(big), "--out", str(out), "--k", "8", "--quiet"], \
        "interrupt", None, {"sigint_after": 3.5, "out": out, "big": big}
    yield "presets: output piped into a reader that stops", ["presets"], "pipe", None, {}


def _same_nb_model(reference: pathlib.Path, out: pathlib.Path):
    """A check: the model in ``out`` has the arrays of the reference model (labels matched in any case)."""
    def check(_out):
        a, b = np.load(out / "model.npz"), np.load(reference / "model.npz")
        same = sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)
        return same, False, "the same model as from the labels' own case" if same else "another model"
    return check


def _write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.write_text(text)
    return path


def _both(a, b):
    return a[0] and b[0], a[1] or b[1], f"{a[2]}; {b[2]}"


# ------------------------------------------------------------------ running and classifying

def run_case(argv, opts) -> tuple[int, str, float]:
    cmd = [sys.executable, "-m", "xsift.cli", *argv]
    t0 = time.perf_counter()
    if opts.get("big") and not opts["big"].exists():
        from xsift.data.io import write_table
        from xsift.simulate import simulate_catalog
        write_table(simulate_catalog(300_000, seed=1), opts["big"])
        t0 = time.perf_counter()
    preexec = None
    if opts.get("fsize"):
        limit = opts["fsize"]

        def preexec():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    if opts.get("sigint_after"):
        # a child inherits an ignored SIGINT (a shell ignores it in background jobs): let it take SIGINT
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True)
        finally:
            signal.signal(signal.SIGINT, previous)
        time.sleep(opts["sigint_after"])
        os.killpg(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=TIMEOUT_S)
        return p.returncode, err, time.perf_counter() - t0
    if opts.get("pipe"):
        p = subprocess.run(f"{' '.join(cmd)} | head -c 10 > /dev/null", shell=True, capture_output=True, text=True)
        return p.returncode, p.stderr, time.perf_counter() - t0
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, preexec_fn=preexec)
    except subprocess.TimeoutExpired:
        return 124, "timed out", time.perf_counter() - t0
    return p.returncode, p.stderr, time.perf_counter() - t0


def classify_outcome(expect, check, code, err, opts) -> tuple[str, bool, str]:
    """(outcome, rows lost or duplicated, detail)."""
    if "Traceback" in err or code not in (0, 2, 130, 141):
        return "traceback", False, f"exit {code}: {err.strip().splitlines()[-1][:160] if err.strip() else ''}"
    errors = [line for line in err.splitlines() if "error:" in line]
    if expect == "interrupt":
        lines = [line for line in err.splitlines() if line.strip()]
        ok = code == 130 and len(lines) == 1 and not (opts["out"] / "manifest.json").exists()
        return ("handled" if ok else "silent wrong"), False, f"exit {code}, {len(lines)} stderr line(s)"
    if expect == "usage":
        return ("handled" if code == 2 and not err.strip() else "silent wrong"), False, f"exit {code} (help on stdout)"
    if expect == "pipe":
        return ("handled" if not err.strip() else "silent wrong"), False, f"stderr {err.strip()[:80]!r}"
    if expect == "error":
        if code == 0:
            return "silent wrong", False, "exit 0 where a refusal was expected"
        if code != 2 or len(errors) != 1:
            return "unclear error", False, f"exit {code}, {len(errors)} error line(s): {err.strip()[:160]!r}"
        missing = [n for n in check if n not in errors[0]]
        if opts.get("nothing_left") and opts["out"].exists() and any(opts["out"].iterdir()):
            return "silent wrong", True, f"partial outputs left in {opts['out']}"
        if missing:
            return "unclear error", False, f"does not name {missing}: {errors[0][:200]}"
        return "clear error", False, errors[0][:160]
    if code != 0:
        return "silent wrong", False, f"exit {code} where handling was expected: {err.strip()[-200:]!r}"
    try:
        holds, lost, why = check(opts.get("out"))
    except Exception as exc:   # a check that cannot read the outputs: the run left them wrong
        holds, lost, why = False, False, f"check failed: {type(exc).__name__}: {exc}"
    return ("handled" if holds else "silent wrong"), lost, why


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary directory)")
    parser.add_argument("--only", metavar="TEXT", help="run only the cases whose name contains TEXT")
    parser.add_argument("--list", action="store_true", help="list the cases and stop")
    args = parser.parse_args()
    work = pathlib.Path(args.keep or tempfile.mkdtemp(prefix="xsift-battery-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("XSIFT_PROGRESS", "0")
    base = prepare(work)
    totals = {k: 0 for k in ("tried", "clear error", "handled", "unclear error", "traceback", "silent wrong", "lost")}
    rows = []
    t_all = time.perf_counter()
    for name, argv, expect, check, opts in cases(base, work):
        if args.only and args.only not in name:
            continue
        if args.list:
            print(name)
            continue
        if expect == "pipe":
            opts = {**opts, "pipe": True}
        code, err, seconds = run_case(argv, opts)
        outcome, lost, detail = classify_outcome(expect, check, code, err, opts)
        totals["tried"] += 1
        totals[outcome] += 1
        totals["lost"] += int(lost)
        rows.append((name, outcome, lost, detail))
        print(f"{outcome:13s} {'LOST ' if lost else ''}{seconds:5.1f}s  {name}  | {detail}", flush=True)
    if args.list:
        return 0
    print()
    print("| tried | clear errors | handled | unclear errors | tracebacks | silent wrong | rows lost or duplicated |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {totals['tried']} | {totals['clear error']} | {totals['handled']} | {totals['unclear error']} | "
          f"{totals['traceback']} | {totals['silent wrong']} | {totals['lost']} |")
    print(f"\n{time.perf_counter() - t_all:.0f} s; work directory {work}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    bad = totals["traceback"] + totals["silent wrong"] + totals["lost"] + totals["unclear error"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
