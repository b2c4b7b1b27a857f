"""xsift engine: tables, files, catalogues, Dask and people.

The engine shapes catalogues into arrays, calls the kernels in ``kernels`` and
shapes their results back into tables, figures and manifests.
"""
import kernels as _kernels  # noqa: F401  (switches on float64 support in JAX)

__version__ = "0.1.0"
