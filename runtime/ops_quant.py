"""The int8 ops that onnxruntime's `quantize_dynamic` emits, computed exactly.

numpy's integer matmul does not use BLAS, so `MatMulInteger` runs float32 BLAS on
zero-point-shifted operands, splitting the inner dimension into chunks small enough that
every partial sum of integer products stays below 2^24, where float32 is exact. Each chunk's
product is therefore an exact integer and the int32 result is bit-identical to true integer
arithmetic, for any inner dimension.
"""
from __future__ import annotations

import numpy as np

EXACT_F32 = 1 << 24                          # float32 represents every integer below this


def _int_range(dtype) -> tuple:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


# ---------------------------------------------------------------- quantize / dequantize
def _range_and_scale(x):
    """-> (x_min, x_max, scale, zero_point as float32): the range widened to include 0.
    The arithmetic is onnxruntime's (GetQuantizationParameter, MlasQuantizeLinear): scale =
    (max - min) / 255 in float32, zero point = round half to even of 0 - min / scale, and
    y = rint(x / scale), a division (x * (1 / scale) rounds differently); any other rounding
    of these would show at every layer (tests/test_int8_parity.py)."""
    x_min = np.float32(x.min()) if x.size else np.float32(0)
    x_max = np.float32(x.max()) if x.size else np.float32(0)
    lo, hi = min(np.float32(0), x_min), max(np.float32(0), x_max)
    # The all-zero input has no range; like onnxruntime, use scale 1 (y and zero point are 0
    # either way, so downstream values do not depend on this choice).
    scale = np.float32(1.0) if hi == lo else np.float32(hi - lo) / np.float32(255)
    # A range of a few subnormals divides to scale 0: onnxruntime's 0 - lo / 0 is +inf or NaN,
    # and its clamp std::min(255, .) makes both 255.
    if scale == 0:
        zero_point = np.float32(255)
    else:
        zero_point = np.float32(np.rint(np.clip(np.float32(0) - lo / scale, 0, 255)))
    return x_min, x_max, scale, zero_point


def _quantize(x, x_min, x_max, scale, low, high, out=None):
    """clip(rint(x / scale), low, high) as float32, written to out (which may be x).
    Division by a positive scale and rint are monotone, so y's extremes are those of x
    divided and rounded: when they lie inside [low, high], nothing needs clipping (and
    np.clip, a whole extra pass, is skipped)."""
    if scale == 0:          # subnormal range: onnxruntime saturates x / 0, and 0 / 0 goes to the bottom
        y = np.empty(x.shape, np.float32) if out is None else out
        y[...] = np.where(x > 0, high, low)
        return y
    y = np.divide(x, scale, out=out, dtype=np.float32)
    np.rint(y, out=y)                            # half to even
    if x.size and (np.rint(x_min / scale) < low or np.rint(x_max / scale) > high):
        np.clip(y, low, high, out=y)
    return y


def _writable_out(x, out):
    return out if out is not None and out.dtype == np.float32 and out.shape == x.shape else None


def dynamic_quantize_linear(x):
    """x float32 -> (y uint8, y_scale float32 scalar, y_zero_point uint8 scalar)."""
    x_min, x_max, scale, zero_point = _range_and_scale(x)
    y = _quantize(x, x_min, x_max, scale, -zero_point, np.float32(255) - zero_point)
    y += zero_point
    return y.astype(np.uint8), np.array(scale, np.float32), np.array(zero_point, np.uint8)


def dynamic_quantize_linear_shifted(x, out=None):
    """DynamicQuantizeLinear for MatMulInteger consumers that subtract its zero point:
    (float32 y - y_zero_point, y_scale, y_zero_point), the same integers as float32.
    `out` (a dying float32 buffer of x's shape, possibly x) receives the first result."""
    x_min, x_max, scale, zero_point = _range_and_scale(x)
    y = _quantize(x, x_min, x_max, scale, -zero_point, np.float32(255) - zero_point,
                  _writable_out(x, out))
    return y, np.array(scale, np.float32), np.array(zero_point, np.uint8)


dynamic_quantize_linear_shifted.inplace = True


def _per_axis(param: np.ndarray, rank: int, axis: int) -> np.ndarray:
    """A scalar or 1-D per-axis parameter, shaped to broadcast along `axis` of a rank-`rank` x."""
    if param.ndim == 0 or param.size == 1 and param.ndim <= 1:
        return param.reshape(())
    axis = axis + rank if axis < 0 else axis
    shape = [1] * rank
    shape[axis] = param.size
    return param.reshape(shape)


def dequantize_linear(x, x_scale, x_zero_point=None, axis=1, block_size=0, output_dtype=0):
    if block_size:
        raise ValueError("DequantizeLinear with block_size is not supported")
    scale = _per_axis(x_scale, x.ndim, axis)
    y = x.astype(np.float32)
    if x_zero_point is not None:
        y -= _per_axis(x_zero_point, x.ndim, axis).astype(np.float32)
    y *= scale.astype(np.float32)
    return y if x_scale.dtype == np.float32 else y.astype(x_scale.dtype)


def quantize_linear(x, y_scale, y_zero_point=None, axis=1, saturate=1, block_size=0,
                    output_dtype=0, precision=0):
    if block_size:
        raise ValueError("QuantizeLinear with block_size is not supported")
    dtype = np.uint8 if y_zero_point is None else y_zero_point.dtype
    lo, hi = _int_range(dtype)
    y = np.divide(x, _per_axis(y_scale, x.ndim, axis), dtype=np.float32)
    np.rint(y, out=y)
    if y_zero_point is not None:
        y += _per_axis(y_zero_point, x.ndim, axis).astype(np.float32)
    np.clip(y, lo, hi, out=y)
    return y.astype(dtype)


# ---------------------------------------------------------------- MatMulInteger
A_BOUND = 255                                # |A - a_zero_point| for any 8-bit A and zero point


def _shift_a(a, a_zero_point):
    """A - a_zero_point as float32 (exact for 8-bit integers); per-row zero points of a 2-D A
    arrive as an M-vector and are applied per row."""
    if a_zero_point is None:
        return a.astype(np.float32)
    za = a_zero_point
    if za.ndim == 1 and za.size > 1:
        za = za.reshape(-1, 1)
    return np.subtract(a, za, dtype=np.float32)


def _shift_b(b, b_zero_point):
    """B - b_zero_point as float32 (per-column zero points broadcast along the last axis)."""
    bf = b.astype(np.float32)
    if b_zero_point is not None:
        bf -= b_zero_point.astype(np.float32)
    return bf


def uniform_chunks(k: int, b_max: float) -> list:
    """Bounds along the inner dimension such that A_BOUND * b_max * chunk length < 2^24."""
    step = max(1, int((EXACT_F32 - 1) // max(A_BOUND * b_max, 1)))
    return list(range(0, k, step)) + [k]


def column_chunks(bf: np.ndarray) -> list:
    """Bounds along K of a 2-D (K, N) B such that, in every column, A_BOUND times the sum of
    |B| over a chunk stays below 2^24: every partial sum of A - a_zero_point times that chunk of
    B is then an integer float32 holds exactly, whatever order BLAS adds in. Real weights
    rarely need more than one chunk."""
    k = bf.shape[0]
    limit = (EXACT_F32 - 1) / A_BOUND
    magnitude = np.abs(bf).astype(np.float64)
    if k == 0 or bf.shape[1] == 0 or magnitude.sum(axis=0).max() <= limit:
        return [0, k]                             # the usual case: one chunk (a cheap check)
    prefix = np.zeros((k + 1, bf.shape[1]))
    np.cumsum(magnitude, axis=0, out=prefix[1:])
    bounds = [0]
    while bounds[-1] < k:
        start = bounds[-1]
        widest = (prefix[start + 1:] - prefix[start]).max(axis=1)   # nondecreasing in the end
        bounds.append(start + max(1, int(np.searchsorted(widest, limit, side="right"))))
    return bounds


def _chunked_matmul(af: np.ndarray, bf: np.ndarray, bounds: list, as_float: bool = False) -> np.ndarray:
    """Exact integer product of float32 operands holding integers, each chunk of the inner
    dimension (bounds) exact in float32: int32, or (as_float) the float32 that casting that
    int32 would give."""
    k = af.shape[-1]
    if af.ndim > 2 and bf.ndim == 2 and af.flags.c_contiguous:
        flat = _chunked_matmul(af.reshape(-1, k), bf, bounds, as_float)
        return flat.reshape(*af.shape[:-1], bf.shape[-1])
    if len(bounds) <= 2:                          # one exact float32 product
        y = np.matmul(af, bf)
        return y if as_float else y.astype(np.int32)
    # exact per chunk; float64 holds the int32-range sum exactly, so one rounding at the end
    acc = np.matmul(af[..., :bounds[1]], bf[..., :bounds[1], :]).astype(np.float64)
    for start, stop in zip(bounds[1:-1], bounds[2:]):
        acc += np.matmul(af[..., start:stop], bf[..., start:stop, :])
    return acc.astype(np.float32 if as_float else np.int32)


def matmul_integer(a, b, a_zero_point=None, b_zero_point=None):
    af = _shift_a(a, a_zero_point)
    bf = _shift_b(b, b_zero_point)
    bounds = uniform_chunks(af.shape[-1], float(np.abs(bf).max()) if bf.size else 0.0)
    return _chunked_matmul(af, bf, bounds)


class PreparedMatMulInteger:
    """MatMulInteger with a constant B (the quantized weight), shifted, widened and cut into
    exact chunks once.

    `run(a, a_zero_point)` equals matmul_integer(a, B, a_zero_point, b_zero_point).
    Two exact variants serve rewrites of the graph that change no value:
    `as_float` returns float32 (what a following Cast to float would make of the int32),
    `shifted` takes A already as float32 (A - a_zero_point), as made by
    dynamic_quantize_linear_shifted."""

    def __init__(self, b, b_zero_point=None):
        self.bf = np.ascontiguousarray(_shift_b(b, b_zero_point))
        if self.bf.ndim == 2:
            self.bounds = column_chunks(self.bf)
        else:
            self.bounds = uniform_chunks(self.bf.shape[-2], float(np.abs(self.bf).max()) if self.bf.size else 0.0)
        self.as_float = self.shifted = False

    def variant(self, as_float=False, shifted=False) -> "PreparedMatMulInteger":
        other = object.__new__(PreparedMatMulInteger)
        other.bf, other.bounds = self.bf, self.bounds
        other.as_float, other.shifted = as_float, shifted
        return other

    def __call__(self, a, a_zero_point=None):
        af = a if self.shifted else _shift_a(a, a_zero_point)
        return _chunked_matmul(af, self.bf, self.bounds, self.as_float)


def prepare_matmul_integer(b, b_zero_point=None):
    """fn(a, a_zero_point=None) -> int32 for a constant B (see PreparedMatMulInteger)."""
    return PreparedMatMulInteger(b, b_zero_point)


QUANT_OPS = {
    "DequantizeLinear": dequantize_linear,
    "DynamicQuantizeLinear": dynamic_quantize_linear,
    "MatMulInteger": matmul_integer,
    "QuantizeLinear": quantize_linear,
}
