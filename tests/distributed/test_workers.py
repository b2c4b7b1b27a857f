"""The default number of Dask workers comes from the CPUs this process may use: its CPU affinity,
capped by the floor of a cgroup CPU quota; --workers overrides it."""
import os
import shutil
import subprocess
import sys

import pytest

from xsift.distributed.cluster import available_cpus, cgroup_cpu_limit, local_cluster
from xsift.errors import XsiftError

AFFINITY = len(os.sched_getaffinity(0))


def _cgroup(tmp_path, files: dict[str, str]):
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize("files, quota, cpus", [
    ({"cpu.max": "150000 100000\n"}, 1.5, 1),                        # v2: 1.5 CPUs -> 1 worker (floor)
    ({"cpu.max": "50000 100000\n"}, 0.5, 1),                         # under one CPU: still one worker
    ({"cpu.max": "max 100000\n"}, None, AFFINITY),                   # v2 without a limit
    ({"cpu/cpu.cfs_quota_us": "150000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1.5, 1),   # v1
    ({"cpu.cfs_quota_us": "-1\n", "cpu.cfs_period_us": "100000\n"}, None, AFFINITY),       # v1 unlimited
    ({"cpu.max": "800000 100000\n"}, 8.0, AFFINITY),                 # a quota above the affinity: affinity
    ({}, None, AFFINITY),                                            # no cgroup files at all
])
def test_quota_from_a_fake_cgroup(tmp_path, files, quota, cpus):
    root = _cgroup(tmp_path, files)
    assert cgroup_cpu_limit(root, proc_cgroup=None) == quota
    assert available_cpus(root, proc_cgroup=None) == min(cpus, AFFINITY)


def test_quota_of_the_process_own_nested_cgroup_and_its_parents(tmp_path):
    """v2: the process's cgroup is read from /proc/self/cgroup; every level's limit applies."""
    root = _cgroup(tmp_path, {"app/job/cpu.max": "max 100000\n", "app/cpu.max": "250000 100000\n",
                              "proc_cgroup": "0::/app/job\n"})
    assert cgroup_cpu_limit(root, proc_cgroup=root / "proc_cgroup") == 2.5
    assert available_cpus(root, proc_cgroup=root / "proc_cgroup") == min(2, AFFINITY)


def test_v1_hierarchy_named_in_proc_cgroup(tmp_path):
    root = _cgroup(tmp_path, {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "100000\n",
                              "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
                              "proc_cgroup": "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n"})
    assert cgroup_cpu_limit(root, proc_cgroup=root / "proc_cgroup") == 1.0


def test_unreadable_quota_text_is_ignored(tmp_path):
    root = _cgroup(tmp_path, {"cpu.max": "lots 100000\n"})
    assert cgroup_cpu_limit(root, proc_cgroup=None) is None


def test_this_machine_default_is_within_its_affinity():
    assert available_cpus() in range(1, AFFINITY + 1)


@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) is not installed")
def test_taskset_one_core_gives_one_local_worker():
    """Under ``taskset -c 0`` the local cluster starts one worker (not one per core of the machine)."""
    code = ("from xsift.distributed.cluster import available_cpus, local_cluster\n"
            "c = local_cluster(env={'JAX_PLATFORMS': 'cpu'})\n"
            "print(available_cpus(), len(c.workers))\n"
            "c.close()\n")
    proc = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-2:] == ["1", "1"]


def test_workers_must_be_positive():
    with pytest.raises(XsiftError, match="--workers 0"):
        local_cluster(0)


def test_workers_help_names_affinity_and_quota():
    from xsift.cli import build_parser
    sub = build_parser()._subparsers._group_actions[0].choices
    for command in ("fit-shards", "classify-shards", "vote-shards"):
        text = sub[command].format_help()
        assert "affinity" in text and "quota" in text, command
