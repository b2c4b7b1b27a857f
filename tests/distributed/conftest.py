"""Fixtures of the Dask tests: one two-worker LocalCluster, a small simulated sharded catalogue (and the
same catalogue whole in memory, the oracles' input), the CSC preset and a model fitted on the shards."""
from __future__ import annotations

import pytest

from distributed_oracles import N_DETECTIONS, N_SHARDS, SEED
from xsift import distributed as D


@pytest.fixture(scope="session")
def client():
    from distributed import Client
    cluster = D.local_cluster(2)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="session")
def catalog(tmp_path_factory):
    from xsift.simulate import write_simulated_catalog
    out = tmp_path_factory.mktemp("catalog")
    write_simulated_catalog(out, N_DETECTIONS, n_shards=N_SHARDS, seed=SEED)
    return out


@pytest.fixture(scope="session")
def whole(catalog):
    """The whole catalogue in memory, shard by shard in order (the oracle's input)."""
    from xsift.data.io import read_catalog
    return read_catalog(catalog)


@pytest.fixture(scope="session")
def preset():
    from xsift.config import load_preset
    return load_preset("csc")


@pytest.fixture(scope="session")
def model_dir(client, catalog, tmp_path_factory, preset):
    out = tmp_path_factory.mktemp("model")
    D.fit_shards(client, catalog, out, preset=preset, fit_sample=4000, seed=3, log=lambda m: None)
    return out
