"""xsift numerical kernels: pure JAX functions of arrays.

Rules (see the project's design notes): a kernel never imports pandas, pyarrow, dask or anything
from the rest of xsift; it is a jitted function of arrays whose shapes are given in its docstring,
dtype-generic (float32 or float64), vmap-friendly and chunk-friendly (works on a slice of rows and
returns statistics that add up).

Importing a kernel changes no global JAX setting. float64 (the reference precision) needs JAX's
64-bit mode, so every public kernel runs inside :func:`float64_enabled` — JAX's own scoped,
thread-local ``jax.enable_x64(True)`` context — through the :func:`scoped_x64` decorator: a caller's
process keeps ``jax_enable_x64`` as it was, and float32 runs are unchanged because every kernel casts
its inputs to the dtype it is asked for.
"""
from __future__ import annotations

import functools

import jax

__all__ = ["float64_enabled", "scoped_x64"]


def float64_enabled():
    """Context manager: JAX 64-bit types on inside the ``with`` block only (thread-local)."""
    return jax.enable_x64(True)


def scoped_x64(fn):
    """Decorator: run ``fn`` with JAX 64-bit types enabled for the duration of the call only.

    Arrays it returns keep their dtype; callers outside the scope should convert them to NumPy
    (``np.asarray``) before further arithmetic, or call other kernels, which open the scope again.
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with jax.enable_x64(True):
            return fn(*args, **kwargs)
    wrapper.__wrapped__ = fn
    return wrapper
