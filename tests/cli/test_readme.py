"""The README's Python example runs as written (on a simulated labelled catalogue and the MUWCLASS
sample), and the commands it lists exist: what a new user copies first must work."""
import re
import pathlib

import numpy as np
import pandas as pd
import pytest

from shared_data import shared_file

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.slow      # fits both methods and tunes weights: ~15 s of CPU
def test_readme_python_example_runs(tmp_path, monkeypatch):
    from xsift.data.io import write_table
    from xsift.simulate import simulate_catalog
    blocks = _python_blocks()
    assert blocks, "README.md has a ```python block"
    monkeypatch.chdir(tmp_path)
    write_table(simulate_catalog(3000, seed=1), tmp_path / "labelled.parquet")
    mw = pd.read_csv(shared_file("muwclass", "td_xray.csv"))
    X, y = mw, mw["Class"]
    namespace = {"X": X, "y": y, "X_new": mw.head(50),
                 "data": np.random.default_rng(0).normal(size=(500, 3))}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)      # noqa: S102 - the README's own example
    assert namespace["result"].detections.shape[0] > 0
    assert set(namespace["nb"].predict(X.head(20))) <= set(namespace["nb"].classes_)
    assert namespace["gm"].means_.shape == (6, 3)


def test_readme_commands_exist():
    """Every `xsift COMMAND` the README's command-line block lists is a command of `xsift --help`."""
    from xsift.cli import COMMANDS
    text = README.read_text()
    block = re.search(r"## The command line\n\n```\n(.*?)```", text, flags=re.S).group(1)
    named = {m.group(1) for m in re.finditer(r"^xsift ([a-z][a-z0-9-]*)", block, flags=re.M)}
    assert named and named <= set(COMMANDS), named - set(COMMANDS)
