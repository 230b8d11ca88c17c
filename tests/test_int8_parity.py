"""Where the numpy runtime and onnxruntime part ways on int8 graphs, and where they must not.

Dynamic quantization turns float32 ulps into whole int8 steps: an ulp that moves a tensor's
extreme changes its per-tensor scale, an ulp that moves a value across a rounding boundary
flips its uint8, and each flip is a full quantization step for the next layer. So the logits of
two engines agree closely only if they are bit-identical. These tests pin down what is:

- every node except the float kernels whose arithmetic onnxruntime leaves to MLAS
  (LayerNormalization, MatMul, Softmax, Erf, Tanh: own summation orders, FMA, polynomial
  approximations), recomputed by the runtime from onnxruntime's own inputs, gives onnxruntime's
  output bit for bit: DynamicQuantizeLinear (y, scale and zero point), MatMulInteger, Cast,
  the scale Muls, Add, ...;
- the runtime, free running, with onnxruntime's kernels put in for exactly those five float
  ops, gives onnxruntime's logits bit for bit (graph optimisations off): the runtime's own
  rewrites (y - zero point handed to MatMulInteger as float32, the Cast folded into it) and
  everything else agree with onnxruntime's arithmetic, so the int8 differences come from those
  five float ops alone;
- DynamicQuantizeLinear matches onnxruntime on ties, saturation and degenerate ranges (its
  scale is (max - min) / 255 in float32 and y = rint(x / scale): a multiply by 1 / scale
  would not do).

One exception is onnxruntime's, not the runtime's: with int8 (signed) weights and no VNNI,
its MatMulInteger kernel adds pairs of u8*s8 products in int16 with saturation, so it can
miss the true integer product, which the runtime computes; the first test checks the
runtime against true integer arithmetic there, and the second uses uint8 weights only.

The per-op attribution on the real SST-2 bundle is `bench/bench_parity.py --kernels`.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import helper

from export.inspect_graph import onnxruntime_kernel, with_all_outputs
from onnx_models import exported_models, random_feeds
from runtime import onnx as ronnx
from runtime.ops import OPS
from runtime.ops_quant import dynamic_quantize_linear, dynamic_quantize_linear_shifted
from runtime.session import Session, _call

# float ops onnxruntime computes with MLAS kernels of its own (see the module docstring)
FLOAT_KERNELS = ("LayerNormalization", "MatMul", "Softmax", "Erf", "Tanh")
SHAPES = [(1, 1), (2, 7), (7, 9), (3, 40), (32, 17)]


@pytest.fixture(scope="module")
def int8_models(tmp_path_factory):
    """The tiny exported int8 graphs: qint8, quint8 per channel, and quint8 per tensor (the
    export's default, as in the SST-2 bundles)."""
    from export.quantize import quantize_int8

    models = dict(exported_models(tmp_path_factory.mktemp("onnx-models")))
    per_tensor = tmp_path_factory.mktemp("quint8") / "int8_quint8.onnx"
    quantize_int8(models["fp32"], per_tensor, weight_type="quint8")
    return {"int8": models["int8"], "int8_quint8_pc": models["int8_quint8_pc"],
            "int8_quint8": per_tensor}


def unoptimised(model) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def exact_matmul_integer(a, b, a_zero=None, b_zero=None):
    a = a.astype(np.int64) - (0 if a_zero is None else a_zero.astype(np.int64))
    b = b.astype(np.int64) - (0 if b_zero is None else b_zero.astype(np.int64))
    return np.matmul(a, b).astype(np.int32)


@pytest.mark.parametrize("name", ["int8", "int8_quint8_pc", "int8_quint8"])
def test_every_node_but_the_float_kernels_is_bit_identical_from_onnxruntimes_inputs(int8_models, name):
    path = int8_models[name]
    model = ronnx.load(str(path))
    constants = dict(model.graph.initializers)
    reference = unoptimised(with_all_outputs(path))
    names = [o.name for o in reference.get_outputs()]
    signed_weights = any(n.op_type == "MatMulInteger" and constants[n.inputs[1]].dtype == np.int8
                         for n in model.graph.nodes)
    rng = np.random.default_rng(5)
    checked = {}
    for batch, length in SHAPES:
        feeds = random_feeds(rng, batch, length)
        values = dict(zip(names, reference.run(names, feeds)), **feeds)
        for node in model.graph.nodes:
            args = [values[n] if n in values else constants.get(n) if n else None for n in node.inputs]
            got = _call(OPS[node.op_type], args, node.attrs, node, model.opset)
            for out, mine in zip(node.outputs, got):
                if out not in values:
                    continue
                theirs, mine = values[out], np.asarray(mine)
                assert mine.shape == theirs.shape and mine.dtype == theirs.dtype, (node.op_type, out)
                if node.op_type in FLOAT_KERNELS:              # close, not identical
                    np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-5 * max(1.0, np.abs(theirs).max()))
                elif node.op_type == "MatMulInteger" and signed_weights:
                    # onnxruntime's u8*s8 kernel without VNNI sums byte pairs in int16 with
                    # saturation; the runtime must equal true integer arithmetic instead
                    np.testing.assert_array_equal(mine, exact_matmul_integer(*args))
                else:
                    np.testing.assert_array_equal(mine, theirs, err_msg=f"{node.op_type} -> {out}")
                checked[node.op_type] = checked.get(node.op_type, 0) + 1
    # the int8 path was part of it
    assert {"DynamicQuantizeLinear", "MatMulInteger", "Cast", "Mul", "Add"} <= set(checked)


@pytest.mark.parametrize("name", ["int8_quint8_pc", "int8_quint8"])   # qint8: see above
def test_with_onnxruntimes_float_kernels_the_runtime_gives_its_logits_bit_for_bit(int8_models, name):
    path = int8_models[name]
    sess = Session(str(path), fuse=False)                 # Erf as its own node, swappable
    swapped = set()
    for step in sess._steps:
        if step.node.op_type in FLOAT_KERNELS:
            step.fn = onnxruntime_kernel(step.node, sess.opset)
            step.inplace, step.call_kwargs = False, {}
            swapped.add(step.node.op_type)
    assert {"LayerNormalization", "MatMul", "Softmax", "Erf"} <= swapped
    rewritten = {getattr(s.fn, "__name__", type(s.fn).__name__) for s in sess._steps}
    assert "dynamic_quantize_linear_shifted" in rewritten and "PreparedMatMulInteger" in rewritten
    reference = unoptimised(path)
    rng = np.random.default_rng(6)
    for batch, length in SHAPES:
        feeds = random_feeds(rng, batch, length)
        want, = reference.run(None, feeds)
        got, = sess.run(None, feeds)
        np.testing.assert_array_equal(got, want)


def _ort_dynamic_quantize(x):
    if not hasattr(_ort_dynamic_quantize, "session"):
        node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "scale", "zero"])
        graph = helper.make_graph([node], "dql", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)],
                                  [helper.make_tensor_value_info(n, t, None) for n, t in
                                   (("y", onnx.TensorProto.UINT8), ("scale", onnx.TensorProto.FLOAT),
                                    ("zero", onnx.TensorProto.UINT8))])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 9
        _ort_dynamic_quantize.session = unoptimised(model)
    return _ort_dynamic_quantize.session.run(None, {"x": x})


def _ties(step: float, lo: int, count: int, rng) -> np.ndarray:
    """Values at k + 1/2 steps within [lo, lo + 255] * step, plus the two extremes that make
    the scale (about) step: many land exactly on a rounding tie after the division."""
    step, hi = np.float32(step), lo + 255
    k = rng.integers(lo, hi, count)
    x = ((k + 0.5) * step).astype(np.float32)
    return np.concatenate([x, np.float32([lo, hi]) * step]).astype(np.float32)


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=40),
                  elements=st.floats(-1e4, 1e4, width=32, allow_subnormal=True)),
       st.sampled_from(["as is", "positive", "negative", "ties", "constant"]),
       st.integers(0, 2 ** 32 - 1))
@example(np.float32([1e-45]), "as is", 0)                 # the range underflows to scale 0
@example(np.float32([1e-45, 0.0, 6e-45]), "as is", 0)
def test_dynamic_quantize_linear_matches_onnxruntime(x, form, seed):
    rng = np.random.default_rng(seed)
    if form == "positive":
        x = np.abs(x)
    elif form == "negative":
        x = -np.abs(x)
    elif form == "ties":
        x = _ties(float(rng.uniform(1e-4, 1.0)), int(rng.integers(-255, 1)), x.size, rng)
    elif form == "constant":
        x = np.full(x.shape, x.flat[0], np.float32)
    want_y, want_scale, want_zero = _ort_dynamic_quantize(x)
    y, scale, zero = dynamic_quantize_linear(x)
    assert scale.dtype == want_scale.dtype and zero.dtype == want_zero.dtype
    np.testing.assert_array_equal(scale, want_scale)
    np.testing.assert_array_equal(zero, want_zero)
    np.testing.assert_array_equal(y, want_y)
    shifted, _, _ = dynamic_quantize_linear_shifted(x, out=x.copy())
    np.testing.assert_array_equal(shifted, want_y.astype(np.float32) - want_zero.astype(np.float32))
