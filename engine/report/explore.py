"""The explorer of a run: ONE self-contained HTML page (``xsift explore RUN_DIR``) to look at the results.

The page is built with Bokeh's standalone output (:func:`bokeh.embed.file_html` with
:data:`bokeh.resources.INLINE`): every JavaScript library and every data column is inlined, so the file
works offline and opens from disk, with nothing to serve. Bokeh was chosen over the alternatives because
it is a well-kept library (NumFOCUS) whose standalone documents carry *linked* interactive plots
and widgets without a server: plots sharing one ``ColumnDataSource`` share its selection (select on the
sky, see the same sources highlighted in the feature diagrams and the table), a ``CDSView`` with a
``BooleanFilter`` filters every plot and the ``DataTable`` at once, and ``CustomJS`` callbacks run the
filters in the browser. Numeric columns are inlined as base64 binary arrays, which keeps a large page
small (Plotly and Altair/Vega inline data as JSON text; Datashader and HoloViews need a live server for
their density rendering).

What the page shows (:func:`write_explorer`):

- the galactic sky (l, b; zoomable plate carrée, l increasing to the left) of the classified sources
  coloured by class, over a grey density image (360 x 180 one-degree bins) of *every* source;
- two feature diagrams (hardness-hardness first; axes chosen from the run's feature columns) linked to
  the sky map and the table through one shared data source and selection;
- filters: classes, minimum class probability, uniquely classified vs ambiguous, the outlier measure
  range (naive Bayes), a name search; they act on the sky map, the diagrams and the table together;
- a sortable, searchable table (name, ra, dec, l, b, class, probability, detections, status), and a
  button that downloads the selected sources passing the filters as CSV (to load in TOPCAT);
  clicking a source shows its per-class probabilities with their spread (standard deviation) over its
  detections, and for a naive-Bayes run its probability track (Tranin et al. 2022, Fig. 2);
- the run's confusion matrices and reliability diagram when the run directory holds validation results
  (``validation/`` as ``xsift demo`` writes it, or the files of ``xsift validate``);
- the manifest's key facts (command, inputs, model hash, counts, versions).

SAMP (``xsift explore --samp``, ``write_explorer(..., samp=True)``): the page's sources (the rows of its
table, in the same order) are also written as a VOTable beside the page (``samp/<page stem>_sources.vot``,
:func:`write_sources_votable`), and the page gets a "Send selection (SAMP)" button. From the page opened
from disk it talks to the SAMP hub through the SAMP Web Profile (SAMP 1.3, Sect. 5: XML-RPC over HTTP to
``http://localhost:21012/``, :data:`SAMP_WEB_HUB`; the hub answers CORS): it registers as "xsift explorer"
(``samp.webhub.register``; the hub asks the user to accept, TOPCAT's with a dialog), loads the
VOTable into every client subscribed to ``table.load.votable`` that has not yet got it
(``samp.webhub.callAndWait``, so that the table is loaded before its selection arrives), then sends
``table.select.rowList`` (``samp.webhub.notifyAll``) with the 0-based rows of the selected sources that
pass the filters (all those passing them when none is selected), the VOTable's ``url`` and a
``table-id`` fixed by its content; it unregisters when the page is closed. No hub answering is a
one-line message under the button. The XML-RPC client is the page's own few lines of JavaScript
(:data:`_SAMP_JS`), nothing fetched.

Sources, not detections, are the points. A cluster-then-label run's sources are the rows of its
``uniquely_classified`` (class: the master class, Pérez-Díaz et al. 2024, Sect. 3.4) and ``ambiguous``
(class: the hard master class) tables, with the per-class mean probabilities and standard deviations
over detections those tables carry. A naive-Bayes run's table (``nb_classification``) has one row per
catalogue row; rows sharing a source name are grouped into one source with the mean and the standard
deviation of each class probability and of the outlier measure, the class of the highest mean, and
status ``ambiguous`` when its rows' predicted classes differ.

Down-sampling: beyond ``max_points`` sources the points and the table hold a uniform random sample of
``max_points`` sources without replacement drawn with ``numpy.random.default_rng(seed)``; the density
image and the header's counts still cover every source, and the page says that it shows a sample.
"""
from __future__ import annotations

import dataclasses
import html
import json
import os
import pathlib

import numpy as np
import pandas as pd

from xsift.errors import XsiftError

__all__ = ["ExplorerData", "load_run", "page_sources", "build_page", "write_explorer", "write_sources_votable",
           "SAMP_WEB_HUB"]

#: the SAMP Web Profile hub address (SAMP 1.3, Sect. 5.2: port 21012 on the local host)
SAMP_WEB_HUB = "http://localhost:21012/"

# the suffixes of the run tables this module reads (xsift.report.outputs.FORMAT_SUFFIX)
_SUFFIXES = (".parquet", ".csv", ".fits", ".vot")
# columns of the run tables that are no features
_NOT_FEATURES = {"name", "obsid", "ra", "dec", "cluster", "detection_count", "n_categories", "true_class",
                 "no_usable_class", "outlier_measure", "main_type"}


@dataclasses.dataclass
class ExplorerData:
    """What the page shows, as plain tables.

    ``sources``: one row per source (name, ra, dec, l, b [deg], cls, prob, n_det, status, optionally
    outlier, the features, and ``p{i}`` / ``s{i}``: mean and standard deviation of class ``classes[i]``'s
    probability over the source's detections); ``classes``: class names in the model's order;
    ``features``: numeric feature columns of ``sources``; ``manifest``: the run's manifest (may be
    empty); ``validation``: None or {"confusion": {title: DataFrame (rows true, columns predicted)},
    "reliability": DataFrame}; ``tracks``: None or {name: {"steps": [...], "probs": [[per class] per step]}}
    (naive Bayes); ``method``: "cluster_then_label" or "naive_bayes"."""
    method: str
    sources: pd.DataFrame
    classes: list
    features: list
    manifest: dict
    validation: dict | None = None
    tracks: dict | None = None
    run_dir: str = ""


def _find_table(run_dir: pathlib.Path, stem: str) -> pathlib.Path | None:
    """``run_dir/<stem><suffix>`` of an in-memory run, or the folder of Parquet parts ``run_dir/<stem>/`` of
    a sharded one (``xsift vote-shards``); None when neither is there."""
    for suffix in _SUFFIXES:
        path = run_dir / f"{stem}{suffix}"
        if path.is_file():
            return path
    folder = run_dir / stem
    if folder.is_dir() and any(folder.glob("*.parquet")):
        return folder
    return None


def _read(path: pathlib.Path) -> pd.DataFrame:
    from xsift.data.io import read_catalog
    return read_catalog(path)


def _require(table: pd.DataFrame, path, columns) -> None:
    """Raise SchemaError naming ``path`` and the first of ``columns`` that ``table`` lacks."""
    from xsift.errors import SchemaError
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise SchemaError(f"{path}: column {missing[0]!r} not found (expected the columns xsift writes: "
                          f"{', '.join(map(str, columns))}); is it an xsift run table?")


def _probabilities(table: pd.DataFrame, classes: list, path) -> tuple[np.ndarray, np.ndarray]:
    """(means, stds) (n, C) of a master-class table; the published 'mean±std' text columns are parsed."""
    means = np.zeros((len(table), len(classes)))
    stds = np.zeros((len(table), len(classes)))
    for k, c in enumerate(classes):
        col = table[c]
        if pd.api.types.is_numeric_dtype(col):
            means[:, k] = col.to_numpy(dtype=float)
            std = f"{c}_std"
            stds[:, k] = table[std].to_numpy(dtype=float) if std in table else 0.0
        else:
            parts = col.astype(str).str.split("±", n=1, expand=True)
            try:
                means[:, k] = parts[0].astype(float).to_numpy()
                stds[:, k] = parts[1].astype(float).to_numpy() if parts.shape[1] > 1 else 0.0
            except ValueError:
                raise XsiftError(f"{path}: column {c!r} holds neither probabilities nor 'mean±std' text") from None
    return means, stds


def _galactic(ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(l wrapped to [-180, 180), b) in degrees of ICRS ``ra``, ``dec`` (degrees)."""
    from astropy.coordinates import SkyCoord
    import astropy.units as u
    g = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs").galactic
    lon = g.l.wrap_at(180 * u.deg).deg
    return lon, g.b.deg


def _classes_from_model(run_dir: pathlib.Path, manifest: dict) -> list | None:
    """The class names saved with the run's model (``model/model.json`` or the manifest's ``model``)."""
    candidates = [run_dir / "model" / "model.json"]
    inputs = manifest.get("inputs") if isinstance(manifest.get("inputs"), dict) else {}
    for recorded in (manifest.get("model"), inputs.get("model")):   # nb classify's, classify's
        if isinstance(recorded, str):
            candidates.append(_resolve(recorded, run_dir) / "model.json")
    for path in candidates:
        if path.is_file():
            saved = json.loads(path.read_text())
            for meta in (saved, saved.get("meta") or {}):
                if isinstance(meta.get("classes"), list):
                    return [str(c) for c in meta["classes"]]
    return None


def _resolve(name: str, run_dir: pathlib.Path) -> pathlib.Path:
    """A path recorded in a manifest: as written, else relative to the run directory's parent or the run
    directory (manifests record the paths as the command was given them)."""
    path = pathlib.Path(name)
    for candidate in (path, run_dir.parent / path, run_dir / path):
        if candidate.exists():
            return candidate
    return path


def _cluster_then_label(run_dir: pathlib.Path, manifest: dict) -> ExplorerData:
    unique_path = _find_table(run_dir, "uniquely_classified")
    amb_path = _find_table(run_dir, "ambiguous")
    frames, parts = [], []
    unique = _read(unique_path)
    _require(unique, unique_path, ["name", "ra", "dec", "detection_count", "master_class"])
    ambiguous = _read(amb_path) if amb_path is not None else unique.iloc[:0]
    classes = _classes_from_model(run_dir, manifest)
    if classes is None:   # the probability columns sit between detection_count and the first *_std column
        cols = list(unique.columns)
        start = cols.index("detection_count") + 1
        classes = [c for c in cols[start:] if f"{c}_std" in cols or "±" in str(unique[c].iloc[0] if len(unique) else "")]
    for table, path, status, cls_col in ((unique, unique_path, "unique", "master_class"),
                                         (ambiguous, amb_path, "ambiguous", "hard_master_class")):
        if not len(table):
            continue
        _require(table, path, ["name", "ra", "dec", "detection_count", cls_col, *classes])
        means, stds = _probabilities(table, classes, path)
        cls = table[cls_col].astype(str).to_numpy()
        k = pd.Series(cls).map({c: k for k, c in enumerate(classes)}).to_numpy(dtype=float)
        known = np.isfinite(k)
        prob = np.full(len(cls), np.nan)
        prob[known] = means[np.flatnonzero(known), k[known].astype(int)]
        frame = pd.DataFrame({"name": table["name"].astype(str).to_numpy(), "ra": table["ra"].to_numpy(float),
                              "dec": table["dec"].to_numpy(float), "cls": cls, "prob": prob,
                              "n_det": table["detection_count"].to_numpy(int), "status": status})
        feats = [c for c in table.columns if c not in _NOT_FEATURES and c not in classes
                 and not c.endswith("_std") and pd.api.types.is_numeric_dtype(table[c])]
        for c in feats:
            frame[c] = table[c].to_numpy(float)
        for k in range(len(classes)):
            frame[f"p{k}"], frame[f"s{k}"] = means[:, k], stds[:, k]
        frames.append(frame)
        parts.append(feats)
    if not frames:
        raise XsiftError(f"{run_dir}: the run's source tables are empty (no uniquely classified or ambiguous "
                         "source); nothing to explore")
    sources = pd.concat(frames, ignore_index=True)
    features = [c for c in parts[0] if all(c in p for p in parts)]
    return ExplorerData("cluster_then_label", sources, classes, features, manifest, run_dir=str(run_dir))


def _naive_bayes(run_dir: pathlib.Path, manifest: dict, max_tracks: int) -> ExplorerData:
    path = _find_table(run_dir, "nb_classification")
    table = _read(path)
    _require(table, path, ["predicted_class", "outlier_measure"])
    classes = _classes_from_model(run_dir, manifest)
    if classes is None:   # the probability columns come before predicted_class
        classes = [c for c in table.columns[:list(table.columns).index("predicted_class")]
                   if pd.api.types.is_numeric_dtype(table[c])]
    name_col = "name" if "name" in table else table.columns[0]
    names = table[name_col].astype(str).to_numpy()
    features = [c for c in table.columns if c not in _NOT_FEATURES and c not in classes and c != name_col
                and pd.api.types.is_numeric_dtype(table[c])]
    catalog_rows = _catalog_features(table, manifest, run_dir, name_col)
    if catalog_rows is not None:
        for c in catalog_rows.columns:
            if c not in table:
                table[c] = catalog_rows[c].to_numpy()
                features.append(c)
    probs = table[classes].to_numpy(float)
    frame = pd.DataFrame({"name": names, "ra": table["ra"].to_numpy(float) if "ra" in table else np.nan,
                          "dec": table["dec"].to_numpy(float) if "dec" in table else np.nan,
                          "pred": table["predicted_class"].astype(str).to_numpy(),
                          "outlier": table["outlier_measure"].to_numpy(float)})
    for k in range(len(classes)):
        frame[f"p{k}"] = probs[:, k]
    for c in features:
        frame[c] = table[c].to_numpy(float)
    grouped = frame.groupby("name", sort=False)
    first = grouped.first()
    means = grouped[[f"p{k}" for k in range(len(classes))]].mean()
    stds = grouped[[f"p{k}" for k in range(len(classes))]].std(ddof=0)
    sources = pd.DataFrame({"name": first.index.to_numpy(), "ra": first["ra"].to_numpy(),
                            "dec": first["dec"].to_numpy()})
    m = means.to_numpy()
    best = np.argmax(np.nan_to_num(m, nan=-1.0), axis=1)
    sources["cls"] = np.asarray(classes, dtype=object)[best]
    sources["prob"] = m[np.arange(len(m)), best]
    sources["n_det"] = grouped.size().to_numpy()
    sources["status"] = np.where(grouped["pred"].nunique().to_numpy() > 1, "ambiguous", "unique")
    sources["outlier"] = grouped["outlier"].mean().to_numpy()
    for c in features:
        sources[c] = grouped[c].mean().to_numpy()
    for k in range(len(classes)):
        sources[f"p{k}"], sources[f"s{k}"] = m[:, k], stds.to_numpy()[:, k]
    data = ExplorerData("naive_bayes", sources, classes, features, manifest, run_dir=str(run_dir))
    data.tracks = _tracks(table, manifest, run_dir, name_col, max_tracks)
    return data


def _catalog(manifest: dict, run_dir: pathlib.Path) -> pathlib.Path | None:
    inputs = manifest.get("inputs")
    name = None
    if isinstance(inputs, list) and inputs:
        name = inputs[0]
    elif isinstance(inputs, dict):
        name = inputs.get("catalog")
    if not name:
        return None
    path = _resolve(str(name), run_dir)
    return path if path.exists() else None


def _catalog_features(table: pd.DataFrame, manifest: dict, run_dir: pathlib.Path, name_col: str):
    """The numeric feature columns of the run's input catalogue (when it is still there), row-aligned
    with ``table`` through the source name (and detection, when both have ``obsid``); None without it."""
    path = _catalog(manifest, run_dir)
    if path is None:
        return None
    cat = _read(path)
    keys = [name_col] + (["obsid"] if "obsid" in table and "obsid" in cat else [])
    if not all(k in cat for k in keys):
        return None
    cat = cat.drop_duplicates(keys)
    feats = [c for c in cat.columns if c not in _NOT_FEATURES and c not in keys
             and pd.api.types.is_numeric_dtype(cat[c]) and c not in table]
    cat = cat.assign(**{k: cat[k].astype(str) for k in keys})
    left = table[keys].assign(**{k: table[k].astype(str) for k in keys})
    return left.merge(cat[keys + feats], on=keys, how="left")[feats]


def _tracks(table: pd.DataFrame, manifest: dict, run_dir: pathlib.Path, name_col: str, max_tracks: int):
    """Probability tracks (:meth:`xsift.NaiveBayesKDE.tracks`) of the first row of up to ``max_tracks``
    sources, in table order, when the run's model and catalogue are found; None otherwise."""
    if max_tracks <= 0 or not isinstance(manifest.get("model"), str):
        return None
    model_dir = _resolve(manifest["model"], run_dir)
    path = _catalog(manifest, run_dir)
    if path is None or not (model_dir / "model.json").is_file():
        return None
    from xsift.methods.naive_bayes import NaiveBayesKDE
    model = NaiveBayesKDE.load(model_dir)
    cat = _read(path)
    if name_col not in cat:
        return None
    names = pd.unique(table[name_col].astype(str))[:max_tracks]
    first_row = pd.Series(np.arange(len(cat))).groupby(cat[name_col].astype(str).to_numpy()).first()
    classes = list(model.classes_)
    tracks = {}
    for name in names:
        if name not in first_row.index:
            continue
        track = model.tracks(cat.iloc[[int(first_row[name])]])
        tracks[name] = {"steps": [str(s) for s in track["name"]],
                        "probs": np.round(track[classes].to_numpy(float), 4).tolist(),
                        "outlier": float(track["value"].iloc[-1])}
    return tracks


def _validation(run_dir: pathlib.Path) -> dict | None:
    """The confusion matrices and reliability table of ``run_dir/validation`` (or ``run_dir``), in any
    table format (``xsift validate`` and ``xsift demo`` write CSV, ``xsift run --calibrate`` its --format)."""
    for folder in (run_dir / "validation", run_dir):
        confusion = {}
        for stem, title in (("confusion_classes", "classes"), ("confusion_aggregated", "aggregated classes")):
            path = _find_table(folder, stem)
            if path is not None:
                confusion[title] = _read(path).set_index("true_class")
        reliability = _find_table(folder, "reliability")
        if confusion or reliability is not None:
            return {"confusion": confusion,
                    "reliability": _read(reliability) if reliability is not None else None,
                    "facts": json.loads((folder / "validation.json").read_text())
                    if (folder / "validation.json").is_file() else {}}
    return None


def load_run(run_dir: str | os.PathLike, *, max_tracks: int = 500) -> ExplorerData:
    """What the page of ``run_dir`` shows (:class:`ExplorerData`).

    ``run_dir``: written by ``xsift run``, ``xsift classify``, ``xsift demo``, ``xsift vote-shards``
    (cluster-then-label: the ``uniquely_classified`` and ``ambiguous`` tables, or their folders of Parquet
    parts) or ``xsift nb classify`` (``nb_classification``), in any table format. ``max_tracks``: naive Bayes only, the number of sources whose probability track is
    computed and inlined (the first ones in table order; needs the run's model and catalogue, found
    through its manifest). Raises :class:`XsiftError` naming the directory when it holds no run tables."""
    run_dir = pathlib.Path(run_dir)
    if not run_dir.is_dir():
        raise XsiftError(f"{run_dir}: no such run directory")
    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    if _find_table(run_dir, "uniquely_classified") is not None:
        data = _cluster_then_label(run_dir, manifest)
    elif _find_table(run_dir, "nb_classification") is not None:
        data = _naive_bayes(run_dir, manifest, max_tracks)
    else:
        raise XsiftError(f"{run_dir}: no run tables (uniquely_classified.* of `xsift run`/`classify`/`demo`, or "
                         "nb_classification.* of `xsift nb classify`); point it at a run directory")
    data.validation = _validation(run_dir)
    s = data.sources
    ok = np.isfinite(s["ra"].to_numpy(float)) & np.isfinite(s["dec"].to_numpy(float))
    s["l"], s["b"] = np.nan, np.nan
    if ok.any():
        lon, lat = _galactic(s.loc[ok, "ra"].to_numpy(float), s.loc[ok, "dec"].to_numpy(float))
        s.loc[ok, "l"], s.loc[ok, "b"] = lon, lat
    return data


def _palette(n: int) -> list[str]:
    from bokeh.palettes import Category10, Category20, Turbo256
    if n <= 10:
        return list(Category10[10][:n])
    if n <= 20:
        return list(Category20[20][:n])
    return [Turbo256[int(i)] for i in np.linspace(0, 255, n)]


def _facts_html(data: ExplorerData, n_sources: int, n_shown: int, seed: int) -> str:
    m = data.manifest
    rows = [("run directory", data.run_dir), ("method", data.method.replace("_", "-")),
            ("command", f"xsift {m['command']}" if m.get("command") else "")]
    inputs = m.get("inputs")
    if isinstance(inputs, dict):
        rows += [(f"input {k}", str(v)) for k, v in inputs.items() if not isinstance(v, dict)]
    elif isinstance(inputs, list):
        rows += [("input", ", ".join(map(str, inputs)))]
    if m.get("model_hash"):
        rows.append(("model hash", str(m["model_hash"])[:16]))
    if isinstance(m.get("classify"), dict) and "classified" in m["classify"]:
        rows.append(("detections classified", f"{m['classify']['classified']:,}"))
    if isinstance(m.get("rows"), int):
        rows.append(("rows classified", f"{m['rows']:,}"))
    counts = data.sources["status"].value_counts()
    rows += [("sources", f"{n_sources:,} ({counts.get('unique', 0):,} uniquely classified, "
                         f"{counts.get('ambiguous', 0):,} ambiguous)")]
    if n_shown < n_sources:
        rows.append(("shown", f"a uniform random sample of {n_shown:,} sources (seed {seed}); the grey density "
                              "image counts all of them"))
    if data.validation and data.validation.get("facts", {}).get("counts"):
        c = data.validation["facts"]["counts"]
        if "accuracy" in c:
            rows.append(("validation accuracy", f"{c['accuracy']:.3f} (aggregated {c.get('accuracy_aggregated', float('nan')):.3f})"))
    if isinstance(m.get("calibration"), dict) and "ece_raw" in m["calibration"]:
        cal = m["calibration"]
        rows.append(("calibration", f"ECE {cal['ece_raw']:.3f} -> {cal['ece_calibrated']:.3f} at T = {cal['temperature']:.3g}"))
    versions = m.get("versions", {})
    if versions.get("xsift"):
        rows.append(("xsift", str(versions["xsift"])))
    if m.get("written"):
        rows.append(("written", str(m["written"])))
    cells = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
                    f"<td>{html.escape(v)}</td></tr>" for k, v in rows if v)
    return f"<table style='font-size:90%'>{cells}</table>"


_FILTER_JS = """
const d = source.data;
const n = d.name.length;
const wanted = new Set(classes.active.map((i) => classes.labels[i]));
const pmin = prob.value;
const status = ["all", "unique", "ambiguous"][status_group.active];
const q = search.value_input.trim().toLowerCase();
const lo = outlier ? outlier.value[0] : null;
const hi = outlier ? outlier.value[1] : null;
const mask = new Array(n);
let shown = 0;
for (let i = 0; i < n; i++) {
  let ok = wanted.has(d.cls[i]) && !(d.prob[i] < pmin);
  if (ok && status !== "all") ok = d.status[i] === status;
  if (ok && outlier) ok = d.outlier[i] >= lo && d.outlier[i] <= hi;
  if (ok && q) ok = d.name[i].toLowerCase().includes(q);
  mask[i] = ok;
  if (ok) shown++;
}
view.filter.booleans = mask;
source.change.emit();
count.text = `<b>${shown.toLocaleString("en")}</b> of ${n.toLocaleString("en")} sources shown`;
"""

_DOWNLOAD_JS = r"""
const d = source.data;
const keep = view.filter.booleans;
const picked = source.selected.indices.length ? source.selected.indices.filter((i) => keep[i])
                                               : [...Array(d.name.length).keys()].filter((i) => keep[i]);
const quote = (v) => (typeof v === "string" && /[",\n]/.test(v)) ? `"${v.replaceAll('"', '""')}"` : String(v);
const lines = [columns.join(",")];
for (const i of picked) lines.push(columns.map((c) => quote(d[c][i])).join(","));
const text = lines.join("\n") + "\n";
const link = document.createElement("a");
link.href = URL.createObjectURL(new Blob([text], {type: "text/csv"}));
link.download = filename;
document.body.appendChild(link);
link.click();
link.remove();
"""

_DETAIL_JS = """
const i = source.selected.indices.length ? source.selected.indices[0] : null;
if (i === null) return;
const d = source.data;
const mean = [], lo = [], hi = [];
for (let k = 0; k < classes.length; k++) {
  const m = d["p" + k][i], s = d["s" + k][i];
  mean.push(m); lo.push(Math.max(0, m - s)); hi.push(Math.min(1, m + s));
}
bars.data = {cls: classes, mean: mean, lo: lo, hi: hi, color: colors};
bar_fig.title.text = `${d.name[i]}: ${d.cls[i]} (${d.status[i]}); mean P ± std over ${d.n_det[i]} detection(s)`;
if (track_fig !== null) {
  const t = tracks[d.name[i]];
  const data = {step: t ? t.steps : []};
  for (let k = 0; k < classes.length; k++) data["c" + k] = t ? t.probs.map((row) => row[k]) : [];
  track_fig.x_range.factors = t ? t.steps : ["(no track inlined)"];
  track.data = data;
  track_fig.title.text = t ? `${d.name[i]}: probability track (outlier measure ${t.outlier.toFixed(2)})`
                           : `${d.name[i]}: no track inlined (see --max-tracks; \\`xsift nb tracks\\` draws any source)`;
}
"""

_AXIS_JS = """
renderer.glyph[axis] = {field: select.value};
(axis === "x" ? fig.xaxis : fig.yaxis)[0].axis_label = select.value;
"""


_SAMP_JS = r"""
const cfg = button.tags[0];
const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const say = (text) => { status.text = esc(text); };
const d = source.data;
const keep = view.filter.booleans;
const all = [...Array(d.name.length).keys()];
const rows = (source.selected.indices.length ? [...source.selected.indices].sort((a, b) => a - b) : all)
             .filter((i) => keep[i]);
const enc = (v) => Array.isArray(v) ? `<value><array><data>${v.map(enc).join("")}</data></array></value>`
  : (v !== null && typeof v === "object")
    ? `<value><struct>${Object.entries(v).map(([k, x]) => `<member><name>${esc(k)}</name>${enc(x)}</member>`).join("")}</struct></value>`
    : `<value><string>${esc(v)}</string></value>`;
const dec = (value) => {
  const t = value.firstElementChild;
  if (!t) return value.textContent;
  if (t.tagName === "struct") {
    const o = {};
    for (const m of t.children) o[m.getElementsByTagName("name")[0].textContent] = dec(m.getElementsByTagName("value")[0]);
    return o;
  }
  if (t.tagName === "array") return Array.from(t.firstElementChild ? t.firstElementChild.children : []).map(dec);
  return t.textContent;
};
class HubFault extends Error {}
const rpc = async (method, ...params) => {
  const body = `<?xml version="1.0"?><methodCall><methodName>${method}</methodName><params>` +
               params.map((p) => `<param>${enc(p)}</param>`).join("") + "</params></methodCall>";
  const response = await fetch(cfg.hub, {method: "POST", headers: {"Content-Type": "text/xml"}, body: body});
  const doc = new DOMParser().parseFromString(await response.text(), "text/xml");
  const fault = doc.getElementsByTagName("fault")[0];
  if (fault) throw new HubFault(dec(fault.getElementsByTagName("value")[0]).faultString || "fault");
  const value = doc.querySelector("params > param > value");
  return value ? dec(value) : "";
};
const state = (window.xsiftSamp = window.xsiftSamp || {key: null, hub: null, loaded: new Set()});
const table = {"url": cfg.url, "table-id": cfg.table_id, "name": cfg.name};
const send = async () => {
  if (state.key === null || state.hub !== cfg.hub) {
    say(`asking the SAMP hub at ${cfg.hub} to register "xsift explorer" (accept it in the hub's dialog)`);
    const reg = await rpc("samp.webhub.register", {"samp.name": "xsift explorer"});
    state.key = reg["samp.private-key"]; state.hub = cfg.hub; state.loaded = new Set();
    await rpc("samp.webhub.declareMetadata", state.key, {"samp.name": "xsift explorer",
      "samp.description.text": "xsift explorer page: classified X-ray sources"});
    if (!state.hooked) {
      state.hooked = true;
      window.addEventListener("pagehide", () => {
        if (state.key === null) return;
        const body = `<?xml version="1.0"?><methodCall><methodName>samp.webhub.unregister</methodName><params>` +
                     `<param>${enc(state.key)}</param></params></methodCall>`;
        fetch(state.hub, {method: "POST", headers: {"Content-Type": "text/xml"}, body: body, keepalive: true}).catch(() => {});
      });
    }
  }
  const clients = Object.keys(await rpc("samp.webhub.getSubscribedClients", state.key, "table.load.votable"));
  for (const id of clients.filter((c) => !state.loaded.has(c))) {
    say(`loading ${cfg.name} into SAMP client ${id}`);
    const r = await rpc("samp.webhub.callAndWait", state.key, id, {"samp.mtype": "table.load.votable", "samp.params": table}, "120");
    if (r["samp.status"] === "samp.error") throw new HubFault(`${id} could not load ${cfg.url}: ${(r["samp.error"] || {})["samp.errortxt"] || "no reason given"}`);
    state.loaded.add(id);
  }
  const sent = await rpc("samp.webhub.notifyAll", state.key, {"samp.mtype": "table.select.rowList",
    "samp.params": {"table-id": cfg.table_id, "url": cfg.url, "row-list": rows.map(String)}});
  say(`sent ${rows.length.toLocaleString("en")} selected row(s) of ${cfg.name} to ${sent.length} SAMP client(s)` +
      (clients.length ? "" : " (no client listens for tables: start TOPCAT or Aladin)"));
};
(async () => {
  for (let attempt = 0; attempt < 2; attempt++) {
    try { await send(); return; } catch (e) {
      const stale = state.key !== null;
      state.key = null;
      if (e instanceof HubFault && stale && attempt === 0 && /private-key/i.test(e.message)) continue;  // hub restarted
      say(e instanceof HubFault ? `SAMP hub: ${e.message}`
          : `no SAMP hub answers at ${cfg.hub}: start TOPCAT or Aladin (they run one) and click again`);
      return;
    }
  }
})();
"""


def _sample(n: int, max_points: int, seed: int) -> np.ndarray:
    """Row indices shown: all of ``n``, or a sorted uniform random sample of ``max_points`` without
    replacement from ``numpy.random.default_rng(seed)``."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def page_sources(data: ExplorerData, *, max_points: int = 50_000, seed: int = 0) -> pd.DataFrame:
    """The sources the page of ``data`` shows, in its order: all of ``data.sources``, or their sample of
    ``max_points`` (:func:`build_page`). Raises XsiftError for a ``max_points`` below 1."""
    if max_points < 1:
        raise XsiftError(f"--max-points {max_points}: must be at least 1")
    return data.sources.iloc[_sample(len(data.sources), max_points, seed)]


def write_sources_votable(data: ExplorerData, path: str | os.PathLike, *, max_points: int = 50_000,
                          seed: int = 0) -> tuple[pathlib.Path, str]:
    """Write the page's sources (:func:`page_sources`: the rows of its table, in the same order, so that
    row ``i`` of the file is row ``i`` of the page) as a VOTable at ``path`` atomically
    (:func:`xsift.data.io.write_table`) and return (path, SAMP table-id).

    Columns: name, ra, dec [deg], l, b [deg, galactic], class, probability, detection_count, status,
    outlier_measure (naive Bayes), the feature columns, then per class its mean probability ``<class>`` and
    standard deviation over detections ``<class>_std``. The table-id is ``xsift-explore:`` and the first
    16 hexadecimal digits of the file's SHA-256, the same for the same rows."""
    import hashlib
    from xsift.data.columns import ColumnInfo
    from xsift.data.io import write_table
    shown = page_sources(data, max_points=max_points, seed=seed)
    classes = [str(c) for c in data.classes]
    out = pd.DataFrame({"name": shown["name"].astype(str).to_numpy(), "ra": shown["ra"].to_numpy(float),
                        "dec": shown["dec"].to_numpy(float), "l": shown["l"].to_numpy(float),
                        "b": shown["b"].to_numpy(float), "class": shown["cls"].astype(str).to_numpy(),
                        "probability": shown["prob"].to_numpy(float),
                        "detection_count": shown["n_det"].to_numpy(np.int64),
                        "status": shown["status"].astype(str).to_numpy()})
    if "outlier" in shown:
        out["outlier_measure"] = shown["outlier"].to_numpy(float)
    for c in data.features:
        out[c] = shown[c].to_numpy(float)
    for k, c in enumerate(classes):
        out[c] = shown[f"p{k}"].to_numpy(float)
    for k, c in enumerate(classes):
        out[f"{c}_std"] = shown[f"s{k}"].to_numpy(float)
    info = {"l": ColumnInfo("deg", "galactic longitude, wrapped to [-180, 180)", "pos.galactic.lon"),
            "b": ColumnInfo("deg", "galactic latitude", "pos.galactic.lat"),
            "class": ColumnInfo(None, "predicted class of the source (master class, or class of the highest "
                                      "mean probability)", "src.class"),
            "probability": ColumnInfo("", "mean probability of the predicted class over the source's detections",
                                      "stat.probability"),
            "status": ColumnInfo(None, "unique: uniquely classified; ambiguous: its detections disagree", "meta.code")}
    path = write_table(out, path, "votable", classes=classes, columns=info)
    return path, "xsift-explore:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def build_page(data: ExplorerData, *, max_points: int = 50_000, seed: int = 0, title: str | None = None,
               samp: dict | None = None) -> str:
    """The explorer page of ``data`` as one self-contained HTML document (text).

    ``max_points``: the most sources drawn as points and listed in the table (a seeded uniform random
    sample beyond it, see the module docstring); ``seed``: the sample's seed; ``samp``: None, or the
    VOTable of the page's sources (:func:`write_sources_votable`) as {"url": its ``file://`` URL,
    "table_id": its SAMP table-id, "name": the name shown in TOPCAT}: the page then has the "Send
    selection (SAMP)" button (module docstring), whose configuration is the button's ``tags[0]`` (those
    three keys and "hub": :data:`SAMP_WEB_HUB`). Raises XsiftError for a ``max_points`` below 1."""
    from bokeh.embed import file_html
    from bokeh.layouts import column, row
    from bokeh.models import (BooleanFilter, Button, CDSView, CheckboxGroup, ColumnDataSource, CustomJS, DataTable,
                              Div, FactorRange, HoverTool, LinearColorMapper, NumberFormatter, RadioButtonGroup,
                              RangeSlider, Select, Slider, TableColumn, TextInput, Whisker)
    from bokeh.palettes import Greys256
    from bokeh.plotting import figure
    from bokeh.resources import INLINE
    from bokeh.transform import factor_cmap

    s = data.sources
    classes = [str(c) for c in data.classes]
    colors = _palette(len(classes))
    present = [c for c in pd.unique(s["cls"].astype(str)) if c not in classes]
    cmap_factors, cmap_colors = classes + present, colors + ["#7f7f7f"] * len(present)
    n_all = len(s)
    shown = page_sources(data, max_points=max_points, seed=seed)
    cols = {"name": shown["name"].astype(str).tolist(), "cls": shown["cls"].astype(str).tolist(),
            "status": shown["status"].astype(str).tolist(), "n_det": shown["n_det"].to_numpy(np.int32)}
    numeric = ["ra", "dec", "l", "b", "prob"] + (["outlier"] if "outlier" in shown else []) + list(data.features)
    numeric += [f"{p}{k}" for k in range(len(classes)) for p in "ps"]
    for c in numeric:   # float32 halves the page; positions stay float64 (float32 is 0.06 arcsec at ra 300 deg)
        cols[c] = shown[c].to_numpy(np.float64 if c in ("ra", "dec") else np.float32)
    source = ColumnDataSource(cols, name="sources")
    view = CDSView(filter=BooleanFilter(booleans=[True] * len(shown)), name="view")

    # sky: density of every source, points of the shown ones
    sky = figure(title="Galactic sky (l increases to the left), coloured by class", width=1000, height=470,
                 x_range=(180, -180), y_range=(-90, 90), x_axis_label="l [deg]", y_axis_label="b [deg]",
                 tools="pan,wheel_zoom,box_zoom,box_select,lasso_select,tap,reset,save", name="sky",
                 active_scroll="wheel_zoom")
    finite = np.isfinite(s["l"].to_numpy(float))
    hist, _, _ = np.histogram2d(s["b"].to_numpy(float)[finite], s["l"].to_numpy(float)[finite], bins=[180, 360],
                                range=[[-90, 90], [-180, 180]])
    density = np.where(hist > 0, np.log10(np.maximum(hist, 1)) + 1.0, np.nan).astype(np.float32)
    mapper = LinearColorMapper(palette=list(Greys256[40:200])[::-1], low=1.0,
                               high=float(np.nanmax(density)) if np.isfinite(density).any() else 2.0,
                               nan_color=(0, 0, 0, 0))
    sky.image(image=[density], x=-180, y=-90, dw=360, dh=180, color_mapper=mapper, alpha=0.6)
    color = factor_cmap("cls", cmap_colors, cmap_factors)
    points = sky.scatter("l", "b", source=source, view=view, size=4, color=color, alpha=0.8,
                         name="sky_points", selection_line_color="black", nonselection_alpha=0.3)
    # the legend from one renderer per class holding one point off the map (Bokeh draws no swatch for an
    # empty renderer), so that a selection of sources does not fade its swatches
    for c, col in zip(cmap_factors, cmap_colors):
        sky.scatter(x=[1000.0], y=[1000.0], size=8, color=col, legend_label=c)
    legend = sky.legend[0]
    legend.label_text_font_size = "8pt"
    sky.add_layout(legend, "right")
    tips = [("name", "@name"), ("class", "@cls"), ("P", "@prob{0.000}"), ("detections", "@n_det"),
            ("status", "@status")]
    sky.add_tools(HoverTool(renderers=[points], tooltips=tips))

    # feature diagrams
    hard = [c for c in data.features if c.startswith("hard_")]
    feats = list(data.features) or ["prob"]
    axis_choices = feats + ["prob"] + (["outlier"] if "outlier" in cols else [])
    pairs = [tuple(hard[:2]) if len(hard) >= 2 else tuple((feats * 2)[:2])]
    others = [c for c in feats if c not in pairs[0]]
    pairs.append((others[0], others[1]) if len(others) >= 2 else ("prob", "outlier" if "outlier" in cols else feats[0]))
    diagrams = []
    for k, (x, y) in enumerate(pairs):
        fig = figure(title="Feature diagram (linked to the sky map and the table)", width=445, height=400,
                     x_axis_label=x, y_axis_label=y, tools="pan,wheel_zoom,box_select,lasso_select,tap,reset,save",
                     name=f"diagram{k}")
        r = fig.scatter(x, y, source=source, view=view, size=4, color=color, alpha=0.7,
                        nonselection_alpha=0.1, selection_line_color="black")
        fig.add_tools(HoverTool(renderers=[r], tooltips=tips))
        selects = []
        for axis, value in (("x", x), ("y", y)):
            sel = Select(title=f"{axis} axis", value=value, options=axis_choices, width=200)
            sel.js_on_change("value", CustomJS(args=dict(renderer=r, fig=fig, select=sel, axis=axis), code=_AXIS_JS))
            selects.append(sel)
        diagrams.append(column(row(*selects), fig))

    # filters
    class_box = CheckboxGroup(labels=cmap_factors, active=list(range(len(cmap_factors))), name="class_filter",
                              inline=False)
    prob = Slider(title="minimum class probability", start=0.0, end=1.0, step=0.01, value=0.0, name="prob_filter")
    status = RadioButtonGroup(labels=["all", "uniquely classified", "ambiguous"], active=0, name="status_filter")
    search = TextInput(title="name contains", placeholder="e.g. 2CXO J0534", name="search")
    outlier = None
    if "outlier" in cols and np.isfinite(cols["outlier"]).any():
        lo, hi = float(np.nanmin(cols["outlier"])), float(np.nanmax(cols["outlier"]))
        hi = hi if hi > lo else lo + 1.0
        outlier = RangeSlider(title="outlier measure", start=lo, end=hi, value=(lo, hi), step=(hi - lo) / 200,
                              name="outlier_filter")
    count = Div(text=f"<b>{len(shown):,}</b> of {len(shown):,} sources shown", name="count")
    apply = CustomJS(args=dict(source=source, view=view, classes=class_box, prob=prob, status_group=status,
                               search=search, outlier=outlier, count=count), code=_FILTER_JS)
    class_box.js_on_change("active", apply)
    prob.js_on_change("value", apply)
    status.js_on_change("active", apply)
    search.js_on_change("value_input", apply)
    if outlier is not None:
        outlier.js_on_change("value", apply)
    csv_columns = ["name", "ra", "dec", "l", "b", "cls", "prob", "n_det", "status"] + (["outlier"] if "outlier" in cols else [])
    download = Button(label="Download rows (CSV)", name="download", width=220)
    download.js_on_event("button_click", CustomJS(args=dict(source=source, view=view, columns=csv_columns,
                                                            filename="xsift_selection.csv"), code=_DOWNLOAD_JS))
    if samp is not None:
        samp_status = Div(text="", width=240, name="samp_status")
        send = Button(label="Send selection (SAMP)", name="samp_send", width=220,
                      tags=[{"hub": SAMP_WEB_HUB, "url": samp["url"], "table_id": samp["table_id"],
                             "name": samp["name"]}])
        send.js_on_event("button_click", CustomJS(args=dict(button=send, status=samp_status, source=source,
                                                            view=view), code=_SAMP_JS))
        samp_parts = [send, samp_status]
    else:
        samp_parts = [Div(text="(<code>xsift explore --samp</code> adds a button that sends them to TOPCAT or "
                               "Aladin through SAMP)", width=240)]
    filters = column(Div(text="<b>Filters</b>"), count, Div(text="class"), class_box, prob, status, search,
                     *([outlier] if outlier is not None else []),
                     Div(text="the selected sources that pass the filters (all of them when none is selected), "
                              "to load in TOPCAT:", width=240), download, *samp_parts, width=260)

    # table
    fmt = NumberFormatter(format="0.000")
    columns = [TableColumn(field="name", title="name", width=220),
               TableColumn(field="ra", title="ra [deg]", formatter=NumberFormatter(format="0.00000"), width=100),
               TableColumn(field="dec", title="dec [deg]", formatter=NumberFormatter(format="0.00000"), width=100),
               TableColumn(field="l", title="l [deg]", formatter=NumberFormatter(format="0.000"), width=90),
               TableColumn(field="b", title="b [deg]", formatter=NumberFormatter(format="0.000"), width=90),
               TableColumn(field="cls", title="class", width=100),
               TableColumn(field="prob", title="probability", formatter=fmt, width=90),
               TableColumn(field="n_det", title="detections", width=80),
               TableColumn(field="status", title="status", width=90)]
    if "outlier" in cols:
        columns.append(TableColumn(field="outlier", title="outlier measure", formatter=fmt, width=110))
    table = DataTable(source=source, view=view, columns=columns, width=1170, height=300, index_position=None,
                      sortable=True, reorderable=False, name="table")

    # the clicked source: class probabilities with their spread, and the naive-Bayes track
    bars = ColumnDataSource({"cls": classes, "mean": [0.0] * len(classes), "lo": [0.0] * len(classes),
                             "hi": [0.0] * len(classes), "color": colors}, name="bars")
    bar_fig = figure(title="Click a source to see its class probabilities", x_range=FactorRange(*classes),
                     y_range=(0, 1.05), width=600, height=320, y_axis_label="probability", tools="save",
                     name="probabilities")
    bar_fig.vbar(x="cls", top="mean", width=0.7, color="color", source=bars)
    bar_fig.add_layout(Whisker(base="cls", upper="hi", lower="lo", source=bars))
    bar_fig.xaxis.major_label_orientation = 0.8
    track_fig, track_src, tracks = None, None, {}
    if data.method == "naive_bayes":
        tracks = data.tracks or {}
        track_src = ColumnDataSource({"step": [], **{f"c{k}": [] for k in range(len(classes))}}, name="track")
        track_fig = figure(title="Click a source to see its probability track" if tracks else
                           "No probability track inlined (model or catalogue of the run not found)",
                           x_range=FactorRange("(click a source)"), y_range=(0, 1.05), width=585, height=320,
                           y_axis_label="P(class)", tools="save", name="track_plot")
        for k, c in enumerate(classes):
            track_fig.line("step", f"c{k}", source=track_src, color=colors[k], legend_label=c, line_width=2)
            track_fig.scatter("step", f"c{k}", source=track_src, color=colors[k], size=5)
        track_fig.xaxis.major_label_orientation = 0.9
        track_fig.legend.label_text_font_size = "8pt"
        track_fig.legend.click_policy = "hide"
    source.selected.js_on_change("indices", CustomJS(
        args=dict(source=source, bars=bars, bar_fig=bar_fig, classes=classes, colors=colors, track=track_src,
                  track_fig=track_fig, tracks=tracks), code=_DETAIL_JS))

    parts = [Div(text=f"<h2>{html.escape(title or 'xsift explorer')}</h2>"
                      + _facts_html(data, n_all, len(shown), seed), name="facts"),
             row(filters, sky), row(*diagrams), row(bar_fig, *([track_fig] if track_fig is not None else [])),
             Div(text="<b>Sources</b> (click a row or a point; sort by a column header; filters above)"), table]
    parts += _validation_plots(data.validation)
    layout = column(*parts)
    return file_html(layout, INLINE, title or "xsift explorer")


def _validation_plots(validation) -> list:
    """The confusion matrices (rows true, columns predicted; fraction of each true class) and the
    reliability diagram of a run's validation, as Bokeh layout parts."""
    from bokeh.layouts import row
    from bokeh.models import ColumnDataSource, Div, FactorRange, LinearColorMapper
    from bokeh.palettes import Blues256
    from bokeh.plotting import figure
    if not validation:
        return []
    figs = []
    for title, cm in validation.get("confusion", {}).items():
        true = [str(t) for t in cm.index]
        pred = [str(p) for p in cm.columns]
        xs, ys, vals = zip(*[(p, t, float(cm.loc[t_raw, p_raw])) for t, t_raw in zip(true, cm.index)
                             for p, p_raw in zip(pred, cm.columns)])
        src = ColumnDataSource({"pred": list(xs), "true": list(ys), "value": list(vals),
                                "label": [f"{v:.2f}" for v in vals]})
        size = 420 if len(pred) > 5 else 330
        fig = figure(title=f"Validation confusion matrix ({title}): fraction of each true class",
                     x_range=FactorRange(*pred), y_range=FactorRange(*true[::-1]), width=size + 60, height=size,
                     x_axis_label="predicted", y_axis_label="true", tools="save,hover",
                     tooltips=[("true", "@true"), ("predicted", "@pred"), ("fraction", "@value{0.000}")],
                     name=f"confusion_{title.split()[0]}")
        mapper = LinearColorMapper(palette=list(Blues256)[::-1], low=0.0, high=1.0)
        fig.rect("pred", "true", 1, 1, source=src, fill_color={"field": "value", "transform": mapper}, line_color=None)
        fig.text("pred", "true", text="label", source=src, text_align="center", text_baseline="middle",
                 text_font_size="7pt" if len(pred) > 5 else "9pt")
        fig.xaxis.major_label_orientation = 0.8
        figs.append(fig)
    rel = validation.get("reliability")
    if rel is not None and len(rel):
        fig = figure(title="Validation reliability diagram", width=380, height=380, x_range=(0, 1), y_range=(0, 1),
                     x_axis_label="mean predicted probability", y_axis_label="fraction correct", tools="save,hover",
                     name="reliability")
        fig.line([0, 1], [0, 1], color="grey", line_dash="dashed")
        for k, (curve, part) in enumerate(rel.dropna(subset=["mean_confidence"]).groupby("curve", sort=False)):
            c = _palette(10)[k % 10]
            fig.line(part["mean_confidence"].to_numpy(), part["fraction_correct"].to_numpy(), color=c,
                     legend_label=str(curve), line_width=2)
            fig.scatter(part["mean_confidence"].to_numpy(), part["fraction_correct"].to_numpy(), color=c, size=6)
        fig.legend.location = "top_left"
        figs.append(fig)
    return [Div(text="<b>Validation</b> (held-out labelled sources)"), row(*figs)] if figs else []


def write_explorer(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *, max_points: int = 50_000,
                   seed: int = 0, max_tracks: int = 500, samp: bool = False) -> pathlib.Path:
    """Write the explorer page of ``run_dir`` to ``out`` (default ``run_dir/explore.html``) atomically and
    return its path. ``max_points``, ``seed``: :func:`build_page`; ``max_tracks``: :func:`load_run`;
    ``samp``: also write the page's sources as ``<out folder>/samp/<out stem>_sources.vot``
    (:func:`write_sources_votable`) and give the page its "Send selection (SAMP)" button.
    Raises :class:`XsiftError` for a directory without run tables."""
    run_dir = pathlib.Path(run_dir)
    data = load_run(run_dir, max_tracks=max_tracks)
    out = pathlib.Path(out) if out is not None else run_dir / "explore.html"
    table = None
    if samp:
        vot, table_id = write_sources_votable(data, out.parent / "samp" / f"{out.stem}_sources.vot",
                                              max_points=max_points, seed=seed)
        table = {"url": vot.resolve().as_uri(), "table_id": table_id,
                 "name": f"xsift {run_dir.resolve().name} sources"}
    page = build_page(data, max_points=max_points, seed=seed, title=f"xsift explorer: {run_dir.resolve().name}",
                      samp=table)
    from xsift.data.io import atomic_write
    with atomic_write(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out
