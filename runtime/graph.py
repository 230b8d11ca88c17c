"""The in-memory model: plain dataclasses filled by `runtime.onnx`, read by `runtime.session`.

Tensors are numpy arrays; attributes are Python values (int, float, bytes, list, ndarray,
Graph). Nothing here depends on the protobuf encoding.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

# ONNX TensorProto.DataType -> numpy dtype (the types a BERT graph can hold; no float8).
DTYPES: Dict[int, np.dtype] = {
    1: np.dtype(np.float32), 2: np.dtype(np.uint8), 3: np.dtype(np.int8),
    4: np.dtype(np.uint16), 5: np.dtype(np.int16), 6: np.dtype(np.int32),
    7: np.dtype(np.int64), 8: np.dtype(object), 9: np.dtype(np.bool_),
    10: np.dtype(np.float16), 11: np.dtype(np.float64), 12: np.dtype(np.uint32),
    13: np.dtype(np.uint64), 14: np.dtype(np.complex64), 15: np.dtype(np.complex128),
}
DTYPE_NAMES = {1: "float", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32",
               7: "int64", 8: "string", 9: "bool", 10: "float16", 11: "double",
               12: "uint32", 13: "uint64", 14: "complex64", 15: "complex128", 16: "bfloat16"}


@dataclass
class ValueInfo:
    name: str
    elem_type: int = 0                       # 0: unknown
    shape: Optional[List[Any]] = None        # ints (fixed), strs (symbolic) or None (unknown)


@dataclass
class Node:
    op_type: str
    inputs: List[str]                        # "" marks an omitted optional input
    outputs: List[str]
    attrs: Dict[str, Any] = field(default_factory=dict)
    name: str = ""
    domain: str = ""


@dataclass
class Graph:
    nodes: List[Node]
    initializers: Dict[str, np.ndarray]
    inputs: List[ValueInfo]                  # may also list initializers (old exporters)
    outputs: List[ValueInfo]
    name: str = ""
    value_info: List[ValueInfo] = field(default_factory=list)


@dataclass
class Model:
    graph: Graph
    opsets: Dict[str, int]                   # domain ("" = ai.onnx) -> version
    ir_version: int = 0
    producer_name: str = ""
    producer_version: str = ""
    metadata: Dict[str, str] = field(default_factory=dict)

    @property
    def opset(self) -> int:
        """The ai.onnx opset version (the default domain)."""
        return self.opsets.get("", self.opsets.get("ai.onnx", 0))
