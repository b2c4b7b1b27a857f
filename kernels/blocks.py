"""Fixed-shape row blocks: how a table of any length goes through one compiled program.

A jitted function compiles once per input shape. Applying a fitted model to tables whose length
varies (Dask shards, successive catalogues) would compile again for every length; instead the
table is cut into blocks of exactly ``rows`` rows (the last one padded), each block is one call of
the same compiled program, the calls are dispatched back to back (JAX runs them asynchronously)
and their results are moved to host memory once at the end.
"""
from __future__ import annotations

import jax
import numpy as np


def map_fixed_blocks(fn, X: np.ndarray, rows: int, fill=0.0) -> list:
    """[fn(block) for each block of ``rows`` rows of X (n, d)], moved to host memory.

    The last block is padded with ``fill`` to ``rows`` rows (its padded rows' results are the
    caller's to drop: keep the first n rows of the concatenated outputs). An empty table gives one
    all-padding block, so the outputs always have fn's shapes.
    """
    X = np.asarray(X)
    n, d = X.shape
    rows = int(rows)
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    outs = []
    for start in range(0, max(n, 1), rows):
        block = X[start:start + rows]
        if block.shape[0] < rows:
            pad = np.full((rows - block.shape[0], d), fill, dtype=block.dtype)
            block = np.concatenate([block, pad])
        outs.append(fn(block))
    return jax.device_get(outs)


def padded_rows(n: int, full: int, smallest: int = 1) -> int:
    """Rows of the fixed-shape call(s) for a table of n rows: ``full`` for a table of at least that
    many, else the next power of two >= n (at least ``smallest``, at most ``full``). Tables of every
    length then share at most a handful of compiled shapes."""
    full = int(full)
    if full < 1:
        raise ValueError(f"the block size must be >= 1, got {full}")
    if n >= full:
        return full
    return min(full, max(int(smallest), 1 << max(0, int(n) - 1).bit_length()))
