"""runtime.onnx / runtime.protobuf: the pure-Python ONNX reader against onnx.load."""
from __future__ import annotations

import os
import re
import struct

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from onnx_models import exported_models
from runtime import onnx as ronnx
from runtime.graph import Graph
from runtime.onnx import ModelError
from runtime.protobuf import MAX_DEPTH, decode_packed_varints, parse, read_varint


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    return exported_models(tmp_path_factory.mktemp("onnx-models"))


# ---------------------------------------------------------------- comparison with onnx.load
def assert_same_value(mine, proto_value, where):
    if isinstance(proto_value, TensorProto):
        ref = numpy_helper.to_array(proto_value)
        assert isinstance(mine, np.ndarray), where
        assert mine.dtype == ref.dtype and mine.shape == ref.shape, where
        if ref.dtype == object:
            assert mine.tolist() == ref.tolist(), where
        else:
            assert mine.tobytes() == ref.tobytes(), where
    elif isinstance(proto_value, onnx.GraphProto):
        assert_same_graph(mine, proto_value, where)
    elif isinstance(proto_value, bytes):
        assert mine == proto_value.decode(), where
    elif isinstance(proto_value, list):
        assert len(mine) == len(proto_value), where
        for i, (a, b) in enumerate(zip(mine, proto_value)):
            assert_same_value(a, b, f"{where}[{i}]")
    elif isinstance(proto_value, float):
        assert mine == proto_value or (np.isnan(mine) and np.isnan(proto_value)), where
    else:
        assert mine == proto_value, where


def assert_same_graph(graph: Graph, ref: onnx.GraphProto, where="graph"):
    assert graph.name == ref.name
    assert len(graph.nodes) == len(ref.node), where
    for i, (node, rnode) in enumerate(zip(graph.nodes, ref.node)):
        label = f"{where}.node[{i}] {rnode.op_type}"
        assert (node.op_type, node.domain, node.name) == (rnode.op_type, rnode.domain, rnode.name), label
        assert node.inputs == list(rnode.input) and node.outputs == list(rnode.output), label
        ref_attrs = {a.name: helper.get_attribute_value(a) for a in rnode.attribute}
        assert set(node.attrs) == set(ref_attrs), label
        for name, value in ref_attrs.items():
            assert_same_value(node.attrs[name], value, f"{label}.{name}")
    assert list(graph.initializers) == [t.name for t in ref.initializer], where
    for t in ref.initializer:
        assert_same_value(graph.initializers[t.name], t, f"{where}.initializer {t.name}")
    for mine, theirs in ((graph.inputs, ref.input), (graph.outputs, ref.output),
                         (graph.value_info, ref.value_info)):
        assert [v.name for v in mine] == [v.name for v in theirs]
        for v, r in zip(mine, theirs):
            assert v.elem_type == r.type.tensor_type.elem_type
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param if d.HasField("dim_param") else None)
                    for d in r.type.tensor_type.shape.dim]
            assert v.shape == (dims if r.type.tensor_type.HasField("shape") else None)


def assert_same_model(path):
    ref = onnx.load(str(path))
    model = ronnx.load(path)
    assert model.ir_version == ref.ir_version
    assert model.producer_name == ref.producer_name
    assert model.opsets == {o.domain: o.version for o in ref.opset_import}
    assert_same_graph(model.graph, ref.graph)
    return model


@pytest.mark.parametrize("name", ["fp32", "int8", "int8_quint8_pc", "ts17"])
def test_exported_graphs_read_like_onnx_load(models, name):
    model = assert_same_model(models[name])
    assert model.graph.nodes and model.graph.initializers


def save(model_proto, path):
    onnx.save_model(model_proto, str(path))
    return path


def one_node_model(node, inputs, outputs, initializers=(), opset=18):
    graph = helper.make_graph([node], "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


TYPED_CASES = [
    (TensorProto.FLOAT, np.float32), (TensorProto.DOUBLE, np.float64),
    (TensorProto.INT8, np.int8), (TensorProto.UINT8, np.uint8), (TensorProto.INT16, np.int16),
    (TensorProto.UINT16, np.uint16), (TensorProto.INT32, np.int32), (TensorProto.INT64, np.int64),
    (TensorProto.UINT32, np.uint32), (TensorProto.UINT64, np.uint64), (TensorProto.BOOL, np.bool_),
    (TensorProto.FLOAT16, np.float16), (TensorProto.COMPLEX64, np.complex64),
]


@pytest.mark.parametrize("raw", [False, True])
def test_tensors_in_typed_fields_and_raw_data(tmp_path, raw):
    rng = np.random.default_rng(0)
    tensors = []
    for code, dtype in TYPED_CASES:
        shape = (2, 3)
        if dtype == np.bool_:
            values = rng.integers(0, 2, shape).astype(bool)
        elif np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            values = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
        elif dtype == np.complex64:
            values = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
        else:
            values = rng.standard_normal(shape).astype(dtype)
        if raw:
            tensors.append(numpy_helper.from_array(values, f"t{code}"))
        else:
            tensors.append(helper.make_tensor(f"t{code}", code, shape, values.flatten().tolist()
                                              if dtype != np.float16 else values.flatten()))
    if raw:
        tensors.append(numpy_helper.from_array(np.array(2.5, np.float32), "scalar"))
        tensors.append(numpy_helper.from_array(np.zeros((0, 3), np.int64), "empty"))
    else:
        tensors.append(helper.make_tensor("scalar", TensorProto.FLOAT, [], [2.5]))
        tensors.append(helper.make_tensor("empty", TensorProto.INT64, [0, 3], []))
    if not raw:
        tensors.append(helper.make_tensor("strings", TensorProto.STRING, [2], [b"ab", "ü".encode()]))
    node = helper.make_node("Identity", ["x"], ["y"])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    path = save(one_node_model(node, [x], [y], tensors), tmp_path / "typed.onnx")
    model = assert_same_model(path)
    assert model.graph.initializers["scalar"].shape == () and model.graph.initializers["scalar"] == 2.5


def test_every_attribute_kind(tmp_path):
    then_graph = helper.make_graph([helper.make_node("Constant", [], ["a"], value_float=1.0)], "then",
                                   [], [helper.make_tensor_value_info("a", TensorProto.FLOAT, [])])
    else_graph = helper.make_graph([helper.make_node("Constant", [], ["b"], value_ints=[1, -2])], "else",
                                   [], [helper.make_tensor_value_info("b", TensorProto.INT64, [2])])
    tensor = numpy_helper.from_array(np.arange(6, dtype=np.int64).reshape(2, 3) - 3, "t")
    node = helper.make_node(
        "If", ["c"], ["y"], then_branch=then_graph, else_branch=else_graph, f=-1.5e-3, i=-(2 ** 40),
        s="héllo", t=tensor, floats=[0.5, -2.0, float("inf")], ints=[-1, 0, 2 ** 62],
        strings=["a", "bc"], tensors=[tensor, numpy_helper.from_array(np.float32(3.0), "u")],
        graphs=[then_graph, else_graph])
    c = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    path = save(one_node_model(node, [c], [y]), tmp_path / "attrs.onnx")
    model = assert_same_model(path)
    attrs = model.graph.nodes[0].attrs
    assert attrs["i"] == -(2 ** 40) and attrs["ints"] == [-1, 0, 2 ** 62] and attrs["s"] == "héllo"
    assert isinstance(attrs["then_branch"], Graph)


def test_int64_attribute_extremes_read_back_signed(tmp_path):
    """-2^63 is written as the 10-byte varint 2^63: it must come back negative, not 2^63."""
    node = helper.make_node("Identity", ["x"], ["y"], lowest=-(2 ** 63), highest=2 ** 63 - 1, minus_one=-1)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    model = assert_same_model(save(one_node_model(node, [x], [y]), tmp_path / "extremes.onnx"))
    attrs = model.graph.nodes[0].attrs
    assert (attrs["lowest"], attrs["highest"], attrs["minus_one"]) == (-(2 ** 63), 2 ** 63 - 1, -1)


# ---------------------------------------------------------------- hand-encoded wire format
def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def length_delimited(number: int, payload: bytes) -> bytes:
    return key(number, 2) + varint(len(payload)) + payload


def model_with_initializer(tensor: bytes) -> bytes:
    graph = length_delimited(5, tensor) + length_delimited(2, b"g")
    opset = length_delimited(8, key(2, 0) + varint(18))
    return key(1, 0) + varint(8) + opset + length_delimited(7, graph)


def test_unpacked_and_mixed_repeated_fields():
    # int64_data as three unpacked values then a packed run, dims unpacked, floats as fixed32
    tensor = (key(1, 0) + varint(5) + key(2, 0) + varint(TensorProto.INT64) + length_delimited(8, b"t")
              + key(7, 0) + varint(-1) + key(7, 0) + varint(2 ** 40) + key(7, 0) + varint(0)
              + length_delimited(7, varint(7) + varint(-(2 ** 63))))
    model = ronnx.load_bytes(model_with_initializer(tensor))
    assert model.graph.initializers["t"].tolist() == [-1, 2 ** 40, 0, 7, -(2 ** 63)]
    floats = (key(1, 0) + varint(2) + key(2, 0) + varint(TensorProto.FLOAT) + length_delimited(8, b"f")
              + key(4, 5) + struct.pack("<f", 1.5) + length_delimited(4, struct.pack("<f", -2.0)))
    model = ronnx.load_bytes(model_with_initializer(floats))
    assert model.graph.initializers["f"].tolist() == [1.5, -2.0]


def test_packed_varints_match_the_scalar_decoder():
    values = [0, 1, 127, 128, 300, 2 ** 31, 2 ** 63 - 1, (1 << 64) - 1]
    data = b"".join(varint(v) for v in values)
    assert decode_packed_varints(data, 0, len(data)).tolist() == values
    pos, decoded = 0, []
    while pos < len(data):
        v, pos = read_varint(data, pos, len(data))
        decoded.append(v)
    assert decoded == values


@pytest.mark.parametrize("data, message", [
    (varint(5) + b"\x80", "truncated packed varint ending at byte 2"),
    (b"\x80" * 10 + b"\x01", "varint longer than 10 bytes in packed field at byte 0"),
], ids=["cut short", "11 bytes"])
def test_malformed_packed_varints_are_refused(data, message):
    with pytest.raises(ModelError, match=message):
        decode_packed_varints(data, 0, len(data))


INNER = {2: ("name", "string", False), 3: ("value", "float", False)}
OUTER = {1: ("inner", INNER, False), 3: ("tail", "string", False)}


@pytest.mark.parametrize("inner, message", [
    (key(2, 2) + varint(5) + b"ab", "field 2 at byte 2: length 5 runs past the end of its message "
                                    "(2 bytes left)"),
    (key(3, 5) + b"\x00\x00\x80", "field 3 at byte 2: truncated fixed32 value"),
], ids=["string", "fixed32"])
def test_fields_may_not_run_past_their_enclosing_message(inner, message):
    """The bytes after the nested message (a valid 'tail' field) are not its to read."""
    data = length_delimited(1, inner) + length_delimited(3, b"xyz")
    with pytest.raises(ModelError, match=re.escape(message)):
        parse(data, OUTER)


def test_nesting_limit_is_max_depth_exactly():
    schema = {}
    schema[1] = ("child", schema, False)

    def nested(levels):
        data = b""
        for _ in range(levels):
            data = length_delimited(1, data)
        return data

    message = parse(nested(MAX_DEPTH), schema)
    for _ in range(MAX_DEPTH):
        message = message["child"]
    assert message == {}
    deep = nested(MAX_DEPTH + 1)               # the innermost (empty) message starts at its end
    with pytest.raises(ModelError, match=f"messages nested deeper than {MAX_DEPTH} at byte {len(deep)}$"):
        parse(deep, schema)


def tensor_bytes(dims, code=TensorProto.FLOAT, raw=b"", name=b"t"):
    return (b"".join(key(1, 0) + varint(d) for d in dims) + key(2, 0) + varint(code)
            + length_delimited(8, name) + length_delimited(9, raw))


MALFORMED = {
    "truncated varint": (key(1, 0) + b"\x80\x80", "truncated varint"),
    "varint too long": (key(1, 0) + b"\xff" * 11 + b"\x01", "longer than 10 bytes"),
    "field past the end": (key(7, 2) + varint(1000) + b"\x00" * 10, "runs past the end"),
    "wrong wire type": (key(7, 0) + varint(3), "wire type 0, expected 2"),
    "group wire type": (key(7, 3), "unsupported wire type 3"),
    "field number 0": (key(0, 0) + varint(1), "field number 0"),
    "fixed32 truncated": (key(99, 5) + b"\x00\x00", "truncated fixed32"),
    "raw_data too short": (model_with_initializer(tensor_bytes([2, 3], raw=b"\x00" * 20)),
                           "raw_data has 20 bytes"),
    "absurd dims": (model_with_initializer(tensor_bytes([2 ** 40, 2 ** 40], raw=b"\x00" * 8)),
                    r"shape \[1099511627776, 1099511627776\] is too large"),
    "large dims, raw_data too short": (model_with_initializer(tensor_bytes([2 ** 20, 2 ** 20], raw=b"\x00" * 8)),
                                       "raw_data has 8 bytes"),
    "absurd dims, no elements": (model_with_initializer(tensor_bytes([0, 2 ** 62, 2 ** 62])),
                                 "is too large"),
    "absurd dims, no elements, typed": (model_with_initializer(
        key(1, 0) + varint(0) + key(1, 0) + varint(2 ** 62) + key(2, 0) + varint(TensorProto.INT64)
        + length_delimited(8, b"t")), "is too large"),
    "negative dims": (model_with_initializer(tensor_bytes([-4], raw=b"")), "negative dimension"),
    "raw_data too long": (model_with_initializer(tensor_bytes([2], raw=b"\x00" * 12)),
                          re.escape("tensor 't': raw_data has 12 bytes, shape [2] of float needs 8")),
    "typed values too many": (model_with_initializer(
        key(1, 0) + varint(2) + key(2, 0) + varint(TensorProto.FLOAT) + length_delimited(8, b"t")
        + length_delimited(4, struct.pack("<3f", 1.0, 2.0, 3.0))),
        re.escape("tensor 't': 3 values in float_data, shape [2] needs 2")),
    "typed count mismatch": (model_with_initializer(
        key(1, 0) + varint(3) + key(2, 0) + varint(TensorProto.INT64) + length_delimited(8, b"t")
        + length_delimited(7, varint(1))), "1 values in int64_data"),
    "bad data type": (model_with_initializer(tensor_bytes([1], code=99, raw=b"\x00")),
                      "unsupported data type"),
    "invalid utf-8 name": (model_with_initializer(tensor_bytes([1], raw=b"\x00" * 4, name=b"\xff\xfe")),
                           "invalid UTF-8"),
    "no graph": (key(1, 0) + varint(8), "no graph"),
    "packed floats odd length": (model_with_initializer(
        key(2, 0) + varint(1) + length_delimited(8, b"t") + length_delimited(4, b"\x00" * 5)),
        "not a multiple of 4"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_input_raises_model_error(case):
    data, message = MALFORMED[case]
    with pytest.raises(ModelError, match=message):
        ronnx.load_bytes(data)


def test_a_file_that_is_not_protobuf_says_so_before_the_wire_detail():
    """'field 10 at byte 0: unsupported wire type 7' alone spoke protobuf to someone holding a
    damaged model.onnx; an empty file said 'model has no graph'."""
    for case in ("truncated varint", "group wire type", "field past the end"):
        with pytest.raises(ModelError, match=r"^not a valid ONNX model \(corrupt or truncated\): "):
            ronnx.load_bytes(MALFORMED[case][0])
    with pytest.raises(ModelError, match=r"^the file is empty \(0 bytes\), not an ONNX model$"):
        ronnx.load_bytes(b"")


def test_deep_nesting_is_refused():
    graph = b""
    for _ in range(200):                      # graph -> node -> attribute -> graph -> ...
        attribute = length_delimited(1, b"g") + key(20, 0) + varint(5) + length_delimited(6, graph)
        node = length_delimited(4, b"If") + length_delimited(5, attribute)
        graph = length_delimited(1, node)
    with pytest.raises(ModelError, match="nested deeper"):
        ronnx.load_bytes(length_delimited(7, graph))


def test_model_error_is_a_value_error():
    assert issubclass(ModelError, ValueError)


# ---------------------------------------------------------------- external data
def external_model(tmp_path, location="weights.bin"):
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.arange(4, dtype=np.int64)
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    proto = one_node_model(node, [x], [y], [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    folder = tmp_path / "bundle"
    folder.mkdir()
    onnx.save_model(proto, str(folder / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location=location, size_threshold=0)
    return folder / "model.onnx", w, b


def test_external_data_loads_relative_to_the_model(tmp_path):
    path, w, b = external_model(tmp_path)
    model = assert_same_model(path)                   # onnx.load reads the external data too
    np.testing.assert_array_equal(model.graph.initializers["w"], w)
    np.testing.assert_array_equal(model.graph.initializers["b"], b)


def rewrite_location(path, location):
    proto = onnx.load(str(path), load_external_data=False)
    for t in proto.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save_model(proto, str(path))


@pytest.mark.parametrize("location", ["../outside.bin", "sub/../../outside.bin", "/etc/passwd",
                                      "..\\outside.bin", ""])
def test_external_data_may_not_escape_the_folder(tmp_path, location):
    path, _, _ = external_model(tmp_path)
    (tmp_path / "outside.bin").write_bytes((path.parent / "weights.bin").read_bytes())
    rewrite_location(path, location)
    with pytest.raises(ModelError, match="escapes|invalid"):
        ronnx.load(path)


def test_external_data_symlink_out_of_the_folder_is_refused(tmp_path):
    path, _, _ = external_model(tmp_path)
    outside = tmp_path / "outside.bin"
    os.replace(path.parent / "weights.bin", outside)
    os.symlink(outside, path.parent / "weights.bin")
    with pytest.raises(ModelError, match="outside the model's folder"):
        ronnx.load(path)


def test_external_data_linked_to_another_drive_is_refused_like_any_outside_file(tmp_path, monkeypatch):
    """On Windows os.path.commonpath raises ValueError for paths on two drives (a junction to D:),
    which surfaced as "Paths don't have the same drive"."""
    path, _, _ = external_model(tmp_path)

    def two_drives(paths):
        raise ValueError("Paths don't have the same drive")

    monkeypatch.setattr(ronnx.os.path, "commonpath", two_drives)
    with pytest.raises(ModelError, match="resolves outside the model's folder"):
        ronnx.load(path)


def test_external_data_symlink_inside_the_folder_is_fine(tmp_path):
    path, w, _ = external_model(tmp_path)
    os.replace(path.parent / "weights.bin", path.parent / "real.bin")
    os.symlink("real.bin", path.parent / "weights.bin")
    np.testing.assert_array_equal(ronnx.load(path).graph.initializers["w"], w)


def test_external_data_missing_file_and_bad_range(tmp_path):
    path, _, _ = external_model(tmp_path)
    data = (path.parent / "weights.bin").read_bytes()
    (path.parent / "weights.bin").write_bytes(data[:10])
    with pytest.raises(ModelError, match="outside"):
        ronnx.load(path)
    os.remove(path.parent / "weights.bin")
    with pytest.raises(ModelError, match="not found"):
        ronnx.load(path)


def test_external_data_needs_a_file(tmp_path):
    path, _, _ = external_model(tmp_path)
    with pytest.raises(ModelError, match="not loaded from a file"):
        ronnx.load_bytes(path.read_bytes())


# ---------------------------------------------------------------- property tests
@pytest.fixture(scope="module")
def model_bytes(models):
    return models["int8"].read_bytes()


def small_structured_model() -> bytes:
    """A graph that is mostly structure (nodes, attributes, typed tensors), few weight bytes."""
    nodes = [helper.make_node("Unsqueeze", ["x", "axes"], ["u"]),
             helper.make_node("Transpose", ["u"], ["t"], perm=[1, 0, 2]),
             helper.make_node("Gemm", ["a", "w"], ["g"], alpha=0.5, transB=1),
             helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.ones((2, 2), np.float32))),
             helper.make_node("Cast", ["c"], ["y"], to=TensorProto.INT64)]
    init = [helper.make_tensor("axes", TensorProto.INT64, [1], [0]),
            helper.make_tensor("w", TensorProto.FLOAT, [2, 2], [1.0, 2.0, 3.0, 4.0])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, [2, "n"]),
                                           helper.make_tensor_value_info("a", 1, [2, 2])],
                              [helper.make_tensor_value_info("y", 7, [2, 2])], init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


def load_or_model_error(data: bytes):
    try:
        ronnx.load_bytes(data)
    except ModelError:
        pass


MUTATION = settings(max_examples=60, deadline=2000, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@MUTATION
@given(data=st.data())
def test_random_mutations_raise_only_model_error(model_bytes, data):
    raw = bytearray(model_bytes)
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    load_or_model_error(bytes(raw))


@MUTATION
@given(cut=st.integers(0, 10 ** 9))
def test_truncations_raise_only_model_error(model_bytes, cut):
    load_or_model_error(model_bytes[:cut % len(model_bytes)])


@settings(max_examples=300, deadline=1000, derandomize=True)
@given(data=st.data())
def test_mutations_of_a_structure_dense_model(data):
    raw = bytearray(small_structured_model())
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["set", "insert", "delete"]))
        pos = data.draw(st.integers(0, len(raw) - 1))
        if action == "set":
            raw[pos] = data.draw(st.integers(0, 255))
        elif action == "insert":
            raw[pos:pos] = bytes([data.draw(st.integers(0, 255))])
        elif len(raw) > 1:
            del raw[pos]
    load_or_model_error(bytes(raw))
