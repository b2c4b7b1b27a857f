"""How a table becomes the fixed-shape, padded row chunks the compiled GMM programs run on.

Prepared on the host with NumPy: checking X, choosing the compute dtype, cutting rows into chunks
(row-major ``(n_chunks, c, d)`` or column-major ``(n_chunks, d, c)``) with a validity mask, and the
chunk sizes; the chunks then move to the device in one transfer.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from xsift.kernels.blocks import padded_rows

__all__ = ["DEFAULT_CHUNK_SIZE", "COLS_CHUNK_ROWS", "EM_CHUNK_BYTES", "em_chunk_rows"]

# From this many components on, EM's data pass runs on column-major chunks (d, c) of about
# COLS_CHUNK_ROWS rows (see _em_layout): the per-component sums of squares and the log-sum-exp then
# reduce along the major axis, which on XLA's CPU backend beats reductions over a short minor axis
# once K is this large; below it row-major chunks are faster.
_COLS_MIN_K = 8
COLS_CHUNK_ROWS = 2048
# rows per chunk when a fitted mixture is applied to a table (e_step, predict, score_samples) and in
# k-means on a sample
DEFAULT_CHUNK_SIZE = 4096
# EM's default chunk: as many rows as make its largest work arrays (rows x K x (d+1) values, the
# whitened rows and the responsibility-weighted rows) about this many bytes, so that they stay in a
# CPU's cache-sized working set rather than streaming through memory.
EM_CHUNK_BYTES = 5 << 20
# bic_sweep's chunks: at most DEFAULT_CHUNK_SIZE rows, and at most this many elements in one chunk's
# (rows x components x (d+1)) work array across a batch of fits
_SWEEP_CHUNK_ELEMENTS = 1 << 22


def _resolve_dtype(X, dtype):
    if dtype is None:
        xd = getattr(X, "dtype", None)
        return jnp.float32 if xd == np.float32 else jnp.float64
    dt = jnp.dtype(dtype)
    if dt not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dt.type


def _check_X(X, n_components=None):
    """X as a host NumPy array, checked (2-d, numeric, finite, enough rows). Host-side: the checks and
    the centring below are table preparation, not kernels, and as eager device ops each would compile
    a small program of its own."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-d array (n_samples, n_features), got shape {X.shape}")
    n, d = X.shape
    if d == 0:
        raise ValueError("X has 0 features (shape (n, 0)); a Gaussian mixture needs at least one feature column")
    if n_components is not None:
        if int(n_components) < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        if n < n_components:
            raise ValueError(f"X has {n} rows but n_components = {n_components}; need n_samples >= n_components")
    if not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"X must be numeric, got dtype {X.dtype}")
    finite = np.isfinite(X)
    if not finite.all():
        bad_rows = int(np.sum(~finite.all(axis=1)))
        bad_cols = [int(j) for j in np.flatnonzero(~finite.all(axis=0))]
        raise ValueError(f"X contains non-finite values (NaN or inf) in {bad_rows} rows, columns {bad_cols}; "
                         "drop or impute incomplete rows before fitting")
    return X


def _chunked(X, dtype, chunk_size, shift=None, n_components=1, cols=False, runs=1):
    """X (n, d) -> Xc (n_chunks, c, d) of dtype, maskc (n_chunks, c) as device arrays, n. Rows padded
    with zeros; laid out on the host, moved to the device once. chunk_size None: the EM default for
    n_components components (:func:`_chunk_rows`). cols=True: column-major chunks (n_chunks, d, c)
    (chunk_size None: COLS_CHUNK_ROWS / runs rows, runs = fits side by side, at least 256)."""
    X = np.asarray(X)
    n, d = X.shape
    if cols and chunk_size is None:
        c = _balanced_rows(n, max(256, COLS_CHUNK_ROWS // max(1, int(runs))))
    else:
        c = _chunk_rows(n, chunk_size, n_components, d, np.dtype(dtype).itemsize)
    nc = -(-n // c)
    Xp = np.zeros((nc * c, d), dtype=np.dtype(dtype))
    Xp[:n] = (X.astype(np.float64) - shift) if shift is not None else X
    mask = np.arange(nc * c) < n
    Xp = Xp.reshape(nc, c, d)
    if cols:
        Xp = np.ascontiguousarray(Xp.transpose(0, 2, 1))
    return jnp.asarray(Xp), jnp.asarray(mask.reshape(nc, c)), n


def _em_layout(n_components) -> bool:
    """True where EM's data pass runs on column-major chunks (:func:`_log_gaussian_prob_cols`): from
    ``_COLS_MIN_K`` components on, where that layout is the faster one."""
    return int(n_components) >= _COLS_MIN_K


def em_chunk_rows(n_components, n_features, itemsize) -> int:
    """EM's default rows per chunk: EM_CHUNK_BYTES over the bytes of one row of the chunk's largest work
    arrays (K (d+1) values), within [256, 65536]."""
    per_row = max(1, int(n_components)) * (int(n_features) + 1) * int(itemsize)
    return int(min(1 << 16, max(256, EM_CHUNK_BYTES // per_row)))


def _balanced_rows(n, bound):
    """Rows per chunk for the fewest chunks of at most ``bound`` rows, balanced (a multiple of 8) so the
    padded tail is small."""
    nc = -(-n // bound)
    return max(8, -(-(-(-n // nc)) // 8) * 8)


def _chunk_rows(n, chunk_size, n_components=1, n_features=1, itemsize=8):
    """Rows per chunk: chunk_size as given, or by default balanced chunks of at most
    :func:`em_chunk_rows` rows."""
    if chunk_size is None:
        return _balanced_rows(n, em_chunk_rows(n_components, n_features, itemsize))
    chunk_size = int(chunk_size)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if n <= chunk_size:  # one chunk, rounded up to a multiple of 8 rows
        return max(8, -(-n // 8) * 8)
    return chunk_size


# chunks per compiled E-step call when a table is applied to a fitted mixture (see e_step)
_E_STEP_BLOCK_CHUNKS = 8


def _e_step_layout(n, chunk_size):
    """(rows per chunk, chunks per call) for applying a mixture to n rows: a fixed layout for tables
    of at least a full call, else powers of two, so tables of any length share a few compilations."""
    c = int(chunk_size or DEFAULT_CHUNK_SIZE)
    if c < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if n > c:                                   # whole chunks: 8 per call, or a power of two fewer
        return c, padded_rows(-(-n // c), _E_STEP_BLOCK_CHUNKS)
    return padded_rows(n, c, 64), 1
