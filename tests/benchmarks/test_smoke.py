"""Every benchmark script runs end to end at a tiny size and prints its table (slow: each starts its own
interpreter). CI runs no benchmark at full size, so without this a benchmark broken by a library change
goes unnoticed until someone reruns it for its table. What is asserted is that the script finishes
(exit 0), prints a table (a line with a number and a column separator, Markdown ``|`` or spaces) and no
traceback; the figures themselves are the benchmark's business, at its documented size."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from shared_data import shared_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"

# script -> tiny arguments ("{tmp}" becomes the test's temporary directory); needs_shared: reads ../shared
CASES = {
    "calibration.py": (["--detections", "4000", "--methods", "nb"], False),
    "classify.py": (["--sizes", "300", "--detections", "3000", "--fit-detections", "4000", "--runs", "1"], False),
    "gmm.py": (["--sizes", "3000", "--iters", "1", "2", "--timing-repeats", "1", "--sklearn-repeats", "1",
                "--no-sweep"], False),
    "missing_errors.py": (["--detections", "6000", "--k", "3"], False),
    "nbayes.py": (["--kde-only"], False),
    "nbayes_real.py": (["--only", "xmm", "--no-tuning"], True),
    "scale.py": (["--sizes", "20000", "--rows-per-shard", "5000", "--fit-sample", "10000", "--em-iters", "0",
                  "--workdir", "{tmp}/scale"], False),
    "simulate.py": (["--sizes", "20000", "--shards", "2", "--peer-max", "20000"], False),
    "xd.py": (["--sizes", "400", "--iterations", "1", "--timing-repeats", "1", "--astroml-max", "400",
               "--classify", "2000"], False),
    "battery.py": (["--only", "semicolon"], False),
}


def test_every_benchmark_script_is_covered():
    """A new benchmark gets a tiny-size case here (explore.py needs a browser and is covered by the
    explorer's browser tests; machine.py is a helper module)."""
    scripts = {p.name for p in BENCH.glob("*.py")} - {"explore.py", "machine.py"}
    assert scripts == set(CASES), scripts ^ set(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(CASES))
def test_benchmark_runs_at_a_tiny_size(script, tmp_path):
    args, needs_shared = CASES[script]
    if needs_shared:
        shared_file("muwclass", "td_multiwavelength_2023.csv")      # skips, saying why, without ../shared
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    env = {**os.environ, "XSIFT_PROGRESS": "0"}
    out = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=BENCH, capture_output=True, text=True,
                         timeout=600, env=env)
    assert out.returncode == 0, f"{script} exited {out.returncode}:\n{out.stderr[-3000:]}"
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    rows = [line for line in out.stdout.splitlines() if any(ch.isdigit() for ch in line)
            and ("|" in line or len(line.split()) >= 4)]
    assert rows, out.stdout[-2000:]
