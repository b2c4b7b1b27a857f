"""Run manifests: what went in, with which settings and versions, what came out, how long it took."""
from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import os
import pathlib
import platform
import sys

from xsift.data.io import write_json

_PACKAGES = ("xsift", "jax", "jaxlib", "numpy", "pandas", "pyarrow", "dask", "distributed",
             "astropy", "optax", "matplotlib")


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine() -> dict:
    import jax
    return {"platform": platform.platform(), "cpu_count": os.cpu_count(),
            "jax_devices": [str(d) for d in jax.devices()]}


def file_hash(paths: list[pathlib.Path]) -> str:
    """sha256 over the names and bytes of ``paths`` (sorted by name): a model's content hash."""
    h = hashlib.sha256()
    for p in sorted(pathlib.Path(q) for q in paths):
        h.update(p.name.encode())
        h.update(b"\0")
        h.update(p.read_bytes())
    return h.hexdigest()


def write_manifest(out_dir: str | os.PathLike, **facts) -> pathlib.Path:
    """Write ``out_dir/manifest.json``: the given facts (command, inputs, config, model hash,
    row counts, timings ...) plus the time, package versions and machine."""
    manifest = {"written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                **facts, "versions": package_versions(), "machine": machine()}
    return write_json(manifest, pathlib.Path(out_dir) / "manifest.json")
