"""Checks shared by the Dask tests: outputs of a run against the in-memory classification (the oracle)."""
from __future__ import annotations

import os
import pathlib
import sys

import numpy as np
import pandas as pd

from xsift import distributed as D

REPO = pathlib.Path(__file__).resolve().parents[2]
# the simulated catalogue of the fixtures: small (a few thousand detections in several shards) to keep the suite fast
N_DETECTIONS = 6000
N_SHARDS = 8
SEED = 11


def subprocess_env() -> dict:
    """The environment of a separate xsift or dask process: this checkout importable, single-threaded kernels."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(D.WORKER_ENV)
    return env


def console_script(name: str) -> str:
    """The path of an installed console script (``xsift``, ``dask``) of this interpreter's environment."""
    return str(pathlib.Path(sys.executable).parent / name)


def sorted_rows(df: pd.DataFrame, keys) -> pd.DataFrame:
    return df.sort_values(list(keys), kind="stable").reset_index(drop=True)


def concat_outputs(run: pathlib.Path, sub: str) -> pd.DataFrame:
    files = sorted((run / sub).glob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def in_memory_detection_level(model_dir, whole):
    """(model, detection-level table of the whole catalogue classified in memory by ClusterThenLabel.classify)."""
    from xsift import ClusterThenLabel
    model = ClusterThenLabel.load(model_dir)
    return model, model.classify(whole).detections


def assert_exactly_once(run: pathlib.Path, expected: pd.DataFrame) -> None:
    got = concat_outputs(run, D.OUTPUT_DIR)
    assert not got.duplicated(["name", "obsid"]).any(), "a detection appears twice in the outputs"
    pd.testing.assert_frame_equal(sorted_rows(got, ["name", "obsid"]), sorted_rows(expected, ["name", "obsid"]),
                                  check_dtype=False, check_exact=False, rtol=1e-12, atol=1e-12)


def many_shards(tmp_path, whole, n_shards):
    """The same catalogue re-cut into more, smaller shards (sources still straddle boundaries)."""
    from xsift.data.io import write_table
    out = tmp_path / f"cat{n_shards}"
    for i, idx in enumerate(np.array_split(np.arange(len(whole)), n_shards)):
        write_table(whole.iloc[idx].reset_index(drop=True), out / f"part-{i:05d}.parquet")
    return out


def compile_counter():
    """Worker-side: a list whose first item counts XLA backend compilations from now on."""
    import jax.monitoring
    box = [0]
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, secs, **kw: box.__setitem__(0, box[0] + (name == "/jax/core/compile/backend_compile_duration")))
    return box
