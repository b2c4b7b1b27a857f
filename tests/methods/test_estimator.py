"""xsift.methods.estimator: ParamsMixin against scikit-learn's BaseEstimator, as_frame against read_catalog."""
import numpy as np
import pandas as pd
import pytest
from astropy.table import MaskedColumn, Table
from sklearn.base import BaseEstimator, clone

from xsift.data.io import read_catalog
from xsift.errors import XsiftError
from xsift.methods.estimator import ParamsMixin, as_frame


class Ours(ParamsMixin):
    _estimator_type = "classifier"

    def __init__(self, n_components=6, preset="csc", inner=None):
        self.n_components = n_components
        self.preset = preset
        self.inner = inner


class Theirs(BaseEstimator):
    def __init__(self, n_components=6, preset="csc", inner=None):
        self.n_components = n_components
        self.preset = preset
        self.inner = inner


def test_params_behave_as_scikit_learns():
    for deep in (True, False):
        ours = Ours(3, inner=Ours(n_components=2)).get_params(deep=deep)
        theirs = Theirs(3, inner=Theirs(n_components=2)).get_params(deep=deep)
        assert set(ours) == set(theirs)
        assert {k: v for k, v in ours.items() if k != "inner"} == {k: v for k, v in theirs.items() if k != "inner"}
    est = Ours(inner=Ours()).set_params(n_components=4, inner__preset="nb_csc")
    assert est.n_components == 4 and est.inner.preset == "nb_csc"
    with pytest.raises(ValueError, match="invalid parameter 'k'"):
        Ours().set_params(k=3)
    c = clone(Ours(5, preset="nb_xmm"))
    assert isinstance(c, Ours) and c.get_params() == Ours(5, preset="nb_xmm").get_params()
    assert repr(Ours(5)) == "Ours(n_components=5)"
    assert Ours().__sklearn_tags__().estimator_type == "classifier"


def test_astropy_table_reads_as_the_fits_reader_reads_it(tmp_path):
    t = Table({"name": ["2CXO J1", "", "2CXO J3"], "x": MaskedColumn([1.0, 2.0, 3.0], mask=[False, True, False]),
               "k": [1, 2, 3]})
    t.write(tmp_path / "t.fits")
    from_file = read_catalog(tmp_path / "t.fits")
    pd.testing.assert_frame_equal(as_frame(Table.read(tmp_path / "t.fits")), from_file)
    df = as_frame(t)
    assert np.isnan(df["x"][1]) and df["x"][0] == 1.0 and pd.isna(df["name"][1])


def test_arrays_and_dicts_and_refusals():
    X = np.arange(6.0).reshape(3, 2)
    assert list(as_frame(X).columns) == ["x0", "x1"]
    rec = np.array([(1.0, b"a")], dtype=[("hard_hm", "f8"), ("name", "S3")])
    assert list(as_frame(rec).columns) == ["hard_hm", "name"]
    assert as_frame({"a": [1, 2]}).shape == (2, 1)
    with pytest.raises(XsiftError, match="not a table"):
        as_frame(np.arange(3.0))
    with pytest.raises(XsiftError, match="cannot read a list"):
        as_frame([1, 2])
