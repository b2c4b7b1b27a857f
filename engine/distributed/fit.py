"""Fitting the cluster-then-label model on a sharded catalogue: on a seeded sample, or by full-data EM.

A seeded random sample of N detections drawn uniformly from the whole catalogue
(:meth:`xsift.data.shards.ShardedCatalog.sample`) gives the feature transform, the reference
statistics and, by default, the mixture: the model has a few hundred parameters, so a million rows
determine it. With full-data EM the sample's mixture is only the start of
:func:`xsift.distributed.em.distributed_em` over every complete detection of every shard, and the
model's class statistics are then computed on the sample with the full-data mixture.
"""
from __future__ import annotations

import os
import time

import numpy as np

__all__ = ["fit_shards"]


def fit_shards(client, catalog: str | os.PathLike, out_dir: str | os.PathLike, *, preset="csc",
               fit_sample: int = 1_000_000, full_em: bool = False, n_components: int = 6, seed: int = 0,
               max_iter: int = 100, tol: float = 1e-3, reg_covar: float = 1e-6, dtype=np.float64,
               persist: bool | None = None, missing: str = "marginalise", errors: bool = False,
               log=print) -> tuple[object, dict]:
    """Fit the cluster-then-label model (:class:`xsift.ClusterThenLabel`) on a sharded catalogue and
    save it in ``out_dir``.

    ``preset``: a cluster-then-label preset (a name, a TOML path or a :class:`xsift.config.Preset`).
    Always: a seeded sample of ``fit_sample`` detections gives the feature transform, the reference
    statistics and (without ``full_em``) the mixture of ``n_components`` components (k-means start
    seeded by ``seed``). With ``full_em`` the sample's mixture is only the starting point of
    :func:`~xsift.distributed.em.distributed_em` over every complete detection (at most ``max_iter``
    iterations, ``tol`` on the mean log-likelihood), and the model is refitted on the sample with the
    full-data mixture. ``dtype``: float64 (reference) or float32. ``missing``: the model's
    missing-feature mode (``drop``, ``median``, ``marginalise``; saved with it, the fit uses complete rows).
    ``errors``: use each detection's measurement errors (the preset's error columns; saved with the
    model): the mixture is fitted by extreme deconvolution, on the sample or, with ``full_em``, over
    every complete detection (:func:`~xsift.distributed.em.distributed_em` with ``errors``), and the
    class covariances are deconvolved. Returns (fitted estimator, report);
    the report is the estimator's fit report plus ``fit_sample`` (rows sampled), ``full_em`` (False,
    or the EM's ``n_iter``, ``converged``, ``lower_bound``, ``iteration_s``), ``model_hash`` and
    ``timings`` (seconds). Raises XsiftError (unreadable shards, a sample without references ...).
    """
    from xsift.data.shards import ShardedCatalog, catalog_columns
    from xsift.distributed.em import distributed_em
    from xsift.methods.cluster_then_label import ClusterThenLabel, resolve_preset
    preset = resolve_preset(preset)
    precision = np.dtype(dtype).name
    cat = ShardedCatalog(catalog)
    # a shard lacking a feature column is refused up front, as a one-file table lacking it (the fit needs
    # every feature; xsift.data.schema's rule for catalogues of several files)
    from xsift.data.features import raw_feature_columns
    from xsift.data.schema import check_shard_features, check_shard_names
    check_shard_features(cat.files, raw_feature_columns(preset), source=str(catalog))
    check_shard_names(cat.files, preset.columns.source or "name", source=str(catalog))
    t0 = time.perf_counter()
    columns = catalog_columns(preset, cat.files)
    if errors:                       # the error columns too (a shard lacking one is named by the fit)
        from xsift.data.shards import shard_columns
        columns = shard_columns(columns + [c for c in preset.error_columns if c not in columns], cat.files)
    sample = cat.sample(client, fit_sample, seed=seed, columns=columns)
    t_sample = time.perf_counter() - t0
    log(f"sampled {len(sample):,} detections from {len(cat.files)} shards in {t_sample:.1f} s")
    t0 = time.perf_counter()
    source = f"a sample of {catalog}"
    model = ClusterThenLabel(preset=preset, n_components=n_components, seed=seed,
                             precision=precision, missing=missing, errors=errors).fit(sample, source=source)
    t_fit = time.perf_counter() - t0
    report = dict(model.fit_report_)
    timings = {"sample_s": t_sample, "fit_sample_s": t_fit}
    if full_em:
        t0 = time.perf_counter()
        iterations = []

        def on_iteration(i, lower_bound, seconds):
            iterations.append(seconds)
            log(f"EM iteration {i}: lower bound {lower_bound:.6f} ({seconds:.2f} s)")

        em = distributed_em(client, catalog, preset, model.transform_, model.gmm_, max_iter=max_iter,
                            tol=tol, reg_covar=reg_covar, dtype=dtype, persist=persist,
                            on_iteration=on_iteration, errors=errors)
        timings["full_em_s"] = time.perf_counter() - t0
        full = {"n_iter": int(em.n_iter), "converged": bool(em.converged),
                "lower_bound": float(em.lower_bound), "iteration_s": iterations}
        if not em.converged:
            log(f"warning: full-data EM did not converge in {max_iter} iterations (tol {tol})")
        model = ClusterThenLabel(preset=preset, n_components=n_components, seed=seed, precision=precision,
                                 gmm=em, missing=missing, errors=errors).fit(sample, source=source)
        report.update(model.fit_report_)
        report["full_em"] = full
    model_hash = model.save(out_dir)
    report.update({"fit_sample": int(len(sample)), "full_em": report.get("full_em", False),
                   "model_hash": model_hash, "timings": timings})
    return model, report
