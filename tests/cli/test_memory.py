"""xsift.cli.memory.keep_freed_memory: after it, a freed 256 MB array stays mapped in the process (resident
memory does not fall back) and the next array of that size reuses the pages without faulting them in;
without it (or with XSIFT_KEEP_FREED_MEMORY=0) glibc returns the block to the kernel. Each case runs in a
fresh interpreter, since the setting is process-wide."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="keep_freed_memory acts on glibc's malloc (Linux) only")

_PROBE = r"""
import json, resource, sys
import numpy as np
from xsift.cli.memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "call" else None

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

a = np.ones(32 * 2**20)             # 256 MB, touched
before_free = rss_mb()
del a
after_free = rss_mb()
f0 = faults()
b = np.ones(32 * 2**20)             # the same size again
print(json.dumps({"kept": kept, "dropped_mb": before_free - after_free, "refaults": faults() - f0}))
"""


def _probe(mode, **env):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True,
                         cwd=root, env={**os.environ, "PYTHONPATH": root, **env})
    return json.loads(out.stdout)


def test_freed_memory_is_kept_and_reused():
    kept = _probe("call", XSIFT_KEEP_FREED_MEMORY="1")
    default = _probe("no-call")
    assert kept["kept"] is True
    # default glibc: the 256 MB block goes back to the kernel, and the next one faults every page in again
    assert default["dropped_mb"] > 200
    assert default["refaults"] >= 128           # at least one fault per 2 MiB huge page of 256 MB
    # kept: resident memory stays, and the next array reuses the mapped pages
    assert kept["dropped_mb"] < 10
    assert kept["refaults"] < default["refaults"] / 10


def test_switched_off_by_the_environment():
    off = _probe("call", XSIFT_KEEP_FREED_MEMORY="0")
    assert off["kept"] is False
    assert off["dropped_mb"] > 200
