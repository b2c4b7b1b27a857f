"""An empty (0-row) Parquet shard among good ones in ``classify-shards`` contributes 0 rows: its ledger
record says ``"empty": true`` (no output shard), the manifest lists it under ``shards_empty``, the vote
runs over the other shards, and a rerun skips it like any finished shard."""
import json

import pandas as pd
import pytest

from xsift.cli import main
from xsift.data.io import write_table


@pytest.mark.slow      # the default suite stays under 5 minutes on 2 cores; CI runs it
def test_an_empty_shard_is_recorded_and_the_vote_runs(tmp_path, capsys, catalogue, fitted_model):
    model, _ = fitted_model
    df = catalogue()
    shards = tmp_path / "shards"
    shards.mkdir()
    write_table(df.iloc[:1000].reset_index(drop=True), shards / "part-0.parquet")
    write_table(df.iloc[:0].reset_index(drop=True), shards / "part-1.parquet")      # header only
    write_table(df.iloc[1000:].reset_index(drop=True), shards / "part-2.parquet")
    run = tmp_path / "run"
    argv = ["classify-shards", str(shards), "--model", str(model), "--out", str(run), "--workers", "1"]
    assert main(argv) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "Traceback" not in err and "part-1" in err and "empty" in err

    record = json.loads((run / "ledger" / "part-1.json").read_text())
    assert record["empty"] is True and record["rows_in"] == 0 and record["output"] is None
    assert sorted(p.name for p in (run / "detection_level").iterdir()) == ["part-0.parquet", "part-2.parquet"]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["classification"]["shards_empty"] == ["part-1"]
    assert manifest["classification"]["rows_in"] == len(df)

    # the vote covers every source of the non-empty shards (oracle: the distinct names classified)
    det = pd.concat([pd.read_parquet(p) for p in sorted((run / "detection_level").glob("*.parquet"))])
    voted = det.loc[~det["no_usable_class"].astype(bool), "name"].nunique()
    tables = [pd.read_parquet(run / sub) for sub in ("uniquely_classified", "ambiguous")]
    assert sum(len(t) for t in tables) == voted
    assert set(pd.concat(t["name"] for t in tables)) == set(det.loc[~det["no_usable_class"].astype(bool), "name"])

    # a rerun skips all three shards (the empty one included) and votes again
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "3 of 3 shards already classified" in err
    assert json.loads((run / "manifest.json").read_text())["classification"]["shards_classified_now"] == 0


def test_a_catalogue_of_empty_shards_is_classified_and_the_vote_says_there_is_nothing(tmp_path, capsys, catalogue,
                                                                                       fitted_model):
    model, _ = fitted_model
    shards = tmp_path / "shards"
    shards.mkdir()
    write_table(catalogue().iloc[:0], shards / "part-0.parquet")
    run = tmp_path / "run"
    code = main(["classify-shards", str(shards), "--model", str(model), "--out", str(run), "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]     # besides the progress log lines
    assert len(errors) == 1 and str(run) in errors[0] and "every classified shard is empty (0 rows)" in errors[0]
    assert json.loads((run / "ledger" / "part-0.json").read_text())["empty"] is True
    assert not (run / "manifest.json").exists() and not (run / "uniquely_classified").exists()
