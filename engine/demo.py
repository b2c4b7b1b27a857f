"""``xsift demo``: simulate a CSC-like catalogue and run the whole cluster-then-label pipeline on it.

Steps: simulate (``xsift.simulate``, with hidden ground truth) -> write the catalogue ->
fit (transform, GMM, per-cluster class statistics) -> classify the unlabelled detections ->
master classes -> tables, figures, model directory -> 70/30 validation split by source -> the accuracy
against the simulator's ground truth (a real accuracy: the truth of the unlabelled
detections is known here and never seen by the classifier) -> manifest -> the explorer page
(``explore.html``, :mod:`xsift.report.explore`; skipped with the figures).
"""
from __future__ import annotations

import pathlib
import time

import numpy as np


#: the demo's stages, in order (what ``progress`` is called with)
DEMO_STAGES = ("simulate", "check", "features", "cluster", "distances", "vote", "write", "validate")


def truth_recovery(detection_level, uniquely, catalog, classes, aggregation, *, source: str = "name",
                   detection: str = "obsid") -> dict:
    """Accuracy of the classified detections and of the uniquely classified sources against the
    simulator's ``true_class`` (10 classes and the aggregated classes). ``source``/``detection``:
    the preset's identity columns in ``catalog`` (the result tables name them ``name`` and ``obsid``)."""
    from xsift.methods.voting import aggregated_class_of
    agg_of = aggregated_class_of(classes, aggregation)
    truth = catalog.drop_duplicates([source, detection]).set_index([source, detection])["true_class"]
    det = detection_level[~detection_level["no_usable_class"].to_numpy(dtype=bool)]
    t = truth.reindex(list(zip(det["name"], det["obsid"]))).to_numpy(dtype=object)
    p = det["predicted_class"].to_numpy(dtype=object)
    agg = np.vectorize(agg_of.get, otypes=[object])
    out = {"detections_scored": int(len(det))}
    if len(det):
        out["detection_accuracy"] = float(np.mean(p == t))
        out["detection_accuracy_aggregated"] = float(np.mean(agg(p) == agg(t)))
    source_truth = catalog.drop_duplicates(source).set_index(source)["true_class"]
    if len(uniquely):
        st = source_truth.reindex(uniquely["name"]).to_numpy(dtype=object)
        out["sources_scored"] = int(len(uniquely))
        out["source_accuracy_aggregated"] = float(np.mean(uniquely["agg_master_class"].to_numpy(dtype=object)
                                                          == agg(st)))
    return out


def run_demo(out, *, detections: int = 20000, seed: int = 0, k: int = 6, validate: bool = True,
             figures: bool = True, preset=None, precision: str = "float64", log=print, progress=None) -> dict:
    """Run the demo into ``out``; returns the manifest facts (counts, accuracies, timings).

    ``preset``: a cluster-then-label preset (a built-in name, a TOML path or a Preset; default ``csc``)
    whose columns are the simulator's; ``precision``: ``"float32"`` or ``"float64"`` (the kernels');
    ``progress``: None, or a callable called with each stage's name as it begins (:data:`DEMO_STAGES`;
    e.g. :class:`xsift.report.progress.StageProgress`)."""
    from xsift.config import load_preset
    from xsift.methods.cluster_then_label import ClusterThenLabel
    from xsift.report.outputs import run_figures, write_tables
    from xsift.data.io import write_table
    from xsift.report import write_manifest
    from xsift.simulate import simulate_catalog

    out = pathlib.Path(out)
    preset = load_preset("csc" if preset is None else preset)
    timings = {}
    def stage(name):
        if progress is not None:
            progress(name)

    t0 = time.perf_counter()
    stage("simulate")
    catalog = simulate_catalog(detections, seed=seed)
    cat_path = write_table(catalog, out / "catalog.parquet")
    timings["simulate_s"] = round(time.perf_counter() - t0, 3)
    log(f"simulated {len(catalog):,} detections -> {cat_path}")

    t1 = time.perf_counter()
    model = ClusterThenLabel(preset=preset, n_components=k, seed=seed, precision=precision)
    result = model.fit_classify(catalog, source=str(cat_path), progress=progress)
    stage("cluster")
    tables = {"clusters": model.cluster_table(catalog, source=str(cat_path)), **result.tables()}
    report = dict(result.report)
    timings["pipeline_s"] = round(time.perf_counter() - t1, 3)
    stage("write")
    digest = model.save(out / "model")
    written = write_tables(tables, out, "parquet", model.classes_, False)
    if figures:
        written.update(run_figures(tables, model.n_clusters_, out))
    fit, cls, vote = report["fit"], report["classify"], report["voting"]
    log(f"fitted on {fit['complete']:,} complete detections ({fit['dropped_incomplete']:,} with a missing feature "
        f"left out of the fit, classified on their observed features); {fit['references_complete']:,} references; "
        f"{len(fit['excluded'])} excluded (cluster, class) pairs; model {digest[:12]} -> {out / 'model'}")
    log(f"{cls['classified']:,} unlabelled detections classified; {vote['uniquely_classified']:,} sources "
        f"uniquely classified, {vote['ambiguous']:,} ambiguous (Cohen's kappa {vote['cohen_kappa_hard_soft']:.3f})")

    classes = list(model.classes_)
    aggregation = preset.classes.aggregation
    truth = truth_recovery(tables["detection_level"], tables["uniquely_classified"], catalog, classes, aggregation,
                           source=preset.columns.source, detection=preset.columns.detection)
    if "detection_accuracy" in truth:
        log(f"against the simulator's ground truth: detection accuracy {truth['detection_accuracy']:.3f} "
            f"(10 classes), {truth['detection_accuracy_aggregated']:.3f} (4 aggregated classes); "
            f"uniquely classified sources {truth.get('source_accuracy_aggregated', float('nan')):.3f} (aggregated)")

    validation = None
    if validate:
        from xsift.methods.validation import validate as run_validation
        from xsift.report.outputs import write_validation
        t2 = time.perf_counter()
        stage("validate")
        res = run_validation(catalog, preset, n_components=k, seed=seed, split_seed=seed, precision=precision,
                             source=str(cat_path))
        written.update(write_validation(res, out / "validation", figures=figures))
        validation = res["counts"]
        timings["validation_s"] = round(time.perf_counter() - t2, 3)
        log(f"validation (70/30 of the labelled sources, split by source): accuracy {validation['accuracy']:.3f}, "
            f"aggregated {validation['accuracy_aggregated']:.3f} -> {out / 'validation'}")
    timings["total_s"] = round(time.perf_counter() - t0, 3)
    facts = dict(command="demo", inputs={"simulated_detections": detections, "seed": seed},
                 config={"k": k, "seed": seed}, model_hash=digest, **report, truth_recovery=truth,
                 validation=validation, outputs=written, timings=timings)
    write_manifest(out, **facts)
    log(f"tables, figures and manifest -> {out} ({timings['total_s']:.1f} s)")
    if figures:   # the explorer page is the run's interactive figure
        from xsift.report.explore import write_explorer
        page = write_explorer(out, seed=seed)
        log(f"explorer page -> {page} (open it in a browser; `xsift explore {out}` rewrites it)")
    return facts
