"""``xsift validate`` on a catalogue whose labelled detections are all of one class refuses: there is
nothing to tell apart, and an accuracy of 1.000 would say nothing."""
from reliability_checks import refused
from xsift.cli import main
from xsift.data.io import write_table


def test_validate_refuses_a_single_labelled_class(tmp_path, capsys, catalogue):
    df = catalogue()
    df["main_type"] = df["main_type"].astype(object).where(df["main_type"] == "QSO", None)
    assert (df["main_type"] == "QSO").sum() > 50
    write_table(df, tmp_path / "cat.parquet")
    code = main(["validate", str(tmp_path / "cat.parquet"), "--out", str(tmp_path / "val"), "--k", "3",
                 "--no-figures"])
    refused(code, capsys.readouterr().err, "cat.parquet", "'main_type'", "QSO", "two classes")
    assert not (tmp_path / "val").exists() or not any((tmp_path / "val").iterdir())
