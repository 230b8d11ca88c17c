"""Read an ONNX model file into `runtime.graph.Model` with the pure-Python protobuf decoder.

    model = runtime.onnx.load("bundle/model.onnx")
    model.graph.nodes[0].op_type, model.graph.initializers["w"]   # numpy arrays

Tensors stored in `raw_data` (little-endian) or in the typed fields (float_data, int32_data,
int64_data, double_data, uint64_data, string_data; packed or not) become numpy arrays of the
declared shape. External data (`data_location = EXTERNAL`) is read relative to the model's
folder; a location that is absolute, climbs out with `..`, or resolves (through symlinks) to
a file outside that folder is refused.

Everything malformed raises `ModelError` (a ValueError) with a message saying where.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

import numpy as np

from .graph import DTYPE_NAMES, DTYPES, Graph, Model, Node, ValueInfo
from .protobuf import ModelError, parse

__all__ = ["ModelError", "load", "load_bytes"]

# ---------------------------------------------------------------- schemas (onnx.proto)
ENTRY = {1: ("key", "string", False), 2: ("value", "string", False)}
DIMENSION = {1: ("dim_value", "int", False), 2: ("dim_param", "string", False)}
SHAPE = {1: ("dim", DIMENSION, True)}
TENSOR_TYPE = {1: ("elem_type", "int", False), 2: ("shape", SHAPE, False)}
TYPE = {1: ("tensor_type", TENSOR_TYPE, False)}
VALUE_INFO = {1: ("name", "string", False), 2: ("type", TYPE, False)}
TENSOR = {
    1: ("dims", "int", True), 2: ("data_type", "int", False), 4: ("float_data", "float", True),
    5: ("int32_data", "int", True), 6: ("string_data", "bytes", True),
    7: ("int64_data", "int", True), 8: ("name", "string", False), 9: ("raw_data", "bytes", False),
    10: ("double_data", "double", True), 11: ("uint64_data", "uint", True),
    13: ("external_data", ENTRY, True), 14: ("data_location", "int", False),
    3: ("segment", {}, False),
}
SPARSE_TENSOR = {1: ("values", TENSOR, False)}
ATTRIBUTE = {
    1: ("name", "string", False), 20: ("type", "int", False), 2: ("f", "float", False),
    3: ("i", "int", False), 4: ("s", "bytes", False), 5: ("t", TENSOR, False),
    7: ("floats", "float", True), 8: ("ints", "int", True), 9: ("strings", "bytes", True),
    10: ("tensors", TENSOR, True), 21: ("ref_attr_name", "string", False),
    22: ("sparse_tensor", SPARSE_TENSOR, False), 23: ("sparse_tensors", SPARSE_TENSOR, True),
}
NODE = {1: ("input", "string", True), 2: ("output", "string", True), 3: ("name", "string", False),
        4: ("op_type", "string", False), 7: ("domain", "string", False),
        5: ("attribute", ATTRIBUTE, True)}
GRAPH = {1: ("node", NODE, True), 2: ("name", "string", False), 5: ("initializer", TENSOR, True),
         15: ("sparse_initializer", SPARSE_TENSOR, True), 11: ("input", VALUE_INFO, True),
         12: ("output", VALUE_INFO, True), 13: ("value_info", VALUE_INFO, True)}
ATTRIBUTE[6] = ("g", GRAPH, False)                     # graphs nest through attributes
ATTRIBUTE[11] = ("graphs", GRAPH, True)
OPSET = {1: ("domain", "string", False), 2: ("version", "int", False)}
MODEL = {1: ("ir_version", "int", False), 8: ("opset_import", OPSET, True),
         2: ("producer_name", "string", False), 3: ("producer_version", "string", False),
         7: ("graph", GRAPH, False), 14: ("metadata_props", ENTRY, True)}

# attribute type -> field holding its value (AttributeProto.AttributeType)
ATTRIBUTE_FIELDS = {1: "f", 2: "i", 3: "s", 4: "t", 5: "g", 6: "floats", 7: "ints",
                    8: "strings", 9: "tensors", 10: "graphs", 11: "sparse_tensor",
                    12: "sparse_tensors"}
TYPED_FIELDS = {1: "float_data", 14: "float_data", 11: "double_data", 15: "double_data",
                7: "int64_data", 12: "uint64_data", 13: "uint64_data", 8: "string_data"}
# all other supported types (int32, int16, int8, uint16, uint8, bool, float16) use int32_data


# ---------------------------------------------------------------- tensors
def _check_inside(folder: str, location: str, tensor: str) -> str:
    """The path of an external-data file, refusing anything that leaves the model's folder."""
    if not location or "\x00" in location:
        raise ModelError(f"tensor {tensor!r}: empty or invalid external data location")
    parts = location.replace("\\", "/").split("/")
    if os.path.isabs(location) or location.startswith(("/", "\\")) or ":" in parts[0] \
            or ".." in parts:
        raise ModelError(f"tensor {tensor!r}: external data location {location!r} escapes the "
                         "model's folder")
    root = os.path.realpath(folder)
    path = os.path.realpath(os.path.join(root, *parts))
    try:
        inside = os.path.commonpath([root, path]) == root
    except ValueError:      # Windows: a link to another drive ("Paths don't have the same drive")
        inside = False
    if not inside:
        raise ModelError(f"tensor {tensor!r}: external data location {location!r} resolves "
                         "outside the model's folder")
    if not os.path.isfile(path):
        raise ModelError(f"tensor {tensor!r}: external data file {location!r} not found")
    return path


def _read_external(proto: dict, folder: Optional[str], nbytes: int, name: str) -> bytes:
    if folder is None:
        raise ModelError(f"tensor {name!r} uses external data but the model was not loaded from a file")
    info = {e.get("key", ""): e.get("value", "") for e in proto.get("external_data", [])}
    path = _check_inside(folder, info.get("location", ""), name)
    try:
        offset = int(info.get("offset", "0") or 0)
        length = int(info["length"]) if info.get("length") else None
    except ValueError:
        raise ModelError(f"tensor {name!r}: bad external data offset/length {info}") from None
    size = os.path.getsize(path)
    if offset < 0 or offset > size or (length is not None and (length < 0 or offset + length > size)):
        raise ModelError(f"tensor {name!r}: external data range offset={offset} length={length} "
                         f"outside {info.get('location')!r} ({size} bytes)")
    length = size - offset if length is None else length
    if length != nbytes:
        raise ModelError(f"tensor {name!r}: external data holds {length} bytes, shape and type "
                         f"need {nbytes}")
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(length)
    if len(data) != length:
        raise ModelError(f"tensor {name!r}: external data file ended early")
    return data


def tensor_to_array(proto: dict, folder: Optional[str] = None) -> np.ndarray:
    """A decoded TensorProto dict -> numpy array of its declared dtype and shape."""
    name = proto.get("name", "")
    code = proto.get("data_type", 0)
    if code not in DTYPES:
        raise ModelError(f"tensor {name!r}: unsupported data type "
                         f"{DTYPE_NAMES.get(code, code)}")
    dtype = DTYPES[code]
    dims = [int(d) for d in proto.get("dims", ())]
    if any(d < 0 for d in dims):
        raise ModelError(f"tensor {name!r}: negative dimension in {dims}")
    if len(dims) > 64:                                  # numpy's limit (NPY_MAXDIMS)
        raise ModelError(f"tensor {name!r}: {len(dims)} dimensions (at most 64)")
    count = 1
    for d in dims:
        count *= d                                      # Python int: no overflow
    span = dtype.itemsize
    for d in dims:
        span *= max(d, 1)
    if span >= 2 ** 63:  # numpy refuses such a shape even with no elements
        raise ModelError(f"tensor {name!r}: shape {dims} is too large")
    if proto.get("data_location", 0) == 1:
        if code == 8:
            raise ModelError(f"tensor {name!r}: external string data is not supported")
        raw = _read_external(proto, folder, count * dtype.itemsize, name)
        return _from_raw(raw, dtype, dims, name, code)
    if "raw_data" in proto:
        return _from_raw(proto["raw_data"], dtype, dims, name, code)
    field = TYPED_FIELDS.get(code, "int32_data")
    values = proto.get(field)
    if values is None:
        values = [] if code == 8 else np.zeros(0, dtype)
    per_item = 2 if code in (14, 15) else 1
    if len(values) != count * per_item:
        raise ModelError(f"tensor {name!r}: {len(values)} values in {field}, shape {dims} needs "
                         f"{count * per_item}")
    if code == 8:                                       # like onnx: str when valid UTF-8
        return np.array([_text(v) for v in values] + [None], dtype=object)[:-1].reshape(dims)
    if code in (14, 15):
        return np.asarray(values).view(dtype).reshape(dims).copy()
    if code == 10:                                      # float16 bits stored in int32_data
        return np.asarray(values).astype(np.uint16).view(np.float16).reshape(dims)
    return np.asarray(values).astype(dtype).reshape(dims)


def _from_raw(raw: bytes, dtype: np.dtype, dims: List[int], name: str, code: int) -> np.ndarray:
    count = 1
    for d in dims:
        count *= d
    if code == 8:
        raise ModelError(f"tensor {name!r}: strings cannot be stored in raw_data")
    if len(raw) != count * dtype.itemsize:
        raise ModelError(f"tensor {name!r}: raw_data has {len(raw)} bytes, shape {dims} of "
                         f"{DTYPE_NAMES[code]} needs {count * dtype.itemsize}")
    # copy: aligned, writeable, independent of the file buffer
    return np.frombuffer(raw, dtype.newbyteorder("<"), count).astype(dtype).reshape(dims)


# ---------------------------------------------------------------- graph structures
def _attribute(proto: dict, folder: Optional[str], where: str) -> Any:
    kind = proto.get("type", 0)
    if kind == 0:                                       # old writers leave the type unset
        present = [k for k in ATTRIBUTE_FIELDS.values() if k in proto]
        if len(present) != 1:
            raise ModelError(f"{where}: attribute {proto.get('name')!r} has no type")
        field = present[0]
    elif kind in ATTRIBUTE_FIELDS:
        field = ATTRIBUTE_FIELDS[kind]
    else:
        raise ModelError(f"{where}: attribute {proto.get('name')!r} has unsupported type {kind}")
    if field in ("sparse_tensor", "sparse_tensors"):
        raise ModelError(f"{where}: sparse tensor attributes are not supported")
    value = proto.get(field)
    if field == "f":
        return float(value or 0.0)
    if field == "i":
        return int(value or 0)
    if field == "s":
        return _text(value or b"")
    if field == "t":
        return tensor_to_array(value or {}, folder)
    if field == "g":
        return _graph(value or {}, folder, where + "/" + str(proto.get("name")))
    if field == "floats":
        return [float(v) for v in (value if value is not None else ())]
    if field == "ints":
        return [int(v) for v in (value if value is not None else ())]
    if field == "strings":
        return [_text(v) for v in (value or ())]
    if field == "tensors":
        return [tensor_to_array(t, folder) for t in (value or ())]
    return [_graph(g, folder, where) for g in (value or ())]


def _text(raw: bytes):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _value_info(proto: dict) -> ValueInfo:
    tensor = proto.get("type", {}).get("tensor_type", {})
    shape = None
    if "shape" in tensor:
        shape = [d["dim_value"] if "dim_value" in d else d.get("dim_param")
                 for d in tensor["shape"].get("dim", [])]
    return ValueInfo(proto.get("name", ""), int(tensor.get("elem_type", 0)), shape)


def _graph(proto: dict, folder: Optional[str], where: str = "graph") -> Graph:
    if proto.get("sparse_initializer"):
        raise ModelError(f"{where}: sparse initializers are not supported")
    initializers: Dict[str, np.ndarray] = {}
    for i, t in enumerate(proto.get("initializer", [])):
        if not t.get("name"):
            raise ModelError(f"{where}: initializer {i} has no name")
        initializers[t["name"]] = tensor_to_array(t, folder)
    nodes = []
    for i, n in enumerate(proto.get("node", [])):
        if not n.get("op_type"):
            raise ModelError(f"{where}: node {i} has no op_type")
        label = f"{where}: node {i} ({n['op_type']} {n.get('name', '')!r})"
        attrs = {}
        for a in n.get("attribute", []):
            if not a.get("name"):
                raise ModelError(f"{label}: attribute without a name")
            attrs[a["name"]] = _attribute(a, folder, label)
        nodes.append(Node(n["op_type"], list(n.get("input", [])), list(n.get("output", [])),
                          attrs, n.get("name", ""), n.get("domain", "")))
    return Graph(nodes, initializers, [_value_info(v) for v in proto.get("input", [])],
                 [_value_info(v) for v in proto.get("output", [])], proto.get("name", ""),
                 [_value_info(v) for v in proto.get("value_info", [])])


def load_bytes(data: bytes, folder: Optional[str] = None) -> Model:
    """Decode a serialized ModelProto; `folder` is where external data may be read from."""
    if not data:
        raise ModelError("the file is empty (0 bytes), not an ONNX model")
    try:
        proto = parse(bytes(data), MODEL)
    except ModelError as e:
        raise ModelError(f"not a valid ONNX model (corrupt or truncated): {e}") from None
    if "graph" not in proto:
        raise ModelError("model has no graph")
    opsets = {}
    for entry in proto.get("opset_import", []):
        opsets[entry.get("domain", "")] = int(entry.get("version", 0))
    metadata = {e.get("key", ""): e.get("value", "") for e in proto.get("metadata_props", [])}
    return Model(_graph(proto["graph"], folder), opsets, int(proto.get("ir_version", 0)),
                 proto.get("producer_name", ""), proto.get("producer_version", ""), metadata)


def load(path) -> Model:
    """Read and decode an .onnx file (external data relative to its folder)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    return load_bytes(data, os.path.dirname(os.path.abspath(path)))
