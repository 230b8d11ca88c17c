"""ONNX operators as small numpy functions, and the dispatch table `OPS` (op type -> function).

Calling convention: `fn(*inputs, **attributes)` with the node's inputs positionally (an omitted
optional input arrives as None) and its ONNX attributes as keyword arguments; the result is
an array, or a tuple of arrays for ops with several outputs. Ops whose meaning changed across
opsets accept both forms (an attribute in old opsets, an input in new ones: Slice, Split,
Squeeze, Unsqueeze, Reduce*, Clip). Two extra keywords are passed only to the functions that
declare them with `@takes`: `opset` (the model's ai.onnx version) and `num_outputs`.

Elementwise ops listed in `INPLACE` also accept `out=`: a buffer of exactly the result's shape
and dtype that the session no longer needs (one of the op's dying inputs); they may write the
result there. The caller always uses the returned array.

The keys of `OPS` are the op set the exporter checks its graphs against.
"""
from __future__ import annotations

import math

import numpy as np

from .graph import DTYPES
from .ops_quant import QUANT_OPS


def takes(*extras):
    """Mark an op function as wanting the extra keywords `opset` and/or `num_outputs`."""
    def mark(fn):
        fn.extras = tuple(extras)
        return fn
    return mark


def _axes(axes, rank: int) -> tuple:
    """Attribute list or int64 tensor of axes -> sorted tuple of non-negative axes."""
    if axes is None:
        return ()
    out = sorted(int(a) + rank if int(a) < 0 else int(a) for a in np.asarray(axes).reshape(-1))
    for a in out:
        if not 0 <= a < rank:
            raise ValueError(f"axis {a} out of range for rank {rank}")
    return tuple(out)


def _same_dtype(y: np.ndarray, dtype) -> np.ndarray:
    return y if y.dtype == dtype else y.astype(dtype)


# ---------------------------------------------------------------- elementwise arithmetic
def add(a, b, out=None):
    return np.add(a, b, out=out)


def sub(a, b, out=None):
    return np.subtract(a, b, out=out)


def mul(a, b, out=None):
    return np.multiply(a, b, out=out)


def div(a, b, out=None):
    if a.dtype.kind in "iu":                 # ONNX integer Div truncates toward zero (C semantics)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.floor_divide(a, b)
            if a.dtype.kind == "i":
                q = q + ((np.remainder(a, b) != 0) & ((a < 0) != (b < 0)))
        return q.astype(a.dtype)
    return np.divide(a, b, out=out)


def pow_(x, y, out=None):
    if y.size == 1 and x.dtype.kind == "f":
        e = float(y.reshape(-1)[0])
        if e == 2.0:
            return np.multiply(x, x, out=out)
        if e == 0.5:
            return np.sqrt(x, out=out)
    if x.dtype.kind == "f" and y.dtype != x.dtype:
        y = y.astype(x.dtype)
    return _same_dtype(np.power(x, y), x.dtype)


def mod(a, b, fmod=0):
    if fmod or a.dtype.kind == "f":
        return np.fmod(a, b)
    return np.mod(a, b)                      # integer Mod takes the divisor's sign, like Python


def neg(x, out=None):
    return np.negative(x, out=out)


def abs_(x, out=None):
    return np.abs(x, out=out)


def sqrt(x, out=None):
    return np.sqrt(x, out=out)


def exp(x, out=None):
    return np.exp(x, out=out)


def log(x, out=None):
    return np.log(x, out=out)


def reciprocal(x, out=None):
    return np.reciprocal(x, out=out)


def floor(x, out=None):
    return np.floor(x, out=out)


def ceil(x, out=None):
    return np.ceil(x, out=out)


def round_(x, out=None):
    return np.rint(x, out=out)               # ONNX Round: half to even, like rint


def sign(x):
    return np.sign(x)


def tanh(x, out=None):
    return np.tanh(x, out=out)


def relu(x, out=None):
    return np.maximum(x, x.dtype.type(0), out=out)


def sigmoid(x, out=None):
    # 1 / (1 + exp(-x)) written to avoid overflow warnings for large |x|
    y = np.negative(x, out=out)
    with np.errstate(over="ignore"):
        np.exp(y, out=y)
    y += 1
    return np.reciprocal(y, out=y)


# erf(x) = x P(x^2) / Q(x^2) on [-4, 4] (|erf| rounds to 1 in float32 beyond): a minimax
# rational fit (the one Eigen and XLA use), error 6.5e-8 in float64 arithmetic; rounded to
# float32 the result is within 1.6 ulp of the true erf (tested against math.erf). Evaluated
# in float32 the roundings of P, Q and z P / Q add up to 7.5 ulp near |x| = 3.9, and the
# float32 forms that stay within 2 ulp (1 - erfc with an exp, or per-interval tables) cost
# numpy as many passes as float64 does, so each cache-sized block is widened to float64.
_ERF_P = tuple(np.float64(c) for c in (
    -1.60960333262415e-02, -2.95459980854025e-03, -7.34990630326855e-04,
    -5.69250639462346e-05, -2.10102402082508e-06, 2.77068142495902e-08,
    -2.72614225801306e-10))
_ERF_Q = tuple(np.float64(c) for c in (
    -1.42647390514189e-02, -7.37332916720468e-03, -1.68282697438203e-03,
    -2.13374055278905e-04, -1.45660718464996e-05))
# Elements per erf block. A block costs ~26 numpy calls of ~1.7 us fixed overhead each, which
# at 16,384 elements (scratch in L2) was a third of the time; bench/bench_gelu.py measured the
# fused GELU of a BERT feed-forward activation 1.26x faster at this size than at 16,384.
ERF_BLOCK = 1 << 17


def erf_scratch(n: int) -> tuple:
    """Three float64 scratch buffers for erf_block on blocks of up to n elements."""
    return np.empty(n), np.empty(n), np.empty(n)


def erf_block(src, dst, scratch) -> None:
    """dst = erf(src) for 1-D float blocks whose values are already clipped to [-4, 4]
    (src may be dst; len(src) <= the scratch length)."""
    n = src.shape[0]
    z, t, p = (buf[:n] for buf in scratch)
    np.copyto(z, src)                               # widen to float64
    np.multiply(z, z, out=t)
    np.multiply(t, _ERF_P[6], out=p)
    for c in _ERF_P[5:0:-1]:
        p += c
        p *= t
    p += _ERF_P[0]
    p *= z                                          # numerator done; z's buffer becomes Q
    np.multiply(t, _ERF_Q[4], out=z)
    for c in _ERF_Q[3:0:-1]:
        z += c
        z *= t
    z += _ERF_Q[0]
    np.divide(p, z, out=dst, casting="same_kind")


def erf(x, out=None):
    if x.dtype != np.float32 and x.dtype != np.float64:
        return _same_dtype(erf(x.astype(np.float64)), x.dtype)
    if out is None or not out.flags.c_contiguous:
        out = np.empty(x.shape, x.dtype)
    np.clip(x, -4.0, 4.0, out=out)                  # one whole-array call: np.clip is costly per call
    flat = out.reshape(-1)                          # a view: out is contiguous
    n = flat.size
    if n == 0:
        return out
    scratch = erf_scratch(min(n, ERF_BLOCK))
    for start in range(0, n, ERF_BLOCK):
        block = flat[start:start + ERF_BLOCK]
        erf_block(block, block, scratch)
    return out


def gelu(x, approximate="none", out=None):
    approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
    if approximate == "tanh":
        inner = np.tanh(np.float32(np.sqrt(2 / np.pi)).astype(x.dtype) * (x + 0.044715 * x ** 3))
        return (0.5 * x * (1 + inner)).astype(x.dtype)
    y = erf(x * x.dtype.type(1 / np.sqrt(2)))
    y += 1
    y *= x
    y *= x.dtype.type(0.5)
    return y


def clip(x, min=None, max=None):         # noqa: A002 - ONNX names
    lo = None if min is None else np.asarray(min, x.dtype)
    hi = None if max is None else np.asarray(max, x.dtype)
    if lo is None and hi is None:
        return x
    return np.clip(x, lo, hi).astype(x.dtype, copy=False)


def _variadic(ufunc):
    def run(*xs):
        y = xs[0]
        for other in xs[1:]:
            y = ufunc(y, other)
        return y if len(xs) > 1 else y.copy()
    return run


def mean(*xs):
    return _same_dtype(_variadic(np.add)(*xs) / len(xs), xs[0].dtype)


# ---------------------------------------------------------------- comparison and logic
def equal(a, b):
    return np.equal(a, b)


def less(a, b):
    return np.less(a, b)


def less_or_equal(a, b):
    return np.less_equal(a, b)


def greater(a, b):
    return np.greater(a, b)


def greater_or_equal(a, b):
    return np.greater_equal(a, b)


def not_(x):
    return np.logical_not(x)


def and_(a, b):
    return np.logical_and(a, b)


def or_(a, b):
    return np.logical_or(a, b)


def xor(a, b):
    return np.logical_xor(a, b)


def is_nan(x):
    return np.isnan(x)


def is_inf(x, detect_negative=1, detect_positive=1):
    return (np.isneginf(x) if detect_negative else False) | (np.isposinf(x) if detect_positive else False)


def where(cond, x, y):
    return np.where(cond, x, y)


# ---------------------------------------------------------------- types and constants
def cast(x, to, saturate=1):
    dtype = DTYPES[int(to)]
    if dtype == np.bool_:
        return x != 0
    return x.astype(dtype, copy=False)        # to its own type: the identity, no copy


def cast_like(x, like, saturate=1):
    return x.astype(like.dtype)


def constant(value=None, value_float=None, value_floats=None, value_int=None,
             value_ints=None, value_string=None, value_strings=None, sparse_value=None):
    if value is not None:
        return value
    if value_float is not None:
        return np.array(value_float, np.float32)
    if value_floats is not None:
        return np.array(value_floats, np.float32)
    if value_int is not None:
        return np.array(value_int, np.int64)
    if value_ints is not None:
        return np.array(value_ints, np.int64)
    if value_string is not None:
        return np.array(value_string, object)
    if value_strings is not None:
        return np.array(value_strings, object)
    raise ValueError("Constant has no value attribute")


def constant_of_shape(shape, value=None):
    value = np.zeros(1, np.float32) if value is None else np.asarray(value)
    return np.full(tuple(int(d) for d in shape), value.reshape(-1)[0], dtype=value.dtype)


def range_(start, limit, delta):
    start, limit, delta = start.reshape(()), limit.reshape(()), delta.reshape(())
    return np.arange(start, limit, delta).astype(start.dtype)


def identity(x):
    return x


def dropout(x, ratio=None, training_mode=None, seed=None):
    return x, np.ones(x.shape, np.bool_)     # inference: Dropout is the identity


# ---------------------------------------------------------------- shapes and indexing
def shape(x, start=0, end=None):
    return np.array(x.shape[start:end], np.int64)


def size(x):
    return np.array(x.size, np.int64)


def reshape(x, shape, allowzero=0):
    dims = [int(d) for d in shape]
    if not allowzero:
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    if x.size == 0 and -1 in dims:
        dims = empty_reshape_dims(x.shape, dims)
    return x.reshape(dims)


def empty_reshape_dims(in_shape, dims: list) -> list:
    """The -1 of a reshape of a zero-size tensor, where the sizes alone cannot tell it.

    When the other dims hold a 0 too (an empty batch reaching the attention's
    `Reshape(x, [batch, seq, -1, head_size])`), size / product is 0 / 0; onnxruntime then
    divides the non-zero input dims by the non-zero requested ones, (0, 7, 64) ->
    [0, 7, -1, 16] giving (0, 7, 4, 16), and so does this. Otherwise numpy infers it (as 0)."""
    known = [d for d in dims if d != -1]
    if 0 not in known:
        return dims
    have = math.prod(d for d in in_shape if d != 0)
    want = math.prod(d for d in known if d != 0)
    if have % want:
        raise ValueError(f"cannot reshape an array of shape {tuple(in_shape)} into {dims}: the "
                         f"non-zero dims {have} are not a multiple of {want}")
    return [have // want if d == -1 else d for d in dims]


def flatten(x, axis=1):
    """(prod(shape[:axis]), prod(shape[axis:])), both given: reshape cannot infer a -1 when the
    array is empty (a batch of 0 texts). Also the opset < 13 Softmax's view of its input."""
    axis = axis + x.ndim if axis < 0 else axis
    return x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), int(np.prod(x.shape[axis:], dtype=np.int64)))


def transpose(x, perm=None):
    return np.transpose(x, None if perm is None else [int(p) for p in perm])


def squeeze(x, axes=None):
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=_axes(axes, x.ndim))


def unsqueeze(x, axes=None):
    new_rank = x.ndim + np.asarray(axes).size
    shape = list(x.shape)
    for a in _axes(axes, new_rank):
        shape.insert(a, 1)
    return x.reshape(shape)


def concat(*xs, axis):
    return np.concatenate(xs, axis=axis)


@takes("num_outputs")
def split(x, split=None, axis=0, num_outputs=None):
    axis = axis + x.ndim if axis < 0 else axis
    dim = x.shape[axis]
    if split is None:
        if not isinstance(num_outputs, (int, np.integer)) or not 1 <= num_outputs <= max(dim, 1):
            raise ValueError(f"Split num_outputs {num_outputs!r} must be 1..{max(dim, 1)} (the dimension)")
        size_ = -(-dim // num_outputs)       # ceil: opset 18 lets the last piece be smaller
        sizes = [min(size_, max(dim - i * size_, 0)) for i in range(num_outputs)]
    else:
        sizes = [int(s) for s in np.asarray(split).reshape(-1)]
    if sum(sizes) != dim:
        raise ValueError(f"Split sizes {sizes} do not add up to dimension {dim}")
    bounds = np.cumsum(sizes)[:-1]
    return tuple(np.split(x, bounds, axis=axis))


def slice_(x, starts, ends, axes=None, steps=None):
    starts = np.asarray(starts).reshape(-1)
    ends = np.asarray(ends).reshape(-1)
    axes = range(len(starts)) if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]
    steps = [1] * len(starts) if steps is None else np.asarray(steps).reshape(-1)
    index = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = axis + x.ndim if axis < 0 else axis
        dim, start, end, step = x.shape[axis], int(start), int(end), int(step)
        if step == 0:
            raise ValueError("Slice step cannot be 0")
        start = start + dim if start < 0 else start
        end = end + dim if end < 0 else end
        if step > 0:                         # clamp like ONNX: [0, dim] forward
            start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        else:                                # start in [0, dim-1], end in [-1, dim-1] backward
            start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
        index[axis] = slice(start, None if end < 0 else end, step)
    return x[tuple(index)]


def gather(data, indices, axis=0):
    return np.take(data, indices.astype(np.intp, copy=False), axis=axis)


def gather_elements(data, indices, axis=0):
    indices = np.where(indices < 0, indices + data.shape[axis], indices)
    return np.take_along_axis(data, indices, axis=axis)


def gather_nd(data, indices, batch_dims=0):
    """GatherND: the last axis of `indices` indexes the leading dims of `data` (after the
    `batch_dims` shared batch axes)."""
    indices = indices.astype(np.int64, copy=False)
    batch_shape = data.shape[:batch_dims]
    depth = indices.shape[-1]
    inner_shape = data.shape[batch_dims:batch_dims + depth]
    indices = np.where(indices < 0, indices + np.array(inner_shape, np.int64), indices)
    nb = int(np.prod(batch_shape, dtype=np.int64))
    data_b = data.reshape((nb,) + data.shape[batch_dims:])
    idx_b = indices.reshape(nb, -1, depth)
    picked = np.stack([data_b[b][tuple(idx_b[b].T)] for b in range(nb)]) if nb else \
        np.empty((0, 0) + data.shape[batch_dims + depth:], data.dtype)
    return picked.reshape(indices.shape[:-1] + data.shape[batch_dims + depth:])


def expand(x, shape):
    target = np.broadcast_shapes(x.shape, tuple(int(d) for d in shape))
    return np.broadcast_to(x, target)


def tile(x, repeats):
    return np.tile(x, [int(r) for r in repeats])


def pad(x, pads=None, constant_value=None, axes=None, mode="constant", value=0.0):
    mode = mode.decode() if isinstance(mode, bytes) else mode
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    axes = list(range(x.ndim)) if axes is None else list(_axes(axes, x.ndim))
    width = [(0, 0)] * x.ndim
    for i, a in enumerate(axes):
        width[a] = (pads[i], pads[i + len(axes)])
    if mode == "constant":
        fill = value if constant_value is None else np.asarray(constant_value).reshape(-1)[0]
        return np.pad(x, width, mode="constant", constant_values=fill)
    return np.pad(x, width, mode={"reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode])


def trilu(x, k=None, upper=1):
    k = 0 if k is None else int(np.asarray(k).reshape(-1)[0])
    return np.triu(x, k) if upper else np.tril(x, k)


def cum_sum(x, axis, exclusive=0, reverse=0):
    axis = int(np.asarray(axis).reshape(-1)[0])
    y = np.flip(x, axis) if reverse else x
    s = np.cumsum(y, axis=axis, dtype=x.dtype)
    if exclusive:
        s = s - y
    return np.flip(s, axis) if reverse else s


# ---------------------------------------------------------------- reductions
def _reduce(fn, x, axes, keepdims, noop_with_empty_axes):
    axes = None if axes is None else np.asarray(axes).reshape(-1)
    if axes is None or axes.size == 0:
        if noop_with_empty_axes:
            return x
        return _same_dtype(np.asarray(fn(x, axis=None, keepdims=bool(keepdims))), x.dtype)
    return _same_dtype(np.asarray(fn(x, axis=_axes(axes, x.ndim), keepdims=bool(keepdims))), x.dtype)


def _reducer(fn):
    def run(x, axes=None, keepdims=1, noop_with_empty_axes=0):
        return _reduce(fn, x, axes, keepdims, noop_with_empty_axes)
    return run


def _sum_square(x, axis=None, keepdims=False):
    return np.sum(x * x, axis=axis, keepdims=keepdims)


def _l2(x, axis=None, keepdims=False):
    return np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims))


def _l1(x, axis=None, keepdims=False):
    return np.sum(np.abs(x), axis=axis, keepdims=keepdims)


def _log_sum_exp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    s = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return s if keepdims else np.squeeze(s, axis=axis)


def _arg(pick, x, axis, keepdims, select_last_index):
    if select_last_index:                    # first match in the flipped array = last match
        y = x.shape[axis] - 1 - pick(np.flip(x, axis), axis=axis)
    else:
        y = pick(x, axis=axis)
    y = y.astype(np.int64)
    return np.expand_dims(y, axis) if keepdims else y


def arg_max(x, axis=0, keepdims=1, select_last_index=0):
    return _arg(np.argmax, x, axis, keepdims, select_last_index)


def arg_min(x, axis=0, keepdims=1, select_last_index=0):
    return _arg(np.argmin, x, axis, keepdims, select_last_index)


# ---------------------------------------------------------------- linear algebra and NN
def matmul(a, b):
    if b.ndim == 2 and a.ndim > 2 and a.flags.c_contiguous:
        # one BLAS call on (batch*rows, K) instead of numpy's loop over the batch
        return (a.reshape(-1, a.shape[-1]) @ b).reshape(*a.shape[:-1], b.shape[-1])
    return np.matmul(a, b)


def gemm(a, b, c=None, alpha=1.0, beta=1.0, transA=0, transB=0):
    a = a.T if transA else a
    b = b.T if transB else b
    y = a @ b
    if alpha != 1.0:
        y *= y.dtype.type(alpha)
    if c is not None and beta != 0.0:
        y += c if beta == 1.0 else c * c.dtype.type(beta)
    return y


@takes("opset")
def softmax(x, axis=None, opset=13, out=None):
    if x.size == 0:                          # nothing to normalise (a reduction over 0 has no max)
        return x.copy()
    if opset < 13:                           # old semantics: flatten to 2-D at `axis` (default 1)
        axis = 1 if axis is None else axis
        axis = axis + x.ndim if axis < 0 else axis
        return softmax(flatten(x, axis), axis=-1).reshape(x.shape)
    axis = -1 if axis is None else axis
    y = np.subtract(x, np.max(x, axis=axis, keepdims=True), out=out)
    np.exp(y, out=y)
    y /= np.sum(y, axis=axis, keepdims=True)
    return y


@takes("opset")
def log_softmax(x, axis=None, opset=13):
    if x.size == 0:
        return x.copy()
    if opset < 13:
        axis = 1 if axis is None else axis
        axis = axis + x.ndim if axis < 0 else axis
        return log_softmax(flatten(x, axis), axis=-1).reshape(x.shape)
    axis = -1 if axis is None else axis
    y = x - np.max(x, axis=axis, keepdims=True)
    return y - np.log(np.sum(np.exp(y), axis=axis, keepdims=True))


def layer_normalization(x, scale, bias=None, axis=-1, epsilon=1e-5, stash_type=1):
    """Y = (x - mean) / sqrt(var + epsilon) * scale + bias over axes [axis, rank), computed in
    float32 for stash_type 1; also returns Mean and InvStdDev (keepdims shapes)."""
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"LayerNormalization axis {axis} is outside [{-x.ndim}, {x.ndim})")
    axis = axis + x.ndim if axis < 0 else axis
    axes = tuple(range(axis, x.ndim))
    dtype = np.float64 if x.dtype == np.float64 or stash_type != 1 else np.float32
    xs = x.astype(dtype, copy=False)
    mean = np.mean(xs, axis=axes, keepdims=True)
    y = np.subtract(xs, mean)
    var = np.mean(np.square(y), axis=axes, keepdims=True)
    var += dtype(epsilon)
    inv = np.reciprocal(np.sqrt(var, out=var), out=var)
    y *= inv
    y *= scale
    if bias is not None:
        y += bias
    return y.astype(x.dtype, copy=False), mean, inv


# ---------------------------------------------------------------- the table
OPS = {
    "Abs": abs_, "Add": add, "And": and_, "ArgMax": arg_max, "ArgMin": arg_min,
    "Cast": cast, "CastLike": cast_like, "Ceil": ceil, "Clip": clip, "Concat": concat,
    "Constant": constant, "ConstantOfShape": constant_of_shape, "CumSum": cum_sum,
    "Div": div, "Dropout": dropout, "Equal": equal, "Erf": erf, "Exp": exp, "Expand": expand,
    "Flatten": flatten, "Floor": floor, "Gather": gather, "GatherElements": gather_elements,
    "GatherND": gather_nd,
    "Gelu": gelu, "Gemm": gemm, "Greater": greater, "GreaterOrEqual": greater_or_equal,
    "Identity": identity, "IsInf": is_inf, "IsNaN": is_nan,
    "LayerNormalization": layer_normalization, "Less": less, "LessOrEqual": less_or_equal,
    "Log": log, "LogSoftmax": log_softmax, "MatMul": matmul, "Max": _variadic(np.maximum),
    "Mean": mean, "Min": _variadic(np.minimum), "Mod": mod, "Mul": mul, "Neg": neg,
    "Not": not_, "Or": or_, "Pad": pad, "Pow": pow_, "Range": range_,
    "Reciprocal": reciprocal,
    "ReduceL1": _reducer(_l1), "ReduceL2": _reducer(_l2),
    "ReduceLogSumExp": _reducer(_log_sum_exp), "ReduceMax": _reducer(np.max),
    "ReduceMean": _reducer(np.mean), "ReduceMin": _reducer(np.min),
    "ReduceProd": _reducer(np.prod), "ReduceSum": _reducer(np.sum),
    "ReduceSumSquare": _reducer(_sum_square),
    "Relu": relu, "Reshape": reshape, "Round": round_, "Shape": shape, "Sigmoid": sigmoid,
    "Sign": sign, "Size": size, "Slice": slice_, "Softmax": softmax, "Split": split,
    "Sqrt": sqrt, "Squeeze": squeeze, "Sub": sub, "Sum": _variadic(np.add), "Tanh": tanh,
    "Tile": tile, "Transpose": transpose, "Trilu": trilu, "Unsqueeze": unsqueeze,
    "Where": where, "Xor": xor,
    **QUANT_OPS,
}

# Elementwise ops that accept `out=` (see the module docstring).
INPLACE = {"Abs", "Add", "Ceil", "Div", "Erf", "Exp", "Floor", "Log", "Mul", "Neg", "Pow",
           "Reciprocal", "Relu", "Round", "Sigmoid", "Softmax", "Sqrt", "Sub", "Tanh"}
