"""runtime.fusion: fused GELU chains give bit-identical results to the unfused graph."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from onnx_models import exported_models, random_feeds
from runtime import onnx as ronnx
from runtime.fusion import GeluErf
from runtime.ops import ERF_BLOCK
from runtime.session import Session


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    return exported_models(tmp_path_factory.mktemp("onnx-models"))


def op_types(sess):
    return [s.node.op_type for s in sess._steps]


@pytest.mark.parametrize("name", ["fp32", "int8", "int8_quint8_pc", "ts17"])
def test_exported_models_fuse_every_gelu_and_match_unfused_bit_for_bit(models, name):
    fused, plain = Session(models[name]), Session(models[name], fuse=False)
    erfs = op_types(plain).count("Erf")
    assert erfs == 2                                  # one GELU per layer of the tiny model
    assert op_types(fused).count("GeluErf") == erfs and "Erf" not in op_types(fused)
    rng = np.random.default_rng(7)
    for batch, length in [(1, 1), (3, 17), (8, 64)]:
        feeds = random_feeds(rng, batch, length)
        np.testing.assert_array_equal(fused.run(None, feeds)[0], plain.run(None, feeds)[0])


def close_to_reference(got, want, x):
    """Within float32 rounding of the graph: our erf and the reference's (math.erf) differ by
    up to 2 ulp of erf, which 1 + erf(u) turns into an absolute error of 2^-23 |x| in y."""
    err = np.abs(got.astype(np.float64) - want)
    assert np.all(err <= 1e-6 * np.abs(want) + 2.0 ** -23 * np.abs(x)), err.max()


def scalar(name, value, dtype=np.float32):
    return numpy_helper.from_array(np.array(value, dtype), name)


# The three orders in which exporters combine x, a = 1 + erf(u) and h = 0.5.
ORDERS = {
    "x*(a*h)": [helper.make_node("Mul", ["h", "a"], ["m"]), helper.make_node("Mul", ["x", "m"], ["y"])],
    "(x*a)*h": [helper.make_node("Mul", ["x", "a"], ["m"]), helper.make_node("Mul", ["m", "h"], ["y"])],
    "(x*h)*a": [helper.make_node("Mul", ["x", "h"], ["m"]), helper.make_node("Mul", ["a", "m"], ["y"])],
}


def gelu_model(order, pre="Div", dtype=np.float32, extra_outputs=()):
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    c = 1.4142135 if pre == "Div" else 0.70710677
    nodes = [helper.make_node(pre, ["x", "c"], ["u"]), helper.make_node("Erf", ["u"], ["e"]),
             helper.make_node("Add", ["one", "e"], ["a"]), *ORDERS[order]]
    inits = [scalar("c", c, dtype), scalar("one", 1.0, dtype), scalar("h", 0.5, dtype)]
    outputs = [helper.make_tensor_value_info(n, elem, None) for n in ("y", *extra_outputs)]
    graph = helper.make_graph(nodes, "gelu", [helper.make_tensor_value_info("x", elem, None)],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("pre", ["Div", "Mul"])
@pytest.mark.parametrize("order", list(ORDERS))
def test_every_gelu_form_is_fused_and_exact(order, pre):
    proto = gelu_model(order, pre)
    model = ronnx.load_bytes(proto.SerializeToString())
    fused, plain = Session(model), Session(model, fuse=False)
    assert op_types(fused) == ["GeluErf"] and fused._steps[0].fn.order == order
    rng = np.random.default_rng(3)
    # more than one erf block, values on both sides of the clip at |u| = 4, and specials
    x = (rng.standard_normal(2 * ERF_BLOCK + 999) * 4).astype(np.float32)
    x[:6] = [0.0, -0.0, 1e-30, -12.0, np.inf, -np.inf]
    with np.errstate(invalid="ignore"):                  # -inf * 0 = nan, on both paths
        got, = fused.run(None, {"x": x})
        np.testing.assert_array_equal(got, plain.run(None, {"x": x})[0])
    x[np.isinf(x)] = 0                                   # (inf - inf in the tolerance)
    want, = ReferenceEvaluator(proto).run(None, {"x": x})
    close_to_reference(fused.run(None, {"x": x})[0], want, x)
    for shape in [(0,), (3, 0, 2), (7, 5, 3)]:           # empty and multi-dimensional
        x = rng.standard_normal(shape).astype(np.float32)
        np.testing.assert_array_equal(fused.run(None, {"x": x})[0], plain.run(None, {"x": x})[0])


def test_gelu_writes_into_a_dying_input_but_never_into_a_feed():
    proto = gelu_model("x*(a*h)")
    proto.graph.node.insert(0, helper.make_node("Neg", ["x0"], ["x"]))
    proto.graph.input[0].name = "x0"
    sess = Session(ronnx.load_bytes(proto.SerializeToString()))
    assert sess._steps[1].inplace                        # -x dies at the fused GELU
    x0 = np.random.default_rng(4).standard_normal((5, 9)).astype(np.float32)
    keep = x0.copy()
    got, = sess.run(None, {"x0": x0})
    np.testing.assert_array_equal(x0, keep)
    np.testing.assert_array_equal(got, GeluErf("Div", np.float32(1.4142135), np.float32(1),
                                               np.float32(0.5), "x*(a*h)").unfused(-keep))


def test_float64_graph_runs_the_nodes_one_by_one():
    proto = gelu_model("(x*a)*h", dtype=np.float64)
    sess = Session(ronnx.load_bytes(proto.SerializeToString()))
    x = np.linspace(-6, 6, 101)
    got, = sess.run(None, {"x": x})
    want, = ReferenceEvaluator(proto).run(None, {"x": x})
    assert got.dtype == np.float64
    close_to_reference(got, want, x)


def test_chains_whose_values_are_needed_elsewhere_are_not_fused():
    proto = gelu_model("x*(a*h)", extra_outputs=("e",))  # erf's output is also a graph output
    sess = Session(ronnx.load_bytes(proto.SerializeToString()))
    assert "GeluErf" not in op_types(sess) and "Erf" in op_types(sess)
    x = np.linspace(-3, 3, 13, dtype=np.float32)
    got = sess.run(None, {"x": x})
    want = ReferenceEvaluator(proto).run(None, {"x": x})
    close_to_reference(got[0], want[0], x)
    np.testing.assert_allclose(got[1], want[1], rtol=0, atol=2e-7)


def test_a_different_chain_is_left_alone():
    proto = gelu_model("x*(a*h)")
    proto.graph.node[2].op_type = "Sub"                  # 1 - erf(u): not GELU
    sess = Session(ronnx.load_bytes(proto.SerializeToString()))
    assert "GeluErf" not in op_types(sess)
    x = np.linspace(-3, 3, 13, dtype=np.float32)
    close_to_reference(sess.run(None, {"x": x})[0], ReferenceEvaluator(proto).run(None, {"x": x})[0], x)
