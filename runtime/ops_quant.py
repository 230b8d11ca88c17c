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
BLOCK = 1 << 14                              # elements per cache-sized block of elementwise work


def _int_range(dtype) -> tuple:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


# ---------------------------------------------------------------- quantize / dequantize
def _range_and_scale(x):
    lo = np.float32(min(0.0, float(x.min()))) if x.size else np.float32(0)
    hi = np.float32(max(0.0, float(x.max()))) if x.size else np.float32(0)
    # The all-zero input has no range; like onnxruntime, use scale 1 (y and zero point are 0
    # either way, so downstream values do not depend on this choice).
    scale = np.float32(1.0) if hi == lo else np.float32(hi - lo) / np.float32(255)
    zero_point = np.float32(np.rint(np.clip(np.float32(0) - lo / scale, 0, 255)))
    return scale, zero_point


def _quantize_blocks(x, scale, low, high, out):
    """out = clip(rint(x / scale), low, high) block by block (cache-sized passes)."""
    src, dst = x.reshape(-1), out.reshape(-1)
    for start in range(0, src.size, BLOCK):
        block = dst[start:start + BLOCK]
        np.divide(src[start:start + BLOCK], scale, out=block)
        np.rint(block, out=block)                # half to even
        np.clip(block, low, high, out=block)
    return out


def dynamic_quantize_linear(x):
    """x float32 -> (y uint8, y_scale float32 scalar, y_zero_point uint8 scalar)."""
    scale, zero_point = _range_and_scale(x)
    y = _quantize_blocks(x, scale, -zero_point, np.float32(255) - zero_point,
                         np.empty(x.shape, np.float32))
    y += zero_point
    return y.astype(np.uint8), np.array(scale, np.float32), np.array(zero_point, np.uint8)


def dynamic_quantize_linear_shifted(x):
    """DynamicQuantizeLinear for MatMulInteger consumers that subtract its zero point:
    (float32 y - y_zero_point, y_scale, y_zero_point), the same integers as float32."""
    scale, zero_point = _range_and_scale(x)
    y = _quantize_blocks(x, scale, -zero_point, np.float32(255) - zero_point,
                         np.empty(x.shape, np.float32))
    return y, np.array(scale, np.float32), np.array(zero_point, np.uint8)


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
def _shift_a(a, a_zero_point):
    """A - a_zero_point as float32 (exact for 8-bit integers); per-row zero points of a 2-D A
    arrive as an M-vector and are applied per row."""
    if a_zero_point is None:
        return a.astype(np.float32), max(abs(v) for v in _int_range(a.dtype))
    za = a_zero_point
    if za.ndim == 1 and za.size > 1:
        za = za.reshape(-1, 1)
    lo, hi = _int_range(a.dtype)
    bound = int(max(np.abs(lo - za.astype(np.int64)).max(), np.abs(hi - za.astype(np.int64)).max()))
    return np.subtract(a, za, dtype=np.float32), bound


def _shift_b(b, b_zero_point):
    """B - b_zero_point as float32 (per-column zero points broadcast along the last axis), and
    the largest |entry|, which bounds the chunk size."""
    bf = b.astype(np.float32)
    if b_zero_point is not None:
        bf -= b_zero_point.astype(np.float32)
    return bf, int(np.abs(bf).max()) if bf.size else 0


def _chunked_matmul(af: np.ndarray, bf: np.ndarray, bound: int, as_float: bool = False) -> np.ndarray:
    """Exact integer product of float32 operands holding integers, |a*b| <= bound per term:
    int32, or (as_float) the float32 that casting that int32 would give."""
    k = af.shape[-1]
    step = max(1, (EXACT_F32 - 1) // max(bound, 1))
    if af.ndim > 2 and bf.ndim == 2 and af.flags.c_contiguous:
        flat = _chunked_matmul(af.reshape(-1, k), bf, bound, as_float)
        return flat.reshape(*af.shape[:-1], bf.shape[-1])
    if k <= step:                                # one exact float32 product
        y = np.matmul(af, bf)
        return y if as_float else y.astype(np.int32)
    # exact per chunk; float64 holds the int32-range sum exactly, so one rounding at the end
    acc = np.matmul(af[..., :step], bf[..., :step, :]).astype(np.float64)
    for start in range(step, k, step):
        acc += np.matmul(af[..., start:start + step], bf[..., start:start + step, :])
    return acc.astype(np.float32 if as_float else np.int32)


def matmul_integer(a, b, a_zero_point=None, b_zero_point=None):
    af, a_bound = _shift_a(a, a_zero_point)
    bf, b_bound = _shift_b(b, b_zero_point)
    return _chunked_matmul(af, bf, a_bound * b_bound)


class PreparedMatMulInteger:
    """MatMulInteger with a constant B (the quantized weight), shifted and widened once.

    `run(a, a_zero_point)` equals matmul_integer(a, B, a_zero_point, b_zero_point).
    Two exact variants serve rewrites of the graph that change no value:
    `as_float` returns float32 (what a following Cast to float would make of the int32),
    `shifted` takes A already as float32 (A - a_zero_point), as made by
    dynamic_quantize_linear_shifted."""

    def __init__(self, b, b_zero_point=None, as_float=False, shifted=False):
        self.bf, self.b_bound = _shift_b(b, b_zero_point)
        self.bf = np.ascontiguousarray(self.bf)
        self.as_float, self.shifted = as_float, shifted

    def variant(self, as_float=False, shifted=False) -> "PreparedMatMulInteger":
        other = object.__new__(PreparedMatMulInteger)
        other.bf, other.b_bound, other.as_float, other.shifted = self.bf, self.b_bound, as_float, shifted
        return other

    def __call__(self, a, a_zero_point=None):
        if self.shifted:
            zp = int(a_zero_point)
            af, a_bound = a, max(zp, 255 - zp)
        else:
            af, a_bound = _shift_a(a, a_zero_point)
        return _chunked_matmul(af, self.bf, a_bound * self.b_bound, self.as_float)


def prepare_matmul_integer(b, b_zero_point=None):
    """fn(a, a_zero_point=None) -> int32 for a constant B (see PreparedMatMulInteger)."""
    return PreparedMatMulInteger(b, b_zero_point)


QUANT_OPS = {
    "DequantizeLinear": dequantize_linear,
    "DynamicQuantizeLinear": dynamic_quantize_linear,
    "MatMulInteger": matmul_integer,
    "QuantizeLinear": quantize_linear,
}
