"""xsift.methods.voting against a literal per-source oracle (Counter.most_common, mean probabilities),
and against the published tables of the CSC paper."""
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from xsift.config import load_preset
from xsift.methods.voting import hard_vote, master_classes, published_format

PRESET = load_preset("csc")
CLASSES = list(PRESET.classes.order)
AGG = {g: list(m) for g, m in PRESET.classes.aggregation.items()}


def detection_table(seed, n_sources=400, L=len(CLASSES)):
    """Random detections, many sources with 2-6 detections, near-uniform probabilities so that
    hard-vote ties and hard/soft disagreements are frequent; obsids shuffled; a few flagged rows."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 7, n_sources)
    names = np.repeat([f"2CXO J{i:06d}" for i in range(n_sources)], counts)
    n = len(names)
    obsid = rng.permutation(n) + 1000
    logits = rng.normal(scale=0.3, size=(n, L))
    logits[:, :3] += 0.5                           # few classes compete: ties are common
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    flagged = rng.random(n) < 0.05
    probs[flagged] = np.nan
    pred = np.where(flagged, None, np.asarray(CLASSES, dtype=object)[np.nanargmax(np.nan_to_num(probs, nan=-1), 1)])
    df = pd.DataFrame({"name": names, "obsid": obsid, "cluster": 0, "ra": rng.uniform(0, 360, n),
                       "dec": rng.uniform(-90, 90, n)})
    df[CLASSES] = probs
    df["predicted_class"] = pd.array(pred, dtype="str")
    df["no_usable_class"] = flagged
    df["hard_hm"] = rng.normal(size=n)
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)   # rows in any order


def oracle(df):
    out = {}
    d = df[~df["no_usable_class"]].sort_values(["name", "obsid"])
    for name, g in d.groupby("name", sort=True):
        hard = Counter(g["predicted_class"].tolist()).most_common(1)[0][0]
        means = g[CLASSES].to_numpy().mean(axis=0)
        out[name] = dict(hard=hard, soft=CLASSES[int(np.argmax(means))], n=len(g), means=means,
                         stds=g[CLASSES].to_numpy().std(axis=0), ra=g["ra"].iloc[0], hard_hm=g["hard_hm"].iloc[0])
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_master_classes_match_literal_oracle(seed):
    df = detection_table(seed)
    uniq, amb, summary = master_classes(df, CLASSES, AGG)
    ref = oracle(df)
    assert len(uniq) + len(amb) == len(ref) == summary["sources_voted"]
    assert summary["detections_without_usable_class"] == int(df["no_usable_class"].sum())
    assert len(amb) > 10                         # disagreements exercised
    for table, hcol, scol in ((uniq, "master_class", "master_class"),
                              (amb, "hard_master_class", "soft_master_class")):
        for row in table.itertuples(index=False):
            r = ref[row.name]
            assert (getattr(row, hcol), getattr(row, scol)) == (r["hard"], r["soft"])
            assert row.detection_count == r["n"] and row.ra == r["ra"] and row.hard_hm == r["hard_hm"]
        m = np.array([ref[n]["means"] for n in table["name"]]).reshape(-1, len(CLASSES))
        s = np.array([ref[n]["stds"] for n in table["name"]]).reshape(-1, len(CLASSES))
        np.testing.assert_allclose(table[CLASSES].to_numpy(float), m, atol=1e-14)
        np.testing.assert_allclose(table[[f"{c}_std" for c in CLASSES]].to_numpy(float), s, atol=1e-14)
    hard = [ref[n]["hard"] for n in sorted(ref)]
    soft = [ref[n]["soft"] for n in sorted(ref)]
    assert summary["cohen_kappa_hard_soft"] == pytest.approx(cohen_kappa_score(hard, soft), abs=1e-12)
    agg_of = {m: a for a, ms in AGG.items() for m in ms}
    assert (uniq["agg_master_class"] == uniq["master_class"].map(agg_of)).all()
    assert (np.diff(uniq["detection_count"].to_numpy()) <= 0).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_given_name_codes_and_predicted_classes_change_nothing(seed):
    """A caller's codes for the names (any integers equal exactly where the names are) and predicted
    class indices give the tables of the vote that computes both itself."""
    df = detection_table(seed)
    rng = np.random.default_rng(seed)
    names = df["name"].unique()
    key_of = dict(zip(names, rng.permutation(len(names)) * 7 + 10**9))      # unordered, not from 0
    codes = df["name"].map(key_of).to_numpy(dtype=np.int64, copy=True)
    probs = df[CLASSES].to_numpy(float)
    flagged = df["no_usable_class"].to_numpy()
    predicted = np.where(flagged, -1, np.argmax(np.nan_to_num(probs, nan=-1.0), axis=1))
    expected = master_classes(df, CLASSES, AGG)
    given = master_classes(df, CLASSES, AGG, name_codes=codes, predicted=predicted)
    assert given[0].equals(expected[0]) and given[1].equals(expected[1]) and given[2] == expected[2]
    # the codes are used, not ignored: a detection of a multi-detection source given a code of its own
    # makes one source more
    row = int(np.flatnonzero(df["name"].duplicated(keep=False).to_numpy())[0])
    codes[row] = codes.max() + 1
    moved = master_classes(df, CLASSES, AGG, name_codes=codes, predicted=predicted)
    assert moved[2]["sources"] == expected[2]["sources"] + 1
    with pytest.raises(ValueError, match="one value per row"):
        master_classes(df, CLASSES, AGG, name_codes=codes[:-1])
    with pytest.raises(ValueError, match="one value per row"):
        master_classes(df, CLASSES, AGG, predicted=predicted[:-1])


def test_hard_vote_tie_goes_to_first_in_obsid_order():
    # source A: obsid order gives LMXB, QSO, QSO, LMXB -> tie 2:2, LMXB appears first
    df = pd.DataFrame({"name": ["A"] * 4 + ["B"] * 2, "obsid": [40, 10, 30, 20, 2, 1], "ra": 1.0, "dec": 2.0,
                       "predicted_class": ["LMXB", "LMXB", "QSO", "QSO", "AGN", "XB"]})
    probs = np.zeros((6, len(CLASSES)))
    for i, c in enumerate(df["predicted_class"]):
        probs[i, CLASSES.index(c)] = 0.9
        probs[i, CLASSES.index("YSO")] = 0.1
    df[CLASSES] = probs
    uniq, amb, _ = master_classes(df, CLASSES, AGG)
    a = pd.concat([uniq, amb]).set_index("name")
    # the literal rule
    assert Counter(["LMXB", "QSO", "QSO", "LMXB"]).most_common(1)[0][0] == "LMXB"
    assert a.loc["A", "hard_master_class"] == "LMXB"
    assert a.loc["B", "hard_master_class"] == "XB"        # obsid 1 (XB) comes before obsid 2 (AGN)
    # soft tie (QSO and LMXB both 0.45): the first class in preset order wins, QSO
    assert a.loc["A", "soft_master_class"] == "QSO"


def test_hard_vote_function_directly():
    src = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([3, 1, 1, 2, 0, 4])
    assert hard_vote(src, pred, 3, 5).tolist() == [1, 2, 4]
    assert hard_vote(np.array([0, 0]), np.array([4, 1]), 1, 5).tolist() == [4]


def test_source_with_only_flagged_detections_is_counted():
    df = detection_table(3, n_sources=20)
    df.loc[df["name"] == df["name"].iloc[0], "no_usable_class"] = True
    uniq, amb, summary = master_classes(df, CLASSES, AGG)
    assert df["name"].iloc[0] not in set(uniq["name"]) | set(amb["name"])
    assert summary["sources_without_usable_class"] >= 1


def test_empty_detection_table():
    df = detection_table(4, n_sources=3).iloc[:0]
    uniq, amb, summary = master_classes(df, CLASSES, AGG)
    assert len(uniq) == len(amb) == 0 and summary["sources_voted"] == 0


def _parse(table):
    out = table.copy()
    for c in CLASSES:
        parts = out[c].astype(str).str.split("±", expand=True)
        out[c] = parts[0].astype(float)
        out[f"{c}_std"] = parts[1].astype(float)
    return out


def test_published_format_reproduces_the_papers_text(umlcaxs_unique):
    """Parsing the published mean±std columns and formatting them again gives the same text."""
    numeric = _parse(umlcaxs_unique)
    again = published_format(numeric, CLASSES)
    for c in CLASSES:
        assert (again[c].astype(str).to_numpy() == umlcaxs_unique[c].astype(str).to_numpy()).all(), c
    assert list(again.columns) == list(umlcaxs_unique.columns)


def test_published_tables_follow_the_voting_and_aggregation_rules(umlcaxs_unique, umlcaxs_ambiguous):
    """On the real tables: single-detection sources have std 0 and their master class is the argmax of
    their probabilities (soft = hard); agg_master_class is the preset's aggregation of master_class;
    the ambiguous sources all have several detections."""
    u = _parse(umlcaxs_unique)
    agg_of = {m: a for a, ms in AGG.items() for m in ms}
    assert (u["agg_master_class"] == u["master_class"].map(agg_of)).all()
    single = u[u["detection_count"] == 1]
    assert len(single) > 5000
    assert (single[[f"{c}_std" for c in CLASSES]].to_numpy() == 0).all()
    means = single[CLASSES].to_numpy()
    clear = np.sort(means, axis=1)[:, -1] - np.sort(means, axis=1)[:, -2] > 1e-3   # rounding can tie
    assert (np.asarray(CLASSES)[np.argmax(means[clear], axis=1)] == single["master_class"].to_numpy()[clear]).all()
    assert (umlcaxs_ambiguous["detection_count"] > 1).all()
    # the paper's kappa: 485 of 8,756 sources ambiguous
    assert len(umlcaxs_ambiguous) == 485 and len(umlcaxs_unique) + len(umlcaxs_ambiguous) == 8756
