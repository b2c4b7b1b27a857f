"""xsift numerical kernels: pure JAX functions of arrays.

Rules (see the project's design notes): a kernel never imports pandas, pyarrow,
dask or anything from ``engine``; it is a jitted function of arrays whose shapes
are given in its docstring, dtype-generic (float32 or float64), vmap-friendly and
chunk-friendly (works on a slice of rows and returns statistics that add up).

64-bit floats are switched on here so that callers can ask for float64 (the
reference precision) as well as float32 (speed); every kernel casts its inputs
to the dtype it is asked for, so enabling x64 does not silently change float32
runs.
"""
import jax

jax.config.update("jax_enable_x64", True)
