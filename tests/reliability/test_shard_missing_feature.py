"""A shard lacking a feature column that the catalogue's other shards have gets one rule in ``classify
DIR``, ``fit-shards`` and ``classify-shards`` (xsift.data.schema.features_absent_by_file): it is a
one-file table lacking the column, so a fit refuses it, classify refuses it under ``--missing drop``
and, under ``median``/``marginalise``, classifies its rows on the features they have and lists the
shard under ``features_missing_by_file``. Refusals come before any work and name shard and column."""
import json

import pandas as pd
import pytest

from reliability_checks import refused
from xsift.cli import main
from xsift.data.io import write_table
from xsift.errors import SchemaError


@pytest.fixture
def shards(tmp_path, catalogue):
    """Two shards of the test catalogue, the second without its ``hard_hm`` column."""
    df = catalogue()
    root = tmp_path / "shards"
    root.mkdir()
    write_table(df.iloc[:1000].reset_index(drop=True), root / "part-0.parquet")
    write_table(df.iloc[1000:].drop(columns=["hard_hm"]).reset_index(drop=True), root / "part-1.parquet")
    return root


def test_classify_dir_refuses_the_shard_under_drop(tmp_path, capsys, shards, fitted_model):
    model, _ = fitted_model
    code = main(["classify", str(shards), "--model", str(model), "--out", str(tmp_path / "run"),
                 "--missing", "drop", "--no-figures", "--quiet"])
    refused(code, capsys.readouterr().err, "part-1.parquet", "'hard_hm'", "--missing marginalise")
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_classify_dir_classifies_the_shard_under_marginalise_and_counts_it(tmp_path, capsys, shards, catalogue,
                                                                          fitted_model):
    model, _ = fitted_model
    run = tmp_path / "run"
    assert main(["classify", str(shards), "--model", str(model), "--out", str(run), "--missing", "marginalise",
                 "--no-figures", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "part-1.parquet: feature column(s) hard_hm absent" in out
    schema = json.loads((run / "manifest.json").read_text())["classify"]["schema"]
    assert schema["features_missing_by_file"] == {str(shards / "part-1.parquet"): ["hard_hm"]}
    # the second shard's unlabelled rows with their other features are classified (oracle: the input)
    det = pd.read_parquet(run / "detection_level.parquet")
    second = set(catalogue().iloc[1000:]["name"])
    assert det["name"].isin(second).sum() > 0
    assert det.loc[det["name"].isin(second), "n_features_used"].max() < det["n_features_used"].max()


def test_fit_shards_and_classify_shards_refuse_up_front(tmp_path, shards, fitted_model):
    """The library calls check the Parquet footers before touching the cluster (client=None is never used)."""
    from xsift.distributed import classify_shards, fit_shards
    with pytest.raises(SchemaError, match=r"part-1\.parquet: missing feature column 'hard_hm'"):
        fit_shards(None, shards, tmp_path / "model", n_components=3, missing="marginalise")
    assert not (tmp_path / "model").exists()
    model, _ = fitted_model
    with pytest.raises(SchemaError, match=r"part-1\.parquet: missing feature column 'hard_hm'"):
        classify_shards(None, shards, model, tmp_path / "run", missing="drop")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_shard_commands_apply_the_rule(tmp_path, capsys, shards, fitted_model):
    model, _ = fitted_model
    code = main(["fit-shards", str(shards), "--out", str(tmp_path / "model"), "--k", "3", "--workers", "1"])
    refused(code, capsys.readouterr().err, "part-1.parquet", "'hard_hm'")
    assert not (tmp_path / "model").exists()
    code = main(["classify-shards", str(shards), "--model", str(model), "--out", str(tmp_path / "drop"),
                 "--missing", "drop", "--workers", "1"])
    refused(code, capsys.readouterr().err, "part-1.parquet", "'hard_hm'")
    run = tmp_path / "marg"
    assert main(["classify-shards", str(shards), "--model", str(model), "--out", str(run),
                 "--missing", "marginalise", "--workers", "1"]) == 0
    assert "part-1.parquet: hard_hm" in capsys.readouterr().err
    summary = json.loads((run / "manifest.json").read_text())["classification"]
    assert summary["features_missing_by_file"] == {str(shards / "part-1.parquet"): ["hard_hm"]}
    assert summary["rows_in"] == 2000
