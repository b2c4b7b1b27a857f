"""A semicolon-separated file read as CSV shows as one column named ``name;obsid;ra;...``: the
missing-column error says it looks ';'-separated. A column name in another case and misspelt gets
the right 'did you mean' (names compared in lower case)."""
import pandas as pd

from reliability_checks import refused
from xsift.cli import main
from xsift.data.schema import check_catalog
from xsift.errors import SchemaError


def test_semicolon_csv_names_the_delimiter(tmp_path, capsys, catalogue):
    catalogue().head(200).to_csv(tmp_path / "cat.csv", sep=";", index=False)
    code = main(["fit", str(tmp_path / "cat.csv"), "--out", str(tmp_path / "model"), "--k", "3"])
    refused(code, capsys.readouterr().err, "cat.csv", "missing column", "';'-separated")
    assert not (tmp_path / "model").exists()


def test_a_case_mismatch_is_found_and_a_misspelling_in_another_case_is_suggested(tmp_path, capsys, catalogue):
    df = catalogue().rename(columns={"hard_hm": "HARD_HM", "bb_kt": "BB_KTT"})
    df.to_csv(tmp_path / "cat.csv", index=False)
    code = main(["fit", str(tmp_path / "cat.csv"), "--out", str(tmp_path / "model"), "--k", "3"])
    line = refused(code, capsys.readouterr().err, "cat.csv", "'bb_kt' (did you mean 'BB_KTT'?)")
    assert "'hard_hm'" not in line.split(";")[0]            # found in another case, so not missing


def test_did_you_mean_ignores_case_where_a_case_sensitive_match_would_mislead():
    # compared as written, 'hard_ms' would be the nearest name to 'hard_hm'
    df = pd.DataFrame({"name": ["a"], "hard_ms": [1.0], "HARD_HMX": [2.0]})
    try:
        check_catalog(df, required=["hard_hm"], source="t.csv")
    except SchemaError as exc:
        assert "'hard_hm' (did you mean 'HARD_HMX'?)" in str(exc), str(exc)
    else:
        raise AssertionError("a missing column must be refused")
