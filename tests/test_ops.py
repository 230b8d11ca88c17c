"""runtime.ops / runtime.ops_quant: every op against onnx.reference.ReferenceEvaluator.

Each case is a one-node model built with onnx.helper, run by the reference evaluator and by
runtime.Session (through the runtime's own reader); inputs are random, with broadcasting,
negative axes and indices, scalars and empty tensors. The exact-integer ops are checked bit
for bit against numpy int32 arithmetic, erf against math.erf over the whole float32 range.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from runtime import onnx as ronnx
from runtime.ops import OPS, erf
from runtime.ops_quant import (A_BOUND, EXACT_F32, column_chunks, dynamic_quantize_linear,
                               dynamic_quantize_linear_shifted, matmul_integer,
                               prepare_matmul_integer)
from runtime.session import Session

rng = np.random.default_rng(1234)


def randn(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def ints(low, high, *shape, dtype=np.int64):
    return rng.integers(low, high, shape, endpoint=True).astype(dtype)


def i64(*values):
    return np.array(values, np.int64)


def one_node(op, inputs, attrs=None, opset=18, outputs=1, initializers=()):
    """(model, feeds): inputs become graph inputs, or initializers at the given positions."""
    names, graph_inputs, inits, feeds = [], [], [], {}
    for i, value in enumerate(inputs):
        if value is None:
            names.append("")
            continue
        name = f"in{i}"
        names.append(name)
        if i in initializers:
            inits.append(numpy_helper.from_array(value, name))
        else:
            code = helper.np_dtype_to_tensor_dtype(value.dtype)
            graph_inputs.append(helper.make_tensor_value_info(name, code, value.shape))
            feeds[name] = value
    out_names = [f"out{i}" for i in range(outputs)]
    node = helper.make_node(op, names, out_names, **(attrs or {}))
    graph = helper.make_graph([node], "g", graph_inputs,
                              [helper.make_value_info(n, onnx.TypeProto()) for n in out_names], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return model, feeds


def run_both(op, inputs, attrs=None, opset=18, outputs=1, initializers=(), engine="reference"):
    model, feeds = one_node(op, inputs, attrs, opset, outputs, initializers)
    if engine == "onnxruntime":
        import onnxruntime as ort

        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        expected = session.run(None, feeds)
    else:
        expected = ReferenceEvaluator(model).run(None, feeds)
    got = Session(ronnx.load_bytes(model.SerializeToString())).run(None, feeds)
    return got, [np.asarray(e) for e in expected]


def assert_match(got, expected, rtol=1e-6, atol=1e-6):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        g = np.asarray(g)
        assert g.dtype == e.dtype, (g.dtype, e.dtype)
        assert g.shape == e.shape, (g.shape, e.shape)
        if e.dtype.kind in "fc":
            np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, equal_nan=True)
        else:
            np.testing.assert_array_equal(g, e)


def case(op, inputs, attrs=None, opset=18, outputs=1, init=(), tol=1e-6, id=None, engine="reference"):
    return pytest.param(op, inputs, attrs, opset, outputs, init, tol, engine, id=id or op)


POSITIVE = np.abs(randn(3, 4)) + 0.1
CASES = [
    # elementwise arithmetic with broadcasting, scalars and empty tensors
    case("Add", [randn(3, 1, 4), randn(2, 1)], id="Add-broadcast"),
    case("Add", [randn(2, 3), np.array(1.5, np.float32)], id="Add-scalar"),
    case("Add", [randn(0, 3), randn(3)], id="Add-empty"),
    case("Sub", [randn(4, 1), randn(1, 5)]),
    case("Mul", [randn(2, 3, 4), randn(4)]),
    case("Mul", [ints(-50, 50, 3, 4), ints(-50, 50, 4)], id="Mul-int"),
    case("Div", [randn(2, 3, 4), POSITIVE[:1, :4]], id="Div"),
    case("Div", [i64(-7, 7, -7, 7, 0, -1), i64(2, -2, -2, 2, 3, 3)], id="Div-int-truncates"),
    case("Div", [ints(-100, 100, 5, 4, dtype=np.int32), ints(1, 9, 4, dtype=np.int32)], id="Div-int32"),
    case("Pow", [POSITIVE, randn(3, 4)], id="Pow"),
    case("Pow", [randn(3, 4), np.array(2.0, np.float32)], id="Pow-square"),
    case("Pow", [POSITIVE, np.array(0.5, np.float32)], id="Pow-sqrt"),
    case("Pow", [randn(3, 4), np.array(3, np.int64)], id="Pow-int-exponent"),
    case("Pow", [ints(-3, 3, 5), ints(0, 3, 5)], id="Pow-int"),
    case("Mod", [ints(-9, 9, 10), i64(4, -4, 3, -3, 5, 7, -2, 2, 6, -6)], id="Mod-int"),
    case("Mod", [randn(6) * 5, randn(6) + 3], {"fmod": 1}, id="Mod-fmod"),
    case("Neg", [randn(3, 4)]), case("Abs", [randn(3, 4)]), case("Sqrt", [POSITIVE]),
    case("Exp", [randn(3, 4)]), case("Log", [POSITIVE]), case("Reciprocal", [POSITIVE]),
    case("Floor", [randn(3, 4) * 3]), case("Ceil", [randn(3, 4) * 3]),
    case("Round", [np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49, -3.7], np.float32)]),
    case("Sign", [np.array([-2.0, 0.0, 3.0], np.float32)]),
    case("Tanh", [randn(3, 4) * 4]), case("Relu", [randn(3, 4)]),
    case("Sigmoid", [np.concatenate([randn(8) * 5, np.array([-100.0, 100.0], np.float32)])]),
    case("Erf", [randn(5, 7) * 3]),
    case("Gelu", [randn(5, 7) * 3], opset=20), case("Gelu", [randn(5, 7) * 3], {"approximate": "tanh"},
                                                    opset=20, tol=1e-5, id="Gelu-tanh"),
    case("Clip", [randn(3, 4), np.array(-0.5, np.float32), np.array(0.5, np.float32)], id="Clip-13"),
    case("Clip", [randn(3, 4), None, np.array(0.2, np.float32)], id="Clip-max-only"),
    case("Clip", [randn(3, 4)], {"min": -0.3, "max": 0.1}, opset=6, id="Clip-6-attrs"),
    case("Max", [randn(3, 1), randn(1, 4), randn(4)]), case("Min", [randn(3, 4), randn(4)]),
    case("Sum", [randn(2, 3), randn(3), randn(2, 1)]), case("Mean", [randn(2, 3), randn(3)]),
    # comparison and logic
    case("Equal", [ints(0, 3, 3, 4), ints(0, 3, 4)]), case("Less", [randn(3, 4), randn(4)]),
    case("LessOrEqual", [ints(0, 2, 5), ints(0, 2, 5)]), case("Greater", [randn(3, 1), randn(4)]),
    case("GreaterOrEqual", [ints(0, 2, 5), ints(0, 2, 1)]),
    case("Not", [ints(0, 1, 5, dtype=np.bool_)]),
    case("And", [ints(0, 1, 3, 4, dtype=np.bool_), ints(0, 1, 4, dtype=np.bool_)]),
    case("Or", [ints(0, 1, 3, 4, dtype=np.bool_), ints(0, 1, 4, dtype=np.bool_)]),
    case("Xor", [ints(0, 1, 3, 4, dtype=np.bool_), ints(0, 1, 4, dtype=np.bool_)]),
    case("IsNaN", [np.array([np.nan, 1.0, np.inf], np.float32)]),
    case("IsInf", [np.array([np.nan, -np.inf, np.inf, 2.0], np.float32)]),
    case("IsInf", [np.array([-np.inf, np.inf], np.float32)], {"detect_negative": 0}, id="IsInf-positive"),
    case("Where", [ints(0, 1, 3, 1, dtype=np.bool_), randn(1, 4), randn(3, 4)]),
    # types and constants
    case("Cast", [randn(3, 4) * 100], {"to": TensorProto.INT32}, id="Cast-float-int32"),
    case("Cast", [np.array([0.0, -0.0, 2.0, np.nan], np.float32)], {"to": TensorProto.BOOL}, id="Cast-bool"),
    case("Cast", [ints(-5, 5, 6)], {"to": TensorProto.FLOAT}, id="Cast-int-float"),
    case("Cast", [randn(6)], {"to": TensorProto.FLOAT16}, id="Cast-float16"),
    case("Cast", [ints(0, 1, 6, dtype=np.bool_)], {"to": TensorProto.INT64}, id="Cast-bool-int"),
    case("Cast", [np.abs(randn(6)) * 100], {"to": TensorProto.UINT8}, id="Cast-uint8"),
    case("CastLike", [randn(4) * 10, i64(1)]),
    case("Constant", [], {"value": numpy_helper.from_array(randn(2, 3), "v")}),
    case("Constant", [], {"value_floats": [1.0, 2.5]}, id="Constant-floats"),
    case("Constant", [], {"value_int": 7}, id="Constant-int"),
    case("Constant", [], {"value_ints": [3, -1]}, id="Constant-ints"),
    case("ConstantOfShape", [i64(2, 3)], {"value": numpy_helper.from_array(i64(7))}),
    case("ConstantOfShape", [i64(2, 0)], id="ConstantOfShape-default"),
    case("ConstantOfShape", [i64(3)], init=(0,), id="ConstantOfShape-folded"),
    case("Range", [np.array(2, np.int64), np.array(11, np.int64), np.array(3, np.int64)]),
    case("Range", [np.array(1.0, np.float32), np.array(-2.0, np.float32), np.array(-0.5, np.float32)],
         id="Range-float"),
    case("Range", [np.array(5, np.int64), np.array(2, np.int64), np.array(1, np.int64)], id="Range-empty"),
    case("Identity", [randn(2, 3)]),
    case("Dropout", [randn(3, 4)], opset=13),
    case("Dropout", [randn(3, 4)], opset=13, outputs=2, id="Dropout-mask"),
    # shapes and indexing
    case("Shape", [randn(2, 3, 4)]), case("Shape", [randn(2, 3, 4)], {"start": 1, "end": -1}, id="Shape-slice"),
    case("Size", [randn(2, 3, 4)]),
    case("Reshape", [randn(2, 3, 4), i64(0, -1, 2)]),
    case("Reshape", [randn(2, 3, 4), i64(4, 0, 2)], init=(1,), id="Reshape-const-shape"),
    case("Reshape", [randn(0, 3), i64(0, 4)], {"allowzero": 1}, id="Reshape-allowzero"),
    # zero-size inputs: a -1 beside a 0 is inferred from the non-zero dims, as onnxruntime does
    case("Reshape", [randn(0, 7, 64), i64(0, 7, -1, 16)], {"allowzero": 1}, engine="onnxruntime",
         id="Reshape-empty-batch-heads"),
    case("Reshape", [randn(0, 4), i64(0, -1)], {"allowzero": 1}, engine="onnxruntime",
         id="Reshape-empty-zero-and-minus-one"),
    case("Reshape", [randn(2, 0), i64(-1, 0)], {"allowzero": 1}, engine="onnxruntime",
         id="Reshape-empty-minus-one-first"),
    case("Reshape", [randn(0, 8, 2), i64(4, 2, -1)], engine="onnxruntime", id="Reshape-empty-minus-one-is-0"),
    case("Reshape", [randn(3, 0, 5), i64(-1, 5)], engine="onnxruntime", id="Reshape-empty-middle"),
    case("Reshape", [randn(0, 7, 4, 16), i64(0, 7, 64)], {"allowzero": 1}, engine="onnxruntime",
         id="Reshape-empty-merge-heads"),
    case("Flatten", [randn(2, 3, 4)], {"axis": 2}), case("Flatten", [randn(2, 3, 4)], {"axis": 0}, id="Flatten-0"),
    case("Transpose", [randn(2, 3, 4)], {"perm": [2, 0, 1]}),
    case("Transpose", [randn(2, 3, 4)], id="Transpose-default"),
    case("Squeeze", [randn(1, 3, 1, 4), i64(-2)], id="Squeeze-13"),
    case("Squeeze", [randn(1, 3, 1, 4)], id="Squeeze-all"),
    case("Squeeze", [randn(1, 3, 1, 4)], {"axes": [0]}, opset=11, id="Squeeze-11"),
    case("Unsqueeze", [randn(3, 4), i64(0, -1)], id="Unsqueeze-13"),
    case("Unsqueeze", [randn(3, 4)], {"axes": [1, 3]}, opset=11, id="Unsqueeze-11"),
    case("Unsqueeze", [np.array(2.0, np.float32), i64(0)], id="Unsqueeze-scalar"),
    case("Concat", [randn(2, 3), randn(2, 1), randn(2, 0)], {"axis": -1}),
    case("Split", [randn(6, 4), i64(1, 5)], {"axis": 0}, outputs=2, id="Split-13"),
    case("Split", [randn(6, 4)], {"axis": 1}, outputs=2, opset=13, id="Split-equal"),
    case("Split", [randn(7, 2)], {"axis": 0, "num_outputs": 3}, outputs=3, id="Split-18-uneven"),
    case("Split", [randn(5, 4)], {"axis": 0, "split": [2, 3]}, opset=11, outputs=2, id="Split-11"),
    case("Slice", [randn(5, 6), i64(1, -1), i64(4, 100), i64(0, 1), i64(2, 1)], id="Slice-steps"),
    case("Slice", [randn(5, 6), i64(-1), i64(-100), i64(1), i64(-2)], id="Slice-backward"),
    case("Slice", [randn(5, 6), i64(4), i64(-7), i64(0), i64(-1)], id="Slice-backward-clamp"),
    # backward from a start before the beginning: the spec (and onnxruntime) clamp start to 0,
    # the reference evaluator uses numpy's slicing and returns nothing
    case("Slice", [randn(5, 6), i64(-9), i64(-10), i64(0), i64(-1)], id="Slice-backward-start-clamp",
         engine="onnxruntime"),
    case("Slice", [randn(5, 6), i64(2), i64(2 ** 62)], id="Slice-default-axes"),
    case("Slice", [randn(5, 6), i64(3), i64(1)], id="Slice-empty"),
    case("Slice", [randn(5, 6)], {"starts": [1], "ends": [3], "axes": [1]}, opset=9, id="Slice-9-attrs"),
    case("Gather", [randn(5, 3), i64(0, -1, 2, -5)], id="Gather-negative"),
    case("Gather", [randn(2, 5, 3), ints(-5, 4, 2, 2)], {"axis": 1}, id="Gather-axis1"),
    case("Gather", [randn(5, 3), np.array(-2, np.int64)], id="Gather-scalar"),
    case("Gather", [randn(5, 3), np.array([[0, 4]], np.int32)], id="Gather-int32"),
    case("GatherElements", [randn(3, 4), ints(-4, 3, 3, 2)], {"axis": 1}),
    case("GatherND", [randn(2, 3, 4), i64(0, 1, 1, -1).reshape(2, 2)]),
    case("GatherND", [randn(2, 3, 4), i64(1, 2).reshape(2, 1)], {"batch_dims": 1}, id="GatherND-batch"),
    case("Expand", [randn(3, 1), i64(2, 1, 4)]), case("Expand", [randn(2, 3), i64(3)], id="Expand-lower-rank"),
    case("Tile", [randn(2, 3), i64(2, 1)]),
    case("Pad", [randn(2, 3), i64(0, 1, 1, 2), np.array(1.5, np.float32)]),
    case("Pad", [randn(2, 3), i64(1, 0, 1, 0)], {"mode": "edge"}, id="Pad-edge"),
    case("Pad", [randn(3, 4), i64(1, 2), None, i64(-1)], {"mode": "reflect"}, id="Pad-reflect-axes"),
    case("Trilu", [randn(4, 5)]), case("Trilu", [randn(4, 5), np.array(-1, np.int64)], {"upper": 0}, id="Trilu-lower"),
    case("CumSum", [randn(3, 4), np.array(1, np.int64)]),
    case("CumSum", [randn(3, 4), np.array(-2, np.int32)], {"exclusive": 1, "reverse": 1}, id="CumSum-excl-rev"),
    # reductions
    case("ReduceMean", [randn(3, 4, 5), i64(-1)], id="ReduceMean-18"),
    case("ReduceMean", [randn(3, 4, 5)], {"axes": [0, 2], "keepdims": 0}, opset=13, id="ReduceMean-13"),
    case("ReduceMean", [randn(3, 4)], id="ReduceMean-all"),
    case("ReduceSum", [randn(3, 4, 5), i64(1)], {"keepdims": 0}, opset=13, id="ReduceSum-13"),
    case("ReduceSum", [randn(3, 4), np.zeros(0, np.int64)], {"noop_with_empty_axes": 1}, id="ReduceSum-noop"),
    case("ReduceSum", [randn(3, 4)], {"axes": [1]}, opset=11, id="ReduceSum-11"),
    case("ReduceMax", [randn(3, 4), i64(0)]), case("ReduceMin", [randn(3, 4), i64(1)], {"keepdims": 0}),
    case("ReduceProd", [randn(3, 4), i64(1)]), case("ReduceL1", [randn(3, 4), i64(1)]),
    case("ReduceL2", [randn(3, 4), i64(1)]), case("ReduceSumSquare", [randn(3, 4), i64(0)]),
    case("ReduceLogSumExp", [randn(3, 4), i64(1)], {"keepdims": 0}, tol=1e-5),
    case("ArgMax", [np.array([[1, 3, 3], [2, 2, 0]], np.float32)], {"axis": 1}),
    case("ArgMax", [np.array([[1, 3, 3], [2, 2, 0]], np.float32)], {"axis": 1, "keepdims": 0,
                                                                    "select_last_index": 1}, id="ArgMax-last"),
    case("ArgMin", [randn(3, 4)], {"axis": 0}),
    # linear algebra and nn
    case("MatMul", [randn(2, 3, 4, 5), randn(5, 6)], tol=1e-5),
    case("MatMul", [randn(2, 1, 4, 5), randn(3, 5, 2)], tol=1e-5, id="MatMul-batch-broadcast"),
    case("MatMul", [randn(5), randn(5, 3)], tol=1e-5, id="MatMul-vector"),
    case("MatMul", [randn(2, 7, 5), randn(5, 3)], init=(1,), tol=1e-5, id="MatMul-const-weight"),
    case("Gemm", [randn(3, 5), randn(4, 5), randn(4)], {"transB": 1, "alpha": 0.5, "beta": 2.0}, tol=1e-5),
    case("Gemm", [randn(5, 3), randn(5, 4)], {"transA": 1}, tol=1e-5, id="Gemm-transA"),
    case("Gemm", [randn(3, 5), randn(4, 5), randn(3, 1)], {"transB": 1}, init=(1,), tol=1e-5,
         id="Gemm-const-transposed-weight"),
    case("Softmax", [randn(2, 3, 4)]), case("Softmax", [randn(2, 3, 4)], {"axis": 1}, id="Softmax-axis1"),
    # the reference evaluator ignores opset < 13's flatten-to-2-D semantics; onnxruntime doesn't
    case("Softmax", [randn(2, 3, 4)], opset=11, id="Softmax-11-flatten", engine="onnxruntime"),
    case("LogSoftmax", [randn(2, 3, 4)], tol=1e-5),
    case("LogSoftmax", [randn(2, 3, 4)], {"axis": 1}, opset=11, tol=1e-5, id="LogSoftmax-11",
         engine="onnxruntime"),
    # a batch of 0 texts: reshape(0, -1) cannot infer the -1
    case("Softmax", [randn(0, 3, 4)], opset=11, id="Softmax-11-empty", engine="onnxruntime"),
    case("LogSoftmax", [randn(2, 0, 4)], {"axis": 1}, opset=11, id="LogSoftmax-11-empty", engine="onnxruntime"),
    case("Softmax", [randn(2, 3, 0)], id="Softmax-empty-axis"),
    case("LayerNormalization", [randn(2, 3, 8), randn(8), randn(8)], {"epsilon": 1e-12}, tol=1e-5),
    case("LayerNormalization", [randn(2, 3, 4), randn(3, 4)], {"axis": 1}, outputs=3, tol=1e-5,
         id="LayerNormalization-stats"),
    # int8
    case("DequantizeLinear", [ints(-128, 127, 3, 4, dtype=np.int8), np.array(0.02, np.float32),
                              np.array(-3, np.int8)], opset=19, id="DequantizeLinear-scalar"),
    case("DequantizeLinear", [ints(0, 255, 3, 4, dtype=np.uint8), np.abs(randn(4)) / 50,
                              ints(0, 255, 4, dtype=np.uint8)], {"axis": 1}, opset=19,
         id="DequantizeLinear-axis1"),
    case("DequantizeLinear", [ints(-128, 127, 3, 4, dtype=np.int8), np.abs(randn(3)) / 50],
         {"axis": 0}, opset=19, id="DequantizeLinear-axis0-no-zero-point"),
    case("DequantizeLinear", [ints(-128, 127, 5, 4, dtype=np.int8), np.array(0.1, np.float32)],
         init=(0, 1), opset=19, id="DequantizeLinear-folded"),
    case("QuantizeLinear", [np.array([-1.0, -0.25, 0.25, 0.75, 1.25, 300.0, -300.0], np.float32),
                            np.array(0.5, np.float32), np.array(10, np.uint8)], id="QuantizeLinear-ties"),
    case("QuantizeLinear", [randn(3, 4) * 10, np.abs(randn(4)) / 5, ints(-10, 10, 4, dtype=np.int8)],
         {"axis": 1}, id="QuantizeLinear-axis"),
    case("DynamicQuantizeLinear", [randn(4, 6) * 3], outputs=3),
    case("DynamicQuantizeLinear", [np.abs(randn(4, 6))], outputs=3, id="DynamicQuantizeLinear-positive"),
    case("DynamicQuantizeLinear", [-np.abs(randn(4, 6))], outputs=3, id="DynamicQuantizeLinear-negative"),
    case("MatMulInteger", [ints(0, 255, 2, 3, 8, dtype=np.uint8), ints(-128, 127, 8, 5, dtype=np.int8),
                           np.array(7, np.uint8), np.array(-2, np.int8)], id="MatMulInteger-u8s8"),
    case("MatMulInteger", [ints(0, 255, 4, 8, dtype=np.uint8), ints(0, 255, 8, 5, dtype=np.uint8),
                           None, ints(0, 255, 5, dtype=np.uint8)], id="MatMulInteger-per-column"),
    case("MatMulInteger", [ints(-128, 127, 4, 8, dtype=np.int8), ints(-128, 127, 8, 5, dtype=np.int8)],
         id="MatMulInteger-s8s8-no-zero-points"),
    case("MatMulInteger", [ints(0, 255, 3, 8, dtype=np.uint8), ints(-128, 127, 8, 5, dtype=np.int8),
                           np.array(128, np.uint8), ints(-128, 127, 5, dtype=np.int8)],
         init=(1, 3), id="MatMulInteger-const-weight"),
]


@pytest.mark.parametrize("op, inputs, attrs, opset, outputs, init, tol, engine", CASES)
def test_op_matches_reference_evaluator(op, inputs, attrs, opset, outputs, init, tol, engine):
    # the reference's Sigmoid overflows in exp on the extreme inputs (the runtime's does not)
    with np.errstate(over="ignore", invalid="ignore") if op == "Sigmoid" else contextlib.nullcontext():
        got, expected = run_both(op, inputs, attrs, opset, outputs, init, engine)
    assert_match(got, expected, rtol=tol, atol=tol)


def test_every_op_in_the_table_is_checked_against_the_reference():
    covered = {p.values[0] for p in CASES}
    assert set(OPS) - covered == set()


def test_reshape_of_an_empty_tensor_that_no_dims_can_explain():
    """(0, 3) into [2, -1, 0]: the non-zero dims (3 against 2) do not divide; onnxruntime
    refuses it too."""
    from runtime.ops import reshape
    with pytest.raises(ValueError, match=r"cannot reshape an array of shape \(0, 3\) into \[2, -1, 0\]"):
        reshape(randn(0, 3), i64(2, -1, 0), allowzero=1)
    assert reshape(randn(0, 7, 64), i64(0, 0, -1, 16)).shape == (0, 7, 4, 16)   # 0 copies the dim


def test_inputs_are_not_modified():
    x, y = randn(3, 4), randn(3, 4)
    x0, y0 = x.copy(), y.copy()
    for op in ("Add", "Mul", "Erf", "Softmax", "Sqrt"):
        with np.errstate(invalid="ignore"):                  # Sqrt of the negative entries: nan
            run_both(op, [x, y][:1 if op in ("Erf", "Softmax", "Sqrt") else 2])
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)


# ---------------------------------------------------------------- erf
def float32_ulp(r: np.ndarray) -> np.ndarray:
    """The float32 ulp at the exact values r (float64): 2^(exponent - 23), 2^-149 for subnormals."""
    _, e = np.frexp(np.abs(r))                     # |r| = m 2^e, m in [0.5, 1)
    return np.ldexp(1.0, np.maximum(e - 24, -149))


ERF_ULP_BOUND = 2.0                                # documented in runtime.ops (measured 1.6)


def test_erf_is_within_two_ulp_of_math_erf_over_the_whole_float32_range():
    every = np.arange(0, 0x7F800000, 4099, dtype=np.uint32).view(np.float32)  # all exponents
    dense = np.linspace(0, 4.5, 1_500_001, dtype=np.float32)                  # where erf bends
    x = np.concatenate([every, dense, np.array([1e-45, 1.1754942e-38, 3.4e38], np.float32)])
    ref = np.array([math.erf(float(v)) for v in x])
    got = erf(x)
    assert got.dtype == np.float32
    ulps = np.abs(got - ref) / float32_ulp(ref)
    assert ulps.max() <= ERF_ULP_BOUND, (x[ulps.argmax()], ulps.max())
    np.testing.assert_array_equal(erf(-x), -got)   # odd, exactly
    assert list(erf(np.array([np.inf, -np.inf, 0.0], np.float32))) == [1.0, -1.0, 0.0]
    assert np.isnan(erf(np.array([np.nan], np.float32)))[0]


def test_erf_out_buffer_and_shapes():
    x = randn(3, 5, 7) * 2
    out = np.empty_like(x)
    assert erf(x, out=out) is out
    np.testing.assert_array_equal(out, erf(x))
    np.testing.assert_array_equal(erf(x.transpose(2, 0, 1)), erf(x).transpose(2, 0, 1))
    assert erf(np.zeros((0, 4), np.float32)).shape == (0, 4)
    assert erf(np.float64(0.5) * np.ones(3)).dtype == np.float64


# ---------------------------------------------------------------- int8, exactly
def int32_matmul(a, b, za=None, zb=None):
    a32 = a.astype(np.int32) - (0 if za is None else (za.reshape(-1, 1) if za.ndim == 1 else za).astype(np.int32))
    b32 = b.astype(np.int32) - (0 if zb is None else zb.astype(np.int32))
    return a32 @ b32


@pytest.mark.parametrize("a_type, b_type", [(np.uint8, np.int8), (np.uint8, np.uint8),
                                            (np.int8, np.int8), (np.int8, np.uint8)])
@pytest.mark.parametrize("k", [1, 257, 768, 3072])
def test_matmul_integer_is_bit_exact(a_type, b_type, k):
    def extreme(dtype, shape):
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
        x.reshape(-1)[::3] = info.min                # saturate often: the worst case for exactness
        x.reshape(-1)[1::3] = info.max
        return x

    a, b = extreme(a_type, (9, k)), extreme(b_type, (k, 13))
    ia, ib = np.iinfo(a_type), np.iinfo(b_type)
    for za, zb in [(None, None),
                   (np.array(ia.max, a_type), np.array(ib.min, b_type)),            # largest |a-za|
                   (extreme(a_type, (9,)), extreme(b_type, (13,)))]:                 # per row/column
        want = int32_matmul(a, b, za, zb)
        got = matmul_integer(a, b, za, zb)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, want)
        if za is None or za.ndim == 0:
            np.testing.assert_array_equal(prepare_matmul_integer(b, zb)(a[None], za), want[None])


def test_matmul_integer_with_products_near_the_maximum_is_bit_exact():
    """B not constant (no per-column chunks): every product is about 255 * 255, so the uniform
    chunks must be short enough (258 of 600) for each partial sum to stay below 2^24."""
    k = 600
    a, b = np.full((1, k), 255, np.uint8), np.full((k, 1), 255, np.uint8)
    a[0, 0] = 254
    got = matmul_integer(a, b, np.array(0, np.uint8), np.array(0, np.uint8))
    assert got.dtype == np.int32
    want = a.astype(np.int64) @ b.astype(np.int64)
    assert got.tolist() == want.tolist() == [[254 * 255 + 599 * 255 * 255]]


def test_matmul_integer_batched_and_broadcast():
    a = ints(0, 255, 2, 3, 5, 40, dtype=np.uint8)
    b = ints(-128, 127, 3, 40, 7, dtype=np.int8)
    za, zb = np.array(200, np.uint8), ints(-128, 127, 3, 1, 7, dtype=np.int8)
    want = (a.astype(np.int32) - 200) @ (b.astype(np.int32) - zb.astype(np.int32))
    np.testing.assert_array_equal(matmul_integer(a, b, za, zb), want)


def test_dynamic_quantize_linear_ties_and_saturation():
    # scale = 2.55 / 255 = 0.01 (float32), zero point 0: x/scale lands on exact .5 ties
    x = np.array([0.0, 0.005, 0.015, 0.025, 2.55, 1.0], np.float32)
    y, scale, zero = dynamic_quantize_linear(x)
    ref = ReferenceEvaluator(one_node("DynamicQuantizeLinear", [x], outputs=3)[0]).run(None, {"in0": x})
    for got, want in zip((y, scale, zero), ref):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype and got.shape == np.shape(want)
    assert y.max() == 255


def test_dynamic_quantize_linear_zero_point_rounds_half_to_even():
    """Range [-0.5, 254.5]: scale 1 and 0 - min / scale = 0.5 exactly, a tie that goes to 0 (as
    onnxruntime and the reference evaluator round it), not up to 1."""
    x = np.array([-0.5, 100.0, 254.5], np.float32)
    y, scale, zero = dynamic_quantize_linear(x)
    assert scale == 1 and zero == 0 and y.tolist() == [0, 100, 254]
    ref = ReferenceEvaluator(one_node("DynamicQuantizeLinear", [x], outputs=3)[0]).run(None, {"in0": x})
    for got, want in zip((y, scale, zero), ref):
        np.testing.assert_array_equal(got, want)
    shifted, _, shifted_zero = dynamic_quantize_linear_shifted(x)
    assert shifted_zero == 0 and shifted.tolist() == [-0.0, 100.0, 254.0]


def test_dynamic_quantize_linear_saturates_when_the_rounded_range_overflows():
    """rint(max / scale) + zero point can reach 256 when both sit near .5: y must saturate
    (the runtime skips np.clip only when the rounded extremes are already in range)."""
    lo, hi = np.float32(-0.034169212), np.float32(0.7234958)
    scale = np.float32(hi - lo) / np.float32(255)
    zero = np.rint(np.float32(0) - lo / scale)
    assert np.rint(hi / scale) + zero == 256             # the case this test is about
    x = np.concatenate([[lo, hi], randn(50) * 0.2]).astype(np.float32).clip(lo, hi)
    y, y_scale, y_zero = dynamic_quantize_linear(x)
    ref = ReferenceEvaluator(one_node("DynamicQuantizeLinear", [x], outputs=3)[0]).run(None, {"in0": x})
    for got, want in zip((y, y_scale, y_zero), ref):
        np.testing.assert_array_equal(got, want)
    assert y.max() == 255 and y[1] == 255
    shifted, _, _ = dynamic_quantize_linear_shifted(x, out=x.copy())
    np.testing.assert_array_equal(shifted, y.astype(np.float32) - np.float32(y_zero))


def test_dynamic_quantize_linear_all_zero_matches_onnxruntime():
    import onnxruntime as ort

    x = np.zeros((2, 3), np.float32)
    y, scale, zero = dynamic_quantize_linear(x)
    model, feeds = one_node("DynamicQuantizeLinear", [x], outputs=3)
    ort_y, ort_scale, ort_zero = ort.InferenceSession(model.SerializeToString(),
                                                      providers=["CPUExecutionProvider"]).run(None, feeds)
    np.testing.assert_array_equal(y, ort_y)
    assert scale == ort_scale and zero == ort_zero
    assert (y == 0).all() and zero == 0          # (the reference evaluator reports scale 1/255 here)


@pytest.mark.parametrize("positive", [False, True])
@pytest.mark.parametrize("k", [384, 1536, 3072])
def test_graph_rewrite_variants_are_exact(k, positive):
    """The session's exact rewrites: DynamicQuantizeLinear handing MatMulInteger y - zero point
    as float32, and MatMulInteger returning the float32 a following Cast would make."""
    x = rng.random((2, 17, k), dtype=np.float32) if positive else randn(2, 17, k) * 3 + 0.5
    y, scale, zero = dynamic_quantize_linear(x)
    shifted, scale2, zero2 = dynamic_quantize_linear_shifted(x)
    assert shifted.dtype == np.float32 and scale2 == scale and zero2 == zero
    np.testing.assert_array_equal(shifted, y.astype(np.float32) - np.float32(zero))
    b = ints(-128, 127, k, 64, dtype=np.int8)
    b[: 3 * k // 4] = -128                        # large |b|: long chunks, sums beyond 2^24
    zb = np.array(0, np.int8)
    want = int32_matmul(y.reshape(-1, k), b, zero.reshape(()), zb).reshape(2, 17, 64)
    prepared = prepare_matmul_integer(b, zb)
    np.testing.assert_array_equal(prepared(y, zero), want)
    np.testing.assert_array_equal(prepared.variant(shifted=True)(shifted, zero), want)
    as_float = prepared.variant(as_float=True, shifted=True)(shifted, zero)
    assert as_float.dtype == np.float32
    np.testing.assert_array_equal(as_float, want.astype(np.float32))
    if positive and k == 3072:                    # sums beyond 2^24: float32 must round once
        assert np.abs(want).max() > 2 ** 24


@pytest.mark.parametrize("spread", [3, 40, 255])
def test_column_chunks_keep_every_partial_sum_exact(spread):
    k = 3072
    b = np.clip(rng.normal(0, spread, (k, 48)), -128, 127).round().astype(np.float32)
    bounds = column_chunks(b)
    assert bounds[0] == 0 and bounds[-1] == k and all(x < y for x, y in zip(bounds, bounds[1:]))
    for start, stop in zip(bounds, bounds[1:]):
        assert A_BOUND * np.abs(b[start:stop]).sum(axis=0).max() < EXACT_F32 or stop - start == 1
    if spread == 3:
        assert len(bounds) == 2                   # small weights: one BLAS call for all of K
    # the worst A for these chunks: |A - zero point| = 255 with the signs of B
    a = np.where(b[:, :1].T > 0, 255, 0).astype(np.uint8).repeat(4, axis=0)
    bq = (b + 128).astype(np.uint8)               # uint8 weights with zero point 128
    want = int32_matmul(a, bq, None, np.array(128, np.uint8))
    prepared = prepare_matmul_integer(bq, np.array(128, np.uint8))
    assert prepared.bounds == bounds
    np.testing.assert_array_equal(prepared(a), want)
    np.testing.assert_array_equal(prepared.variant(as_float=True)(a), want.astype(np.float32))


def test_attributes_that_would_drive_huge_loops_are_refused():
    """Found by fuzzing: Split num_outputs=2**40 hung at load building a list of sizes, and a
    LayerNormalization axis of -2**27 built a tuple of 2**27 axes (5 GB) on every run."""
    from runtime import ops

    x = np.ones((2, 6), np.float32)
    with pytest.raises(ValueError, match=r"Split num_outputs 1099511627776 must be 1\.\.6"):
        ops.split(x, axis=1, num_outputs=2 ** 40)
    assert [p.shape for p in ops.split(x, axis=1, num_outputs=4)] == [(2, 2), (2, 2), (2, 2), (2, 0)]
    with pytest.raises(ValueError, match=r"LayerNormalization axis -134217728 is outside \[-2, 2\)"):
        ops.layer_normalization(x, np.ones(6, np.float32), axis=-2 ** 27)
