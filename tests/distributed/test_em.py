"""Full-data EM on Dask (xsift.distributed.em) against the in-memory EM of xsift.kernels.gmm.fit_gmm.

Both drivers run one EM step, xsift.kernels.gmm.em_update: the Dask driver sums the workers'
statistics and calls it on the client; the in-memory loop traces it into its compiled program.
Oracle: fit_gmm in memory on the whole catalogue's complete, transformed feature rows."""
from __future__ import annotations

import sys

import jax
import numpy as np
import pytest

from distributed_oracles import compile_counter
from xsift import distributed as D
from xsift.data.features import FeatureTransform, complete_rows, derive_features


@pytest.fixture(scope="module")
def features(whole, preset):
    """(transform fitted on the whole catalogue, its complete transformed rows X (n, d))."""
    feats = derive_features(whole, preset)
    transform = FeatureTransform.from_preset(preset).fit(feats)
    X = transform.transform(feats)
    return transform, X[complete_rows(X)]


def _count_em_update_calls(monkeypatch) -> list:
    """Replace xsift.kernels.gmm.em_update, wherever the gmm kernels look it up, by a wrapper that
    records each call and then runs the original; returns the list of calls."""
    from xsift.kernels import gmm
    original = gmm.em_update
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    modules = [m for name, m in list(sys.modules.items())
               if (name == "xsift.kernels.gmm" or name.startswith("xsift.kernels.gmm."))
               and getattr(m, "em_update", None) is original]
    assert modules, "xsift.kernels.gmm.em_update is not where the EM drivers look it up"
    for m in modules:
        monkeypatch.setattr(m, "em_update", counting)
    return calls


def test_both_em_drivers_run_the_one_update_and_agree(client, catalog, preset, features, monkeypatch):
    """From the same GMMParams start: the Dask EM calls em_update once per iteration, the in-memory
    fit's compiled program is traced through it, and both give the same weights, means, covariances,
    lower bound, iteration count and convergence flag to 1e-9 (float64)."""
    from xsift.kernels.gmm import GMMParams, fit_gmm
    transform, X = features
    first = fit_gmm(X, 4, seed=2, max_iter=1)
    start = GMMParams(first.weights, first.means, first.covariances, first.precisions_cholesky)
    iters = 4

    calls = _count_em_update_calls(monkeypatch)
    got = D.distributed_em(client, catalog, preset, transform, start, max_iter=iters, tol=0.0, chunk_rows=512)
    assert len(calls) == iters

    jax.clear_caches()      # make the in-memory fit trace its program again, now through the wrapper
    calls.clear()
    expected = fit_gmm(X, 4, seed=2, init=start, max_iter=iters, tol=0.0)
    assert len(calls) >= 1, "the in-memory EM loop does not go through xsift.kernels.gmm.em_update"

    assert got.n_iter == expected.n_iter == iters and got.converged == expected.converged
    np.testing.assert_allclose(got.weights, expected.weights, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.means, expected.means, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(got.covariances, expected.covariances, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.lower_bound, expected.lower_bound, rtol=1e-9)
    assert got.weights.dtype == got.means.dtype == np.float64


@pytest.mark.slow
def test_full_data_em_equals_in_memory_fit(client, catalog, preset, features):
    from xsift.kernels.gmm import fit_gmm
    transform, X = features
    start = fit_gmm(X, 5, seed=1, max_iter=2)
    for persist, iters in ((True, 6), (False, 3)):   # data kept on the workers / re-read each iteration
        expected = fit_gmm(X, 5, seed=1, init=start, max_iter=iters, tol=0.0)
        got = D.distributed_em(client, catalog, preset, transform, start, max_iter=iters, tol=0.0,
                               persist=persist, chunk_rows=512)
        assert got.n_iter == iters
        np.testing.assert_allclose(got.weights, expected.weights, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got.means, expected.means, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(got.covariances, expected.covariances, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got.lower_bound, expected.lower_bound, rtol=1e-11)
    # run to convergence: the same number of iterations and the same answer
    conv = fit_gmm(X, 5, seed=1, init=start, max_iter=200, tol=1e-3)
    got = D.distributed_em(client, catalog, preset, transform, start, max_iter=200, tol=1e-3, chunk_rows=512)
    assert got.converged and conv.converged and got.n_iter == conv.n_iter
    np.testing.assert_allclose(got.means, conv.means, rtol=1e-8, atol=1e-10)


def test_worker_compiles_em_kernel_once(client, whole, model_dir):
    """Partitions of different sizes reuse the worker's compiled EM statistics kernel (fixed,
    padded chunk shapes): after the first partition nothing new is compiled."""
    from xsift import ClusterThenLabel
    model = ClusterThenLabel.load(model_dir)
    X = model.transform_.transform(derive_features(whole, model.preset_))
    X = X[complete_rows(X)]
    parts = [X[:300], X[300:2100], X[2100:2150]]

    def count_compiles(gmm, parts, counter):
        from xsift.distributed import pad_chunks, partition_statistics
        box = counter()
        counts = []
        for x in parts:
            partition_statistics(gmm, pad_chunks(x, 512))
            counts.append(box[0])
        return counts

    counts = client.submit(count_compiles, model.gmm_, parts, compile_counter, pure=False).result()
    assert counts[1] == counts[0] and counts[2] == counts[0], f"recompiled per partition: {counts}"


@pytest.fixture(scope="module")
def error_catalog(tmp_path_factory, preset):
    """A small simulated catalogue with CSC-like measurement errors in 3 shards, and in memory: the
    transform, complete transformed rows X and their measurement variances S (as ClusterThenLabel.fit
    derives them)."""
    from xsift.data.features import feature_errors
    from xsift.data.io import read_catalog
    from xsift.simulate import write_simulated_catalog
    out = tmp_path_factory.mktemp("error_catalog")
    write_simulated_catalog(out, 6000, n_shards=3, seed=4, errors=True)
    whole = read_catalog(out)
    feats = derive_features(whole, preset)
    transform = FeatureTransform.from_preset(preset).fit(feats)
    X = transform.transform(feats)
    keep = complete_rows(X)
    var = transform.transform_errors(feats, feature_errors(whole, preset)) ** 2
    return out, transform, X[keep], np.where(np.isfinite(var), var, 0.0)[keep]


@pytest.mark.slow      # ~20 s: the default suite stays under 5 minutes on 2 cores; CI runs it
def test_full_data_extreme_deconvolution_equals_in_memory_fit_xd(client, preset, error_catalog):
    """errors=True: from the same start, the Dask EM (xsift.kernels.xd statistics summed over the shards,
    xd_update on the client) equals the in-memory fit_xd on the whole catalogue to 1e-9, shards persisted
    or re-read; fit_shards --errors --full-em saves an errors model whose mixture is that EM's."""
    from xsift.kernels.gmm import GMMParams
    from xsift.kernels.xd import fit_xd
    out, transform, X, S = error_catalog
    assert (S > 0).any(axis=1).mean() > 0.5
    first = fit_xd(X, S, None, 3, seed=2, max_iter=1)
    start = GMMParams(first.weights, first.means, first.covariances, first.precisions_cholesky)
    iters = 3
    expected = fit_xd(X, S, None, 3, init=start, max_iter=iters, tol=0.0)
    for persist in (True, False):
        got = D.distributed_em(client, out, preset, transform, start, max_iter=iters, tol=0.0, chunk_rows=512,
                               persist=persist, errors=True)
        assert got.n_iter == expected.n_iter == iters
        np.testing.assert_allclose(got.weights, expected.weights, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got.means, expected.means, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(got.covariances, expected.covariances, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got.lower_bound, expected.lower_bound, rtol=1e-9)
    # the plain EM on the same shards differs: the errors are used
    plain = D.distributed_em(client, out, preset, transform, start, max_iter=iters, tol=0.0, chunk_rows=512)
    assert np.abs(plain.covariances - got.covariances).max() > 1e-4

    from xsift import ClusterThenLabel
    model, report = D.fit_shards(client, out, out.parent / "xd_model", preset=preset, fit_sample=6000,
                                 full_em=True, n_components=3, seed=2, max_iter=iters, tol=0.0, errors=True,
                                 log=lambda m: None)
    loaded = ClusterThenLabel.load(out.parent / "xd_model")
    assert loaded.errors and report["full_em"]["n_iter"] == iters
    assert set(preset.error_columns) <= set(loaded.wanted_columns())
