"""`xsift demo` runs the whole pipeline (with xsift's own GMM) on a simulated catalogue."""
import json

import numpy as np
import pandas as pd

from xsift.cli import main


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--detections", "6000", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "ground truth" in printed and "validation" in printed
    for name in ("catalog.parquet", "clusters.parquet", "detection_level.parquet", "uniquely_classified.parquet",
                 "ambiguous.parquet", "sky_by_cluster.png", "sky_by_class.png", "hardness_by_cluster.png",
                 "model/model.npz", "model/model.json", "validation/confusion_classes.csv",
                 "validation/confusion_aggregated.png", "manifest.json", "explore.html"):
        assert (out / name).exists(), name
    manifest = json.loads((out / "manifest.json").read_text())
    truth = manifest["truth_recovery"]
    # recovery of the hidden truth of unlabelled detections: well above chance (0.25 for 4 classes)
    assert truth["detection_accuracy_aggregated"] > 0.5
    assert manifest["fit"]["gmm"]["fitted"] and manifest["classify"]["model_hash"] == manifest["model_hash"]

    # the accuracy in the manifest is what the written tables say
    cat = pd.read_parquet(out / "catalog.parquet")
    det = pd.read_parquet(out / "detection_level.parquet")
    det = det[~det["no_usable_class"]]
    t = cat.set_index(["name", "obsid"])["true_class"].loc[list(zip(det["name"], det["obsid"]))].to_numpy()
    assert np.mean(det["predicted_class"].to_numpy() == t) == truth["detection_accuracy"]

    # a saved model reapplied by `xsift classify` reproduces the run's detection-level table
    assert main(["classify", str(out / "catalog.parquet"), "--model", str(out / "model"),
                 "--out", str(tmp_path / "again"), "--no-figures"]) == 0
    again = pd.read_parquet(tmp_path / "again" / "detection_level.parquet")
    full = pd.read_parquet(out / "detection_level.parquet")
    pd.testing.assert_frame_equal(again, full)
    assert (pd.read_parquet(tmp_path / "again" / "uniquely_classified.parquet")
            .equals(pd.read_parquet(out / "uniquely_classified.parquet")))
