"""A null source name is refused by the schema check, naming file, column and row: the vote groups
detections by name, so null names would make unrelated detections one "source". The same check runs
in memory (``fit``, ``classify``) and on Dask (``classify-shards`` classifies each shard with it)."""
import json

from reliability_checks import refused
from xsift.cli import main
from xsift.data.io import write_table


def _with_null_names(df):
    df["name"] = df["name"].astype(object)
    df.loc[[3, 9, 40], "name"] = None
    return df


def test_fit_refuses_null_source_names(tmp_path, capsys, catalogue):
    write_table(_with_null_names(catalogue()), tmp_path / "cat.parquet")
    code = main(["fit", str(tmp_path / "cat.parquet"), "--out", str(tmp_path / "model"), "--k", "3"])
    line = refused(code, capsys.readouterr().err, "cat.parquet", "'name'", "row 3", "3 such row(s)")
    assert "source" in line
    assert not (tmp_path / "model").exists()


def test_classify_refuses_null_source_names(tmp_path, capsys, catalogue, fitted_model):
    model, _ = fitted_model
    write_table(_with_null_names(catalogue()), tmp_path / "cat.csv")
    code = main(["classify", str(tmp_path / "cat.csv"), "--model", str(model), "--out", str(tmp_path / "run")])
    refused(code, capsys.readouterr().err, "cat.csv", "'name'", "row 3")
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_classify_shards_refuses_the_shard_with_null_names_and_completes_the_others(tmp_path, capsys, catalogue,
                                                                                     fitted_model):
    model, _ = fitted_model
    df = catalogue()
    shards = tmp_path / "shards"
    shards.mkdir()
    write_table(df.iloc[:1000].reset_index(drop=True), shards / "part-0.parquet")
    write_table(_with_null_names(df.iloc[1000:].reset_index(drop=True)), shards / "part-1.parquet")
    code = main(["classify-shards", str(shards), "--model", str(model), "--out", str(tmp_path / "run"),
                 "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "part-1.parquet" in errors[0] and "'name'" in errors[0] and "row 3" in errors[0]
    run = tmp_path / "run"
    ledger = sorted(p.name for p in (run / "ledger").iterdir())
    assert ledger == ["part-0.json"]
    assert json.loads((run / "ledger" / "part-0.json").read_text())["rows_in"] == 1000
    assert not (run / "uniquely_classified").exists() and not (run / "manifest.json").exists()
