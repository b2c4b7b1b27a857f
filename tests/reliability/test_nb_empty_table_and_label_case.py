"""``nb`` commands refuse a header-only file (columns, no rows) as ``classify`` does, in one line
naming the file and writing nothing; ``nb fit`` with labels in another letter case than the preset's
says that the labels match no class because their letter case differs, naming the preset's classes."""
import pandas as pd
import pytest

from reliability_checks import refused
from xsift.cli import main
from xsift.data.io import write_table


@pytest.fixture(scope="module")
def nb_model(tmp_path_factory):
    from xsift.simulate import simulate_catalog
    root = tmp_path_factory.mktemp("nb")
    df = simulate_catalog(2000, seed=5)
    write_table(df, root / "cat.parquet")
    assert main(["nb", "fit", str(root / "cat.parquet"), "--out", str(root / "model"), "--config", "nb_csc",
                 "--quiet"]) == 0
    return root / "model", df


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_nb_classify_refuses_a_header_only_file_like_classify(tmp_path, capsys, nb_model, fitted_model, suffix):
    model, df = nb_model
    write_table(df.iloc[:0], tmp_path / f"header.{suffix}")
    code = main(["nb", "classify", str(tmp_path / f"header.{suffix}"), "--model", str(model),
                 "--out", str(tmp_path / "run"), "--quiet"])
    nb_line = refused(code, capsys.readouterr().err, f"header.{suffix}", "the table is empty")
    assert not (tmp_path / "run").exists()
    cluster_model, _ = fitted_model          # the same file to classify: the same refusal
    code = main(["classify", str(tmp_path / f"header.{suffix}"), "--model", str(cluster_model),
                 "--out", str(tmp_path / "run2")])
    line = refused(code, capsys.readouterr().err, f"header.{suffix}", "the table is empty")
    assert nb_line.split(": error: ")[1].split(";")[0] == line.split(": error: ")[1].split(";")[0]
    assert not (tmp_path / "run2").exists()


def test_nb_fit_with_labels_in_lower_case_says_the_case_differs(tmp_path, capsys, nb_model):
    from xsift.methods.naive_bayes import load_nb_preset
    _, df = nb_model
    spec = load_nb_preset("nb_csc")
    df = df.assign(true_class=df["true_class"].str.lower())
    write_table(df, tmp_path / "lower.parquet")
    code = main(["nb", "fit", str(tmp_path / "lower.parquet"), "--out", str(tmp_path / "m"), "--config", "nb_csc"])
    line = refused(code, capsys.readouterr().err, "lower.parquet", "match no class", "letter case differs",
                   "'agn'", ", ".join(spec.classes))
    assert not (tmp_path / "m").exists()
    # only one class's labels in another case: that class is named, the others fit nothing yet
    df = nb_model[1].copy()
    yso = [label for label, cls in spec.labels.items() if cls == "YSO"]
    df.loc[df["true_class"].isin(yso), "true_class"] = df["true_class"].str.lower()
    write_table(df, tmp_path / "lower_yso.parquet")
    code = main(["nb", "fit", str(tmp_path / "lower_yso.parquet"), "--out", str(tmp_path / "m"),
                 "--config", "nb_csc"])
    line = refused(code, capsys.readouterr().err, "lower_yso.parquet", "class(es) 'YSO'", "letter case differs")
    assert "'AGN'" not in line.split(":")[3]
    assert not (tmp_path / "m").exists()


def test_score_on_rows_of_some_classes_only_is_still_accepted(nb_model):
    """The label check belongs to fitting: scoring a subset whose labels cover only some classes is
    legitimate (a small test fold), and its accuracy is the plain mean of correct predictions."""
    from xsift.methods.naive_bayes import NaiveBayesKDE, load_nb_preset
    model_dir, df = nb_model
    model = NaiveBayesKDE.load(model_dir)
    spec = load_nb_preset("nb_csc")
    agn = df[df["true_class"].map(spec.labels) == "AGN"].reset_index(drop=True)
    expected = float((model.predict(agn) == "AGN").mean())        # oracle: the predictions themselves
    assert model.score(agn, "true_class") == expected
