"""One line describing the machine a benchmark ran on, printed with its table.

Machines of the same nominal kind differ (CPU generation, load of the host), and absolute times
depend on them, so each table records the CPU it was measured on."""
from __future__ import annotations

import os
import platform


def describe() -> str:
    """e.g. ``cpu: AMD EPYC (family 26, model 2), 2 logical cores, avx512f``."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" in line:
                    k, v = (s.strip() for s in line.split(":", 1))
                    info.setdefault(k, v)
    except OSError:
        return f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores"
    flags = set(info.get("flags", "").split())
    simd = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), "no AVX")
    return (f"cpu: {info.get('model name', '?')} (family {info.get('cpu family', '?')}, model "
            f"{info.get('model', '?')}), {os.cpu_count()} logical cores, {simd}")
