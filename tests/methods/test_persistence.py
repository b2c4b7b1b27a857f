"""xsift.methods.persistence: the one model format (model.npz + model.json, kind, content hash)."""
import hashlib
import json
import os
import stat

import numpy as np
import pytest

from xsift.errors import XsiftError
from xsift.methods.persistence import content_hash, model_kind, read_model, save_model

ARRAYS = {"means": np.arange(6.0).reshape(2, 3), "mask": np.array([True, False]), "counts": np.array([3, 4])}
META = {"classes": ["AGN", "XB"], "preset": {"name": "csc", "columns": {"source": "name"}}, "distance": "squared"}


def test_round_trip_and_hash_is_sha256_of_the_documented_content(tmp_path):
    digest = save_model(tmp_path / "m", kind="cluster_then_label", arrays=ARRAYS, meta=META, info={"seconds": 1.5})
    # the documented recipe, written out independently
    h = hashlib.sha256(b"cluster_then_label")
    h.update(json.dumps(META, sort_keys=True).encode())
    for name in sorted(ARRAYS):
        a = np.ascontiguousarray(ARRAYS[name])
        h.update(f"|{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    assert digest == h.hexdigest()
    arrays, meta, info = read_model(tmp_path / "m", kind="cluster_then_label")
    assert meta == META and info == {"seconds": 1.5}
    for k, v in ARRAYS.items():
        np.testing.assert_array_equal(arrays[k], v)
        assert arrays[k].dtype == v.dtype
    assert model_kind(tmp_path / "m") == "cluster_then_label"
    # info is not part of the identity
    assert save_model(tmp_path / "m2", kind="cluster_then_label", arrays=ARRAYS, meta=META, info={"x": 2}) == digest
    assert content_hash("naive_bayes", ARRAYS, META) != digest


def test_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        save_model(tmp_path / "m", kind="naive_bayes", arrays=ARRAYS, meta=META)
    finally:
        os.umask(old)
    for name in ("model.npz", "model.json"):
        assert stat.S_IMODE((tmp_path / "m" / name).stat().st_mode) == 0o644


@pytest.mark.parametrize("tamper, message", [
    (lambda d: _edit_json(d, lambda r: r["meta"].update(distance="mahalanobis")), "hash mismatch"),
    (lambda d: _edit_json(d, lambda r: r.pop("hash")), "'hash' missing"),
    (lambda d: _edit_json(d, lambda r: r.update(format="xsift-clusterlabel-1")), "model format"),
    (lambda d: (d / "model.json").write_text("{not json"), "not valid JSON"),
    (lambda d: (d / "model.npz").write_bytes((d / "model.npz").read_bytes()[:100]), "truncated"),
    (lambda d: np.savez(d / "model.npz", **{**ARRAYS, "counts": np.array([3, 5])}), "hash mismatch"),
    (lambda d: np.savez(d / "model.npz", **{**ARRAYS, "counts": np.array([3, None])}), "not plain data"),
    (lambda d: (d / "model.npz").unlink(), "model.npz missing"),
])
def test_every_damaged_model_is_one_clear_error(tmp_path, tamper, message):
    d = tmp_path / "m"
    save_model(d, kind="cluster_then_label", arrays=ARRAYS, meta=META)
    tamper(d)
    with pytest.raises(XsiftError, match=message):
        read_model(d)


def test_kind_is_checked_and_a_file_path_is_refused(tmp_path):
    save_model(tmp_path / "m", kind="naive_bayes", arrays=ARRAYS, meta=META)
    with pytest.raises(XsiftError, match="a naive_bayes model; expected a cluster_then_label model"):
        read_model(tmp_path / "m", kind="cluster_then_label")
    (tmp_path / "file").write_text("x")
    with pytest.raises(XsiftError, match="not a directory"):
        save_model(tmp_path / "file", kind="naive_bayes", arrays=ARRAYS, meta=META)


def _edit_json(d, change):
    record = json.loads((d / "model.json").read_text())
    change(record)
    (d / "model.json").write_text(json.dumps(record))
