"""The survey presets of the cluster-then-label method (4XMM ``xmm``, eRASS1 ``erass1``), the grammar
they use ([aliases], [classes.labels], detection = source), and the ``xsift presets`` and
``xsift csc-query`` commands.

The 4XMM preset is run on the real 4XMM-DR13 training sample (../shared/data/xmm); the eRASS1
preset on a small table generated here with the eRASS1 main catalogue's column names.
"""
import csv
import json
import pathlib
import re

import numpy as np
import pandas as pd
import pytest

from shared_data import shared_file
from xsift.cli import main
from xsift.config import builtin_presets, load_preset
from xsift.config.preset import PRESET_DIR, Preset
from xsift.errors import XsiftError

REPO = pathlib.Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- grammar

def _ctl(**over):
    data = {"name": "t", "method": "cluster_then_label",
            "columns": {"source": "name", "detection": "obsid", "ra": "ra", "dec": "dec", "label": "Class"},
            "features": {"hr1": {"columns": ["HR1"]}},
            "classes": {"order": ["AGN", "Star"], "aggregation": {"AGN": ["AGN"], "Star": ["Star"]}}}
    for key, value in over.items():
        if key in ("labels", "uninformative"):
            data["classes"][key] = value
        else:
            data[key] = value
    return data


def test_class_labels_map_a_literature_label_column():
    from xsift.methods.cluster_then_label import reference_labels
    preset = Preset.from_dict(_ctl(labels={"Star": ["LM-STAR", "HM-STAR"]}, uninformative=["X"]))
    assert dict(preset.classes.labels) == {"AGN": ("AGN",), "Star": ("LM-STAR", "HM-STAR")}
    df = pd.DataFrame({"Class": ["AGN", "LM-STAR", "HM-STAR", "Star", "X", None, "NS"]})
    labels, counts = reference_labels(df, preset)
    # AGN -> 0; both star labels -> 1; "Star" is not one of Star's labels now -> other type (-2);
    # X (uninformative) and null -> unlabelled (-1); NS -> other type
    assert labels.tolist() == [0, 1, 1, -2, -1, -1, -2]
    # the mapping is kept in the preset's dict (and so in a saved model); identity mappings are not written
    assert Preset.from_dict(preset.to_dict()) == preset
    assert "labels" not in load_preset("csc").to_dict()["classes"]


@pytest.mark.parametrize("over, message", [
    ({"labels": {"Star": ["AGN"]}}, r"\[classes.labels\] Star: label 'AGN' already means class 'AGN'"),
    ({"labels": {"QSO": ["QSO"]}}, r"\[classes.labels\] QSO: 'QSO' is not a training class"),
    ({"labels": {"Star": ["X"]}, "uninformative": ["X"]}, r"label 'X' is also listed as uninformative"),
    ({"aliases": {"SC_HR9": ["HR9"]}}, r"\[aliases\] SC_HR9: 'SC_HR9' is not a column this preset names"),
    ({"aliases": {"HR1": []}}, r"\[aliases\].HR1: expected at least one name"),
])
def test_grammar_errors_name_the_key(over, message):
    with pytest.raises(XsiftError, match=message):
        Preset.from_dict(_ctl(**over), source="t.toml")


def test_detection_may_be_the_source_column_but_other_roles_may_not_share():
    data = _ctl(columns={"source": "name", "detection": "name", "ra": "ra", "dec": "dec", "label": "Class"})
    assert Preset.from_dict(data).columns.detection == "name"
    data = _ctl(columns={"source": "name", "detection": "obsid", "ra": "name", "dec": "dec", "label": "Class"})
    with pytest.raises(XsiftError, match="two roles name the same column"):
        Preset.from_dict(data)


def test_survey_presets_name_the_catalogue_columns():
    xmm, erass1 = load_preset("xmm"), load_preset("erass1")
    assert xmm.method == erass1.method == "cluster_then_label"
    assert {"SC_HR1", "SC_HR2", "SC_HR3", "SC_EP_8_FLUX", "SC_EXTENT", "SC_VAR_FLAG"} <= set(xmm.feature_columns)
    assert xmm.aliases["SC_HR1"] == ("HR1",) and "F8" in xmm.aliases["SC_EP_8_FLUX"]
    assert {"ML_FLUX_1", "ML_CTS_1", "DET_LIKE_0", "EXT_LIKE", "ML_RATE_P1", "ML_RATE_P2", "ML_RATE_P3",
            "ML_RATE_P4"} == set(erass1.feature_columns)
    assert [f.formula for f in erass1.features if f.name.startswith("hr_")] == ["hardness_ratio"] * 3


# ----------------------------------------------------------------------------- 4XMM on the real sample

def _hand_sample(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def _complete(header, row):
    """A row with every 4XMM preset feature present, by string operations on the file's text."""
    get = {h: row[j].strip() for j, h in enumerate(header)}
    needed = ["HR1", "HR2", "HR3", "F8", "sc_extent", "sc_var_flag", "sc_ep_8_fmax", "sc_ep_8_fmin"]
    return all(get[c] != "" for c in needed) and float(get["sc_ep_8_fmin"]) > 0


def test_xmm_run_on_the_4xmm_sample(tmp_path):
    """`xsift run --config xmm` on the 4XMM-DR13 sample (its labels hidden for every fourth source):
    the preset's columns are found under the sample's names, the model fits, and exactly the complete
    sources without a label are classified."""
    sample = shared_file("xmm", "4xmm_dr13_training_sample.csv")
    header, rows = _hand_sample(sample)
    j = header.index("Class")
    hidden = tmp_path / "sample_hidden.csv"
    with open(hidden, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for i, row in enumerate(rows):
            writer.writerow(row[:j] + ([""] if i % 4 == 0 else [row[j]]) + row[j + 1:])
    expected = {row[header.index("name")] for i, row in enumerate(rows) if i % 4 == 0 and _complete(header, row)}
    out = tmp_path / "run"
    assert main(["run", str(hidden), "--config", "xmm", "--k", "4", "--out", str(out), "--no-figures",
                 "--format", "csv", "--missing", "drop"]) == 0
    det = pd.read_csv(out / "detection_level.csv")
    assert set(det["name"]) == expected and len(det) == len(expected) > 50
    probs = det[["AGN", "Star", "CV", "XRB"]].to_numpy()
    usable = det["predicted_class"].notna().to_numpy()
    assert usable.mean() > 0.9                       # a source whose cluster has no usable class gets none
    assert np.all((probs[usable] >= 0) & (probs[usable] <= 1)) and np.allclose(probs[usable].sum(axis=1), 1.0)
    assert np.isnan(probs[~usable]).all()
    manifest = json.loads((out / "manifest.json").read_text())
    schema = manifest["schema"]
    assert schema["columns_matched"]["SC_HR1"] == "HR1" and schema["columns_matched"]["SC_EP_8_FLUX"] == "F8"
    assert schema["columns_matched"]["IAUNAME"] == "name" and schema["columns_matched"]["SC_EXTENT"] == "sc_extent"
    assert schema["input"]["boolean_from_text"] == ["sc_var_flag"]        # written t / f in the sample
    assert schema["input"]["features_found"] == load_preset("xmm").feature_columns
    assert manifest["classify"]["classified"] == len(expected)


def test_xmm_validate_on_the_4xmm_sample_beats_the_majority_class(tmp_path):
    sample = shared_file("xmm", "4xmm_dr13_training_sample.csv")
    out = tmp_path / "val"
    assert main(["validate", str(sample), "--config", "xmm", "--k", "6", "--out", str(out), "--no-figures"]) == 0
    metrics = pd.read_csv(out / "metrics_classes.csv")
    assert list(metrics["class"]) == ["AGN", "Star", "CV", "XRB"]
    assert metrics["f1"].between(0, 1).all() and metrics["f1"].notna().all()
    pred = pd.read_csv(out / "test_predictions.csv")
    scored = pred[pred["predicted_class"].notna()]
    assert len(scored) > 40
    # the majority-class baseline: every held-out source called the most frequent class (AGN)
    majority = scored["true_class"].value_counts().idxmax()
    assert majority == "AGN"
    baseline_accuracy = float((scored["true_class"] == majority).mean())
    accuracy = float((scored["true_class"] == scored["predicted_class"]).mean())
    assert accuracy > baseline_accuracy

    def macro_f1(true, predicted):
        f1 = []
        for c in sorted(set(true)):
            tp = np.sum((true == c) & (predicted == c))
            p = tp / max(np.sum(predicted == c), 1)
            r = tp / max(np.sum(true == c), 1)
            f1.append(0.0 if p + r == 0 else 2 * p * r / (p + r))
        return float(np.mean(f1))
    t = scored["true_class"].to_numpy()
    assert macro_f1(t, scored["predicted_class"].to_numpy()) > macro_f1(t, np.full(len(t), majority)) + 0.1
    # the per-class F1 written agree with the predictions written
    star = metrics.set_index("class").loc["Star"]
    tp = np.sum((t == "Star") & (scored["predicted_class"] == "Star"))
    assert star["support"] == np.sum(t == "Star")
    assert star["recall"] == pytest.approx(tp / max(np.sum(t == "Star"), 1))


# ----------------------------------------------------------------------------- eRASS1 on a generated table

ERASS1_CLASSES = {   # class: (SIMBAD types, Dirichlet weights of the P1..P4 rates, log10 total rate)
    "AGN": (["QSO", "AGN", "Seyfert_1"], [2.0, 4.0, 5.0, 3.0], -1.3),
    "Star": (["Star", "RSCVn", "BYDra"], [8.0, 6.0, 1.5, 0.3], -0.8),
    "CV": (["CataclyV*"], [1.0, 2.0, 5.0, 6.0], -1.0),
}


def erass1_table(n_per_class=(240, 160, 80), seed=3):
    """A table with the eRASS1 main catalogue's column names and class-dependent band rates."""
    rng = np.random.default_rng(seed)
    parts = []
    for (cls, (types, alpha, log_rate)), n in zip(ERASS1_CLASSES.items(), n_per_class):
        fractions = rng.dirichlet(alpha, size=n)
        rate = 10 ** rng.normal(log_rate, 0.3, size=n)
        exposure = rng.uniform(150, 400, size=n)
        label = rng.choice(types, size=n).astype(object)
        hide = rng.random(n) < 0.3
        label[hide] = rng.choice(np.array([None, "X"], dtype=object), size=int(hide.sum()))
        parts.append(pd.DataFrame({
            "ML_RATE_P1": rate * fractions[:, 0], "ML_RATE_P2": rate * fractions[:, 1],
            "ML_RATE_P3": rate * fractions[:, 2], "ML_RATE_P4": rate * fractions[:, 3],
            "ML_RATE_1": rate, "ML_FLUX_1": rate * 1.1e-12, "ML_CTS_1": rate * exposure,
            "DET_LIKE_0": 6 + rate * exposure * 0.8, "EXT_LIKE": np.where(rng.random(n) < 0.1, rng.uniform(1, 20, n), 0.0),
            "main_type": label, "truth": cls}))
    df = pd.concat(parts, ignore_index=True)
    n = len(df)
    df.insert(0, "IAUNAME", [f"1eRASS J{i:06d}.0-000000" for i in range(n)])
    df.insert(1, "DETUID", [f"em01_000000_020_ML{i:05d}_001_c010" for i in range(n)])
    df.insert(2, "RA", rng.uniform(0, 360, n))
    df.insert(3, "DEC", rng.uniform(-90, 0, n))
    # one source with no counts above 1 keV: its P4/P3 hardness ratio has no value (0/0)
    df.loc[5, ["ML_RATE_P3", "ML_RATE_P4"]] = 0.0
    return df


def test_erass1_preset_on_a_generated_main_catalogue_table(tmp_path):
    from astropy.table import Table
    from xsift.data.features import derive_features
    from xsift.data.io import read_catalog
    from xsift.methods.cluster_then_label import prepare_catalog
    table = erass1_table()
    path = tmp_path / "eRASS1_Main_sample.fits"
    Table.from_pandas(table.drop(columns=["truth"]).astype({"main_type": str}).replace({"main_type": {"None": ""}})
                      ).write(path)
    df = read_catalog(path)
    checked, _ = prepare_catalog(df, load_preset("erass1"), source=str(path))
    feats = derive_features(checked, "erass1")
    # hardness ratios as (a - b) / (a + b) of the band rates, by plain NumPy on the generated table
    for name, (a, b) in {"hr_p2_p1": ("ML_RATE_P2", "ML_RATE_P1"), "hr_p3_p2": ("ML_RATE_P3", "ML_RATE_P2"),
                         "hr_p4_p3": ("ML_RATE_P4", "ML_RATE_P3")}.items():
        with np.errstate(invalid="ignore"):
            expected = (table[a].to_numpy() - table[b].to_numpy()) / (table[a].to_numpy() + table[b].to_numpy())
        np.testing.assert_allclose(feats[name].to_numpy(), expected, rtol=1e-6)
    assert np.isnan(feats["hr_p4_p3"].iloc[5])

    out = tmp_path / "run"
    assert main(["run", str(path), "--config", "erass1", "--k", "3", "--out", str(out), "--no-figures",
                 "--format", "csv"]) == 0
    det = pd.read_csv(out / "detection_level.csv")
    unlabelled = table["main_type"].isna() | (table["main_type"] == "X")
    expected = set(table.loc[unlabelled & (table.index != 5), "IAUNAME"])
    assert set(det["name"]) == expected
    # the classes are well separated by their band rates: most unlabelled sources get their true class
    truth = table.set_index("IAUNAME")["truth"]
    accuracy = float((det["predicted_class"].to_numpy() == truth.loc[det["name"]].to_numpy()).mean())
    majority = float(truth.loc[det["name"]].value_counts(normalize=True).max())
    assert accuracy > max(0.8, majority)


def test_erass1_columns_found_in_lower_case(tmp_path):
    """TAP services often return lower-case names: the preset's columns are found in any case."""
    from xsift.data.io import read_catalog
    from xsift.methods.cluster_then_label import ClusterThenLabel
    table = erass1_table(n_per_class=(60, 40, 20))
    path = tmp_path / "erass1_lower.csv"
    table.drop(columns=["truth"]).rename(columns=str.lower).to_csv(path, index=False)
    model = ClusterThenLabel(preset="erass1", n_components=2).fit(read_catalog(path), source=str(path))
    matched = model.fit_report_["schema"]["columns_matched"]
    assert matched["ML_FLUX_1"] == "ml_flux_1" and matched["IAUNAME"] == "iauname"


# ----------------------------------------------------------------------------- the commands

def test_presets_command_lists_every_preset_with_its_columns(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    blocks = out.split("\n\n")
    for name in builtin_presets():
        preset = load_preset(name)
        block = next(b for b in blocks if b.startswith(f"{name}  ({preset.method})"))
        for role, column in preset.columns.to_dict().items():
            assert f"{role}={column}" in block
        for column in preset.feature_columns:
            assert column in block, (name, column)
    assert "SC_HR1 (or HR1)" in out and "SC_EP_8_FLUX (or F8 / EP_8_FLUX)" in out


def test_presets_command_shows_features_and_classes(capsys):
    assert main(["presets", "xmm", "--features"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("xmm  (cluster_then_label)")
    assert "ep_8_flux = column(SC_EP_8_FLUX) then ln_offset, minmax" in out
    assert "flux_ratio = ratio(SC_EP_8_FMAX, SC_EP_8_FMIN)" in out
    assert "Star (LM-STAR, HM-STAR)" in out and "AccretingBinary = CV, XRB" in out
    assert main(["presets", "no_such"]) == 2
    assert "no_such: no such preset file" in capsys.readouterr().err


def test_csc_query_prints_the_shipped_query_with_the_csc_columns(capsys):
    assert main(["csc-query"]) == 0
    out = capsys.readouterr().out
    shipped = (PRESET_DIR / "csc_per_detection.adql").read_text()
    assert out == shipped
    # one copy: scripts/ points to the packaged file
    script = REPO / "scripts" / "csc_per_detection.adql"
    assert script.is_symlink() and script.resolve() == (PRESET_DIR / "csc_per_detection.adql").resolve()
    # the query selects every column the csc preset reads except the reference label (from a crossmatch)
    select = out[out.index("SELECT"):out.index("FROM")]
    selected = set(re.findall(r"\b[mo]\.(\w+)", select))
    csc = load_preset("csc")
    assert set(csc.input_columns) - {csc.columns.label} <= selected
    assert main(["csc-query", "--path"]) == 0
    assert capsys.readouterr().out.strip().endswith("csc_per_detection.adql")


def test_bic_on_the_4xmm_sample_finds_the_features_under_the_sample_names(tmp_path, capsys):
    sample = shared_file("xmm", "4xmm_dr13_training_sample.csv")
    header, rows = _hand_sample(sample)
    complete = sum(1 for row in rows if _complete(header, row))
    out = tmp_path / "bic"
    assert main(["bic", str(sample), "--config", "xmm", "--k", "2..4", "--repeats", "1", "--out", str(out)]) == 0
    assert f"on {complete} x {len(load_preset('xmm').features)}" in capsys.readouterr().out
    assert len(pd.read_csv(out / "bic.csv")) == 3


def test_classify_finds_the_label_column_in_another_case(tmp_path):
    """A model applied to a table whose label column is spelled CLASS: its labelled sources are
    references (not classified), its unlabelled complete ones are classified."""
    from xsift.data.io import read_catalog
    from xsift.methods.cluster_then_label import ClusterThenLabel
    sample = shared_file("xmm", "4xmm_dr13_training_sample.csv")
    header, rows = _hand_sample(sample)
    model = ClusterThenLabel(preset="xmm", n_components=3, missing="drop").fit(read_catalog(sample), source=str(sample))
    j = header.index("Class")
    path = tmp_path / "upper.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header[:j] + ["CLASS"] + header[j + 1:])
        for i, row in enumerate(rows):
            writer.writerow(row[:j] + ([""] if i % 3 == 0 else [row[j]]) + row[j + 1:])
    training = {"AGN", "LM-STAR", "HM-STAR", "CV", "HMXB", "LMXB", "NS_BIN"}
    complete = [i for i, row in enumerate(rows) if _complete(header, row)]
    report = model.classify(read_catalog(path), source=str(path)).report["classify"]
    assert report["schema"]["columns_matched"]["Class"] == "CLASS"
    assert report["classified"] == sum(1 for i in complete if i % 3 == 0)
    assert report["labelled_not_classified"] == sum(1 for i in complete if i % 3 and rows[i][j] in training)
