"""The installed package: one import name, no global side effects at import, light imports.

Each check runs in a fresh interpreter started outside the repository, as a user's script would be.
"""
import json
import pathlib
import subprocess
import sys
import tomllib

REPO = pathlib.Path(__file__).resolve().parents[2]


def _python(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd)


def test_only_xsift_is_importable_not_engine_or_kernels(tmp_path):
    for name in ("engine", "kernels"):
        proc = _python(f"import {name}", tmp_path)
        assert proc.returncode == 1 and f"ModuleNotFoundError: No module named '{name}'" in proc.stderr
    proc = _python("import xsift, xsift.kernels.mahalanobis as m; print(m.__name__)", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "xsift.kernels.mahalanobis"


def test_a_users_kernels_folder_does_not_shadow_xsifts(tmp_path):
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "__init__.py").write_text("raise RuntimeError('the user folder was imported')\n")
    (tmp_path / "kernels" / "mahalanobis.py").write_text("raise RuntimeError('the user folder was imported')\n")
    proc = _python("from xsift.kernels.mahalanobis import classify_rows; print('ok')", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def _modules() -> list[str]:
    names = []
    for root, prefix in ((REPO / "engine", "xsift"), (REPO / "kernels", "xsift.kernels")):
        for path in sorted(root.rglob("*.py")):
            if path.name == "__main__.py":      # runs the command line when imported
                continue
            rel = path.relative_to(root).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            names.append(".".join([prefix, *parts]))
    return names


def test_importing_every_module_changes_no_global_state(tmp_path):
    code = f"""
import json, sys, importlib
import matplotlib
backend = matplotlib.rcParams._get_backend_or_none()
import jax
x64 = jax.config.jax_enable_x64
mods = {_modules()!r}
for m in mods:
    importlib.import_module(m)
print(json.dumps({{"x64_before": x64, "x64_after": jax.config.jax_enable_x64,
                  "backend_before": backend, "backend_after": matplotlib.rcParams._get_backend_or_none(),
                  "n": len(mods)}}))
"""
    proc = _python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["n"] > 30
    assert out["x64_before"] is False and out["x64_after"] is False
    assert out["backend_before"] == out["backend_after"]


def test_import_xsift_and_help_load_no_heavy_library(tmp_path):
    heavy = ["jax", "dask", "distributed", "matplotlib", "astropy", "pandas", "pyarrow", "optax"]
    code = f"""
import sys, json
import xsift
after_import = [m for m in {heavy!r} if m in sys.modules]
from xsift.cli import build_parser
build_parser().format_help()
after_help = [m for m in {heavy!r} if m in sys.modules]
print(json.dumps([after_import, after_help]))
"""
    proc = _python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    after_import, after_help = json.loads(proc.stdout)
    assert after_import == []
    assert [m for m in after_help if m in ("jax", "dask", "distributed", "matplotlib", "astropy", "optax")] == []


def test_every_subpackage_is_installed():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {m for m in _modules() if (REPO / "engine").exists()}
    packages = set()
    for root, prefix in ((REPO / "engine", "xsift"), (REPO / "kernels", "xsift.kernels")):
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root)
            packages.add(".".join([prefix, *rel.parts]))
    assert on_disk
    assert packages <= listed, f"sub-packages missing from pyproject's packages: {sorted(packages - listed)}"
